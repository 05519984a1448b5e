// Embedding-side ops on the CPU: patch_embed, cls_pos, select_token, mean_tokens, embedding.
#include <string.h>

#include "cpu_kernels.h"
#include "util.h"

// ---- patch_embed: Conv2d(C, D, kernel = stride = p) as im2col + GEMM ----
// cols (B·N, C·p·p), row b·N + py·Wp + px, column c·p·p + ky·p + kx (the layout of w (D, C, p, p)),
// so out (B·N, D) = cols wᵀ + b, dw += doutᵀ cols, dcols = dout w (scattered back by col2im).
typedef struct PatchShape {
    int64_t B, C, H, W, p, Hp, Wp, N, D, K;  // K = C·p·p
} PatchShape;

static PatchShape patch_shape(const TapeNode *n) {
    const Tensor *img = n->in[0];
    PatchShape s = {.B = img->shape[0], .C = img->shape[1], .H = img->shape[2], .W = img->shape[3], .p = n->i[0],
                    .D = n->in[1]->shape[0]};
    s.Hp = s.H / s.p;
    s.Wp = s.W / s.p;
    s.N = s.Hp * s.Wp;
    s.K = s.C * s.p * s.p;
    return s;
}

// to_cols: cols <- img; else img += cols (col2im; patches do not overlap, so a plain add).
static void im2col(const PatchShape *s, float *img, float *cols, bool to_cols) {
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t py = 0; py < s->Hp; py++)
            for (int64_t px = 0; px < s->Wp; px++) {
                float *col = cols + ((b * s->Hp + py) * s->Wp + px) * s->K;
                for (int64_t c = 0; c < s->C; c++)
                    for (int64_t ky = 0; ky < s->p; ky++) {
                        float *pix = img + ((b * s->C + c) * s->H + py * s->p + ky) * s->W + px * s->p;
                        float *dst = col + (c * s->p + ky) * s->p;
                        if (to_cols) memcpy(dst, pix, (size_t)s->p * sizeof *dst);
                        else cpu_axpy1(pix, dst, s->p);
                    }
            }
}

void cpu_patch_embed_forward(TapeNode *n) {
    PatchShape s = patch_shape(n);
    float *out = cpu_f32(n, n->out[0]);
    ScratchMark m = cpu_scratch_begin(n);
    float *cols = cpu_scratch(n, s.B * s.N * s.K);
    im2col(&s, cpu_f32(n, n->in[0]), cols, true);
    cpu_gemm(false, true, (int)(s.B * s.N), (int)s.D, (int)s.K, 1.0f, cols, (int)s.K, cpu_f32(n, n->in[1]), (int)s.K,
             0.0f, out, (int)s.D);
    if (n->in[2]) {
        const float *bias = cpu_f32(n, n->in[2]);
        for (int64_t r = 0; r < s.B * s.N; r++) cpu_axpy1(out + r * s.D, bias, s.D);
    }
    cpu_scratch_end(n, m);
}

void cpu_patch_embed_backward(TapeNode *n) {
    PatchShape s = patch_shape(n);
    const float *dout = tensor_f32(n->out[0]->grad);
    float *dimg = cpu_grad(n->in[0]), *dw = cpu_grad(n->in[1]), *db = cpu_grad(n->in[2]);
    int rows = (int)(s.B * s.N);
    ScratchMark m = cpu_scratch_begin(n);
    float *cols = cpu_scratch(n, rows * s.K);
    if (dw) {
        im2col(&s, cpu_f32(n, n->in[0]), cols, true);
        cpu_gemm(true, false, (int)s.D, (int)s.K, rows, 1.0f, dout, (int)s.D, cols, (int)s.K, 1.0f, dw, (int)s.K);
    }
    if (dimg) {
        cpu_gemm(false, false, rows, (int)s.K, (int)s.D, 1.0f, dout, (int)s.D, cpu_f32(n, n->in[1]), (int)s.K, 0.0f,
                 cols, (int)s.K);
        im2col(&s, dimg, cols, false);
    }
    if (db) cpu_add_colsum(db, dout, rows, s.D);
    cpu_scratch_end(n, m);
}

// ---- cls_pos: out[:, 0] = cls + pos[0], out[:, 1 + i] = x[:, i] + pos[1 + i] ----
void cpu_cls_pos_forward(TapeNode *n) {
    const Tensor *xt = n->in[0];
    int64_t B = xt->shape[0], N = xt->shape[1], D = xt->shape[2];
    const float *x = cpu_f32(n, xt), *cls = cpu_f32(n, n->in[1]), *pos = cpu_f32(n, n->in[2]);
    float *out = cpu_f32(n, n->out[0]);
    for (int64_t b = 0; b < B; b++) {
        float *ob = out + b * (N + 1) * D;
        memcpy(ob, cls, (size_t)D * sizeof *ob);
        memcpy(ob + D, x + b * N * D, (size_t)(N * D) * sizeof *ob);
        cpu_axpy1(ob, pos, (N + 1) * D);
    }
}

