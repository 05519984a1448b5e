// Register-resident attention for short sequences (head dim 64, T <= 256: ViT/DeiT), FlashAttention-2
// style on mma.sync m16n8k16 (bf16 in, f32 accumulate), with no atomics (deterministic):
//   forward  (per 64 queries): S = Q·Kᵀ stays in registers (a warp's 16 rows × all keys), row
//            softmax with 4-lane shuffles, P becomes the A operand of P·V directly (the f32
//            accumulator layout of m16n8k16 is the bf16 A layout), O and the row log-sum-exp
//            (lse, saved) are written. P never reaches memory.
//   backward Di = rowsum(dO ⊙ O); dQ kernel per 64 queries (loops over 32-key chunks:
//            recomputes P from lse, dP = dO·Vᵀ, dS = P ⊙ (dP − Di)·scale, dQ += dS·K); dK/dV
//            kernel per 64 keys (loops over 32-query chunks: Pᵀ, dV += Pᵀ·dO, dPᵀ = V·dOᵀ,
//            dSᵀ, dK += dSᵀ·Q). Every gradient element has one writer.
// Each CTA owns one (b, h) and walks its 64-row tiles (tile_loop): K/V (or Q/dO) are loaded once
// with cp.async, the per-tile operands are double-buffered so the next tile's copies overlap the
// current tile's products (one CTA per tile reloaded the whole sequence and waited for it).
// Fragment layouts: kernels/mma_sync.cuh.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_flash.cuh"
#include "kernels/mma_sync.cuh"

#define FD 64             // head dim
#define FLD (FD + 8)      // padded smem row (144 bytes: ldmatrix rows hit distinct banks)
#define FQ 64             // queries (forward, dQ) or keys (dK/dV) per CTA: 4 warps × 16
#define FMAXT 256         // longest sequence
#define FNT (FMAXT / 8)   // n8 key tiles in the forward's registers

// A fragments (16 rows × 64) of rows [r0, r0+16) of a smem tile (ld FLD): 4 k-steps.
__device__ __forceinline__ void load_a_rows(uint32_t a[4][4], const bf16 *tile, int r0) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) ldsm4(a[kk], tile + (r0 + (lane & 15)) * FLD + 16 * kk + (lane >> 4) * 8);
}

// c[j] (16 × 8, j = 0..NJ) += A (16×64, 4 k-steps) · Bᵀ where B rows [n0 + 8j, +8) of a smem tile
// (row-major, ld FLD) are the n index: the "X·Yᵀ" product (S = Q·Kᵀ, dP = dO·Vᵀ, ...). The k-steps
// are the outer loop so that the NJ accumulator chains interleave (each mma waits for the last
// one on the same accumulator).
template <int NJ>
__device__ __forceinline__ void mma_abt(float c[][4], const uint32_t a[4][4], const bf16 *tile, int n0) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int half = 0; half < 2; half++) {  // d 0..31, then d 32..63
        uint32_t b[NJ][4];
#pragma unroll
        for (int j = 0; j < NJ; j++) ldsm4(b[j], tile + (n0 + 8 * j + (lane & 7)) * FLD + 32 * half + (lane >> 3) * 8);
#pragma unroll
        for (int j = 0; j < NJ; j++) mma16816(c[j], a[2 * half], b[j][0], b[j][1]);
#pragma unroll
        for (int j = 0; j < NJ; j++) mma16816(c[j], a[2 * half + 1], b[j][2], b[j][3]);
    }
}

// o[jd] (16 × 8, jd = 0..7 over the 64 columns) += A (16 × 16 k) · Y[k0 .. k0+16, :] with Y a
// row-major smem tile (ld FLD) whose rows are the k index (P·V, dS·K, Pᵀ·dO, dSᵀ·Q).
__device__ __forceinline__ void mma_ay(float o[8][4], const uint32_t a[4], const bf16 *tile, int k0) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int jd = 0; jd < 8; jd += 2) {
        uint32_t b[4];
        ldsm4t(b, tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * FLD + 8 * jd + (lane >> 4) * 8);
        mma16816(o[jd], a, b[0], b[1]);
        mma16816(o[jd + 1], a, b[2], b[3]);
    }
}

