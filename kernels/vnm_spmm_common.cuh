// Device-side pieces shared by the V:N:M SpMM kernels (vnm_spmm.cu, vnm_spmm_sm90.cu).
#pragma once
#include <cuda_bf16.h>
#include <stdint.h>

#include "kernels/pdl.cuh"
#include "kernels/vnm_spmm.h"
#include "train/vnm_device_layout.h"  // vnm_frag_index

// Everything a kernel needs about the matrix, passed by value.
struct VnmDev {
    const uint4 *vals;      // (out_pad/16, KT, 32) A fragments
    const uint32_t *meta;   // (out_pad/16, KT, 32)
    const uint16_t *cols;   // (groups, KT*8, 4)
    const uint32_t *sel;    // (groups, KT*8, 2)
    int64_t out, out_pad, in, C, KT;
    int group_rows, M;
};

struct VnmEpi {
    const __nv_bfloat16 *bias, *residual;
    const int32_t *perm;
    __nv_bfloat16 *y;
    float *ws;              // split-K accumulation target (decode), stream-K partial sums (TMA kernel), else NULL
    int *flags;             // stream-K: one zeroed flag per CTA, set when its partial sums are written
    int64_t n, out, out_pad;
    int64_t ld;             // 0: token-major y/residual (n × out); else feature-major (out × ld)
    int act;
};

// Element offset of (output channel o, token t) in y and residual.
__host__ __device__ __forceinline__ int64_t vnm_epi_offset(const VnmEpi &e, int64_t o, int64_t t) {
    return e.ld ? o * e.ld + t : t * e.out + o;
}

// The A fragment and metadata word of k-step ks of 16-row group q, this lane's; read once, so evict-first.
__device__ __forceinline__ void vnm_load_a_frag(const VnmDev &d, int64_t q, int64_t ks, int lane, uint4 &a, uint32_t &m) {
    a = __ldcs(d.vals + vnm_frag_index(q, ks, d.KT, lane));
    m = __ldcs(d.meta + vnm_frag_index(q, ks, d.KT, lane));
}

// A fragments and metadata words of k-steps ks0 .. ks0 + kc - 1 (kc <= KC) of 16-row group q, this
// lane's, into registers: all loads in flight at once.
template <int KC>
__device__ __forceinline__ void vnm_load_a_slice(const VnmDev &d, int64_t q, int64_t ks0, int kc, int lane, uint4 (&a)[KC],
                                                 uint32_t (&m)[KC]) {
#pragma unroll
    for (int k = 0; k < KC; k++)
        if (k < kc) vnm_load_a_frag(d, q, ks0 + k, lane, a[k], m[k]);
}

// Keeps the device's default memory pool from releasing memory at synchronization (pooled
// cudaMallocAsync buffers of the SpMM calls: gathered inputs, transposes, stream-K partial sums).
void vnm_keep_pool(void);

static inline VnmDev vnm_dev_of(const VnmDeviceMatrix *d) {
    VnmDev v;
    v.vals = (const uint4 *)d->vals;
    v.meta = d->meta;
    v.cols = d->cols;
    v.sel = d->sel;
    v.out = d->out, v.out_pad = d->out_pad, v.in = d->in, v.C = d->C, v.KT = d->KT;
    v.group_rows = d->group_rows, v.M = d->p.M;
    return v;
}

__device__ __forceinline__ float vnm_gelu(float v) { return 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); }

// Final value of compressed row r (< out) for token t (< n), before bf16 rounding.
__device__ __forceinline__ float vnm_epi_value(const VnmEpi &e, float acc, int64_t o, int64_t t) {
    float v = acc + (e.bias ? __bfloat162float(e.bias[o]) : 0.0f);
    if (e.act == VNM_ACT_GELU) v = vnm_gelu(v);
    if (e.residual) v += __bfloat162float(e.residual[vnm_epi_offset(e, o, t)]);
    return v;
}

__device__ __forceinline__ void vnm_epi_store(const VnmEpi &e, float acc, int64_t r, int64_t t) {
    if (r >= e.out || t >= e.n) return;
    int64_t o = e.perm ? e.perm[r] : r;
    e.y[vnm_epi_offset(e, o, t)] = __float2bfloat16(vnm_epi_value(e, acc, o, t));
}

__device__ __forceinline__ uint32_t vnm_pack2(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }

__device__ __forceinline__ uint16_t vnm_ldg_u16(const uint16_t *p) { return __ldg((const unsigned short *)p); }

// The 4 kept channels of x row `xrow` for column block cb of gather group g, as 2 words
// (logical k order). Generic filler: 4 element loads.
__device__ __forceinline__ uint2 vnm_gather_cols(const uint16_t *xrow, uint2 c) {
    uint16_t v0 = vnm_ldg_u16(xrow + (c.x & 0xffff)), v1 = vnm_ldg_u16(xrow + (c.x >> 16));
    uint16_t v2 = vnm_ldg_u16(xrow + (c.y & 0xffff)), v3 = vnm_ldg_u16(xrow + (c.y >> 16));
    return make_uint2(vnm_pack2(v0, v1), vnm_pack2(v2, v3));
}
__device__ __forceinline__ uint2 vnm_gather_generic(const VnmDev &d, const uint16_t *xrow, int64_t g, int64_t cb) {
    return vnm_gather_cols(xrow, __ldg((const uint2 *)(d.cols + (g * d.KT * 8 + cb) * 4)));
}

// Gather group of each of a CTA's ntiles B tiles (tile k: rows row0 + k·tile_rows; slots k >= ntiles
// repeat tile 0), computed once before the k loop: a 64-bit division by a runtime value is a
// software loop (Session 14: per stage in a one-thread producer it cost the SS kernel 10-13 %).
__device__ __forceinline__ void vnm_tile_groups(const VnmDev &d, int64_t row0, int ntiles, int tile_rows,
                                                int64_t (&group)[4]) {
#pragma unroll
    for (int k = 0; k < 4; k++) group[k] = (row0 + (int64_t)(k < ntiles ? k : 0) * tile_rows) / d.group_rows;
}

__device__ __forceinline__ uint32_t vnm_prmt(uint32_t a, uint32_t b, uint32_t s) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(s));
    return d;
}

// Window filler: w = 8 channels starting at the block's even window start, sel = the block's two
// selector words (see vnm_spmm.cu, window_selectors). 4 byte permutes give the 4 kept channels.
__device__ __forceinline__ uint2 vnm_select_window(uint4 w, uint2 sel) {
    uint32_t t0 = vnm_prmt(w.x, w.y, sel.x & 0xffff);
    uint32_t lo = vnm_prmt(t0, w.z, sel.x >> 16);
    uint32_t t1 = vnm_prmt(w.z, w.w, sel.y & 0xffff);
    uint32_t hi = vnm_prmt(w.y, t1, sel.y >> 16);
    return make_uint2(lo, hi);
}

// ---- mma.sp.sync m16n8k32 (sm_80+): shared by the mma_sp and decode kernels ----
#define B_PITCH 40  // halfwords per token row of a B tile: 32 + 8 padding (conflict-free ldmatrix)

__device__ __forceinline__ void mma_sp_16832(float *c, uint4 a, const uint32_t *b, uint32_t e) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
#endif
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t *r, const void *p) {
    uint32_t a = (uint32_t)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a));
}
