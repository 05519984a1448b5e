// Register-resident attention for short sequences (head dim 64, T <= 256: ViT/DeiT), FlashAttention-2
// style on mma.sync m16n8k16 (bf16 in, f32 accumulate), with no atomics (deterministic):
//   forward  (per 16 queries, one warp): S = Q·Kᵀ over 32-key chunks in registers, online softmax
//            (running max and sum, 4-lane shuffles), P becomes the A operand of P·V directly (the
//            f32 accumulator layout of m16n8k16 is the bf16 A layout); O and the row log-sum-exp
//            (lse, saved) are written. P never reaches memory.
//   backward dQ per 16 queries (32-key chunks: P recomputed from lse, dP = dO·Vᵀ, Di = rowsum(dO ⊙ O),
//            dS = P ⊙ (dP − Di)·scale, dQ += dS·K); dK/dV per 16 keys (32-query chunks: Pᵀ,
//            dV += Pᵀ·dO, dPᵀ = V·dOᵀ, dSᵀ, dK += dSᵀ·Q). Every gradient element has one writer.
// A CTA (4 warps) owns one (b, h): the operands every warp reads (K and V, or Q and dO, whole
// sequence) are loaded once into shared memory with cp.async; each warp's own 16 rows go from
// global memory straight into A-fragment registers. 53 KB of shared memory (T = 197) and <= 128
// registers keep 4 forward CTAs on an SM, 3 backward ones (168 registers); the earlier 2-CTA
// version stalled on latency (ncu: 0.47 eligible warps per scheduler, 38% issue). Softmax in
// base 2 with the scale folded into one FFMA, and no masking work for chunks of valid keys: the
// elementwise part, not the mma, is most of the instructions.
// Fragment layouts: kernels/mma_sync.cuh.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_flash.cuh"
#include "kernels/mma_sync.cuh"

#define FD 64             // head dim
// Shared-memory tiles are unpadded rows of 64 bf16 (128 bytes = 8 chunks of 16 bytes) with chunk c
// of row r stored at chunk c ^ (r & 7): the 8 rows an ldmatrix reads hit 8 distinct bank groups.
__device__ __forceinline__ const bf16 *swz(const bf16 *tile, int r, int col) {
    return tile + r * FD + ((((col >> 3) ^ r) & 7) << 3);
}
#define FMAXT 256         // longest sequence

// A fragments (16 × 64: 4 k-steps) of rows [r0, r0 + 16) of a row-major bf16 matrix in global memory
// (row stride ld), rows >= T read as zero. Every warp's A operand is its own 16 rows, so it goes
// straight into registers: only the operands that all warps share (the whole sequence of K, V or
// Q, dO) take shared memory.
__device__ __forceinline__ void load_a_global(uint32_t a[4][4], const bf16 *__restrict__ src, int64_t ld, int r0, int T) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf16 *p0 = src + (int64_t)(r0 + g) * ld + 2 * t, *p1 = p0 + 8 * ld;
    bool ok0 = r0 + g < T, ok1 = r0 + g + 8 < T;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        a[kk][0] = ok0 ? __ldg((const unsigned *)(p0 + 16 * kk)) : 0u;
        a[kk][1] = ok1 ? __ldg((const unsigned *)(p1 + 16 * kk)) : 0u;
        a[kk][2] = ok0 ? __ldg((const unsigned *)(p0 + 16 * kk + 8)) : 0u;
        a[kk][3] = ok1 ? __ldg((const unsigned *)(p1 + 16 * kk + 8)) : 0u;
    }
}

// Row sums of x ⊙ y over the 64 columns of two A-fragment tiles: rows r0 + g (d[0]) and r0 + g + 8.
__device__ __forceinline__ void rowdot(const uint32_t x[4][4], const uint32_t y[4][4], float d[2]) {
    d[0] = d[1] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            float2 u = __bfloat1622float2(*(const __nv_bfloat162 *)&x[kk][e]);
            float2 v = __bfloat1622float2(*(const __nv_bfloat162 *)&y[kk][e]);
            d[e & 1] += u.x * v.x + u.y * v.y;
        }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        d[h] += __shfl_xor_sync(0xffffffffu, d[h], 1);
        d[h] += __shfl_xor_sync(0xffffffffu, d[h], 2);
    }
}

