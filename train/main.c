// vnmtune: the command-line front end. Each command is a function taking (argc, argv) after the
// command name; `vnmtune <command> --help` prints its help.
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "data/convert.h"
#include "train/bench_infer.h"
#include "train/bench_sddmm.h"
#include "train/bench_train.h"
#ifdef VNMTUNE_HAVE_CUDA
int bench_spmm_main(int argc, char **argv);  // kernels/bench_spmm.cu
#endif
#include "train/commands.h"
#include "train/llama_export.h"
#include "train/pipeline.h"
#include "train/select_vm.h"
#include "train/vnm_export.h"

static int cmd_convert(int argc, char **argv) { return data_convert_main(argc + 1, argv - 1); }
static int cmd_inspect(int argc, char **argv) { return vnm_inspect_main(argc + 1, argv - 1); }
static int cmd_select_vm(int argc, char **argv) { return select_vm_main(argc + 1, argv - 1); }

static int cmd_bench(int argc, char **argv) {
    if (argc >= 1 && !strcmp(argv[0], "train")) return bench_train_main(argc, argv);
    if (argc >= 1 && !strcmp(argv[0], "infer")) return bench_infer_main(argc, argv);
    if (argc >= 1 && !strcmp(argv[0], "sddmm")) return bench_sddmm_main(argc, argv);
#ifdef VNMTUNE_HAVE_CUDA
    if (argc >= 1 && !strcmp(argv[0], "spmm")) return bench_spmm_main(argc, argv);
#endif
    fprintf(stderr, "usage: vnmtune bench train|spmm|infer|sddmm [options]   (vnmtune bench <what> --help)\n"
                    "  train  DeiT LoRA training img/s vs PyTorch + PEFT (eager, torch.compile)\n"
                    "  spmm   V:N:M SpMM vs cuBLASLt dense and cuSPARSELt 2:4; writes the select-vm table\n"
                    "  infer  DeiT forward img/s or Llama prefill/decode tok/s, dense vs V:N:M sparse layers\n"
                    "  sddmm  (CPU) masked-LoRA weight gradient: dense dyᵀx vs the V:N:M SDDMM\n");
    return 2;
}

typedef struct Command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} Command;

static const Command COMMANDS[] = {
    {"train", cmd_train, "train a model from a YAML job (no job: the embedded Fashion-MNIST DeiT)"},
    {"eval", cmd_eval, "evaluate a job's checkpoint (or --model=FILE: a checkpoint or V:N:M export) on its test set"},
    {"pipeline", cmd_pipeline, "dense -> one-shot / fixed-mask / three-stage V:N:M LoRA, +/- permutation: accuracy table"},
    {"export", cmd_export, "merge a sparse job's LoRA + masks and write the V:N:M model file (HDF5)"},
    {"prune", cmd_prune, "one-shot V:N:M pruning of a Hugging Face Llama (model.init) into a V:N:M model file"},
    {"inspect", cmd_inspect, "list the layers of a V:N:M export: pattern, shape, density, sizes"},
    {"select-vm", cmd_select_vm, "choose V and M for a speed-up target from measured kernel speed-ups"},
    {"convert", cmd_convert, "convert data: fashion_mnist DIR OUT_DIR (HDF5 image sets), tokens IDS.txt OUT.bin (token file)"},
    {"bench", cmd_bench, "GPU benchmarks: train (vs PyTorch + PEFT), spmm (vs cuBLASLt, cuSPARSELt), infer"},
};

static void usage(FILE *f) {
    fprintf(f, "vnmtune — LoRA fine-tuning into V:N:M sparsity, on CPU and NVIDIA sparse tensor cores\n\n"
               "usage: vnmtune <command> [args]   (vnmtune <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof COMMANDS / sizeof *COMMANDS; i++)
        fprintf(f, "  %-11s %s\n", COMMANDS[i].name, COMMANDS[i].summary);
}

// A crash prints where it happened (function names: the executable exports its symbols).
static void on_crash(int sig) {
    void *frames[64];
    int n = backtrace(frames, 64);
    fprintf(stderr, "vnmtune: fatal signal %d; backtrace:\n", sig);
    backtrace_symbols_fd(frames, n, STDERR_FILENO);
    signal(sig, SIG_DFL);
    raise(sig);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);  // progress lines reach logs as they happen
    signal(SIGSEGV, on_crash);
    signal(SIGBUS, on_crash);
    signal(SIGFPE, on_crash);
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
