// OP_ATTENTION, first version: per-head strided-batched cuBLASLt GEMMs around a row softmax.
// qkv (B, T, 3C) as (B, T, 3, H, D); head h of batch b reads Q, K, V with row stride 3C, so each
// head is one GEMM batched over b (no transposes).
//   S = scale·Q·Kᵀ (f32 scratch) -> P = softmax(S) (bf16, saved[0], (B, H, T, T)) -> O = P·V.
// Backward: dV = Pᵀ·dO; dP = dO·Vᵀ (f32 scratch); dS = P ⊙ (dP − rowsum(P ⊙ dP))·scale (bf16
// scratch); dQ = dS·K; dK = dSᵀ·Q (all accumulated into dqkv).
#include <math.h>

#include "kernels/cuda_common.cuh"

struct AttnDims {
    int64_t B, T, C, H, D;
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
    return d;
}

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

void cuda_attention_fwd(TapeNode *n) {
    AttnDims d = attn_dims(n);
    const bf16 *qkv = cbf(n->in[0]);
    bf16 *out = mbf(n->out[0]);
    int64_t T = d.T, C3 = 3 * d.C, HTT = d.H * T * T;
    float scale = 1.0f / sqrtf((float)d.D);
    float *S = (float *)cuda_scratch(SCRATCH_B, (size_t)(d.B * HTT) * sizeof(float));
    int64_t pshape[4] = {d.B, d.H, T, T};
    bf16 *P = (bf16 *)cuda_keep(n, 0, SCRATCH_A, DT_BF16, 4, pshape, "probs");
    for (int64_t h = 0; h < d.H; h++)
        head_gemm(false, true, T, T, d.D, qkv + h * d.D, C3, T * C3, qkv + d.C + h * d.D, C3, T * C3, S + h * T * T, T,
                  HTT, CUDA_R_32F, scale, 0.0f, (int)d.B);
    int64_t rows = d.B * d.H * T;
    softmax_rows_kernel<<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(S, P, rows, (int)T, d.causal);
    CUDA_LAUNCH_CHECK();
    for (int64_t h = 0; h < d.H; h++)
        head_gemm(false, false, T, d.D, T, P + h * T * T, T, HTT, qkv + 2 * d.C + h * d.D, C3, T * C3, out + h * d.D,
                  d.C, T * d.C, CUDA_R_16BF, 1.0f, 0.0f, (int)d.B);
}

void cuda_attention_bwd(TapeNode *n) {
    AttnDims d = attn_dims(n);
    Tensor *gq = grad_of(n->in[0]);
    if (!gq) return;
    cuda_expect(n->out[0]->grad, DT_BF16, "attention", "output gradient");
    const bf16 *qkv = cbf(n->in[0]), *dO = cbf(n->out[0]->grad), *P = cbf(n->saved[0]);
    char *dqkv = (char *)gq->data;
    size_t gsz = dtype_size(gq->dtype);
    cudaDataType_t gt = cuda_type(gq->dtype);
    int64_t T = d.T, C = d.C, C3 = 3 * C, HTT = d.H * T * T;
    float scale = 1.0f / sqrtf((float)d.D);
    float *dP = (float *)cuda_scratch(SCRATCH_B, (size_t)(d.B * HTT) * sizeof(float));
    bf16 *dS = (bf16 *)cuda_scratch(SCRATCH_A, (size_t)(d.B * HTT) * sizeof(bf16));
    int B = (int)d.B;
    for (int64_t h = 0; h < d.H; h++) {
        const bf16 *Ph = P + h * T * T, *dOh = dO + h * d.D;
        // dV = Pᵀ·dO
        head_gemm(true, false, T, d.D, T, Ph, T, HTT, dOh, C, T * C, dqkv + (2 * C + h * d.D) * gsz, C3, T * C3, gt, 1.0f,
                  1.0f, B);
        // dP = dO·Vᵀ
        head_gemm(false, true, T, T, d.D, dOh, C, T * C, qkv + 2 * C + h * d.D, C3, T * C3, dP + h * T * T, T, HTT,
                  CUDA_R_32F, 1.0f, 0.0f, B);
    }
    int64_t rows = d.B * d.H * T;
    softmax_bwd_rows_kernel<<<cdiv(rows, 8), 256, 0, cuda_stream()>>>(P, dP, dS, rows, (int)T, scale);
    CUDA_LAUNCH_CHECK();
    for (int64_t h = 0; h < d.H; h++) {
        const bf16 *dSh = dS + h * T * T;
        // dQ = dS·K, dK = dSᵀ·Q
        head_gemm(false, false, T, d.D, T, dSh, T, HTT, qkv + C + h * d.D, C3, T * C3, dqkv + (h * d.D) * gsz, C3, T * C3,
                  gt, 1.0f, 1.0f, B);
        head_gemm(true, false, T, d.D, T, dSh, T, HTT, qkv + h * d.D, C3, T * C3, dqkv + (C + h * d.D) * gsz, C3, T * C3,
                  gt, 1.0f, 1.0f, B);
    }
}