// c[j] (16 × 8, j = 0..NJ) += A (16×64, 4 k-steps) · Bᵀ where B rows [n0 + 8j, +8) of a smem tile
// (row-major, swizzled) are the n index: the "X·Yᵀ" product (S = Q·Kᵀ, dP = dO·Vᵀ, ...). The k-steps
// are the outer loop so that the NJ accumulator chains interleave (each mma waits for the last
// one on the same accumulator).
template <int NJ>
__device__ __forceinline__ void mma_abt(float c[][4], const uint32_t a[4][4], const bf16 *tile, int n0) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int half = 0; half < 2; half++) {  // d 0..31, then d 32..63
        uint32_t b[NJ][4];
#pragma unroll
        for (int j = 0; j < NJ; j++) ldsm4(b[j], swz(tile, n0 + 8 * j + (lane & 7), 32 * half + (lane >> 3) * 8));
#pragma unroll
        for (int j = 0; j < NJ; j++) mma16816(c[j], a[2 * half], b[j][0], b[j][1]);
#pragma unroll
        for (int j = 0; j < NJ; j++) mma16816(c[j], a[2 * half + 1], b[j][2], b[j][3]);
    }
}

// The 32-column chunk [n0, n0 + 32) of A·Bᵀ, or its first 16 columns when nj = 2 (Tp is a multiple of 16).
__device__ __forceinline__ void mma_abt_chunk(float c[4][4], const uint32_t a[4][4], const bf16 *tile, int n0, int nj) {
#pragma unroll
    for (int j = 0; j < 4; j++) c[j][0] = c[j][1] = c[j][2] = c[j][3] = 0.0f;
    if (nj == 4) mma_abt<4>(c, a, tile, n0);
    else mma_abt<2>(c, a, tile, n0);
}

// o[jd] (16 × 8, jd = 0..7 over the 64 columns) += A (16 × 16 k) · Y[k0 .. k0+16, :] with Y a
// row-major (swizzled) smem tile whose rows are the k index (P·V, dS·K, Pᵀ·dO, dSᵀ·Q).
__device__ __forceinline__ void mma_ay(float o[8][4], const uint32_t a[4], const bf16 *tile, int k0) {
    int lane = threadIdx.x & 31;
#pragma unroll
    for (int jd = 0; jd < 8; jd += 2) {
        uint32_t b[4];
        ldsm4t(b, swz(tile, k0 + (lane & 7) + ((lane >> 3) & 1) * 8, 8 * jd + (lane >> 4) * 8));
        mma16816(o[jd], a, b[0], b[1]);
        mma16816(o[jd + 1], a, b[2], b[3]);
    }
}

// o += C·Y over the chunk's 16-key k-steps, C the f32 accumulator tiles c[0..nj) of a 32-column chunk
// converted to bf16 A fragments (the m16n8k16 accumulator layout of two n8 tiles is the A layout).
__device__ __forceinline__ void mma_cy(float o[8][4], const float c[4][4], const bf16 *tile, int k0, int nj) {
#pragma unroll
    for (int kk = 0; kk < 2; kk++) {
        if (2 * kk < nj) {
            uint32_t a[4] = {pack2(c[2 * kk][0], c[2 * kk][1]), pack2(c[2 * kk][2], c[2 * kk][3]),
                             pack2(c[2 * kk + 1][0], c[2 * kk + 1][1]), pack2(c[2 * kk + 1][2], c[2 * kk + 1][3])};
            mma_ay(o, a, tile, k0 + 16 * kk);
        }
    }
}

