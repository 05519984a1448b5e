// OP_LINEAR (plain, dense LoRA, masked LoRA) and OP_PATCH_EMBED on cuBLASLt.
//
// Node layout (autograd/ops.h): in[0]=x (M×K) in[1]=w (N×K) in[2]=b (N) in[3]=A (r×K) in[4]=B (N×r)
// in[5]=mask (N×K; u8, f32 or bf16 0/1) in[6]=residual (M×N, op_linear_residual: C of the GEMM
// with beta 1; its gradient takes dy over, cuda_grad_pass); f[0]=scale f[1]=dropout; i[0]=seed
// i[1]=stream.
//
// Dense LoRA forward: h = drop(x)·Aᵀ (saved[0], M×r bf16; drop(x) is saved[1] when dropout > 0),
// y = x·Wᵀ + b (bias epilogue), y += s·h·Bᵀ (second GEMM, beta = 1).
// Dense LoRA backward: dh = s·dy·B; dB += s·dyᵀh; dA += dhᵀ·drop(x);
//   dx += dy·(W + s·B·A) as one GEMM when there is no dropout (the LoRA branch folded into a
//   weight of N×K, much cheaper than a second pass over dx), else dx += dy·W + drop'(dh·A).
// Masked: W' = (W + s·B·A) ⊙ mask (saved[0], N×K bf16), y = x·W'ᵀ + b. Backward: dx += dy·W';
//   G = dyᵀx (N×K, scratch); Gm = G ⊙ mask; dA += s·Bᵀ·Gm; dB += s·Gm·Aᵀ; dW += Gm (DESIGN.md §2).
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/lora_bwd.cuh"

static const char *OPN = "linear";

// GEMM whose C is a gradient tensor: accumulate (beta 1) in the gradient's dtype.
static Gemm gemm_into(Tensor *grad) {
    Gemm g;
    memset(&g, 0, sizeof g);
    g.ab_type = CUDA_R_16BF;
    g.c = grad ? grad->data : NULL;
    g.c_type = grad ? cuda_type(grad->dtype) : CUDA_R_16BF;
    g.alpha = 1.0f;
    g.beta = grad && !grad_accumulate(grad) ? 0.0f : 1.0f;
    return g;
}

// ---- elementwise helpers ----
__global__ void dropout_kernel(const bf16 *x, bf16 *out, int64_t n, float p, uint64_t seed, uint64_t stream) {
    float keep_scale = 1.0f / (1.0f - p);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        bool keep = hash_uniform_dev(seed, stream, (uint64_t)i) >= p;
        out[i] = __float2bfloat16(keep ? to_f(x[i]) * keep_scale : 0.0f);
    }
}

// g[i] += drop'(t[i]): the gradient through the dropout (same mask as forward).
template <typename G>
__global__ void dropout_bwd_kernel(G *g, const float *t, int64_t n, float p, uint64_t seed, uint64_t stream) {
    float keep_scale = 1.0f / (1.0f - p);
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        bool keep = hash_uniform_dev(seed, stream, (uint64_t)i) >= p;
        if (keep) acc(g, i, t[i] * keep_scale);
    }
}

template <typename MT> __device__ __forceinline__ float mask_val(const MT *m, int64_t i) { return to_f(m[i]); }
template <> __device__ __forceinline__ float mask_val<uint8_t>(const uint8_t *m, int64_t i) { return m[i] ? 1.0f : 0.0f; }

// out[i] = bf16((w[i] + d[i]) · mask[i]) with mask optional (NULL: 1).
template <typename MT>
__global__ void merge_kernel(const bf16 *w, const float *d, const MT *mask, bf16 *out, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float v = to_f(w[i]) + d[i];
        if (mask) v *= mask_val(mask, i);
        out[i] = __float2bfloat16(v);
    }
}

// g[i] = g[i] · mask[i] in place (bf16).
template <typename MT> __global__ void apply_mask_kernel(bf16 *g, const MT *mask, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        g[i] = __float2bfloat16(to_f(g[i]) * mask_val(mask, i));
}