// Starts asynchronous 16-byte copies (cp.async, no register staging: the whole tile is in flight
// at once) of rows [0, rows) of a (rows × 64) bf16 matrix (row stride ld) into smem (ld FLD); rows
// [rows, pad) are zero-filled (source size 0). rows >= 1. Complete with cp_async_wait + a barrier.
__device__ __forceinline__ void flash_load(bf16 *__restrict__ dst, const bf16 *__restrict__ src, int64_t ld, int rows,
                                           int pad) {
    for (int i = threadIdx.x; i < pad * 8; i += blockDim.x) {
        int r = i >> 3, c = (i & 7) * 8;
        cp_async16(dst + r * FLD + c, src + (int64_t)min(r, rows - 1) * ld + c, r < rows);
    }
}

// Stores a warp's 16 × 64 f32 accumulator tile (rows r0 + g, r0 + g + 8) to global rows < T as G.
template <typename G>
__device__ __forceinline__ void store_tile(const float o[8][4], G *dst, int64_t ld, int r0, int T, bool add) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int jd = 0; jd < 8; jd++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = r0 + g + 8 * h;
            if (r < T) {
                int64_t i = (int64_t)r * ld + 8 * jd + 2 * t;
                acc(dst, i, o[jd][2 * h], add);
                acc(dst, i + 1, o[jd][2 * h + 1], add);
            }
        }
}

// A CTA owns one (b, h) and walks its 64-row tiles (queries, or keys for dK/dV): the operands
// that span the whole sequence are loaded once (the caller issues their copies before this, so
// they join the first group), the per-tile operands are double-buffered: tile i+1's copies are in
// flight while tile i is computed. body(i, buf) computes tile i from buffer buf.
template <typename Load, typename Body>
__device__ __forceinline__ void tile_loop(int ntiles, Load load_tile, Body body) {
    load_tile(0, 0);
    cp_async_commit();
    for (int i = 0; i < ntiles; i++) {
        if (i + 1 < ntiles) load_tile(i + 1, (i + 1) & 1);
        cp_async_commit();   // possibly empty: one group per iteration keeps the count below right
        cp_async_wait<1>();  // all but the newest group: tile i and the resident operands landed
        __syncthreads();
        body(i, i & 1);
        __syncthreads();  // buffer i & 1 is free for tile i + 2
    }
}

// ---- forward ----
__global__ void __launch_bounds__(128, 2) flash_fwd_kernel(const bf16 *__restrict__ qkv, bf16 *__restrict__ out,
                                                            float *__restrict__ lse, int T, int Tp, int H, int64_t C,
                                                            float scale, bool causal) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sK = (bf16 *)smem, *sV = sK + Tp * FLD, *sQ = sV + Tp * FLD;  // sQ: two FQ-row buffers
    int bh = blockIdx.x, b = bh / H, h = bh % H;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * FD;
    flash_load(sK, base + C, 3 * C, T, Tp);
    flash_load(sV, base + 2 * C, 3 * C, T, Tp);
    auto load_q = [&](int i, int buf) {
        flash_load(sQ + buf * FQ * FLD, base + (int64_t)i * FQ * 3 * C, 3 * C, min(FQ, T - i * FQ), FQ);
    };
    tile_loop((T + FQ - 1) / FQ, load_q, [&](int i, int buf) {
        int r0 = i * FQ + 16 * warp;  // this warp's first query
        if (r0 >= T) return;          // (the last tile's spare warps)
        uint32_t qa[4][4];
        load_a_rows(qa, sQ + buf * FQ * FLD, 16 * warp);
        int nt = Tp / 8;
        float s[FNT][4];
#pragma unroll
        for (int j = 0; j < FNT; j++) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
        for (int j = 0; j < FNT; j += 4) {  // nt is even (Tp is a multiple of 16)
            if (j + 4 <= nt) mma_abt<4>(&s[j], qa, sK, 8 * j);
            else if (j + 2 <= nt) mma_abt<2>(&s[j], qa, sK, 8 * j);
        }
        // softmax over keys < limit for rows r0 + g (c0, c1) and r0 + g + 8 (c2, c3)
        float m[2] = {-INFINITY, -INFINITY};
#pragma unroll
        for (int j = 0; j < FNT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int key = 8 * j + 2 * t + (e & 1), row = r0 + g + 8 * (e >> 1);
                bool ok = j < nt && key < T && (!causal || key <= row);
                s[j][e] = ok ? s[j][e] * scale : -INFINITY;
                m[e >> 1] = fmaxf(m[e >> 1], s[j][e]);
            }
        float sum[2] = {0.0f, 0.0f};
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            m[h2] = fmaxf(m[h2], __shfl_xor_sync(0xffffffffu, m[h2], 1));
            m[h2] = fmaxf(m[h2], __shfl_xor_sync(0xffffffffu, m[h2], 2));
        }
#pragma unroll
        for (int j = 0; j < FNT; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) {
                float p = s[j][e] == -INFINITY ? 0.0f : __expf(s[j][e] - m[e >> 1]);
                s[j][e] = p;
                sum[e >> 1] += p;
            }
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            sum[h2] += __shfl_xor_sync(0xffffffffu, sum[h2], 1);
            sum[h2] += __shfl_xor_sync(0xffffffffu, sum[h2], 2);
        }
        float inv[2] = {1.0f / sum[0], 1.0f / sum[1]};
        // O = P·V, 16 keys per k-step: P of key tiles 2kk, 2kk+1 is the A fragment
        float o[8][4];