// Starts asynchronous 16-byte copies (cp.async, no register staging: the whole tile is in flight
// at once) of rows [0, rows) of a (rows × 64) bf16 matrix (row stride ld) into a swizzled smem tile; rows
// [rows, pad) are zero-filled (source size 0). rows >= 1.
__device__ __forceinline__ void flash_load(bf16 *__restrict__ dst, const bf16 *__restrict__ src, int64_t ld, int rows,
                                           int pad) {
    for (int i = threadIdx.x; i < pad * 8; i += blockDim.x) {
        int r = i >> 3, c = (i & 7) * 8;
        cp_async16((void *)swz(dst, r, c), src + (int64_t)min(r, rows - 1) * ld + c, r < rows);
    }
}

// Waits for this thread's copies and makes every thread's visible: the resident operands are ready.
__device__ __forceinline__ void flash_load_done() {
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
}

// 2^x on the special-function unit (exp2(-inf) = 0). The softmax runs in base 2: with c = scale·log2(e),
// exp(scale·s − lse) = 2^(c·s − log2(e)·lse), one FFMA and one MUFU per element.
__device__ __forceinline__ float fast_exp2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}
#define LOG2E 1.4426950408889634f

// Stores mul × a warp's 16 × 64 f32 accumulator tile (rows r0 + g, r0 + g + 8) to global rows < T as G.
template <typename G>
__device__ __forceinline__ void store_tile(const float o[8][4], G *dst, int64_t ld, int r0, int T, bool add,
                                           float mul = 1.0f) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int jd = 0; jd < 8; jd++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            int r = r0 + g + 8 * h;
            if (r < T) {
                int64_t i = (int64_t)r * ld + 8 * jd + 2 * t;
                acc(dst, i, mul * o[jd][2 * h], add);
                acc(dst, i + 1, mul * o[jd][2 * h + 1], add);
            }
        }
}

__device__ __forceinline__ void zero_tile(float o[8][4]) {
#pragma unroll
    for (int jd = 0; jd < 8; jd++) o[jd][0] = o[jd][1] = o[jd][2] = o[jd][3] = 0.0f;
}

// A CTA owns one (b, h): it loads the operands that span the whole sequence into shared memory
// once, then each warp walks its own 16-row blocks (rows 16·warp, +64, ...) with no further
// barriers. Tp: T rounded up to 16 (zero rows).

// Sets the scores of a 32-key chunk (rows r0 + g, r0 + g + 8; keys k0 + 8j + 2t + {0, 1}) to −inf where
// the key is padding (>= T, or past nj tiles) or, when causal, after the row. Full chunks skip it.
__device__ __forceinline__ void mask_chunk(float s[4][4], int k0, int r0, int nj, int T, bool causal) {
    int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
#pragma unroll
    for (int j = 0; j < 4; j++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            int key = k0 + 8 * j + 2 * t + (e & 1), row = r0 + g + 8 * (e >> 1);
            if (!(j < nj && key < T && (!causal || key <= row))) s[j][e] = -INFINITY;
        }
}

