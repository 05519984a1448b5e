// Elementwise ops on the CPU: gelu, add, swiglu, rope, concat.
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"

// ---- gelu: x·Φ(x), Φ the standard normal CDF; d/dx = Φ(x) + x·φ(x) ----
static float normal_cdf(float x) { return 0.5f * (1.0f + erff(x * 0.70710678118654752f)); }
static float normal_pdf(float x) { return 0.39894228040143268f * expf(-0.5f * x * x); }

void cpu_gelu_forward(TapeNode *n) {
    const float *x = cpu_f32(n, n->in[0]);
    float *y = cpu_f32(n, n->out[0]);
    for (int64_t e = 0; e < n->in[0]->numel; e++) y[e] = x[e] * normal_cdf(x[e]);
}

void cpu_gelu_backward(TapeNode *n) {
    float *dx = cpu_grad(n->in[0]);
    if (!dx) return;
    const float *x = cpu_f32(n, n->in[0]), *dy = tensor_f32(n->out[0]->grad);
    for (int64_t e = 0; e < n->in[0]->numel; e++) dx[e] += dy[e] * (normal_cdf(x[e]) + x[e] * normal_pdf(x[e]));
}

// ---- add ----
void cpu_add_forward(TapeNode *n) {
    const float *a = cpu_f32(n, n->in[0]), *b = cpu_f32(n, n->in[1]);
    float *y = cpu_f32(n, n->out[0]);
    for (int64_t e = 0; e < n->out[0]->numel; e++) y[e] = a[e] + b[e];
}

void cpu_add_backward(TapeNode *n) {
    const float *dy = tensor_f32(n->out[0]->grad);
    for (int k = 0; k < 2; k++) {
        float *dx = cpu_grad(n->in[k]);
        if (dx) cpu_axpy1(dx, dy, n->out[0]->numel);
    }
}

// ---- swiglu: silu(g)·u, silu(g) = g·σ(g), silu'(g) = σ(g)·(1 + g·(1 - σ(g))) ----
static float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

void cpu_swiglu_forward(TapeNode *n) {
    const float *g = cpu_f32(n, n->in[0]), *u = cpu_f32(n, n->in[1]);
    float *y = cpu_f32(n, n->out[0]);
    for (int64_t e = 0; e < n->out[0]->numel; e++) y[e] = g[e] * sigmoid(g[e]) * u[e];
}

void cpu_swiglu_backward(TapeNode *n) {
    const float *g = cpu_f32(n, n->in[0]), *u = cpu_f32(n, n->in[1]), *dy = tensor_f32(n->out[0]->grad);
    float *dg = cpu_grad(n->in[0]), *du = cpu_grad(n->in[1]);
    for (int64_t e = 0; e < n->out[0]->numel; e++) {
        float sg = sigmoid(g[e]);
        if (dg) dg[e] += dy[e] * u[e] * sg * (1.0f + g[e] * (1.0f - sg));
        if (du) du[e] += dy[e] * g[e] * sg;
    }
}

// ---- rope (HF Llama rotate_half): per head, with half = D/2 and for d < half, at position
// p = p0 + t (p0: the first position, i[1] or the position tensor in[1]),
//   angle = p · inv_freq[d],  inv_freq[d] = theta^(-2d/D)   (fp32, as HF computes it)
//   y[d] = x[d]·cos - x[d+half]·sin,  y[d+half] = x[d+half]·cos + x[d]·sin
// Backward applies the inverse rotation (angle -> -angle) to dy.
typedef struct RopeShape {
    int64_t B, T, H, D;
} RopeShape;

static RopeShape rope_shape(const TapeNode *n) {
    const Tensor *x = n->in[0];
    RopeShape s = {.B = x->shape[0], .T = x->shape[1], .H = n->i[0]};
    s.D = (x->ndim == 3 ? x->shape[2] : x->shape[2] * x->shape[3]) / s.H;
    return s;
}

// cos/sin tables (T, D/2) into scratch.
static void rope_tables(const TapeNode *n, const RopeShape *s, float *cos_t, float *sin_t) {
    int64_t half = s->D / 2, p0 = cpu_position(n, 1);
    for (int64_t d = 0; d < half; d++) {
        float inv_freq = (float)(1.0 / pow((double)n->f[0], (double)(2 * d) / (double)s->D));
        for (int64_t t = 0; t < s->T; t++) {
            float angle = (float)(t + p0) * inv_freq;
            cos_t[t * half + d] = (float)cos((double)angle);
            sin_t[t * half + d] = (float)sin((double)angle);
        }
    }
}

// dst = rotate(src) by +angle (sign = 1) or -angle (sign = -1); `add` accumulates into dst.
static void rope_apply(const TapeNode *n, const float *src, float *dst, float sign, bool add) {
    RopeShape s = rope_shape(n);
    int64_t half = s.D / 2;
    ScratchMark m = cpu_scratch_begin(n);
    float *cos_t = cpu_scratch(n, s.T * half), *sin_t = cpu_scratch(n, s.T * half);
    rope_tables(n, &s, cos_t, sin_t);
    for (int64_t b = 0; b < s.B; b++)
        for (int64_t t = 0; t < s.T; t++)
            for (int64_t h = 0; h < s.H; h++) {
                int64_t off = ((b * s.T + t) * s.H + h) * s.D;
                const float *x = src + off, *c = cos_t + t * half, *sn = sin_t + t * half;
                float *y = dst + off;
                for (int64_t d = 0; d < half; d++) {
                    float x1 = x[d], x2 = x[d + half], si = sign * sn[d];
                    float y1 = x1 * c[d] - x2 * si, y2 = x2 * c[d] + x1 * si;
                    if (add) {
                        y[d] += y1;
                        y[d + half] += y2;
                    } else {
                        y[d] = y1;
                        y[d + half] = y2;
                    }
                }
            }
    cpu_scratch_end(n, m);
}

void cpu_rope_forward(TapeNode *n) { rope_apply(n, cpu_f32(n, n->in[0]), cpu_f32(n, n->out[0]), 1.0f, false); }

void cpu_rope_backward(TapeNode *n) {
    float *dx = cpu_grad(n->in[0]);
    if (dx) rope_apply(n, tensor_f32(n->out[0]->grad), dx, -1.0f, true);
}

// ---- concat along the last dim: out[r, off_k + c] = x_k[r, c]; dx_k[r, c] += dout[r, off_k + c] ----
static void concat_copy(TapeNode *n, bool backward) {
    int64_t rows = cpu_rows(n->out[0]), width = cpu_last(n->out[0]), off = 0;
    float *out = backward ? tensor_f32(n->out[0]->grad) : cpu_f32(n, n->out[0]);
    for (int k = 0; k < n->nin; k++) {
        const Tensor *x = n->in[k];
        int64_t w = cpu_last(x);
        float *part = backward ? cpu_grad(x) : cpu_f32(n, x);
        for (int64_t r = 0; part && r < rows; r++) {
            if (backward) cpu_axpy1(part + r * w, out + r * width + off, w);
            else memcpy(out + r * width + off, part + r * w, (size_t)w * sizeof *out);
        }
        off += w;
    }
}

void cpu_concat_forward(TapeNode *n) { concat_copy(n, false); }
void cpu_concat_backward(TapeNode *n) { concat_copy(n, true); }