// out (rows × (ka + kb)) = [a | scale·b] row by row; ka, kb multiples of 8 (16-byte copies).
__global__ void concat_cols_kernel(const bf16 *a, int64_t ka, const bf16 *b, int64_t kb, float scale, bf16 *out,
                                   int64_t rows) {
    int64_t cw = (ka + kb) / 8, total = rows * cw;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / cw, c = (i % cw) * 8;
        uint4 v;
        if (c < ka) {
            v = *(const uint4 *)(a + r * ka + c);
        } else {
            float t[8];
            load8<true>(b + r * kb + (c - ka), t);
#pragma unroll
            for (int k = 0; k < 8; k++) t[k] *= scale;
            store8<true>((bf16 *)&v, t);
        }
        *(uint4 *)(out + r * (ka + kb) + c) = v;
    }
}

static unsigned grid_for(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b > 8192 ? 8192 : b);
}

#define DISPATCH_MASK(mask, MT, ...)                                                               \
    do {                                                                                           \
        if (!(mask) || (mask)->dtype == DT_U8) {                                                   \
            typedef uint8_t MT;                                                                    \
            __VA_ARGS__;                                                                           \
        } else if ((mask)->dtype == DT_F32) {                                                      \
            typedef float MT;                                                                      \
            __VA_ARGS__;                                                                           \
        } else if ((mask)->dtype == DT_BF16) {                                                     \
            typedef bf16 MT;                                                                       \
            __VA_ARGS__;                                                                           \
        } else {                                                                                   \
            fatal("CUDA linear: mask '%s' has dtype %s", (mask)->name, dtype_name((mask)->dtype)); \
        }                                                                                          \
    } while (0)

static void concat_cols(const bf16 *a, int64_t ka, const bf16 *b, int64_t kb, float scale, bf16 *out, int64_t rows) {
    concat_cols_kernel<<<grid_for(rows * (ka + kb) / 8), 256, 0, cuda_stream()>>>(a, ka, b, kb, scale, out, rows);
    CUDA_LAUNCH_CHECK();
}

// out (N×K bf16) = (w + s·B·A) [⊙ mask]. Without a mask one GEMM with C = w (rounded once to
// bf16); with one, the product goes to an f32 scratch and a kernel adds w and masks.
static void merge_weight(const Tensor *w, const Tensor *A, const Tensor *B, const Tensor *mask, float s, bf16 *out) {
    int64_t N = w->shape[0], K = w->shape[1], r = A->shape[0];
    Gemm g = gemm_into(NULL);
    g.m = N, g.n = K, g.k = r;
    g.a = B->data, g.lda = r;
    g.b = A->data, g.ldb = K;
    g.ldc = K;
    g.alpha = s;
    if (!mask) {
        g.c = out, g.c_in = w->data, g.beta = 1.0f;
        gemm(&g);
        return;
    }
    float *d = (float *)cuda_scratch(SCRATCH_C, (size_t)(N * K) * sizeof(float));
    g.c = d, g.c_type = CUDA_R_32F, g.beta = 0.0f;
    gemm(&g);
    DISPATCH_MASK(mask, MT, {
        merge_kernel<MT><<<grid_for(N * K), 256, 0, cuda_stream()>>>(cbf(w), d, mask ? (const MT *)mask->data : NULL, out,
                                                                     N * K);
    });
    CUDA_LAUNCH_CHECK();
}

// y (M×N) = x·wᵀ + b (+ res, read by the GEMM's epilogue), over bf16 pointers.
static void linear_plain(const bf16 *x, const bf16 *w, const Tensor *b, const bf16 *res, bf16 *y, int64_t M, int64_t N,
                         int64_t K) {
    Gemm g = gemm_into(NULL);
    g.tb = true;
    g.m = M, g.n = N, g.k = K;
    g.a = x, g.lda = K;
    g.b = w, g.ldb = K;
    g.c = y, g.ldc = N;
    g.c_in = res;
    g.beta = res ? 1.0f : 0.0f;
    g.bias = b ? b->data : NULL;
    gemm(&g);
}