// ---- forward: online softmax over 32-key chunks (FlashAttention-2) ----
__global__ void __launch_bounds__(128, 4) flash_fwd_kernel(const bf16 *__restrict__ qkv, bf16 *__restrict__ out,
                                                            float *__restrict__ lse, int T, int Tp, int H, int64_t C,
                                                            float scale, bool causal) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sK = (bf16 *)smem, *sV = sK + Tp * FD;
    int bh = blockIdx.x, b = bh / H, h = bh % H;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * FD;
    flash_load(sK, base + C, 3 * C, T, Tp);
    flash_load(sV, base + 2 * C, 3 * C, T, Tp);
    flash_load_done();
    for (int r0 = 16 * warp; r0 < T; r0 += 64) {
        uint32_t qa[4][4];
        load_a_global(qa, base, 3 * C, r0, T);
        int kend = causal ? min(Tp, r0 + 16) : Tp;  // causal: keys past the block's last row see nothing
        // rows r0 + g, r0 + g + 8: running max m of the raw scores, this thread's part l of the sum
        float o[8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
        float c = scale * LOG2E;
        zero_tile(o);
        for (int k0 = 0; k0 < kend; k0 += 32) {
            int nj = min(4, (kend - k0) / 8);
            float s[4][4];
            mma_abt_chunk(s, qa, sK, k0, nj);
            if (causal || k0 + 32 > T) mask_chunk(s, k0, r0, nj, T, causal);  // else every key is valid
            float mx[2] = {m[0], m[1]};
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) mx[e >> 1] = fmaxf(mx[e >> 1], s[j][e]);
            float ref[2];  // c × the new running max (0 while a row has seen no key: keeps exp finite)
#pragma unroll
            for (int h2 = 0; h2 < 2; h2++) {
                mx[h2] = fmaxf(mx[h2], __shfl_xor_sync(0xffffffffu, mx[h2], 1));
                mx[h2] = fmaxf(mx[h2], __shfl_xor_sync(0xffffffffu, mx[h2], 2));
                ref[h2] = mx[h2] == -INFINITY ? 0.0f : c * mx[h2];
                float corr = fast_exp2(c * m[h2] - ref[h2]);  // rescales what was summed under the old max
                l[h2] *= corr;
#pragma unroll
                for (int jd = 0; jd < 8; jd++) o[jd][2 * h2] *= corr, o[jd][2 * h2 + 1] *= corr;
                m[h2] = mx[h2];
            }
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    s[j][e] = fast_exp2(c * s[j][e] - ref[e >> 1]);  // P, unnormalised
                    l[e >> 1] += s[j][e];
                }
            mma_cy(o, s, sV, k0, nj);  // O += P·V
        }
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {  // l: this thread's columns so far; the row sum spans the quad
            l[h2] += __shfl_xor_sync(0xffffffffu, l[h2], 1);
            l[h2] += __shfl_xor_sync(0xffffffffu, l[h2], 2);
            float inv = 1.0f / l[h2];
#pragma unroll
            for (int jd = 0; jd < 8; jd++) o[jd][2 * h2] *= inv, o[jd][2 * h2 + 1] *= inv;
        }
        store_tile<bf16>(o, out + (int64_t)b * T * C + h * FD, C, r0, T, false);
        if (t == 0) {
            float *lrow = lse + (int64_t)bh * T;
            if (r0 + g < T) lrow[r0 + g] = scale * m[0] + logf(l[0]);
            if (r0 + g + 8 < T) lrow[r0 + g + 8] = scale * m[1] + logf(l[1]);
        }
    }
}

// ---- dQ: per 16 queries, loop over 32-key chunks ----
// Di = Σ_d dO·O of the warp's rows comes from the same fragments (no separate pass).
template <typename G>
__device__ __forceinline__ void flash_dq(unsigned char *smem, int bh, const bf16 *__restrict__ qkv,
                                         const bf16 *__restrict__ out, const bf16 *__restrict__ dout,
                                         const float *__restrict__ lse, G *__restrict__ dqkv, int T, int Tp, int H,
                                         int64_t C, float scale, bool causal, bool add) {
    bf16 *sK = (bf16 *)smem, *sV = sK + Tp * FD;
    int b = bh / H, h = bh % H;
    int warp = threadIdx.x >> 5, g = (threadIdx.x & 31) >> 2;
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * FD;
    int64_t orow = (int64_t)b * T * C + h * FD;  // out / dout rows of this (b, h)
    flash_load(sK, base + C, 3 * C, T, Tp);
    flash_load(sV, base + 2 * C, 3 * C, T, Tp);
    flash_load_done();
    for (int r0 = 16 * warp; r0 < T; r0 += 64) {
        uint32_t qa[4][4], oa[4][4], xo[4][4];  // Q, dO and O (for Di) rows: all loads in flight at once
        float l[2], d[2];
        load_a_global(xo, out + orow, C, r0, T);
        load_a_global(oa, dout + orow, C, r0, T);
        load_a_global(qa, base, 3 * C, r0, T);
        rowdot(xo, oa, d);
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) l[h2] = LOG2E * lse[(int64_t)bh * T + min(r0 + g + 8 * h2, T - 1)];
        float c = scale * LOG2E;
        float dq[8][4];
        zero_tile(dq);
        int kend = causal ? min(Tp, r0 + 16) : Tp;
        for (int k0 = 0; k0 < kend; k0 += 32) {
            int nj = min(4, (kend - k0) / 8);
            float s[4][4], dp[4][4];
            mma_abt_chunk(s, qa, sK, k0, nj);
            mma_abt_chunk(dp, oa, sV, k0, nj);
            if (causal || k0 + 32 > T) mask_chunk(s, k0, r0, nj, T, causal);
#pragma unroll
            for (int j = 0; j < 4; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)  // dS / scale (the scale goes on at the store)
                    s[j][e] = fast_exp2(c * s[j][e] - l[e >> 1]) * (dp[j][e] - d[e >> 1]);
            mma_cy(dq, s, sK, k0, nj);  // dQ += dS·K
        }
        store_tile<G>(dq, dqkv + (int64_t)b * T * 3 * C + h * FD, 3 * C, r0, T, add, scale);
    }
}

