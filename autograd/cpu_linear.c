// op_linear on the CPU: y = x Wᵀ + b (+ residual) with a dense LoRA branch or a masked LoRA weight
// (ops.h).
// Dense LoRA keeps h = drop(x) Aᵀ (rows, r) in saved[0] for the dB gradient; the dropout mask is
// recomputed from hash_uniform(seed=i[0], stream=i[1], index of the element of x).
// Masked mode rebuilds W' = (W + s·B A) ⊙ mask in scratch in forward and again in backward
// (an out×in×r GEMM, cheap next to the rows×out×in ones) rather than keeping it per layer.
#include <string.h>

#include "cpu_kernels.h"
#include "rng.h"
#include "util.h"

typedef struct LinearArgs {
    Tensor *x, *w, *b, *A, *B, *mask, *y;
    int rows, in, out, r;
    float scale, dropout;
    bool use_dropout;  // dense LoRA, training, dropout > 0
} LinearArgs;

static LinearArgs linear_args(const TapeNode *n) {
    LinearArgs a = {.x = n->in[0], .w = n->in[1], .b = n->in[2], .A = n->in[3], .B = n->in[4], .mask = n->in[5],
                    .y = n->out[0], .scale = n->f[0], .dropout = n->f[1]};
    a.in = (int)a.w->shape[1];
    a.out = (int)a.w->shape[0];
    a.rows = (int)cpu_rows(a.x);
    a.r = a.A ? (int)a.A->shape[0] : 0;
    a.use_dropout = a.A && !a.mask && n->tape->training && a.dropout > 0.0f;
    return a;
}

// dst = drop(src) over the rows×in elements of x: kept elements scaled by 1/(1-p).
static void dropout_apply(const TapeNode *n, const LinearArgs *a, float *dst, const float *src) {
    uint64_t seed = (uint64_t)n->i[0], stream = (uint64_t)n->i[1];
    float p = a->dropout, keep_scale = 1.0f / (1.0f - p);
    int64_t count = (int64_t)a->rows * a->in;
    for (int64_t e = 0; e < count; e++)
        dst[e] = hash_uniform(seed, stream, (uint64_t)e) >= p ? src[e] * keep_scale : 0.0f;
}

// v[e] *= mask[e] (mask u8 or f32 of 0/1)
static void mask_multiply(float *v, const Tensor *mask) {
    if (mask->dtype == DT_U8) {
        const uint8_t *m = mask->data;
        for (int64_t e = 0; e < mask->numel; e++) v[e] = m[e] ? v[e] : 0.0f;
    } else {
        const float *m = tensor_f32(mask);
        for (int64_t e = 0; e < mask->numel; e++) v[e] *= m[e];
    }
}

// W' = (W + s·B A) ⊙ mask into wm (out, in).
static void masked_weight(const TapeNode *n, const LinearArgs *a, float *wm) {
    memcpy(wm, cpu_f32(n, a->w), (size_t)a->out * a->in * sizeof *wm);
    if (a->A)
        cpu_gemm(false, false, a->out, a->in, a->r, a->scale, cpu_f32(n, a->B), a->r, cpu_f32(n, a->A), a->in, 1.0f,
                 wm, a->in);
    mask_multiply(wm, a->mask);
}

static void add_bias(float *y, const float *b, int rows, int out) {
    for (int r = 0; r < rows; r++) cpu_axpy1(y + (int64_t)r * out, b, out);
}