// Checks a linear node, returns M, N, K, r.
static void linear_dims(TapeNode *n, int64_t *M, int64_t *N, int64_t *K, int64_t *r) {
    Tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *A = n->in[3], *B = n->in[4];
    cuda_expect(x, DT_BF16, OPN, "x");
    cuda_expect(w, DT_BF16, OPN, "weight");
    if (b) cuda_expect(b, DT_BF16, OPN, "bias");
    *K = last_dim(x);
    *M = rows_of(x);
    *N = w->shape[0];
    if (w->ndim != 2 || w->shape[1] != *K) fatal("CUDA linear '%s': weight '%s' does not match x", n->out[0]->name, w->name);
    *r = 0;
    if (A || B) {
        cuda_expect(A, DT_BF16, OPN, "lora A");
        cuda_expect(B, DT_BF16, OPN, "lora B");
        *r = A->shape[0];
        if (A->shape[1] != *K || B->shape[0] != *N || B->shape[1] != *r)
            fatal("CUDA linear '%s': LoRA shapes do not match", n->out[0]->name);
    }
}

static float dropout_p(TapeNode *n) { return n->tape && n->tape->training ? n->f[1] : 0.0f; }

void cuda_linear_fwd(TapeNode *n) {
    int64_t M, N, K, r;
    linear_dims(n, &M, &N, &K, &r);
    Tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *A = n->in[3], *B = n->in[4], *mask = n->in[5];
    Tensor *y = n->out[0];
    cuda_expect(y, DT_BF16, OPN, "output");
    if (n->in[6]) cuda_expect(n->in[6], DT_BF16, OPN, "residual");
    const bf16 *res = n->in[6] ? cbf(n->in[6]) : NULL;
    float s = n->f[0];
    if (!A) {
        linear_plain(cbf(x), cbf(w), b, res, mbf(y), M, N, K);
        return;
    }
    if (mask) {
        int64_t shp[2] = {N, K};
        bf16 *wm = (bf16 *)cuda_keep(n, 0, SCRATCH_A, DT_BF16, 2, shp, "w_masked");
        merge_weight(w, A, B, mask, s, wm);
        linear_plain(cbf(x), wm, b, res, mbf(y), M, N, K);
        return;
    }
    float p = dropout_p(n);
    const bf16 *xd = cbf(x);
    if (p > 0.0f) {
        int64_t shp[2] = {M, K};
        bf16 *xdt = (bf16 *)cuda_keep(n, 1, SCRATCH_B, DT_BF16, 2, shp, "x_drop");
        dropout_kernel<<<grid_for(M * K), 256, 0, cuda_stream()>>>(cbf(x), xdt, M * K, p, (uint64_t)n->i[0],
                                                                    (uint64_t)n->i[1]);
        CUDA_LAUNCH_CHECK();
        xd = xdt;
    }
    int64_t hs[2] = {M, r};
    bf16 *h = (bf16 *)cuda_keep(n, 0, SCRATCH_A, DT_BF16, 2, hs, "lora_h");
    linear_plain(xd, cbf(A), NULL, NULL, h, M, r, K);
    if (N > K && K % 8 == 0 && r % 8 == 0) {
        // y = [x | h] · [W | s·B]ᵀ + b: one GEMM over K + r. Copying x (M×K) costs less than the
        // read-modify-write of y (M×N) that a second GEMM would do, when N > K (qkv, fc1).
        bf16 *xh = (bf16 *)cuda_scratch(SCRATCH_B, (size_t)(M * (K + r)) * sizeof(bf16));
        bf16 *wb = (bf16 *)cuda_scratch(SCRATCH_C, (size_t)(N * (K + r)) * sizeof(bf16));
        concat_cols(cbf(x), K, h, r, 1.0f, xh, M);
        concat_cols(cbf(w), K, cbf(B), r, s, wb, N);
        linear_plain(xh, wb, b, res, mbf(y), M, N, K + r);
        return;
    }
    linear_plain(cbf(x), cbf(w), b, res, mbf(y), M, N, K);
    Gemm g = gemm_into(y);  // y += s·h·Bᵀ
    g.tb = true;
    g.m = M, g.n = N, g.k = r;
    g.a = h, g.lda = r;
    g.b = B->data, g.ldb = r;
    g.ldc = N;
    g.alpha = s;
    gemm(&g);
}

