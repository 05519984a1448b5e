// Device layouts of a V:N:M matrix's compressed values and metadata, as the GPU SpMM kernels read
// them (kernels/vnm_spmm.cu uploads them). Host code in C, so that the CPU tests decode both
// layouts back to the dense weights (tests/test_vnm_format.c).
//
// Rows are padded to out_pad (a multiple of 256) and the logical reduction to KT k-steps of 32
// (8 column blocks each, KT even); padding has zero values and metadata code 0b0100. A "value
// word" is the 2 kept bf16 of one row in one column block (low half first), a "meta word" the
// host word meta[(q*kt_host + s)*16 + 2*g + h] of vnm_format.c (16-row group q, k-step s).
//
// Fragment layout (the mma.sp kernels, the register-A wgmma kernels, decode):
//   vals[vnm_frag_index(q, s, KT, lane)] (4 value words) : the A fragment of lane (g = lane/4,
//       tig = lane%4): .x = (row g, block tig), .y = (g+8, tig), .z = (g, 4+tig), .w = (g+8, 4+tig)
//       of the k-step's 8 blocks. This is the mma.sp m16n8k32 A fragment; the wgmma.sp register-A
//       fragment of each warp of a warpgroup has the same layout.
//   meta[vnm_frag_index(q, s, KT, lane)] : meta word 2*g + (tig & 1), so lanes 0/1 and 2/3 of each
//       quad hold the same word and either sparsity selector works.
// SS layout (the sm_90a TMA kernels over the 2:4 form for prefill, which read A from shared memory):
//   vals only (no separate meta array): per (256-row tile rt, k-step pair jp) one block of
//   VNM_SS_BLOCK_WORDS words at vnm_ss_block(rt, jp, KT), made of two halves of VNM_SS_HALF_WORDS
//   (rows 0-127 and 128-255 of the tile). A ring stage of the 256-row kernel is the block, one of
//   the 128-row kernel a half: either way one bulk copy (in the kernel 2 copies per stage ran 0-5 %
//   faster than 3, Session 11, experiments/kernels/NOTES.md; the copy engine alone shows no cost
//   per copy, Session 13). In half h (vnm_ss_value_word, vnm_ss_meta_word):
//   words [1024·(s%2), + 1024): the values of k-step s, those of each row in block order (8 words =
//       16 values) as K-major core matrices of 8 rows × 16 bytes, the two of an 8-row group
//       adjacent: word ((r/8)*2 + j/4)*32 + (r%8)*4 + j%4 holds (row 128h + r of the tile, block j),
//       so each m64 row group's 2 KB of a k-step are contiguous;
//   words [2048, 2304): the metadata, word (q%8)*32 + lane for the 16-row group q (q%16 = 8h + q%8):
//       the meta word of k-step 2jp for lanes with tig 0-1 (sparsity selector 0), of 2jp + 1 for
//       tig 2-3 (selector 1), i.e. each word once.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "train/vnm_format.h"

#ifdef __CUDACC__
#define VNM_HOST_DEVICE __host__ __device__
#else
#define VNM_HOST_DEVICE
#endif

#ifdef __cplusplus
extern "C" {
#endif

// Index (in 4-word A fragments or metadata words) of lane `lane` of 16-row group q, k-step ks in
// the fragment layout. Order: [256-row tile][k-step][m64 row group][warp][lane], so that the A
// fragments of one CTA (256 rows) for one k-step are one contiguous block (8 KB of A, 2 KB of
// metadata), and those of consecutive k-steps too: a wgmma ring stage is one bulk copy.
static inline VNM_HOST_DEVICE int64_t vnm_frag_index(int64_t q, int64_t ks, int64_t KT, int lane) {
    const int64_t rt = q >> 4, rg = (q >> 2) & 3, w = q & 3;
    return (((rt * KT + ks) * 4 + rg) * 4 + w) * 32 + lane;
}

// Word offset of the SS block of 256-row tile rt, k-step pair jp (above).
#define VNM_SS_HALF_WORDS 2304
#define VNM_SS_BLOCK_WORDS (2 * VNM_SS_HALF_WORDS)
static inline VNM_HOST_DEVICE int64_t vnm_ss_block(int64_t rt, int64_t jp, int64_t KT) {
    return (rt * (KT / 2) + jp) * VNM_SS_BLOCK_WORDS;
}
// In an SS block: the value word of row R (0-255) of the tile, k-step s, column block j (0-7) of
// the k-step; the metadata word of lane `lane` of the tile's 16-row group qq (0-15).
static inline VNM_HOST_DEVICE int vnm_ss_value_word(int R, int64_t s, int j) {
    const int r = R % 128;
    return (R / 128) * VNM_SS_HALF_WORDS + 1024 * (int)(s % 2) + ((r / 8) * 2 + j / 4) * 32 + (r % 8) * 4 + j % 4;
}
static inline VNM_HOST_DEVICE int vnm_ss_meta_word(int qq, int lane) {
    return (qq / 8) * VNM_SS_HALF_WORDS + 2048 + (qq % 8) * 32 + lane;
}

// Bytes of the values and metadata for out_pad rows and KT k-steps in either layout (the SS layout
// has half the metadata).
static inline size_t vnm_layout_bytes(int64_t out_pad, int64_t KT, int ss) {
    return (size_t)(out_pad / 16 * KT * 32) * (ss ? 16 + 2 : 16 + 4);
}

// What the packers fill: vals (out_pad/16 · KT · 128 words; SS: · 144, with the metadata) and meta
// (out_pad/16 · KT · 32 words; SS: not used); KT even, >= kt_host = vnm_meta_ksteps(m).
typedef struct VnmLayoutPack {
    const VnmMatrix *m;
    int64_t KT, kt_host;
    uint32_t *vals, *meta;
} VnmLayoutPack;

// 16-row groups [q0, q1) of the fragment / SS layout (parallel_for bodies: arg is a VnmLayoutPack).
void vnm_pack_fragments(void *arg, int64_t q0, int64_t q1);
void vnm_pack_ss(void *arg, int64_t q0, int64_t q1);

// Tile order of the persistent prefill kernels (kernels/vnm_spmm_sm90.cu): output tiles in bands of
// `band` row tiles, a band's tiles before the next band's, row tiles fastest within a band (band =
// row_tiles: row-first over all rows). Row-first, the G CTAs running at once share their x tiles,
// but when W is larger than L2 every round of tiles that reaches new token tiles streams W from DRAM
// again; in bands whose W fits in half of L2, W is read once and x once per band. Returns the row
// tiles per band: banded when that moves fewer DRAM bytes (estimate from w_tile / x_tile, the bytes
// of one row tile's weights / one token tile's x) and the x tiles one round of G tiles spans also
// fit in half of L2 (l2 bytes), else row_tiles; forced >= 0 sets it instead (0: row_tiles). pair:
// 2-CTA pairs take adjacent row tiles of one token tile, so the band is even. Measured on an H200
// (experiments/kernels/NOTES.md, Session 19): Llama's 11008 × 4096 banded 3.5-4 % faster; 4096 ×
// 11008 banded 3-5 % slower at n = 8192 (a round spanned 45 MB of x), so row-first there.
int64_t vnm_tile_band(int64_t row_tiles, int64_t token_tiles, double w_tile, double x_tile, int64_t G, double l2,
                      int pair, int64_t forced);

#ifdef __cplusplus
}
#endif