void cpu_cls_pos_backward(TapeNode *n) {
    const Tensor *xt = n->in[0];
    int64_t B = xt->shape[0], N = xt->shape[1], D = xt->shape[2];
    const float *dout = tensor_f32(n->out[0]->grad);
    float *dx = cpu_grad(xt), *dcls = cpu_grad(n->in[1]), *dpos = cpu_grad(n->in[2]);
    for (int64_t b = 0; b < B; b++) {
        const float *db = dout + b * (N + 1) * D;
        if (dcls) cpu_axpy1(dcls, db, D);
        if (dpos) cpu_axpy1(dpos, db, (N + 1) * D);
        if (dx) cpu_axpy1(dx + b * N * D, db + D, N * D);
    }
}

// ---- select_token / mean_tokens: x (B, T, D) -> (B, D) ----
// Token t of batch b contributes weight(t) · x[b, t] to out[b]; backward gives dx[b, t] += weight(t) · dy[b].
// select_token: weight 1 at t = i[0]; mean_tokens: 1/(T - i[0]) for t >= i[0].
static void token_range(const TapeNode *n, int64_t *t0, int64_t *t1, float *weight) {
    int64_t T = n->in[0]->shape[1];
    *t0 = n->i[0];
    *t1 = n->op == OP_SELECT_TOKEN ? *t0 + 1 : T;
    *weight = 1.0f / (float)(*t1 - *t0);
}

static void token_reduce_forward(TapeNode *n) {
    const Tensor *xt = n->in[0];
    int64_t B = xt->shape[0], T = xt->shape[1], D = xt->shape[2], t0, t1;
    float weight;
    token_range(n, &t0, &t1, &weight);
    const float *x = cpu_f32(n, xt);
    float *out = cpu_f32(n, n->out[0]);
    for (int64_t b = 0; b < B; b++) {
        float *o = out + b * D;
        memset(o, 0, (size_t)D * sizeof *o);
        for (int64_t t = t0; t < t1; t++) cpu_axpy1(o, x + (b * T + t) * D, D);
        if (weight != 1.0f)
            for (int64_t d = 0; d < D; d++) o[d] *= weight;
    }
}

static void token_reduce_backward(TapeNode *n) {
    float *dx = cpu_grad(n->in[0]);
    if (!dx) return;
    const Tensor *xt = n->in[0];
    int64_t B = xt->shape[0], T = xt->shape[1], D = xt->shape[2], t0, t1;
    float weight;
    token_range(n, &t0, &t1, &weight);
    const float *dy = tensor_f32(n->out[0]->grad);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = t0; t < t1; t++) {
            float *d = dx + (b * T + t) * D;
            for (int64_t k = 0; k < D; k++) d[k] += weight * dy[b * D + k];
        }
}

void cpu_select_token_forward(TapeNode *n) { token_reduce_forward(n); }
void cpu_select_token_backward(TapeNode *n) { token_reduce_backward(n); }
void cpu_mean_tokens_forward(TapeNode *n) { token_reduce_forward(n); }
void cpu_mean_tokens_backward(TapeNode *n) { token_reduce_backward(n); }

// ---- embedding: out[..., :] = table[ids[...], :]; dtable[id] += dout rows ----
static int64_t embedding_id(const TapeNode *n, int64_t k) {
    int32_t id = ((const int32_t *)n->in[0]->data)[k];
    int64_t V = n->in[1]->shape[0];
    if (id < 0 || id >= V) fatal("op embedding '%s': id %d at position %lld is outside [0, %lld)", n->out[0]->name, id, (long long)k, (long long)V);
    return id;
}

void cpu_embedding_forward(TapeNode *n) {
    int64_t D = n->in[1]->shape[1];
    const float *table = cpu_f32(n, n->in[1]);
    float *out = cpu_f32(n, n->out[0]);
    for (int64_t k = 0; k < n->in[0]->numel; k++)
        memcpy(out + k * D, table + embedding_id(n, k) * D, (size_t)D * sizeof *out);
}

void cpu_embedding_backward(TapeNode *n) {
    float *dtable = cpu_grad(n->in[1]);
    if (!dtable) return;
    int64_t D = n->in[1]->shape[1];
    const float *dout = tensor_f32(n->out[0]->grad);
    for (int64_t k = 0; k < n->in[0]->numel; k++) cpu_axpy1(dtable + embedding_id(n, k) * D, dout + k * D, D);
}
