// OP_ATTENTION on qkv (B, T, 3C) viewed as (B, T, 3, H, D): head h of batch b reads Q, K, V with
// row stride 3C, so nothing is transposed.
//
// Flash path (default; VNM_FLASH=0 turns it off; D = 64, T <= 256: ViT/DeiT): register-resident mma.sync
// kernels in cuda_flash.cu; saved[0] = row log-sum-exp (B, H, T), P is never stored.
//
// WMMA fused path (other D = 64 or 128 cases where the whole key sequence fits in shared memory, e.g. ViT T = 197):
//   forward, one CTA per (b, h, 64 queries): K (then V) and the Q tile in shared memory; S = Q·Kᵀ with
//   tensor cores (WMMA bf16, f32 accumulate) into shared memory; row softmax in f32; P (bf16) is
//   saved to global memory (saved[0], (B, H, T, Tp) with Tp = T rounded up to 16, pad columns 0)
//   and multiplied with V in the same CTA. No S round trip through global memory.
//   backward, dQ kernel per (b, h, 64 queries): dP = dO·Vᵀ in shared memory, dS = P ⊙ (dP −
//   rowsum(P ⊙ dP))·scale written to a scratch (B, H, T, Tp) and used in place for dQ = dS·K;
//   then dK = dSᵀ·Q and dV = Pᵀ·dO as per-head batched cuBLASLt GEMMs.
// General path (long sequences): per-head batched GEMMs, S in an f32 scratch, a row softmax
// kernel, P saved as (B, H, T, T); backward dP through an f32 scratch.
#include <math.h>
#include <mma.h>

#include "kernels/cuda_common.cuh"
#include "kernels/cuda_flash.cuh"

using namespace nvcuda;

struct AttnDims {
    int64_t B, T, C, H, D, Tp;
    bool causal;
};

static AttnDims attn_dims(TapeNode *n) {
    Tensor *qkv = n->in[0];
    cuda_expect(qkv, DT_BF16, "attention", "qkv");
    cuda_expect(n->out[0], DT_BF16, "attention", "output");
    AttnDims d;
    d.B = qkv->shape[0];
    d.T = qkv->shape[1];
    d.C = qkv->shape[2] / 3;
    d.H = n->i[0];
    d.causal = n->i[1] != 0;
    if (qkv->ndim != 3 || d.H <= 0 || d.C * 3 != qkv->shape[2] || d.C % d.H)
        fatal("CUDA attention '%s': qkv shape does not split into 3 × %lld heads", n->out[0]->name, (long long)d.H);
    d.D = d.C / d.H;
    d.Tp = (d.T + 15) / 16 * 16;
    return d;
}

// ---------------------------------------------------------------------------------------------
// Fused kernels. A CTA of 4 warps takes QT = 64 queries of one (b, h); warp w owns query rows
// [16w, 16w+16) and skips all work when they are past T. Shared memory (rows padded so that the
// 8 rows of each ldmatrix phase hit distinct banks):
//   sKV: Tp × (D+8) bf16, first K (or V), then reloaded with V (or K) for the second product, so
//   two CTAs fit on an SM for D = 64 and one CTA's loads overlap the other's math;
//   sQ: QT × D bf16; sS: QT × LDS f32 (LDS = max(Tp, D) + 4), reused in place for the bf16
//   probabilities (row stride 2·LDS) and for the f32 result tile.
#define QT 64
#define NWARP 4

static int64_t attn_lds(const AttnDims &d) { return (d.Tp > d.D ? d.Tp : d.D) + 4; }
static size_t fused_smem(const AttnDims &d) {
    return (size_t)(d.Tp * (d.D + 8) + QT * d.D) * 2 + (size_t)(QT * attn_lds(d)) * 4;
}

static bool fused_ok(const AttnDims &d) {
    return (d.D == 64 || d.D == 128) && d.Tp <= 512 && fused_smem(d) <= 227 * 1024 && d.C % 8 == 0;
}

