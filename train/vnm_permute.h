// Channel permutation for V:N:M sparsity (DESIGN.md §3).
//
// Finds an input-channel permutation P_i (and optionally an output-row permutation P_o) that
// raises the total score kept by the V:N:M mask of the permuted score matrix
//   S'[r][k] = S[perm_out[r]][perm_in[k]]      (perm[new position] = original index).
// The search starts from the identity and only accepts changes that increase the kept score, so
// the result never keeps less than the unpermuted layer. It alternates a column phase (swap two
// input channels between column blocks) and a row phase (swap two rows between row blocks), each
// guided by heuristics (see vnm_permute.c) and bounded by a time budget per layer.
//
// vnm_compress_permuted() stores ORIGINAL input indices in `columns` and perm_out as `row_perm`, so
// the kernels read x and write y in the original order: the V:N:M kernels (decode) at no cost; on
// Hopper prefill runs a 2:4 form whose rows are stored in output order (free) and which gathers
// permuted inputs first, unless the export folded the permutation into the layers that make the
// input (export.fold_permutations, train/model_export.c).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/util.h"
#include "train/vnm_format.h"

typedef struct VnmPermuteOptions {
    double time_budget_s;  // wall-clock budget per layer (default 2 s); the first full evaluation
                           // of the identity always completes
    int max_rounds;        // rounds of (column phase, row phase) (default 50)
    bool permute_rows;     // also search the output-row permutation P_o (default true)
    bool try_striped_start;  // also evaluate "channels dealt round-robin by importance" as a start
                             // and keep it when it beats the identity (default true)
} VnmPermuteOptions;

typedef struct VnmPermuteStats {
    double kept_identity;  // V:N:M kept score without permutation
    double kept_final;     // with the returned permutation (>= kept_identity)
    double seconds;
    bool striped_start;    // the striped start was taken
    int rounds;
    int64_t col_tries, col_swaps;  // candidate channel swaps evaluated / accepted
    int64_t row_tries, row_swaps;
} VnmPermuteStats;

VnmPermuteOptions vnm_permute_defaults(void);

// scores (out, in) from vnm_scores(). Fills perm_in (in) and, when not NULL, perm_out (out; the
// identity unless opt->permute_rows). stats may be NULL. Errors (shape, non-finite scores) name
// the layer.
int vnm_permute_search(const float *scores, int64_t out, int64_t in, VnmPattern p,
                       const VnmPermuteOptions *opt, const char *layer, int32_t *perm_in,
                       int32_t *perm_out, VnmPermuteStats *stats, Err *err);

// dst[r][k] = src[perm_out[r]][perm_in[k]] (NULL = identity rows / columns). src != dst.
void vnm_permute_apply(const float *src, int64_t out, int64_t in, const int32_t *perm_in,
                       const int32_t *perm_out, float *dst);
// The inverse for masks: mask_orig[perm_out[r]][perm_in[k]] = mask_perm[r][k].
void vnm_unpermute_mask(const uint8_t *mask_perm, int64_t out, int64_t in, const int32_t *perm_in,
                        const int32_t *perm_out, uint8_t *mask_orig);
// Checks that perm holds each of 0..n-1 exactly once (errors name `what`).
int vnm_check_perm(const int32_t *perm, int64_t n, const char *what, Err *err);

// Compresses W (out, in, ORIGINAL order) pruned by mask_perm, a V:N:M mask of the PERMUTED
// matrix (vnm_permute_apply(W)). The result's `columns` are original input indices (ascending in
// each block, values/idx reordered to match), and row_perm = perm_out (NULL when perm_out is
// NULL), so vnm_spmm_cpu(m, x) == x · (W ⊙ vnm_unpermute_mask(mask_perm))ᵀ with x and y in the
// original channel order.
int vnm_compress_permuted(const float *W, const uint8_t *mask_perm, int64_t out, int64_t in,
                          VnmPattern p, const int32_t *perm_in, const int32_t *perm_out,
                          VnmMatrix *m, Err *err);
