// V:N:M sparse × dense products on sparse tensor cores (C-callable).
//
//   y (n × out) = epilogue( x (n × in) · W_vnmᵀ )
// with bf16 x, W and y, fp32 accumulation. The epilogue, for compressed row r of W (output
// column o = row_perm[r], or r without row_perm) and token t:
//   v = acc + bias[o];  if act == VNM_ACT_GELU: v = gelu(v) (exact, erf);  v += residual[t, o]
//   y[t, o] = bf16(v)
// bias (out) and residual (n, out) are optional (NULL), both in final (permuted) order.
//
// Kernels (chosen per call, see vnm_spmm_kernel_name):
//   - "mma_sp":   warp-level mma.sp.sync m16n8k32 (sm_80 and later), any V multiple of 16; on
//                 sm_90 only for V = 16/32 with M > 4 (slow there: see experiments/kernels/NOTES.md).
//   - "mma_sp/decode" (n <= 16, any arch): split-K over the reduction, all B tiles of a CTA
//                 gathered up front; fp32 workspace + the last CTA of each row tile applies the
//                 epilogue. The workspace belongs to the matrix: concurrent n <= 16 calls on the
//                 same VnmDeviceMatrix from different streams are not allowed.
//   - "mma_sp/cluster" (n <= 16, sm_90, in <= 1024·M): split-K over the <= 16 CTAs of a
//                 thread-block cluster, A fragments in registers, x slice staged by cp.async,
//                 partial sums reduced through distributed shared memory in a fixed order (no
//                 workspace, deterministic). VNM_DECODE=atomic in the environment disables it.
//   - "wgmma_sp": sm_90a wgmma.mma_async.sp m64n128k32, 256×128 output tiles, warp-specialized
//                 (1 producer + 2 consumer warpgroups, mbarrier ring). B (the gathered x columns)
//                 is built in shared memory by one of three fillers:
//                   tma     when the kept columns are the plain input order (M = 4, unpermuted):
//                           x tiles arrive by TMA, no gather;
//                   window  when every block's kept columns lie in its own 8-channel window
//                           (M <= 8, unpermuted): 16-byte loads + byte permutes;
//                   generic otherwise (permuted inputs, M > 8): per-element loads.
//                 Needs V % 64 == 0 or the same columns for all row blocks (e.g. 2:4), n > 16,
//                 and a build with sm_90a code (checked at run time). With the TMA filler the CTAs
//                 are persistent (one per SM, looping over output tiles, the next tile's stages
//                 loading during the epilogue; VNM_PERSISTENT=0 launches one CTA per tile).
// The decode kernels start loading their weights before the previous kernel has finished
// (programmatic dependent launch, kernels/pdl.cuh; VNM_PDL=0 turns it off).
// The device layouts of values/meta (fragment order, SS) are documented in train/vnm_device_layout.h.
//
// Feature-major path (vnm_spmm_cuda_fm): activations stored transposed, tokens contiguous:
//   yT (out × ld) = epilogue( W_vnm · xT ),  xT (in × ld), residualT (out × ld),  element (c, t) at [c*ld + t]
// with ld >= n, ld % 8 == 0 and 16-byte aligned xT / yT / residualT. Columns n .. ld-1 of yT are not
// written; those of xT are not read. The same epilogue as above, per output row o (bias[o], row_perm).
// Kernel "wgmma_sp/rows" (sm_90a, same matrices as wgmma_sp, any n >= 1): a kept input channel of
// a 128-token tile is one contiguous row of xT, so B is built by 16-byte cp.async row copies
// straight into an N-major (transposed) wgmma operand; D = W·xT is already yT.
// Token-major calls (kernel AUTO) of matrices the feature-major kernel runs, with M > 4 and in, out
// >= 1024, go through it: xT = transpose(x), yT = W·xT (bias, GELU), y = transpose(yT) + residual
// ("wgmma_sp/rows+T"; VNM_KERNEL_VIA_FM asks for it explicitly; VNM_TOKEN_MAJOR=1 / 0 in the
// environment forces the token-major kernel / the transposes). The two buffers come from the
// device's stream-ordered memory pool, whose release threshold is raised so that they stay cached.
// 2:4 form for prefill (sm_90a): on Hopper every kernel that gathers kept channels is bound by
// shared memory (each 64-row group needs its own B tile) and ran slower than cuBLASLt dense at
// prefill sizes, while the 2:4 TMA kernel needs no gather (one B for all rows of a CTA). A V:N:M
// matrix whose kept values are also 2:4 over the original channels (M a multiple of 4 without
// input permutation, vnm_to_24) is therefore uploaded a second time in that form, and token-major
// AUTO calls with n > 16 run it ("wgmma_sp/tma as 2:4"); decode (n <= 16) keeps the V:N:M form,
// which reads half the bytes. Cost: the 2:4 form's memory (1.125 bytes per weight in the SS
// layout: half of dense plus metadata), on top. VNM_PREFILL_24 in the environment (read at each
// upload): unset, the form is made while a quarter of the GPU's memory stays free after it (a
// model that fits without it still fits, its first layers get it); 0 never; 1 always. Matrices that
// are 2:4 only over gathered inputs (permuted inputs, M not a multiple of 4, in <= 32768) get that
// form (vnm_to_24_gathered: 1.2·in slots for M = 5, in for permuted M = 8); the call then gathers
// x into a pooled buffer first ("wgmma_sp/ss as 2:4+gather"), which is faster than the kept-channel
// gathers of the V:N:M kernels at prefill sizes (experiments/kernels/NOTES.md, Session 15).
// The 2:4 form is stored in the SS layout ("wgmma_sp/ss as 2:4", VnmDeviceMatrix.ss): the wgmma
// reads A from shared memory and the metadata comes once per 2 k-steps, so no A registers are
// needed and a tile can be 192 tokens wide, or 128 rows × 256 tokens with m64n256 wgmmas (the wide
// form, for large matrices); a ring stage's values and metadata are one block (or half-block), one
// bulk copy; plain 2:4 matrices the TMA kernel runs get such a copy too. VNM_SS=0 (read at each
// upload) keeps the register-A layout, VNM_SS_TN=128 / 192 / 256 forces the tile. Stream-K
// (VNM_STREAMK, vnm_spmm_sm90.cu) splits the last tiles between CTAs on long shapes. The TMA
// kernels' epilogue stages bf16 and, without residual or row permutation, stores y by bulk tensor
// copies while the next tile runs (VNM_TMA_STORE=0: by the threads).
// Measured speeds (H100, H200) and the V × M table for select-vm: experiments/kernels/.
#pragma once
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
#ifndef _Noreturn
#define _Noreturn [[noreturn]]  // autograd/util.h is C11
#endif
extern "C" {
#endif
#include "autograd/util.h"
#include "train/vnm_format.h"

typedef enum { VNM_ACT_NONE = 0, VNM_ACT_GELU = 1 } VnmAct;

typedef enum {
    VNM_KERNEL_AUTO = 0,
    VNM_KERNEL_MMA_SP = 1,    // mma.sp.sync (any arch >= sm_80)
    VNM_KERNEL_WGMMA_SP = 2,  // wgmma.mma_async.sp (sm_90a only)
    VNM_KERNEL_FEATURE_MAJOR = 3,  // only for vnm_spmm_kernel_name: the vnm_spmm_cuda_fm kernel
    VNM_KERNEL_VIA_FM = 4,    // token-major call through transposes + the feature-major kernel (sm_90a)
} VnmKernel;

// VNM_FILL_ROWS is the feature-major kernel's filler (cp.async row copies of xT); d->fill never holds it.
typedef enum { VNM_FILL_TMA = 0, VNM_FILL_WINDOW = 1, VNM_FILL_GENERIC = 2, VNM_FILL_ROWS = 3 } VnmFill;

typedef struct VnmDeviceMatrix {
    VnmPattern p;
    int64_t out, in, R, C;
    int64_t out_pad;      // rows padded to a multiple of 256 (zero values)
    int64_t KT;           // 32-wide logical k-steps, padded to even (ceil(C/8) rounded up)
    int group_rows;       // rows that share one set of kept columns: V, or out_pad when uniform
    VnmFill fill;         // how the wgmma kernel builds B (see above)
    int cols_local;       // every kept channel of column block cb lies in [cb*M, cb*M + M) (no input permutation)
    int cc_major;         // compute capability of the device it was uploaded to
    int num_sms;
    uint32_t *vals;       // (out_pad/16, KT, 32 lanes) × uint4: A fragments (ss: values and metadata in the SS layout)
    uint32_t *meta;       // (out_pad/16, KT, 32 lanes) u32: metadata words (ss: NULL, they are in vals)
    int ss;               // vals in the SS layout of the sm_90a TMA kernel (the 2:4 form for prefill):
                          // no other kernel can read them (train/vnm_device_layout.h)
    uint16_t *cols;       // (groups, KT*8, 4) kept input channels per gather group (pad: 0)
    uint32_t *sel;        // (groups, KT*8, 2) byte-permute selectors for the window filler
    int32_t *row_perm;    // (out) or NULL
    float *ws;            // decode workspace (16 × out_pad fp32, then out_pad/64 int counters), kept zero
    void *tmap_cache;     // host-side cache of the x tensor map (TMA filler)
    struct VnmDeviceMatrix *as24;  // the same matrix as plain 2:4 (vnm_to_24) for n > 16 on sm_90a, or NULL
    int32_t *as24_src;    // when as24 runs on gathered inputs (vnm_to_24_gathered): its slot map, else NULL
    int64_t as24_in;      // its length (= as24->in)
} VnmDeviceMatrix;

// Copies m to the current CUDA device in the kernels' layout (and its 2:4 form, see above). Errors
// (unsupported shape, CUDA failures) name the matrix shape and pattern.
int vnm_upload(const VnmMatrix *m, VnmDeviceMatrix *d, Err *err);
void vnm_device_free(VnmDeviceMatrix *d);
// GPU bytes of d's V:N:M form (A fragments, metadata, gather tables, row_perm, decode workspace);
// *as24_bytes (may be NULL) gets those of its 2:4 form, 0 without one.
size_t vnm_device_bytes(const VnmDeviceMatrix *d, size_t *as24_bytes);

// y = epilogue(x · Wᵀ) on `stream`. x: (n, in) bf16 bits, y: (n, out). Returns 0, or -1 with
// err filled (err may be NULL) on bad arguments or a CUDA error.
int vnm_spmm_cuda(const VnmDeviceMatrix *d, const uint16_t *x, int64_t n, const uint16_t *bias,
                  const uint16_t *residual, int act, uint16_t *y, cudaStream_t stream, Err *err);
// Same with an explicit kernel (VNM_KERNEL_*); -1 when that kernel cannot run this matrix here.
int vnm_spmm_cuda_ex(const VnmDeviceMatrix *d, const uint16_t *x, int64_t n, const uint16_t *bias,
                     const uint16_t *residual, int act, uint16_t *y, cudaStream_t stream, int kernel,
                     Err *err);
// Feature-major product (layout above): yT = epilogue(W · xT), ld = token stride of xT, yT and
// residualT. Returns -1 with err filled when the device or matrix cannot run it (needs sm_90a and
// V % 64 == 0 or the same kept columns for all rows) or on bad arguments / a CUDA error.
int vnm_spmm_cuda_fm(const VnmDeviceMatrix *d, const uint16_t *xT, int64_t n, int64_t ld, const uint16_t *bias,
                     const uint16_t *residualT, int act, uint16_t *yT, cudaStream_t stream, Err *err);
// Which kernel vnm_spmm_cuda picks for this matrix and n: "wgmma_sp/window", "mma_sp", ...
// (kernel = VNM_KERNEL_FEATURE_MAJOR: the kernel of vnm_spmm_cuda_fm, "wgmma_sp/rows" or "unavailable").
const char *vnm_spmm_kernel_name(const VnmDeviceMatrix *d, int64_t n, int kernel);

#ifdef __cplusplus
}
#endif