// ---- dK, dV: per 16 keys, loop over 32-query chunks ----
template <typename G>
__device__ __forceinline__ void flash_dkv(unsigned char *smem, int bh, const bf16 *__restrict__ qkv,
                                          const bf16 *__restrict__ out, const bf16 *__restrict__ dout,
                                          const float *__restrict__ lse, G *__restrict__ dqkv, int T, int Tp, int H,
                                          int64_t C, float scale, bool causal, bool add) {
    bf16 *sQ = (bf16 *)smem, *sO = sQ + Tp * FD;
    float *sL = (float *)(sO + Tp * FD), *sD = sL + Tp;
    int b = bh / H, h = bh % H;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * FD;
    int64_t orow = (int64_t)b * T * C + h * FD;
    flash_load(sQ, base, 3 * C, T, Tp);
    flash_load(sO, dout + orow, C, T, Tp);
    // Di = Σ_d dO·O per query while the copies fly: 8 lanes per row, 8 columns each
#pragma unroll 4
    for (int i = threadIdx.x; i < Tp * 8; i += blockDim.x) {
        int q = i >> 3, c = (i & 7) * 8;
        float v = 0.0f;
        if (q < T) {
            float x[8], y[8];
            load8<true>(dout + orow + (int64_t)q * C + c, x);
            load8<true>(out + orow + (int64_t)q * C + c, y);
#pragma unroll
            for (int k = 0; k < 8; k++) v += x[k] * y[k];
        }
        v += __shfl_xor_sync(0xffffffffu, v, 1);
        v += __shfl_xor_sync(0xffffffffu, v, 2);
        v += __shfl_xor_sync(0xffffffffu, v, 4);
        if ((i & 7) == 0) {
            sD[q] = v;
            sL[q] = q < T ? LOG2E * lse[(int64_t)bh * T + q] : 0.0f;
        }
    }
    flash_load_done();
    for (int r0 = 16 * warp; r0 < T; r0 += 64) {  // this warp's first key
        uint32_t ka[4][4], va[4][4];
        load_a_global(ka, base + C, 3 * C, r0, T);
        load_a_global(va, base + 2 * C, 3 * C, r0, T);
        float dk[8][4], dv[8][4];
        zero_tile(dk);
        zero_tile(dv);
        float c = scale * LOG2E;
        int qstart = causal ? (r0 / 32) * 32 : 0;  // causal: queries before this warp's keys see none of them
        for (int c0 = qstart; c0 < Tp; c0 += 32) {
            int nj = min(4, (Tp - c0) / 8);
            float st[4][4], dpt[4][4];
            mma_abt_chunk(st, ka, sQ, c0, nj);   // Sᵀ = K·Qᵀ (keys × queries)
            mma_abt_chunk(dpt, va, sO, c0, nj);  // dPᵀ = V·dOᵀ
            bool full = !causal && c0 + 32 <= T;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                if (j >= nj) break;          // past the padded sequence (the products use tiles < nj only)
                int q = c0 + 8 * j + 2 * t;  // this thread's query pair q, q + 1 (< Tp: in sL, sD)
                float2 lq = *(const float2 *)&sL[q], dq2 = *(const float2 *)&sD[q];
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    float p = fast_exp2(c * st[j][e] - (e & 1 ? lq.y : lq.x));
                    if (!full) {
                        int key = r0 + g + 8 * (e >> 1);
                        if (!(q + (e & 1) < T && (!causal || key <= q + (e & 1)))) p = 0.0f;
                    }
                    dpt[j][e] = p * (dpt[j][e] - (e & 1 ? dq2.y : dq2.x));  // dSᵀ / scale
                    st[j][e] = p;                                           // Pᵀ
                }
            }
            mma_cy(dv, st, sO, c0, nj);   // dV += Pᵀ·dO
            mma_cy(dk, dpt, sQ, c0, nj);  // dK += dSᵀ·Q
        }
        G *dbase = dqkv + (int64_t)b * T * 3 * C + h * FD;
        store_tile<G>(dk, dbase + C, 3 * C, r0, T, add, scale);
        store_tile<G>(dv, dbase + 2 * C, 3 * C, r0, T, add);
    }
}