#pragma unroll
        for (int jd = 0; jd < 8; jd++) o[jd][0] = o[jd][1] = o[jd][2] = o[jd][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < FNT / 2; kk++) {
            if (2 * kk < nt) {
                uint32_t a[4] = {pack2(s[2 * kk][0] * inv[0], s[2 * kk][1] * inv[0]),
                                 pack2(s[2 * kk][2] * inv[1], s[2 * kk][3] * inv[1]),
                                 pack2(s[2 * kk + 1][0] * inv[0], s[2 * kk + 1][1] * inv[0]),
                                 pack2(s[2 * kk + 1][2] * inv[1], s[2 * kk + 1][3] * inv[1])};
                mma_ay(o, a, sV, 16 * kk);
            }
        }
        store_tile<bf16>(o, out + (int64_t)b * T * C + h * FD, C, r0, T, false);
        if (t == 0) {
            float *l = lse + (int64_t)bh * T;
            if (r0 + g < T) l[r0 + g] = m[0] + logf(sum[0]);
            if (r0 + g + 8 < T) l[r0 + g + 8] = m[1] + logf(sum[1]);
        }
    });
}

// Di = Σ_d dO·O per row (one warp per row of 64).
__global__ void flash_di_kernel(const bf16 *dout, const bf16 *out, float *Di, int64_t B, int T, int H, int64_t C) {
    int64_t row = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);  // (b, h, q)
    if (row >= B * H * T) return;
    int lane = threadIdx.x & 31;
    int q = (int)(row % T);
    int64_t bh = row / T, b = bh / H, h = bh % H;
    int64_t off = (b * T + q) * C + h * FD + 2 * lane;
    float v = to_f(dout[off]) * to_f(out[off]) + to_f(dout[off + 1]) * to_f(out[off + 1]);
    v = warp_sum(v);
    if (lane == 0) Di[row] = v;
}