// rows [0, rows) of a (rows × D) tile from global (row stride ld) into shared memory (row stride
// lds), zero rows up to pad_rows; 16-byte accesses, 4 loads in flight per thread.
template <int D>
__device__ __forceinline__ void load_tile(bf16 *__restrict__ dst, int lds, const bf16 *__restrict__ src, int64_t ld,
                                          int rows, int pad_rows) {
    constexpr int CH = D / 8;  // 16-byte chunks per row
    int total = pad_rows * CH;
    for (int i0 = threadIdx.x; i0 < total; i0 += 4 * blockDim.x) {
        uint4 v[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int i = i0 + u * blockDim.x, r = i / CH, c = (i % CH) * 8;
            v[u] = make_uint4(0, 0, 0, 0);
            if (i < total && r < rows) v[u] = *(const uint4 *)(src + (int64_t)r * ld + c);
        }
#pragma unroll
        for (int u = 0; u < 4; u++) {
            int i = i0 + u * blockDim.x, r = i / CH, c = (i % CH) * 8;
            if (i < total) *(uint4 *)(dst + r * lds + c) = v[u];
        }
    }
}

// Warp w: sS[16w.., 0..Tp) (f32, ld lds) = A (its 16 rows of a QT×D tile, ld D) · Bᵀ (Tp×D, ld D+8).
template <int D>
__device__ __forceinline__ void warp_abt(const bf16 *sA, const bf16 *sB, float *sS, int Tp, int lds) {
    int w = threadIdx.x >> 5;
    wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a[D / 16];
#pragma unroll
    for (int k = 0; k < D / 16; k++) wmma::load_matrix_sync(a[k], sA + 16 * w * D + 16 * k, D);
    for (int nt = 0; nt < Tp / 16; nt++) {
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> c;
        wmma::fill_fragment(c, 0.0f);
#pragma unroll
        for (int k = 0; k < D / 16; k++) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> b;
            wmma::load_matrix_sync(b, sB + 16 * nt * (D + 8) + 16 * k, D + 8);
            wmma::mma_sync(c, a[k], b, c);
        }
        wmma::store_matrix_sync(sS + 16 * w * lds + 16 * nt, c, lds, wmma::mem_row_major);
    }
}

// Warp w: its 16 rows of the bf16 matrix stored in place over sS (row stride 2·lds) · V (Tp×D,
// ld D+8) -> f32 back into sS (ld lds) at columns [0, D).
template <int D> __device__ __forceinline__ void warp_pv(float *sS, const bf16 *sV, int Tp, int lds) {
    int w = threadIdx.x >> 5;
    const bf16 *P = (const bf16 *)(sS + 16 * w * lds);
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[D / 16];
#pragma unroll
    for (int j = 0; j < D / 16; j++) wmma::fill_fragment(acc[j], 0.0f);
    for (int k = 0; k < Tp / 16; k++) {
        wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> a;
        wmma::load_matrix_sync(a, P + 16 * k, 2 * lds);
#pragma unroll
        for (int j = 0; j < D / 16; j++) {
            wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> b;
            wmma::load_matrix_sync(b, sV + 16 * k * (D + 8) + 16 * j, D + 8);
            wmma::mma_sync(acc[j], a, b, acc[j]);
        }
    }
    __syncwarp();  // every lane's P reads are done before the f32 results overwrite them
#pragma unroll
    for (int j = 0; j < D / 16; j++) wmma::store_matrix_sync(sS + 16 * w * lds + 16 * j, acc[j], lds, wmma::mem_row_major);
    __syncwarp();
}

// Warp w's 16 rows × D (f32 in sS, ld lds) to global rows q0 + 16w + r < T as G (add: +=), 8 per access.
template <int D, typename G>
__device__ __forceinline__ void warp_store_rows(const float *sS, int lds, G *dst, int64_t ld, int q0, int T, bool add) {
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int i = lane; i < 16 * D / 8; i += 32) {
        int r = i / (D / 8), c = (i % (D / 8)) * 8, q = q0 + 16 * w + r;
        if (q < T) acc8<true>(dst + (int64_t)q * ld + c, sS + (16 * w + r) * lds + c, add);
    }
}

