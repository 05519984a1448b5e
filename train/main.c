// vnmtune command line (placeholder until the CLI lands).
#include <stdio.h>
int main(void) { puts("vnmtune"); return 0; }