// grad (N×K) += dyᵀ·x over M rows.
static void weight_grad(Tensor *grad, const bf16 *dy, const bf16 *x, int64_t M, int64_t N, int64_t K, float alpha) {
    Gemm g = gemm_into(grad);
    g.ta = true;
    g.m = N, g.n = K, g.k = M;
    g.a = dy, g.lda = N;
    g.b = x, g.ldb = K;
    g.ldc = K;
    g.alpha = alpha;
    gemm(&g);
}

// grad (M×K) += dy (M×N) · w (N×K).
static void input_grad(Tensor *grad, const bf16 *dy, const bf16 *w, int64_t M, int64_t N, int64_t K) {
    Gemm g = gemm_into(grad);
    g.m = M, g.n = K, g.k = N;
    g.a = dy, g.lda = N;
    g.b = w, g.ldb = K;
    g.ldc = K;
    gemm(&g);
}

static void bias_grad(Tensor *gb, const bf16 *dy, int64_t M, int64_t N) {
    if (gb) colsum_into(ColOf{dy, N}, M, N, gb, 1.0f);
}

static void masked_bwd(TapeNode *n, const bf16 *dy, int64_t M, int64_t N, int64_t K, int64_t r) {
    Tensor *x = n->in[0], *w = n->in[1], *A = n->in[3], *B = n->in[4], *mask = n->in[5];
    Tensor *gx = grad_of(x), *gw = grad_of(w), *gA = grad_of(A), *gB = grad_of(B);
    float s = n->f[0];
    if (gx) input_grad(gx, dy, cbf(n->saved[0]), M, N, K);
    if (!gw && !gA && !gB) return;
    // Gm = (dyᵀ x) ⊙ mask, bf16 (N×K)
    bf16 *gm = (bf16 *)cuda_scratch(SCRATCH_A, (size_t)(N * K) * sizeof(bf16));
    Gemm g = gemm_into(NULL);
    g.ta = true;
    g.m = N, g.n = K, g.k = M;
    g.a = dy, g.lda = N;
    g.b = x->data, g.ldb = K;
    g.c = gm, g.ldc = K;
    g.beta = 0.0f;
    gemm(&g);
    DISPATCH_MASK(mask, MT, {
        apply_mask_kernel<MT><<<grid_for(N * K), 256, 0, cuda_stream()>>>(gm, (const MT *)mask->data, N * K);
    });
    CUDA_LAUNCH_CHECK();
    if (gw) cuda_acc_into(gw, gm, N * K, 1.0f);
    if (gA) {  // dA (r×K) += s·Bᵀ (r×N) · Gm (N×K)
        Gemm a = gemm_into(gA);
        a.ta = true;
        a.m = r, a.n = K, a.k = N;
        a.a = B->data, a.lda = r;
        a.b = gm, a.ldb = K;
        a.ldc = K;
        a.alpha = s;
        gemm(&a);
    }
    if (gB) {  // dB (N×r) += s·Gm (N×K) · Aᵀ (K×r)
        Gemm bq = gemm_into(gB);
        bq.tb = true;
        bq.m = N, bq.n = r, bq.k = K;
        bq.a = gm, bq.lda = K;
        bq.b = A->data, bq.ldb = K;
        bq.ldc = r;
        bq.alpha = s;
        gemm(&bq);
    }
}