// Warp w's 16 bf16 rows (in place over sS, row stride 2·lds) to global rows (row stride Tp), 16 bytes per access.
__device__ __forceinline__ void warp_copy_prob_rows(const float *sS, int lds, bf16 *dst, int q0, int T, int Tp) {
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31, cw = Tp / 8;
    for (int i = lane; i < 16 * cw; i += 32) {
        int r = i / cw, c = (i % cw) * 8, q = q0 + 16 * w + r;
        if (q < T) *(uint4 *)(dst + (int64_t)q * Tp + c) = *(const uint4 *)((const bf16 *)(sS + (16 * w + r) * lds) + c);
    }
}

// The softmax rows of warp w, two rows at a time (independent shuffles overlap). NC columns per
// lane (Tp <= 32·NC). In place: row r of sS (f32) becomes bf16 probabilities.
template <int NC>
__device__ __forceinline__ void warp_softmax_rows(float *sS, int lds, int q0, int T, int Tp, float scale, bool causal) {
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int r = 16 * w; r < 16 * w + 16; r += 2) {
        float v[2][NC], m[2], s[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            int q = q0 + r + u, limit = causal ? min(q + 1, T) : T;
            m[u] = -INFINITY;
#pragma unroll
            for (int j = 0; j < NC; j++) {
                int c = lane + 32 * j;
                v[u][j] = c < limit ? sS[(r + u) * lds + c] * scale : -INFINITY;
                m[u] = fmaxf(m[u], v[u][j]);
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            m[0] = fmaxf(m[0], __shfl_xor_sync(0xffffffffu, m[0], o));
            m[1] = fmaxf(m[1], __shfl_xor_sync(0xffffffffu, m[1], o));
        }
#pragma unroll
        for (int u = 0; u < 2; u++) {
            s[u] = 0.0f;
#pragma unroll
            for (int j = 0; j < NC; j++) {
                v[u][j] = v[u][j] == -INFINITY ? 0.0f : __expf(v[u][j] - m[u]);
                s[u] += v[u][j];
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            s[0] += __shfl_xor_sync(0xffffffffu, s[0], o);
            s[1] += __shfl_xor_sync(0xffffffffu, s[1], o);
        }
        __syncwarp();  // the rows are read before the probabilities overwrite them in place
#pragma unroll
        for (int u = 0; u < 2; u++) {
            float inv = 1.0f / s[u];
            bf16 *prow = (bf16 *)(sS + (r + u) * lds);
#pragma unroll
            for (int j = 0; j < NC; j++) {
                int c = lane + 32 * j;
                if (c < Tp) prow[c] = __float2bfloat16(v[u][j] * inv);
            }
        }
    }
    __syncwarp();
}

// dS = P ⊙ (dP − Σ P·dP)·scale for warp w's rows: dP (f32) in sS, P from global (row stride Tp);
// dS (bf16) in place over sS.
template <int NC>
__device__ __forceinline__ void warp_softmax_bwd_rows(float *sS, int lds, const bf16 *P, int q0, int T, int Tp, float scale) {
    int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int r = 16 * w; r < 16 * w + 16; r += 2) {
        float p[2][NC], dp[2][NC], dot[2];
#pragma unroll
        for (int u = 0; u < 2; u++) {
            int q = q0 + r + u;
            dot[u] = 0.0f;
#pragma unroll
            for (int j = 0; j < NC; j++) {
                int c = lane + 32 * j;
                p[u][j] = q < T && c < Tp ? to_f(P[(int64_t)q * Tp + c]) : 0.0f;
                dp[u][j] = c < Tp ? sS[(r + u) * lds + c] : 0.0f;
                dot[u] += p[u][j] * dp[u][j];
            }
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) {
            dot[0] += __shfl_xor_sync(0xffffffffu, dot[0], o);
            dot[1] += __shfl_xor_sync(0xffffffffu, dot[1], o);
        }
        __syncwarp();
#pragma unroll
        for (int u = 0; u < 2; u++) {
            bf16 *srow = (bf16 *)(sS + (r + u) * lds);
#pragma unroll
            for (int j = 0; j < NC; j++) {
                int c = lane + 32 * j;
                if (c < Tp) srow[c] = __float2bfloat16(p[u][j] * (dp[u][j] - dot[u]) * scale);
            }
        }
    }
    __syncwarp();
}

