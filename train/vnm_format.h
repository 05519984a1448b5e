// V:N:M patterns and the compressed V:N:M weight format (DESIGN.md §1).
//
// A weight W (out, in), y = x Wᵀ, is cut into blocks of V rows × M columns. Each block keeps the
// same 4 columns for all its V rows, and each row keeps 2 of those 4 (2:4). With R = out/V row
// blocks and C = in/M column blocks the compressed form is:
//   values  (out, 2C)  bf16    the 2 kept values of each row in each block, in kept-column order
//   columns (R, C, 4)  uint16  ORIGINAL input-channel indices of the 4 kept columns (ascending),
//                              so the V:N:M kernels need no separate permutation of x (prefill's
//                              2:4 form does: a gather, kernels/vnm_spmm.h)
//   idx     (out, C)   uint8   canonical 2:4 positions: bits 1:0 = position (0..3) of the first kept
//                              value among the block's 4 columns, bits 3:2 = the second (first < second)
//   meta               uint32  the same information in the layout the sparse MMA kernels read
//                              (documented in vnm_format.c next to vnm_pack_meta)
//   row_perm (out)     int32   optional: compressed row r is written to output row row_perm[r]
// A plain 2:4 pattern ("2:4") is V:2:4 with V = VNM_DEFAULT_V_FOR_24 (every column is kept).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/util.h"

#define VNM_DEFAULT_V_FOR_24 16

typedef struct VnmPattern {
    int V, N, M;  // N is always 2 (the sparse tensor cores' 2:4)
} VnmPattern;

// "64:2:5" -> {64, 2, 5}; "2:4" -> {VNM_DEFAULT_V_FOR_24, 2, 4}. Errors name the string:
// N must be 2, M >= 4, V >= 1 (e.g. "64:2:3", "0:2:5", "a:b:c" are rejected).
int vnm_pattern_parse(const char *s, VnmPattern *p, Err *err);
// Checks that (out, in) splits into whole V×M blocks; the error names the layer.
int vnm_pattern_fits(VnmPattern p, int64_t out, int64_t in, const char *layer, Err *err);

typedef struct VnmMatrix {
    VnmPattern p;
    int64_t out, in;     // dense shape
    int64_t R, C;        // row blocks (out/V), column blocks (in/M)
    uint16_t *values;    // bf16 bits, (out, 2C)
    uint16_t *columns;   // (R, C, 4)
    uint8_t *idx;        // (out, C)
    uint32_t *meta;      // kernel layout, meta_words entries
    int64_t meta_words;
    int32_t *row_perm;   // (out) or NULL
} VnmMatrix;

// Compress dense W (out, in, fp32 row-major) under a V:N:M mask (out, in, 0/1 bytes) that has
// exactly the V:N:M structure (4 shared columns per block, 2 per row among them). A mask that
// breaks the structure is an error naming the block. row_perm may be NULL.
int vnm_compress(const float *W, const uint8_t *mask, int64_t out, int64_t in, VnmPattern p,
                 const int32_t *row_perm, VnmMatrix *m, Err *err);
// Dense (out, in) fp32 with zeros at pruned positions (rows in compressed order, i.e. row_perm
// is NOT applied).
void vnm_decompress(const VnmMatrix *m, float *W);
// Rebuild meta from idx (after loading a file or editing values).
void vnm_pack_meta(VnmMatrix *m);
// The same products as a plain 2:4 matrix (V:2:4 with every column kept) over the ORIGINAL input
// channels: each row's kept values regrouped by aligned groups of 4 channels. Possible when no row
// keeps more than 2 values in any such group, which always holds for M a multiple of 4 without an
// input-channel permutation (a block of M channels is whole groups of 4 and a row keeps 2 values
// per block); the sm_90 kernels run this form faster than a gather of the kept channels at
// prefill sizes (kernels/vnm_spmm.h). Every column of a 2:4 matrix is kept, so its rows need not stay
// in row blocks: o's rows are in output order (m's row_perm applied, o->row_perm NULL), which lets
// the kernels' fast epilogue (bulk stores of whole tiles) write y. Returns 0, or -1 (o left empty)
// when it is not possible.
int vnm_to_24(const VnmMatrix *m, VnmMatrix *o);
// The same as a plain 2:4 matrix over GATHERED inputs x'[:, j] = x[:, src[j]] (0 where src[j] < 0),
// for any M and input permutation: block c's slots hold the channels that any row block keeps
// there in groups of 4 (a row keeps 2 values per block, so every group of 4 slots is 2:4); a lone
// leftover channel shares its group with another block's (M = 5: 1.2·in slots), other leftovers
// are padded to 4; the total padded to a multiple of 8. *src (malloc'd, *n_src entries) is the slot map;
// o->in = *n_src. Returns 0, or -1 (nothing allocated) when a block's kept channels exceed M.
int vnm_to_24_gathered(const VnmMatrix *m, VnmMatrix *o, int32_t **src, int64_t *n_src);
void vnm_free(VnmMatrix *m);
// CPU reference SpMM: y (n, out) = x (n, in) · Wᵀ (+ bias), fp32 accumulate of the bf16 values,
// output row r of the compressed matrix goes to column row_perm[r] of y (r when row_perm is NULL).
void vnm_spmm_cpu(const VnmMatrix *m, const float *x, int64_t n, const float *bias, float *y);

// ---- additions (kernels helper) ----
// Number of 32-wide logical k-steps of the meta layout: ceil(C / 8).
int64_t vnm_meta_ksteps(const VnmMatrix *m);
// Inverse of vnm_pack_meta: idx (out, C) from meta.
void vnm_unpack_meta(const VnmMatrix *m, uint8_t *idx);
// Random valid V:N:M matrix (tests, benchmarks); flags: see vnm_format.c.
#define VNM_RANDOM_PERMUTE_COLS 1u
#define VNM_RANDOM_PERMUTE_ROWS 2u
void vnm_random(VnmPattern p, int64_t out, int64_t in, uint64_t seed, unsigned flags, VnmMatrix *m);