void cpu_linear_forward(TapeNode *n) {
    LinearArgs a = linear_args(n);
    const float *x = cpu_f32(n, a.x);
    float *y = cpu_f32(n, a.y);
    if (a.mask) {
        ScratchMark m = cpu_scratch_begin(n);
        float *wm = cpu_scratch(n, (int64_t)a.out * a.in);
        masked_weight(n, &a, wm);
        cpu_gemm(false, true, a.rows, a.out, a.in, 1.0f, x, a.in, wm, a.in, 0.0f, y, a.out);
        cpu_scratch_end(n, m);
    } else {
        cpu_gemm(false, true, a.rows, a.out, a.in, 1.0f, x, a.in, cpu_f32(n, a.w), a.in, 0.0f, y, a.out);
        if (a.A) {
            int64_t hshape[2] = {a.rows, a.r};
            float *h = cpu_recording(n) ? tensor_f32(cpu_save(n, 0, 2, hshape, "lora_h")) : NULL;
            ScratchMark m = cpu_scratch_begin(n);
            if (!h) h = cpu_scratch(n, (int64_t)a.rows * a.r);
            const float *xd = x;
            if (a.use_dropout) {
                float *buf = cpu_scratch(n, (int64_t)a.rows * a.in);
                dropout_apply(n, &a, buf, x);
                xd = buf;
            }
            cpu_gemm(false, true, a.rows, a.r, a.in, 1.0f, xd, a.in, cpu_f32(n, a.A), a.in, 0.0f, h, a.r);
            cpu_gemm(false, true, a.rows, a.out, a.r, a.scale, h, a.r, cpu_f32(n, a.B), a.r, 1.0f, y, a.out);
            cpu_scratch_end(n, m);
        }
    }
    if (a.b) add_bias(y, cpu_f32(n, a.b), a.rows, a.out);
    if (n->in[6]) cpu_axpy1(y, cpu_f32(n, n->in[6]), (int64_t)a.rows * a.out);  // op_linear_residual
}

// Masked mode: dx = dy W'; G = dyᵀ x; dW += G⊙M; dA += s·Bᵀ(G⊙M); dB += s·(G⊙M)Aᵀ.
// G = (dyᵀ x) ⊙ mask for a V:N:M mask (DESIGN.md §2, SDDMM): each block of V output rows keeps at
// most 4 columns per M-wide column block, so per row block the kept columns of x are gathered
// (rows × K, K ≤ 4·in/M) and one GEMM dy_blockᵀ x_kept gives G there; the rest of G is zero.
// About 4/M of the dense dyᵀx FLOPs.
static void vnm_sddmm(TapeNode *n, const LinearArgs *a, const float *dy, float *g) {
    int V = (int)n->i[2], kmax = 4 * (a->in / (int)n->i[3]);  // ≤ 4 kept columns per column block
    const uint8_t *mask = a->mask->data;
    const float *x = cpu_f32(n, a->x);
    int *cols = (int *)cpu_scratch(n, a->in);
    float *xg = cpu_scratch(n, (int64_t)a->rows * kmax), *gb = cpu_scratch(n, (int64_t)V * kmax);
    memset(g, 0, (size_t)a->out * a->in * sizeof *g);
    for (int r0 = 0; r0 < a->out; r0 += V) {
        int K = 0;
        for (int j = 0; j < a->in; j++) {
            bool kept = false;
            for (int v = 0; v < V && !kept; v++) kept = mask[(int64_t)(r0 + v) * a->in + j];
            if (kept) cols[K++] = j;
        }
        if (K > kmax) fatal("op_linear('%s'): the mask is not V:N:M (%d kept columns in rows %d..%d)", a->y->name, K, r0, r0 + V - 1);
        if (!K) continue;
        for (int t = 0; t < a->rows; t++)
            for (int k = 0; k < K; k++) xg[(int64_t)t * K + k] = x[(int64_t)t * a->in + cols[k]];
        cpu_gemm(true, false, V, K, a->rows, 1.0f, dy + r0, a->out, xg, K, 0.0f, gb, K);
        for (int v = 0; v < V; v++)
            for (int k = 0; k < K; k++) g[(int64_t)(r0 + v) * a->in + cols[k]] = gb[(int64_t)v * K + k];
    }
    mask_multiply(g, a->mask);  // inside the kept columns, each row keeps 2 of the 4
}