template <int D, int NC>
__global__ void __launch_bounds__(32 * NWARP) attn_fwd_kernel(const bf16 *__restrict__ qkv, bf16 *__restrict__ out,
                                                               bf16 *__restrict__ P, int T, int Tp, int lds, int H, int64_t C,
                                                               float scale, bool causal) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sKV = (bf16 *)smem, *sQ = sKV + Tp * (D + 8);
    float *sS = (float *)(sQ + QT * D);
    int bh = blockIdx.y, b = bh / H, h = bh % H, q0 = blockIdx.x * QT;
    bool active = q0 + 16 * (threadIdx.x >> 5) < T;  // this warp has query rows
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * D;
    load_tile<D>(sQ, D, base + (int64_t)q0 * 3 * C, 3 * C, min(QT, T - q0), QT);
    load_tile<D>(sKV, D + 8, base + C, 3 * C, T, Tp);
    __syncthreads();
    if (active) {
        warp_abt<D>(sQ, sKV, sS, Tp, lds);
        __syncwarp();
        warp_softmax_rows<NC>(sS, lds, q0, T, Tp, scale, causal);
        warp_copy_prob_rows(sS, lds, P + (int64_t)bh * T * Tp, q0, T, Tp);
    }
    __syncthreads();  // K is no longer read: V takes its place
    load_tile<D>(sKV, D + 8, base + 2 * C, 3 * C, T, Tp);
    __syncthreads();
    if (active) {
        warp_pv<D>(sS, sKV, Tp, lds);
        warp_store_rows<D, bf16>(sS, lds, out + (int64_t)b * T * C + h * D, C, q0, T, false);
    }
}

// dQ kernel: dP = dO·Vᵀ, dS = P ⊙ (dP − Σ P·dP)·scale (saved to dS_out), dQ (+)= dS·K.
template <int D, int NC, typename G>
__global__ void __launch_bounds__(32 * NWARP)
    attn_bwd_dq_kernel(const bf16 *__restrict__ qkv, const bf16 *__restrict__ dout, const bf16 *__restrict__ P,
                       bf16 *__restrict__ dS_out, G *__restrict__ dqkv, int T, int Tp, int lds, int H, int64_t C,
                       float scale, bool add) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *sKV = (bf16 *)smem, *sO = sKV + Tp * (D + 8);
    float *sS = (float *)(sO + QT * D);
    int bh = blockIdx.y, b = bh / H, h = bh % H, q0 = blockIdx.x * QT;
    bool active = q0 + 16 * (threadIdx.x >> 5) < T;
    const bf16 *base = qkv + (int64_t)b * T * 3 * C + h * D;
    load_tile<D>(sO, D, dout + ((int64_t)b * T + q0) * C + h * D, C, min(QT, T - q0), QT);
    load_tile<D>(sKV, D + 8, base + 2 * C, 3 * C, T, Tp);  // V
    __syncthreads();
    if (active) {
        warp_abt<D>(sO, sKV, sS, Tp, lds);  // dP
        __syncwarp();
        warp_softmax_bwd_rows<NC>(sS, lds, P + (int64_t)bh * T * Tp, q0, T, Tp, scale);
        warp_copy_prob_rows(sS, lds, dS_out + (int64_t)bh * T * Tp, q0, T, Tp);
    }
    __syncthreads();
    load_tile<D>(sKV, D + 8, base + C, 3 * C, T, Tp);  // K
    __syncthreads();
    if (active) {
        warp_pv<D>(sS, sKV, Tp, lds);  // dS·K
        warp_store_rows<D, G>(sS, lds, dqkv + (int64_t)b * T * 3 * C + h * D, 3 * C, q0, T, add);
    }
}

