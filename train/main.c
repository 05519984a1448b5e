// vnmtune: the command-line front end. Each command is a function taking (argc, argv) after the
// command name; `vnmtune <command> --help` prints its help.
#include <stdio.h>
#include <string.h>

#include "train/bench_train.h"
#include "train/commands.h"

static int cmd_bench(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "train")) return bench_train_main(argc, argv);
    fprintf(stderr, "usage: vnmtune bench train [options]   (vnmtune bench train --help)\n");
    return 2;
}

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"train", cmd_train, "train a model from a YAML job (no job: the embedded Fashion-MNIST DeiT)"},
    {"eval", cmd_eval, "evaluate a job's checkpoint on its test set"},
    {"bench", cmd_bench, "bench train: DeiT LoRA training speed on the GPU vs PyTorch + PEFT"},
};

static void usage(FILE *f) {
    fprintf(f, "vnmtune — LoRA fine-tuning into V:N:M sparsity, on CPU and NVIDIA sparse tensor cores\n\n"
               "usage: vnmtune <command> [args]   (vnmtune <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return argc < 2 ? 2 : 0;
    }
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        if (!strcmp(argv[1], COMMANDS[i].name)) return COMMANDS[i].run(argc - 2, argv + 2);
    fprintf(stderr, "vnmtune: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