// ---- dQ: per 64 queries, loop over 32-key chunks ----
template <typename G>
__device__ __forceinline__ void flash_dq(unsigned char *smem, int bh, const bf16 *__restrict__ qkv,
                                         const bf16 *__restrict__ dout, const float *__restrict__ lse,
                                         const float *__restrict__ Di, G *__restrict__ dqkv, int T, int Tp, int H, int64_t C,
                                         float scale, bool causal, bool add) {
    bf16 *sK = (bf16 *)smem, *sV = sK + Tp * FLD, *sQb = sV + Tp * FLD, *sOb = sQb + 2 * FQ * FLD;  // Q, dO: 2 buffers
    int b = bh / H, h = bh % H;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * FD;
    flash_load(sK, base + C, 3 * C, T, Tp);
    flash_load(sV, base + 2 * C, 3 * C, T, Tp);
    auto load_qo = [&](int i, int buf) {
        int q0 = i * FQ, rows = min(FQ, T - q0);
        flash_load(sQb + buf * FQ * FLD, base + (int64_t)q0 * 3 * C, 3 * C, rows, FQ);
        flash_load(sOb + buf * FQ * FLD, dout + ((int64_t)b * T + q0) * C + h * FD, C, rows, FQ);
    };
    tile_loop((T + FQ - 1) / FQ, load_qo, [&](int i, int buf) {
        int r0 = i * FQ + 16 * warp;
        if (r0 >= T) return;
        uint32_t qa[4][4], oa[4][4];
        load_a_rows(qa, sQb + buf * FQ * FLD, 16 * warp);
        load_a_rows(oa, sOb + buf * FQ * FLD, 16 * warp);
        float l[2], d[2];
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
            int r = min(r0 + g + 8 * h2, T - 1);
            l[h2] = lse[(int64_t)bh * T + r];
            d[h2] = Di[(int64_t)bh * T + r];
        }
        float dq[8][4];
#pragma unroll
        for (int jd = 0; jd < 8; jd++) dq[jd][0] = dq[jd][1] = dq[jd][2] = dq[jd][3] = 0.0f;
        for (int k0 = 0; k0 < Tp; k0 += 32) {
            float s[4][4] = {{0}}, dp[4][4] = {{0}};
            int nj = min(4, (Tp - k0) / 8);  // Tp is a multiple of 16: 2 or 4 key tiles
            if (nj == 4) {
                mma_abt<4>(s, qa, sK, k0);
                mma_abt<4>(dp, oa, sV, k0);
            } else {
                mma_abt<2>(s, qa, sK, k0);
                mma_abt<2>(dp, oa, sV, k0);
            }
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int key = k0 + 8 * j + 2 * t + (e & 1), row = r0 + g + 8 * (e >> 1);
                    bool ok = j < nj && key < T && (!causal || key <= row);
                    float p = ok ? __expf(s[j][e] * scale - l[e >> 1]) : 0.0f;
                    s[j][e] = p * (dp[j][e] - d[e >> 1]) * scale;  // dS
                }
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                if (2 * kk < nj) {
                    uint32_t a[4] = {pack2(s[2 * kk][0], s[2 * kk][1]), pack2(s[2 * kk][2], s[2 * kk][3]),
                                     pack2(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
                    mma_ay(dq, a, sK, k0 + 16 * kk);
                }
            }
        }
        store_tile<G>(dq, dqkv + (int64_t)b * T * 3 * C + h * FD, 3 * C, r0, T, add);
    });
}