// Raises a kernel's dynamic shared memory limit once per (kernel, size).
static void set_smem(const void *kernel, size_t bytes) {
    static const void *done_k[32];
    static size_t done_b[32];
    for (int i = 0; i < 32; i++)
        if (done_k[i] == kernel && done_b[i] >= bytes) return;
    CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
    for (int i = 0; i < 32; i++)
        if (!done_k[i] || done_k[i] == kernel) {
            done_k[i] = kernel;
            done_b[i] = bytes;
            return;
        }
}

template <int D, int NC> static void fused_fwd_t(const AttnDims &d, const bf16 *qkv, bf16 *out, bf16 *P) {
    dim3 grid(cdiv(d.T, QT), (unsigned)(d.B * d.H));
    size_t smem = fused_smem(d);
    set_smem((const void *)attn_fwd_kernel<D, NC>, smem);
    attn_fwd_kernel<D, NC><<<grid, 32 * NWARP, smem, cuda_stream()>>>(qkv, out, P, (int)d.T, (int)d.Tp, (int)attn_lds(d),
                                                                        (int)d.H, d.C, 1.0f / sqrtf((float)d.D), d.causal);
    CUDA_LAUNCH_CHECK();
}

static void fused_fwd(const AttnDims &d, const bf16 *qkv, bf16 *out, bf16 *P) {
    bool narrow = d.Tp <= 256;
    if (d.D == 64) narrow ? fused_fwd_t<64, 8>(d, qkv, out, P) : fused_fwd_t<64, 16>(d, qkv, out, P);
    else narrow ? fused_fwd_t<128, 8>(d, qkv, out, P) : fused_fwd_t<128, 16>(d, qkv, out, P);
}

template <int D, int NC, typename G>
static void fused_bwd_dq_t(const AttnDims &d, const bf16 *qkv, const bf16 *dout, const bf16 *P, bf16 *dS, G *dqkv, bool add) {
    dim3 grid(cdiv(d.T, QT), (unsigned)(d.B * d.H));
    size_t smem = fused_smem(d);
    set_smem((const void *)attn_bwd_dq_kernel<D, NC, G>, smem);
    attn_bwd_dq_kernel<D, NC, G><<<grid, 32 * NWARP, smem, cuda_stream()>>>(
        qkv, dout, P, dS, dqkv, (int)d.T, (int)d.Tp, (int)attn_lds(d), (int)d.H, d.C, 1.0f / sqrtf((float)d.D), add);
    CUDA_LAUNCH_CHECK();
}

template <typename G>
static void fused_bwd_dq(const AttnDims &d, const bf16 *qkv, const bf16 *dout, const bf16 *P, bf16 *dS, G *dqkv, bool add) {
    bool narrow = d.Tp <= 256;
    if (d.D == 64) narrow ? fused_bwd_dq_t<64, 8, G>(d, qkv, dout, P, dS, dqkv, add) : fused_bwd_dq_t<64, 16, G>(d, qkv, dout, P, dS, dqkv, add);
    else narrow ? fused_bwd_dq_t<128, 8, G>(d, qkv, dout, P, dS, dqkv, add) : fused_bwd_dq_t<128, 16, G>(d, qkv, dout, P, dS, dqkv, add);
}

// ---------------------------------------------------------------------------------------------
// General path