static void lora_bwd(TapeNode *n, const bf16 *dy, int64_t M, int64_t N, int64_t K, int64_t r) {
    Tensor *x = n->in[0], *w = n->in[1], *A = n->in[3], *B = n->in[4];
    Tensor *gx = grad_of(x), *gA = grad_of(A), *gB = grad_of(B);
    float s = n->f[0], p = dropout_p(n);
    const bf16 *xd = p > 0.0f ? cbf(n->saved[1]) : cbf(x);
    const Tensor *h = n->saved[0];
    bool need_dh = gA || (gx && p > 0.0f);
    bf16 *dh = need_dh ? (bf16 *)cuda_scratch(SCRATCH_A, (size_t)(M * r) * sizeof(bf16)) : NULL;
    if (gB && need_dh && lora_dy_fused_ok(N, r)) {  // both from one pass over dy (lora_bwd.cu)
        lora_dy_fused(dy, cbf(B), cbf(h), dh, gB, M, N, s);
        need_dh = false;
    } else if (gB) {
        weight_grad(gB, dy, cbf(h), M, N, r, s);  // dB += s·dyᵀ·h
    }
    if (need_dh) {  // dh (M×r) = s·dy·B
        Gemm g = gemm_into(NULL);
        g.m = M, g.n = r, g.k = N;
        g.a = dy, g.lda = N;
        g.b = B->data, g.ldb = r;
        g.c = dh, g.ldc = r;
        g.alpha = s, g.beta = 0.0f;
        gemm(&g);
    }
    if (gA) weight_grad(gA, dh, xd, M, r, K, 1.0f);  // dA += dhᵀ·drop(x)
    if (!gx) return;
    if (p == 0.0f) {  // dx += dy·(W + s·B·A)
        bf16 *weff = (bf16 *)cuda_scratch(SCRATCH_B, (size_t)(N * K) * sizeof(bf16));
        merge_weight(w, A, B, NULL, s, weff);
        input_grad(gx, dy, weff, M, N, K);
        return;
    }
    input_grad(gx, dy, cbf(w), M, N, K);  // writes all of gx: the dropout term below adds
    float *t = (float *)cuda_scratch(SCRATCH_B, (size_t)(M * K) * sizeof(float));
    Gemm g = gemm_into(NULL);  // t = dh·A (M×K)
    g.m = M, g.n = K, g.k = r;
    g.a = dh, g.lda = r;
    g.b = A->data, g.ldb = K;
    g.c = t, g.ldc = K, g.c_type = CUDA_R_32F;
    g.beta = 0.0f;
    gemm(&g);
    DISPATCH_GRAD(gx->dtype, G, {
        dropout_bwd_kernel<G><<<grid_for(M * K), 256, 0, cuda_stream()>>>((G *)gx->data, t, M * K, p, (uint64_t)n->i[0],
                                                                           (uint64_t)n->i[1]);
    });
    CUDA_LAUNCH_CHECK();
}

void cuda_linear_bwd(TapeNode *n) {
    int64_t M, N, K, r;
    linear_dims(n, &M, &N, &K, &r);
    Tensor *y = n->out[0];
    cuda_expect(y->grad, DT_BF16, OPN, "output gradient");
    const bf16 *dy = cbf(y->grad);
    Tensor *x = n->in[0], *w = n->in[1];
    bias_grad(grad_of(n->in[2]), dy, M, N);
    if (n->in[5] && n->in[3]) {
        masked_bwd(n, dy, M, N, K, r);
    } else {
        if (grad_of(w)) weight_grad(grad_of(w), dy, cbf(x), M, N, K, 1.0f);
        if (!n->in[3] && grad_of(x)) input_grad(grad_of(x), dy, cbf(w), M, N, K);
        if (n->in[3]) lora_bwd(n, dy, M, N, K, r);
    }
    // op_linear_residual: after every use of dy above (the pass may move its buffer)
    if (grad_of(n->in[6])) cuda_grad_pass(grad_of(n->in[6]), y->grad);
}

// ---- patch embedding: im2col + GEMM ----
// cols (B·N, C·p·p) with column order (c, ky, kx), the order of w (D, C, p, p) flattened.
// Image offset of element i of cols.
__device__ __forceinline__ int64_t im2col_pixel(int64_t i, int C, int H, int W, int p) {
    int gw = W / p, np = (H / p) * gw, cpp = C * p * p;
    int col = (int)(i % cpp);
    int64_t row = i / cpp;
    int patch = (int)(row % np);
    int64_t b = row / np;
    int c = col / (p * p), ky = (col / p) % p, kx = col % p;
    int yy = (patch / gw) * p + ky, xx = (patch % gw) * p + kx;
    return ((b * C + c) * H + yy) * W + xx;
}

template <typename IT>
__global__ void im2col_kernel(const IT *img, bf16 *cols, int64_t B, int C, int H, int W, int p) {
    int64_t total = B * (int64_t)(H / p) * (W / p) * C * p * p;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        cols[i] = __float2bfloat16(to_f(img[im2col_pixel(i, C, H, W, p)]));
}

