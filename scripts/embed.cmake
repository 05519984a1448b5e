# Writes OUT: a C file with each YAML job of JOBS as a string, and embedded_config(name).
string(REPLACE "|" ";" JOBS "${JOBS}")
set(body "#include <string.h>\n#include <stddef.h>\n")
set(table "")
foreach(job IN LISTS JOBS)
  get_filename_component(name ${job} NAME_WE)
  string(MAKE_C_IDENTIFIER ${name} id)
  file(READ ${job} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(APPEND body "static const char job_${id}[] = {${bytes}0};\n")
  string(APPEND table "    {\"${name}\", job_${id}},\n")
endforeach()
string(APPEND body "static const struct { const char *name, *text; } JOBS[] = {\n${table}    {NULL, NULL}};\n"
       "const char *embedded_config(const char *name) {\n"
       "    for (int i = 0; JOBS[i].name; i++)\n"
       "        if (!strcmp(JOBS[i].name, name)) return JOBS[i].text;\n"
       "    return NULL;\n}\n")
file(WRITE ${OUT} "${body}")