// One warp per row of S (B·H·T rows of length T): P = softmax(S) with the causal mask.
__global__ void softmax_rows_kernel(const float *S, bf16 *P, int64_t rows, int T, bool causal) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (row >= rows) return;
    int limit = causal ? (int)(row % T) + 1 : T;  // columns < limit take part
    const float *s = S + row * T;
    float m = -INFINITY;
    for (int j = lane; j < limit; j += 32) m = fmaxf(m, s[j]);
    m = warp_max(m);
    float sum = 0.0f;
    for (int j = lane; j < limit; j += 32) sum += __expf(s[j] - m);
    float inv = 1.0f / warp_sum(sum);
    bf16 *p = P + row * T;
    for (int j = lane; j < T; j += 32) p[j] = __float2bfloat16(j < limit ? __expf(s[j] - m) * inv : 0.0f);
}

// dS = P ⊙ (dP − Σ_j P·dP)·scale, one warp per row.
__global__ void softmax_bwd_rows_kernel(const bf16 *P, const float *dP, bf16 *dS, int64_t rows, int T, float scale) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * 8 + (threadIdx.x >> 5);
    if (row >= rows) return;
    const bf16 *p = P + row * T;
    const float *dp = dP + row * T;
    float dot = 0.0f;
    for (int j = lane; j < T; j += 32) dot += to_f(p[j]) * dp[j];
    dot = warp_sum(dot);
    for (int j = lane; j < T; j += 32) dS[row * T + j] = __float2bfloat16(to_f(p[j]) * (dp[j] - dot) * scale);
}

// Per-head GEMM batched over b: row-major op(A)·op(B) with the given strides.
static void head_gemm(bool ta, bool tb, int64_t m, int64_t nn, int64_t k, const void *a, int64_t lda, int64_t sa,
                      const void *b, int64_t ldb, int64_t sb, void *c, int64_t ldc, int64_t sc, cudaDataType_t ct,
                      float alpha, float beta, int batch) {
    Gemm g;
    memset(&g, 0, sizeof g);
    g.ta = ta, g.tb = tb;
    g.m = m, g.n = nn, g.k = k;
    g.a = a, g.lda = lda, g.sa = sa;
    g.b = b, g.ldb = ldb, g.sb = sb;
    g.c = c, g.ldc = ldc, g.sc = sc;
    g.ab_type = CUDA_R_16BF, g.c_type = ct;
    g.alpha = alpha, g.beta = beta;
    g.batch = batch;
    gemm(&g);
}

static void general_fwd(const AttnDims &d, const bf16 *qkv, bf16 *out, bf16 *P) {
    int64_t T = d.T, C3 = 3 * d.C, HTT = d.H * T * T;
    float scale = 1.0f / sqrtf((float)d.D);
    float *S = (float *)cuda_scratch(SCRATCH_B, (size_t)(d.B * HTT) * sizeof(float));
    for (int64_t h = 0; h < d.H; h++)
        head_gemm(false, true, T, T, d.D, qkv + h * d.D, C3, T * C3, qkv + d.C + h * d.D, C3, T * C3, S + h * T * T, T,
                  HTT, CUDA_R_32F, scale, 0.0f, (int)d.B);
    int64_t rows = d.B * d.H * T;
    softmax_rows_kernel<<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(S, P, rows, (int)T, d.causal);
    CUDA_LAUNCH_CHECK();
    for (int64_t h = 0; h < d.H; h++)
        head_gemm(false, false, T, d.D, T, P + h * T * T, T, HTT, qkv + 2 * d.C + h * d.D, C3, T * C3, out + h * d.D, d.C,
                  T * d.C, CUDA_R_16BF, 1.0f, 0.0f, (int)d.B);
}