static void masked_backward(TapeNode *n, const LinearArgs *a, const float *dy, float *dx, float *dw, float *dA,
                            float *dB) {
    ScratchMark m = cpu_scratch_begin(n);
    if (dx) {
        float *wm = cpu_scratch(n, (int64_t)a->out * a->in);
        masked_weight(n, a, wm);
        cpu_gemm(false, false, a->rows, a->in, a->out, 1.0f, dy, a->out, wm, a->in, 1.0f, dx, a->in);
    }
    if (dw || dA || dB) {
        float *g = cpu_scratch(n, (int64_t)a->out * a->in);
        if (n->i[2] > 0) {
            vnm_sddmm(n, a, dy, g);
        } else {
            cpu_gemm(true, false, a->out, a->in, a->rows, 1.0f, dy, a->out, cpu_f32(n, a->x), a->in, 0.0f, g, a->in);
            mask_multiply(g, a->mask);
        }
        if (dw) cpu_axpy1(dw, g, (int64_t)a->out * a->in);
        if (dA)
            cpu_gemm(true, false, a->r, a->in, a->out, a->scale, cpu_f32(n, a->B), a->r, g, a->in, 1.0f, dA, a->in);
        if (dB)
            cpu_gemm(false, true, a->out, a->r, a->in, a->scale, g, a->in, cpu_f32(n, a->A), a->in, 1.0f, dB, a->r);
    }
    cpu_scratch_end(n, m);
}

// Dense LoRA branch: y += s·h Bᵀ with h = xd Aᵀ, xd = drop(x).
//   dB += s·dyᵀ h;  dh = s·dy B;  dA += dhᵀ xd;  dx += drop'(dh A).
static void lora_backward(TapeNode *n, const LinearArgs *a, const float *dy, float *dx, float *dA, float *dB) {
    const float *x = cpu_f32(n, a->x), *A = cpu_f32(n, a->A), *B = cpu_f32(n, a->B);
    if (dB) cpu_gemm(true, false, a->out, a->r, a->rows, a->scale, dy, a->out, tensor_f32(n->saved[0]), a->r, 1.0f, dB, a->r);
    if (!dA && !dx) return;
    ScratchMark m = cpu_scratch_begin(n);
    int64_t count = (int64_t)a->rows * a->in;
    float *dh = cpu_scratch(n, (int64_t)a->rows * a->r);
    cpu_gemm(false, false, a->rows, a->r, a->out, a->scale, dy, a->out, B, a->r, 0.0f, dh, a->r);
    if (dA) {
        const float *xd = x;
        if (a->use_dropout) {
            float *buf = cpu_scratch(n, count);
            dropout_apply(n, a, buf, x);
            xd = buf;
        }
        cpu_gemm(true, false, a->r, a->in, a->rows, 1.0f, dh, a->r, xd, a->in, 1.0f, dA, a->in);
    }
    if (dx && !a->use_dropout) cpu_gemm(false, false, a->rows, a->in, a->r, 1.0f, dh, a->r, A, a->in, 1.0f, dx, a->in);
    if (dx && a->use_dropout) {
        float *dxd = cpu_scratch(n, count);
        cpu_gemm(false, false, a->rows, a->in, a->r, 1.0f, dh, a->r, A, a->in, 0.0f, dxd, a->in);
        float *dropped = cpu_scratch(n, count);
        dropout_apply(n, a, dropped, dxd);  // the dropout is linear: its transpose is itself
        cpu_axpy1(dx, dropped, count);
    }
    cpu_scratch_end(n, m);
}

void cpu_linear_backward(TapeNode *n) {
    LinearArgs a = linear_args(n);
    const float *dy = tensor_f32(a.y->grad);
    float *dx = cpu_grad(a.x), *dw = cpu_grad(a.w), *db = cpu_grad(a.b), *dA = cpu_grad(a.A), *dB = cpu_grad(a.B);
    if (a.mask) {
        masked_backward(n, &a, dy, dx, dw, dA, dB);
    } else {
        const float *x = cpu_f32(n, a.x), *w = cpu_f32(n, a.w);
        if (dx) cpu_gemm(false, false, a.rows, a.in, a.out, 1.0f, dy, a.out, w, a.in, 1.0f, dx, a.in);
        if (dw) cpu_gemm(true, false, a.out, a.in, a.rows, 1.0f, dy, a.out, x, a.in, 1.0f, dw, a.in);
        if (a.A) lora_backward(n, &a, dy, dx, dA, dB);
    }
    if (db) cpu_add_colsum(db, dy, a.rows, a.out);
    float *dres = cpu_grad(n->in[6]);
    if (dres) cpu_axpy1(dres, dy, (int64_t)a.rows * a.out);
}