template <typename G>
__global__ void col2im_acc_kernel(G *gimg, const float *cols, int64_t B, int C, int H, int W, int p, bool add) {
    int64_t total = B * (int64_t)(H / p) * (W / p) * C * p * p;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        acc(gimg, im2col_pixel(i, C, H, W, p), cols[i], add);
}

struct PatchDims {
    int64_t B;
    int C, H, W, p, D;
    int64_t rows, cpp;
};

static PatchDims patch_dims(TapeNode *n) {
    Tensor *img = n->in[0], *w = n->in[1], *b = n->in[2];
    if (img->device != DEV_CUDA || (img->dtype != DT_BF16 && img->dtype != DT_F32))
        fatal("CUDA patch_embed: image '%s' must be bf16 or f32 on the GPU", img->name);
    cuda_expect(w, DT_BF16, "patch_embed", "weight");
    if (b) cuda_expect(b, DT_BF16, "patch_embed", "bias");
    PatchDims d;
    d.B = img->shape[0], d.C = (int)img->shape[1], d.H = (int)img->shape[2], d.W = (int)img->shape[3];
    d.p = (int)n->i[0], d.D = (int)w->shape[0];
    d.rows = d.B * (d.H / d.p) * (d.W / d.p);
    d.cpp = (int64_t)d.C * d.p * d.p;
    return d;
}

static bf16 *im2col(const Tensor *img, const PatchDims &d) {
    bf16 *cols = (bf16 *)cuda_scratch(SCRATCH_A, (size_t)(d.rows * d.cpp) * sizeof(bf16));
    if (img->dtype == DT_BF16)
        im2col_kernel<bf16><<<grid_for(d.rows * d.cpp), 256, 0, cuda_stream()>>>(cbf(img), cols, d.B, d.C, d.H, d.W, d.p);
    else
        im2col_kernel<float><<<grid_for(d.rows * d.cpp), 256, 0, cuda_stream()>>>((const float *)img->data, cols, d.B, d.C,
                                                                                   d.H, d.W, d.p);
    CUDA_LAUNCH_CHECK();
    return cols;
}

void cuda_patch_embed_fwd(TapeNode *n) {
    PatchDims d = patch_dims(n);
    cuda_expect(n->out[0], DT_BF16, "patch_embed", "output");
    bf16 *cols = im2col(n->in[0], d);
    linear_plain(cols, cbf(n->in[1]), n->in[2], NULL, mbf(n->out[0]), d.rows, d.D, d.cpp);
}

void cuda_patch_embed_bwd(TapeNode *n) {
    PatchDims d = patch_dims(n);
    Tensor *gimg = grad_of(n->in[0]), *gw = grad_of(n->in[1]), *gb = grad_of(n->in[2]);
    cuda_expect(n->out[0]->grad, DT_BF16, "patch_embed", "output gradient");
    const bf16 *dy = cbf(n->out[0]->grad);
    bias_grad(gb, dy, d.rows, d.D);
    if (gw) weight_grad(gw, dy, im2col(n->in[0], d), d.rows, d.D, d.cpp, 1.0f);
    if (gimg) {
        float *t = (float *)cuda_scratch(SCRATCH_B, (size_t)(d.rows * d.cpp) * sizeof(float));
        Gemm g = gemm_into(NULL);  // t = dy · w (rows × C·p·p)
        g.m = d.rows, g.n = d.cpp, g.k = d.D;
        g.a = dy, g.lda = d.D;
        g.b = n->in[1]->data, g.ldb = d.cpp;
        g.c = t, g.ldc = d.cpp, g.c_type = CUDA_R_32F;
        g.beta = 0.0f;
        gemm(&g);
        bool add = grad_accumulate(gimg);  // patches tile the image: every element is written
        DISPATCH_GRAD(gimg->dtype, G, {
            col2im_acc_kernel<G><<<grid_for(d.rows * d.cpp), 256, 0, cuda_stream()>>>((G *)gimg->data, t, d.B, d.C, d.H,
                                                                                        d.W, d.p, add);
        });
        CUDA_LAUNCH_CHECK();
    }
}