void cuda_attention_fwd(TapeNode *n) {
    AttnDims d = attn_dims(n);
    if (flash_ok(d.T, d.D, d.C)) {  // saved[0] = lse (B, H, T) f32
        int64_t lshape[3] = {d.B, d.H, d.T};
        float *lse = (float *)cuda_keep(n, 0, SCRATCH_A, DT_F32, 3, lshape, "lse");
        flash_fwd(cbf(n->in[0]), mbf(n->out[0]), lse, d.B, d.T, d.H, d.C, d.causal);
        return;
    }
    bool fused = fused_ok(d);
    int64_t pshape[4] = {d.B, d.H, d.T, fused ? d.Tp : d.T};
    bf16 *P = (bf16 *)cuda_keep(n, 0, SCRATCH_A, DT_BF16, 4, pshape, "probs");
    if (fused) fused_fwd(d, cbf(n->in[0]), mbf(n->out[0]), P);
    else general_fwd(d, cbf(n->in[0]), mbf(n->out[0]), P);
}

void cuda_attention_bwd(TapeNode *n) {
    AttnDims d = attn_dims(n);
    Tensor *gq = grad_of(n->in[0]);
    if (!gq) return;
    cuda_expect(n->out[0]->grad, DT_BF16, "attention", "output gradient");
    if (flash_ok(d.T, d.D, d.C)) {
        bool add = grad_accumulate(gq);
        flash_bwd(cbf(n->in[0]), cbf(n->out[0]), cbf(n->out[0]->grad), (const float *)n->saved[0]->data, gq, d.B, d.T, d.H,
                  d.C, d.causal, add);
        return;
    }
    const bf16 *qkv = cbf(n->in[0]), *dO = cbf(n->out[0]->grad), *P = cbf(n->saved[0]);
    bool fused = fused_ok(d);  // the forward's choice: same dims
    int64_t ldp = fused ? d.Tp : d.T;
    char *dqkv = (char *)gq->data;
    size_t gsz = dtype_size(gq->dtype);
    cudaDataType_t gt = cuda_type(gq->dtype);
    int64_t T = d.T, C = d.C, C3 = 3 * C, HTP = d.H * T * ldp;
    float scale = 1.0f / sqrtf((float)d.D);
    bool add = grad_accumulate(gq);  // dQ, dK, dV of all heads tile dqkv: one flag for all
    float beta = add ? 1.0f : 0.0f;
    bf16 *dS = (bf16 *)cuda_scratch(SCRATCH_A, (size_t)(d.B * HTP) * sizeof(bf16));
    int B = (int)d.B;
    if (fused) {
        DISPATCH_GRAD(gq->dtype, G, { fused_bwd_dq<G>(d, qkv, dO, P, dS, (G *)gq->data, add); });
    } else {
        float *dP = (float *)cuda_scratch(SCRATCH_B, (size_t)(d.B * HTP) * sizeof(float));
        for (int64_t h = 0; h < d.H; h++)  // dP = dO·Vᵀ
            head_gemm(false, true, T, T, d.D, dO + h * d.D, C, T * C, qkv + 2 * C + h * d.D, C3, T * C3, dP + h * T * T, T,
                      HTP, CUDA_R_32F, 1.0f, 0.0f, B);
        int64_t rows = d.B * d.H * T;
        softmax_bwd_rows_kernel<<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(P, dP, dS, rows, (int)T, scale);
        CUDA_LAUNCH_CHECK();
        for (int64_t h = 0; h < d.H; h++)  // dQ = dS·K
            head_gemm(false, false, T, d.D, T, dS + h * T * T, T, HTP, qkv + C + h * d.D, C3, T * C3,
                      dqkv + (h * d.D) * gsz, C3, T * C3, gt, 1.0f, beta, B);
    }
    for (int64_t h = 0; h < d.H; h++) {
        // dV = Pᵀ·dO, dK = dSᵀ·Q
        head_gemm(true, false, T, d.D, T, P + h * T * ldp, ldp, HTP, dO + h * d.D, C, T * C,
                  dqkv + (2 * C + h * d.D) * gsz, C3, T * C3, gt, 1.0f, beta, B);
        head_gemm(true, false, T, d.D, T, dS + h * T * ldp, ldp, HTP, qkv + h * d.D, C3, T * C3,
                  dqkv + (C + h * d.D) * gsz, C3, T * C3, gt, 1.0f, beta, B);
    }
}