// ---- dK, dV: per 64 keys, loop over 32-query chunks ----
template <typename G>
__device__ __forceinline__ void flash_dkv(unsigned char *smem, int bh, const bf16 *__restrict__ qkv,
                                          const bf16 *__restrict__ dout, const float *__restrict__ lse,
                                          const float *__restrict__ Di, G *__restrict__ dqkv, int T, int Tp, int H,
                                          int64_t C, float scale, bool causal, bool add) {
    bf16 *sQ = (bf16 *)smem, *sO = sQ + Tp * FLD, *sKb = sO + Tp * FLD, *sVb = sKb + 2 * FQ * FLD;  // K, V: 2 buffers
    float *sL = (float *)(sVb + 2 * FQ * FLD), *sD = sL + Tp;
    int b = bh / H, h = bh % H;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * FD;
    flash_load(sQ, base, 3 * C, T, Tp);
    flash_load(sO, dout + (int64_t)b * T * C + h * FD, C, T, Tp);
    for (int i = threadIdx.x; i < Tp; i += blockDim.x) {
        sL[i] = i < T ? lse[(int64_t)bh * T + i] : 0.0f;
        sD[i] = i < T ? Di[(int64_t)bh * T + i] : 0.0f;
    }
    auto load_kv = [&](int i, int buf) {
        int k0 = i * FQ, rows = min(FQ, T - k0);
        flash_load(sKb + buf * FQ * FLD, base + (int64_t)k0 * 3 * C + C, 3 * C, rows, FQ);
        flash_load(sVb + buf * FQ * FLD, base + (int64_t)k0 * 3 * C + 2 * C, 3 * C, rows, FQ);
    };
    tile_loop((T + FQ - 1) / FQ, load_kv, [&](int i, int buf) {
        int r0 = i * FQ + 16 * warp;  // this warp's first key
        if (r0 >= T) return;
        uint32_t ka[4][4], va[4][4];
        load_a_rows(ka, sKb + buf * FQ * FLD, 16 * warp);
        load_a_rows(va, sVb + buf * FQ * FLD, 16 * warp);
        float dk[8][4], dv[8][4];
#pragma unroll
        for (int jd = 0; jd < 8; jd++)
#pragma unroll
            for (int e = 0; e < 4; e++) dk[jd][e] = dv[jd][e] = 0.0f;
        int qstart = causal ? (r0 / 32) * 32 : 0;  // causal: queries before this warp's keys see none of them
        for (int c0 = qstart; c0 < Tp; c0 += 32) {
            float st[4][4] = {{0}}, dpt[4][4] = {{0}};
            int nj = min(4, (Tp - c0) / 8);
            if (nj == 4) {
                mma_abt<4>(st, ka, sQ, c0);   // Sᵀ = K·Qᵀ (keys × queries)
                mma_abt<4>(dpt, va, sO, c0);  // dPᵀ = V·dOᵀ
            } else {
                mma_abt<2>(st, ka, sQ, c0);
                mma_abt<2>(dpt, va, sO, c0);
            }
            float pt[4][4];
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int q = c0 + 8 * j + 2 * t + (e & 1), key = r0 + g + 8 * (e >> 1);
                    bool ok = j < nj && q < T && (!causal || key <= q);
                    float p = 0.0f, ds = 0.0f;  // q may be past the smem rows when !ok: read only if ok
                    if (ok) {
                        p = __expf(st[j][e] * scale - sL[q]);
                        ds = p * (dpt[j][e] - sD[q]) * scale;
                    }
                    pt[j][e] = p;
                    st[j][e] = ds;  // dSᵀ
                }
#pragma unroll
            for (int kk = 0; kk < 2; kk++) {
                if (2 * kk < nj) {
                    uint32_t a[4] = {pack2(pt[2 * kk][0], pt[2 * kk][1]), pack2(pt[2 * kk][2], pt[2 * kk][3]),
                                     pack2(pt[2 * kk + 1][0], pt[2 * kk + 1][1]), pack2(pt[2 * kk + 1][2], pt[2 * kk + 1][3])};
                    mma_ay(dv, a, sO, c0 + 16 * kk);
                    uint32_t as[4] = {pack2(st[2 * kk][0], st[2 * kk][1]), pack2(st[2 * kk][2], st[2 * kk][3]),
                                      pack2(st[2 * kk + 1][0], st[2 * kk + 1][1]), pack2(st[2 * kk + 1][2], st[2 * kk + 1][3])};
                    mma_ay(dk, as, sQ, c0 + 16 * kk);
                }
            }
        }
        G *dbase = dqkv + (int64_t)b * T * 3 * C + h * FD;
        store_tile<G>(dk, dbase + C, 3 * C, r0, T, add);
        store_tile<G>(dv, dbase + 2 * C, 3 * C, r0, T, add);
    });
}

// dQ and dK/dV in one launch (they are independent): CTAs [0, BH) compute dQ of (b, h) =
// blockIdx.x, the rest dK/dV of (b, h) = blockIdx.x − BH. One grid instead of two halves the
// partial last wave, and the two kinds of CTA overlap.
template <typename G>
__global__ void __launch_bounds__(128, 2) flash_bwd_kernel(const bf16 *__restrict__ qkv, const bf16 *__restrict__ dout,
                                                            const float *__restrict__ lse, const float *__restrict__ Di,
                                                            G *__restrict__ dqkv, int BH, int T, int Tp, int H, int64_t C,
                                                            float scale, bool causal, bool add) {
    extern __shared__ __align__(128) unsigned char smem[];
    int i = blockIdx.x;
    if (i < BH) flash_dq<G>(smem, i, qkv, dout, lse, Di, dqkv, T, Tp, H, C, scale, causal, add);
    else flash_dkv<G>(smem, i - BH, qkv, dout, lse, Di, dqkv, T, Tp, H, C, scale, causal, add);
}

