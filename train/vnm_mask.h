// Importance scores and pruning masks: V:N:M (DESIGN.md §1), plain N:M and unstructured.
//
// Weights are (out, in) row-major fp32, y = x Wᵀ; masks are (out, in) bytes, 1 = kept.
// All functions are plain single-threaded C and deterministic (ties go to the lowest index).
#pragma once
#include <stdint.h>

#include "autograd/util.h"
#include "train/vnm_format.h"

// Largest M the exact V:N:M mask search accepts (it enumerates all C(M,4) column subsets).
#define VNM_MAX_M 16

// ---- mask specs: what kind of sparsity to compare ----
typedef enum { MASK_VNM = 0, MASK_NM = 1, MASK_UNSTRUCTURED = 2 } MaskKind;

typedef struct MaskSpec {
    MaskKind kind;
    VnmPattern vnm;   // MASK_VNM
    int n, m;         // MASK_NM: per row, keep n of every m consecutive values (MASK_VNM: 2, M)
    double density;   // kept fraction: 2/M, n/m, or the unstructured density in (0, 1]
} MaskSpec;

// "V:2:M" -> V:N:M; "2:4" -> V:N:M with V = VNM_DEFAULT_V_FOR_24 (identical to plain 2:4);
// "N:M" (other N < M) -> plain N:M per row; "unstructured:D" with 0 < D <= 1.
// Errors name the string.
int mask_spec_parse(const char *s, MaskSpec *spec, Err *err);
// "64:2:5", "2:8", "unstructured:0.5" into buf.
const char *mask_spec_str(const MaskSpec *spec, char *buf, int n);

// ---- scores ----
typedef enum { SCORE_MAGNITUDE = 0, SCORE_WANDA = 1, SCORE_RIA = 2 } ScoreKind;

int score_kind_parse(const char *s, ScoreKind *kind, Err *err);  // "magnitude" | "wanda" | "ria"
const char *score_kind_name(ScoreKind kind);

// scores (out, in):
//   magnitude  |W_ij|
//   wanda      |W_ij| · act_norm[j]
//   ria        (|W_ij| / Σ_row i |W| + |W_ij| / Σ_col j |W|) · act_norm[j]^ria_alpha
// act_norm (length in) is the L2 norm of input channel j over the calibration tokens. It is
// required for wanda; for ria NULL means "no activation term"; magnitude ignores it.
// A zero row/column sum contributes 0 (instead of 0/0).
void vnm_scores(const float *W, int64_t out, int64_t in, ScoreKind kind, const float *act_norm,
                float ria_alpha, float *scores);

// ---- masks ----
// mask (out, in) from scores under spec:
//   MASK_VNM: per V×M block the 4 columns that maximise the kept score (the sum over the block's
//     rows of the 2 largest scores among the 4 columns), found exactly by enumerating all C(M,4)
//     subsets; then per row the 2 largest of the 4. Ties: lowest column subset / index.
//   MASK_NM: per row, the n largest of every m consecutive values.
//   MASK_UNSTRUCTURED: the round(density·out·in) largest scores of the layer.
// Shapes that do not split into whole blocks / groups and non-finite scores are errors naming
// `layer` (may be NULL).
int mask_compute(const float *scores, int64_t out, int64_t in, const MaskSpec *spec,
                 const char *layer, uint8_t *mask, Err *err);

// Exact V:N:M search for one V×M block, the building block of mask_compute and of the
// permutation search. Holds the list of C(M,4) column subsets and scratch memory.
typedef struct VnmBlockSolver {
    int V, M, n_subsets;
    uint8_t (*subsets)[4];  // all 4-column subsets of 0..M-1, lexicographic order
    float *colmajor;        // (M, V) scratch: the block transposed
} VnmBlockSolver;

void vnm_solver_init(VnmBlockSolver *s, int V, int M);
void vnm_solver_free(VnmBlockSolver *s);
// Best kept score of the V×M block at `block` (row-major, rows `stride` floats apart) and its 4
// columns (ascending positions 0..M-1) in cols4 when not NULL. Ties go to the first subset in
// lexicographic order.
float vnm_solver_best(VnmBlockSolver *s, const float *block, int64_t stride, int cols4[4]);
// The same for a column-major block: column m is the V contiguous floats at block + m*col_stride
// (e.g. a tile of a transposed score matrix). Uses no scratch.
float vnm_solver_best_cm(const VnmBlockSolver *s, const float *block, int64_t col_stride,
                         int cols4[4]);
// Kept score of a column-major block with the given 4 columns: Σ over rows of the 2 largest.
float vnm_block_kept_cm(const float *block, int64_t col_stride, int V, const int cols4[4]);

double mask_kept_score(const float *scores, const uint8_t *mask, int64_t n);  // Σ scores where kept
double mask_density(const uint8_t *mask, int64_t n);                         // kept fraction
double mask_flip_rate(const uint8_t *old_mask, const uint8_t *new_mask, int64_t n);
// Verifies the V:N:M structure: every row keeps exactly 2 values per block and the kept values of
// each V×M block lie in at most 4 distinct columns (exactly 4 unless V is too small or rows
// agree; the compressor pads to 4). Errors name the block and row.
int mask_check_vnm(const uint8_t *mask, int64_t out, int64_t in, VnmPattern p, Err *err);