// dQ and dK/dV in one launch (they are independent): CTA 2i computes dQ of (b, h) = i, CTA 2i + 1
// its dK/dV. One grid instead of two halves the partial last wave; neighbouring CTAs run together,
// so the second read of a (b, h)'s q, k, v, O, dO hits L2 (ncu: DRAM reads 781 MB per DeiT-B layer
// when the two halves of the grid were apart, against 386 MB of data).
template <typename G>
__global__ void __launch_bounds__(128, 3) flash_bwd_kernel(const bf16 *__restrict__ qkv, const bf16 *__restrict__ out,
                                                            const bf16 *__restrict__ dout, const float *__restrict__ lse,
                                                            G *__restrict__ dqkv, int T, int Tp, int H, int64_t C,
                                                            float scale, bool causal, bool add) {
    extern __shared__ __align__(128) unsigned char smem[];
    int i = blockIdx.x >> 1;
    if (blockIdx.x & 1) flash_dkv<G>(smem, i, qkv, out, dout, lse, dqkv, T, Tp, H, C, scale, causal, add);
    else flash_dq<G>(smem, i, qkv, out, dout, lse, dqkv, T, Tp, H, C, scale, causal, add);
}

// ---- host side ----
static int64_t pad16(int64_t T) { return (T + 15) / 16 * 16; }
static size_t fwd_smem(int64_t Tp) { return (size_t)(2 * Tp) * FD * 2; }  // K, V (dQ: the same)
static size_t bwd_smem(int64_t Tp) { return fwd_smem(Tp) + (size_t)Tp * 8; }  // Q, dO, lse, Di

// On by default for head dim 64 and T <= 256 (H100, DeiT-small: attention 16 ms per step against
// 25 ms for the WMMA kernels with P in memory); VNM_FLASH=0 in the environment selects the WMMA /
// GEMM paths instead (tests/gpu/test_ops_cuda.c checks both).
bool flash_ok(int64_t T, int64_t D, int64_t C) {
    static int on = -1;
    if (on < 0) on = env_int("VNM_FLASH", 1, 0, 1);
    return on && D == FD && T <= FMAXT && C % 8 == 0 && bwd_smem(pad16(T)) <= 227 * 1024;
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
    static size_t raised;
    size_t sm = bwd_smem(Tp);
    if (sm > raised) raise_smem((const void *)flash_bwd_kernel<G>, raised = sm);
    int BH = (int)(B * H);  // one dQ CTA and one dK/dV CTA per (b, h)
    flash_bwd_kernel<G><<<2 * BH, 128, sm, cuda_stream()>>>(qkv, out, dout, lse, dqkv, (int)T, (int)Tp, (int)H, C, 0.125f,
                                                            causal, add);
    CUDA_LAUNCH_CHECK();
}

void flash_bwd(const bf16 *qkv, const bf16 *out, const bf16 *dout, const float *lse, Tensor *dqkv, int64_t B, int64_t T,
               int64_t H, int64_t C, bool causal, bool add) {
    DISPATCH_GRAD(dqkv->dtype, G, { flash_bwd_t<G>(qkv, out, dout, lse, (G *)dqkv->data, B, T, H, C, causal, add); });
}
