// The commands of the vnmtune executable (train/main.c dispatches to them). Each takes the
// arguments after the command name and returns the process exit code.
#pragma once
#include "train/config.h"

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);

// Loads a job the way every command does: defaults, then the YAML file (or, when `argv` holds no
// file, the embedded job `default_job`), then `key=value` overrides, then validation. Returns 0,
// or -1 after printing the error, or 1 after printing `usage` and the config keys for --help.
int job_from_args(int argc, char **argv, const char *default_job, const char *usage, Config *c);

// Jobs compiled into the binary from configs/*.yaml (name without extension), or NULL.
const char *embedded_config(const char *name);
