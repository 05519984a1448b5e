// Choosing V and M for a speed-up target (DESIGN.md §4): `vnmtune select-vm`.
//
// Mask diversity of one V×M block: K(V, M) = C(M,4) · C(4,2)^V masks; per weight element
// log K / (V·M) (natural log). Among V ∈ {16, 32, 64, 128}, M ∈ 4..16, the pairs whose MEASURED
// kernel speed-up reaches the target on every layer shape are kept, and the one with the largest
// per-element diversity is chosen (ties: smaller V, then smaller M).
//
// Speed-up table (written by `vnmtune bench spmm`, read here): a text file, one measurement per
// line, whitespace separated:
//     out in n V M speedup
//   out, in   the layer shape (W is out × in, y = x Wᵀ), positive integers
//   n         tokens (rows of x), positive integer
//   V, M      the V:2:M pattern, positive integers
//   speedup   dense_time / sparse_time, a positive number (> 1 means the sparse kernel is faster)
// '#' starts a comment (whole line or the rest of a line); blank lines are ignored. When the same
// (out, in, n, V, M) appears more than once, the last line wins. Example:
//     # H100, bf16, cuBLASLt dense vs vnm_spmm
//     4096 4096 2048 64 5 1.83
//     4096 4096 2048 64 8 2.71
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/util.h"

typedef struct SpeedRow {
    int64_t out, in, n;
    int V, M;
    double speedup;
    int line;  // line in the file
} SpeedRow;

typedef struct SpeedTable {
    char path[512];
    SpeedRow *rows;
    int count;
} SpeedTable;

// Errors name the file and line ("table.txt:7: ...").
int speed_table_load(const char *path, SpeedTable *t, Err *err);
void speed_table_free(SpeedTable *t);
// The measured speed-up for a shape, n and pattern; -1 when the table has none.
double speed_table_lookup(const SpeedTable *t, int64_t out, int64_t in, int64_t n, int V, int M);
// The same for the measured n closest to n (ratio-wise); -1 when the shape and pattern have none.
double speed_table_nearest(const SpeedTable *t, int64_t out, int64_t in, int64_t n, int V, int M);

double vnm_log_diversity(int V, int M);  // log K(V, M) = log C(M,4) + V log 6
double vnm_diversity_per_element(int V, int M);

#define SELECT_VM_MAX_SHAPES 16

typedef struct VmCandidate {
    int V, M;
    double diversity;      // per element
    double speedup[SELECT_VM_MAX_SHAPES];  // per shape, -1 = not measured
    double min_speedup;    // over shapes; -1 when any shape is missing
    bool fits;             // every shape splits into whole V×M blocks
    bool meets_target;
} VmCandidate;

typedef struct SelectVmArgs {
    double target;
    const char *table;
    int64_t shapes[SELECT_VM_MAX_SHAPES][2];  // (out, in)
    int n_shapes;
    int64_t n;             // tokens (default 2048)
} SelectVmArgs;

// "4096x4096,11008x4096" -> shapes; errors name the string.
int parse_shapes(const char *s, int64_t shapes[][2], int max_shapes, int *n_shapes, Err *err);
// Parses `select-vm` options (argv[0] is the command name). Errors name the option.
int select_vm_parse_args(int argc, char **argv, SelectVmArgs *a, Err *err);

// Fills all candidates (V ascending, then M) from the table, returns the index of the chosen one
// or -1 when none meets the target. cands must hold SELECT_VM_N_CANDIDATES entries.
#define SELECT_VM_N_CANDIDATES (4 * 13)
int select_vm(const SpeedTable *t, const SelectVmArgs *a, VmCandidate *cands);
// Prints the decision table (and notes on missing measurements) to f.
void select_vm_print(FILE *f, const SelectVmArgs *a, const VmCandidate *cands, int chosen);

// `vnmtune select-vm --target 2.0 --table FILE --shapes 4096x4096,11008x4096 [--n 2048]`.
// Returns 0 when a pair was chosen, 1 when none meets the target or on an error (printed to
// stderr), 2 on bad usage.
int select_vm_main(int argc, char **argv);