// ---- host side ----
static int64_t pad16(int64_t T) { return (T + 15) / 16 * 16; }
static size_t fwd_smem(int64_t Tp) { return (size_t)(2 * Tp + 2 * FQ) * FLD * 2; }
static size_t dq_smem(int64_t Tp) { return (size_t)(2 * Tp + 4 * FQ) * FLD * 2; }
static size_t dkv_smem(int64_t Tp) { return (size_t)(2 * Tp + 4 * FQ) * FLD * 2 + (size_t)Tp * 8; }

// On by default for head dim 64 and T <= 256 (H100, DeiT-small: attention 16 ms per step against
// 25 ms for the WMMA kernels with P in memory); VNM_FLASH=0 in the environment selects the WMMA /
// GEMM paths instead (tests/gpu/test_ops_cuda.c checks both).
bool flash_ok(int64_t T, int64_t D, int64_t C) {
    static int on = -1;
    if (on < 0) on = getenv("VNM_FLASH") == NULL || strcmp(getenv("VNM_FLASH"), "0") != 0;
    return on && D == FD && T <= FMAXT && C % 8 == 0 && dkv_smem(pad16(T)) <= 227 * 1024;
}

static void raise_smem(const void *k, size_t bytes) {
    CUDA_CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

void flash_fwd(const bf16 *qkv, bf16 *out, float *lse, int64_t B, int64_t T, int64_t H, int64_t C, bool causal) {
    int64_t Tp = pad16(T);
    static size_t raised;
    size_t sm = fwd_smem(Tp);
    if (sm > raised) raise_smem((const void *)flash_fwd_kernel, raised = sm);
    flash_fwd_kernel<<<(unsigned)(B * H), 128, sm, cuda_stream()>>>(qkv, out, lse, (int)T, (int)Tp, (int)H, C, 0.125f, causal);
    CUDA_LAUNCH_CHECK();
}

template <typename G>
static void flash_bwd_t(const bf16 *qkv, const bf16 *out, const bf16 *dout, const float *lse, G *dqkv, int64_t B, int64_t T,
                        int64_t H, int64_t C, bool causal, bool add) {
    int64_t Tp = pad16(T);
    float *Di = (float *)cuda_scratch(SCRATCH_B, (size_t)(B * H * T) * sizeof(float));
    flash_di_kernel<<<cdiv(B * H * T, 8), 256, 0, cuda_stream()>>>(dout, out, Di, B, (int)T, (int)H, C);
    CUDA_LAUNCH_CHECK();
    static size_t raised;
    size_t sm = dq_smem(Tp) > dkv_smem(Tp) ? dq_smem(Tp) : dkv_smem(Tp);
    if (sm > raised) raise_smem((const void *)flash_bwd_kernel<G>, raised = sm);
    int BH = (int)(B * H);  // one dQ CTA and one dK/dV CTA per (b, h): see tile_loop
    flash_bwd_kernel<G><<<2 * BH, 128, sm, cuda_stream()>>>(qkv, dout, lse, Di, dqkv, BH, (int)T, (int)Tp, (int)H, C, 0.125f,
                                                            causal, add);
    CUDA_LAUNCH_CHECK();
}

void flash_bwd(const bf16 *qkv, const bf16 *out, const bf16 *dout, const float *lse, Tensor *dqkv, int64_t B, int64_t T,
               int64_t H, int64_t C, bool causal, bool add) {
    DISPATCH_GRAD(dqkv->dtype, G, { flash_bwd_t<G>(qkv, out, dout, lse, (G *)dqkv->data, B, T, H, C, causal, add); });
}
