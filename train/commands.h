// The commands of the vnmtune executable (train/main.c dispatches to them). Each takes the
// arguments after the command name and returns the process exit code.
#pragma once
#include "train/config.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);

// Loads a job the way every command does: defaults, then the YAML file (or, when `argv` holds no
// file, the embedded job `default_job`), then `key=value` overrides, then validation. Prints the
// error and returns -1 on bad input. Sets *help when --help is among the arguments.
int job_from_args(int argc, char **argv, const char *default_job, Config *c, bool *help);

// Jobs compiled into the binary from configs/*.yaml (name without extension), or NULL.
const char *embedded_config(const char *name);
