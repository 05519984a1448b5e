// Multi-head self-attention core on a fused qkv (CPU). For each (batch b, head h) the head's
// q, k, v (T, D) are gathered from qkv (B, T, 3, H, D) into contiguous scratch, then
//   S = q kᵀ / √D (+ causal: S[i][j] = -inf for j > i),  P = softmax_rows(S),  o = P v
// and o is scattered into out (B, T, H·D). P is saved[0] (B, H, T, T). Backward:
//   dP = do vᵀ,  dv = Pᵀ do,  dS = P ⊙ (dP - rowsum(dP ⊙ P)) / √D,  dq = dS k,  dk = dSᵀ q.
#include <math.h>
#include <string.h>

#include "cpu_kernels.h"
#include "util.h"

typedef struct AttnShape {
    int B, T, H, D, C;
    float scale;
    bool causal;
} AttnShape;

static AttnShape attn_shape(const TapeNode *n) {
    const Tensor *qkv = n->in[0];
    AttnShape s = {.B = (int)qkv->shape[0], .T = (int)qkv->shape[1], .H = (int)n->i[0], .causal = n->i[1] != 0};
    s.C = (int)(qkv->shape[2] / 3);
    s.D = s.C / s.H;
    s.scale = 1.0f / sqrtf((float)s.D);
    return s;
}

// dst (T, D) <- src[b, :, col : col + D] of a (B, T, stride) tensor
static void gather_cols(const AttnShape *s, const float *src, int64_t stride, int b, int64_t col, float *dst) {
    for (int t = 0; t < s->T; t++)
        memcpy(dst + (int64_t)t * s->D, src + ((int64_t)b * s->T + t) * stride + col, (size_t)s->D * sizeof *dst);
}

// dst[b, :, col : col + D] (+)= src (T, D) of a (B, T, stride) tensor
static void scatter_cols(const AttnShape *s, float *dst, int64_t stride, int b, int64_t col, const float *src,
                         bool add) {
    for (int t = 0; t < s->T; t++) {
        float *d = dst + ((int64_t)b * s->T + t) * stride + col;
        if (add) cpu_axpy1(d, src + (int64_t)t * s->D, s->D);
        else memcpy(d, src + (int64_t)t * s->D, (size_t)s->D * sizeof *d);
    }
}

// q, k, v (T, D) of head h, batch b from qkv (B, T, 3, H, D)
static void gather_qkv(const AttnShape *s, const float *qkv, int b, int h, float *q, float *k, float *v) {
    int64_t stride = 3 * (int64_t)s->C, col = (int64_t)h * s->D;
    gather_cols(s, qkv, stride, b, col, q);
    gather_cols(s, qkv, stride, b, s->C + col, k);
    gather_cols(s, qkv, stride, b, 2 * (int64_t)s->C + col, v);
}

// In-place row softmax of S (T, T); the causal mask drops j > i.
static void softmax_rows(const AttnShape *s, float *S) {
    for (int i = 0; i < s->T; i++) {
        float *row = S + (int64_t)i * s->T;
        int len = s->causal ? i + 1 : s->T;
        float mx = row[0];
        for (int j = 1; j < len; j++) mx = row[j] > mx ? row[j] : mx;
        double sum = 0.0;
        for (int j = 0; j < len; j++) {
            row[j] = expf(row[j] - mx);
            sum += row[j];
        }
        float inv = (float)(1.0 / sum);
        for (int j = 0; j < len; j++) row[j] *= inv;
        for (int j = len; j < s->T; j++) row[j] = 0.0f;
    }
}

void cpu_attention_forward(TapeNode *n) {
    AttnShape s = attn_shape(n);
    const float *qkv = cpu_f32(n, n->in[0]);
    float *out = cpu_f32(n, n->out[0]);
    int64_t tt = (int64_t)s.T * s.T, td = (int64_t)s.T * s.D;
    int64_t pshape[4] = {s.B, s.H, s.T, s.T};
    float *probs = cpu_recording(n) ? tensor_f32(cpu_save(n, 0, 4, pshape, "probs")) : NULL;
    ScratchMark m = cpu_scratch_begin(n);
    float *q = cpu_scratch(n, td), *k = cpu_scratch(n, td), *v = cpu_scratch(n, td), *o = cpu_scratch(n, td);
    float *scratch_p = probs ? NULL : cpu_scratch(n, tt);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++) {
            float *P = probs ? probs + ((int64_t)b * s.H + h) * tt : scratch_p;
            gather_qkv(&s, qkv, b, h, q, k, v);
            cpu_gemm(false, true, s.T, s.T, s.D, s.scale, q, s.D, k, s.D, 0.0f, P, s.T);
            softmax_rows(&s, P);
            cpu_gemm(false, false, s.T, s.D, s.T, 1.0f, P, s.T, v, s.D, 0.0f, o, s.D);
            scatter_cols(&s, out, s.C, b, (int64_t)h * s.D, o, false);
        }
    cpu_scratch_end(n, m);
}

void cpu_attention_backward(TapeNode *n) {
    float *dqkv = cpu_grad(n->in[0]);
    if (!dqkv) return;
    AttnShape s = attn_shape(n);
    const float *qkv = cpu_f32(n, n->in[0]), *probs = tensor_f32(n->saved[0]);
    const float *dout = tensor_f32(n->out[0]->grad);
    int64_t tt = (int64_t)s.T * s.T, td = (int64_t)s.T * s.D;
    ScratchMark m = cpu_scratch_begin(n);
    float *q = cpu_scratch(n, td), *k = cpu_scratch(n, td), *v = cpu_scratch(n, td), *dO = cpu_scratch(n, td);
    float *dq = cpu_scratch(n, td), *dk = cpu_scratch(n, td), *dv = cpu_scratch(n, td), *dS = cpu_scratch(n, tt);
    for (int b = 0; b < s.B; b++)
        for (int h = 0; h < s.H; h++) {
            const float *P = probs + ((int64_t)b * s.H + h) * tt;
            gather_qkv(&s, qkv, b, h, q, k, v);
            gather_cols(&s, dout, s.C, b, (int64_t)h * s.D, dO);
            cpu_gemm(true, false, s.T, s.D, s.T, 1.0f, P, s.T, dO, s.D, 0.0f, dv, s.D);
            cpu_gemm(false, true, s.T, s.T, s.D, 1.0f, dO, s.D, v, s.D, 0.0f, dS, s.T);  // dP
            for (int i = 0; i < s.T; i++) {
                const float *p = P + (int64_t)i * s.T;
                float *row = dS + (int64_t)i * s.T;
                double dot = 0.0;
                for (int j = 0; j < s.T; j++) dot += (double)row[j] * p[j];
                for (int j = 0; j < s.T; j++) row[j] = p[j] * (row[j] - (float)dot) * s.scale;
            }
            cpu_gemm(false, false, s.T, s.D, s.T, 1.0f, dS, s.T, k, s.D, 0.0f, dq, s.D);
            cpu_gemm(true, false, s.T, s.D, s.T, 1.0f, dS, s.T, q, s.D, 0.0f, dk, s.D);
            int64_t stride = 3 * (int64_t)s.C;
            int64_t col = (int64_t)h * s.D;
            scatter_cols(&s, dqkv, stride, b, col, dq, true);
            scatter_cols(&s, dqkv, stride, b, s.C + col, dk, true);
            scatter_cols(&s, dqkv, stride, b, 2 * (int64_t)s.C + col, dv, true);
        }
    cpu_scratch_end(n, m);
}

// ---- attention over a KV cache (inference): see op_attention_cached in ops.h ----
// Per (b, h, new token i): scores over positions j <= pos + i, softmax, weighted sum of V rows.
void cpu_attention_cached_forward(TapeNode *n) {
    const Tensor *qt = n->in[0];
    int64_t B = qt->shape[0], Tn = qt->shape[1], C = qt->shape[2], H = n->i[0], D = C / H, pos = cpu_position(n, 5);
    int64_t Tmax = n->in[3]->shape[1];
    if (pos < 0 || pos + Tn > Tmax)
        fatal("attention_cached '%s': positions [%lld, %lld) do not fit the cache of %lld positions", n->out[0]->name,
              (long long)pos, (long long)(pos + Tn), (long long)Tmax);
    const float *q = cpu_f32(n, qt), *k = cpu_f32(n, n->in[1]), *v = cpu_f32(n, n->in[2]);
    float *kc = cpu_f32(n, n->in[3]), *vc = cpu_f32(n, n->in[4]), *out = cpu_f32(n, n->out[0]);
    for (int64_t b = 0; b < B; b++) {  // append the new keys and values
        size_t bytes = (size_t)(Tn * C) * sizeof *kc;
        memcpy(kc + (b * Tmax + pos) * C, k + b * Tn * C, bytes);
        memcpy(vc + (b * Tmax + pos) * C, v + b * Tn * C, bytes);
    }
    float scale = 1.0f / sqrtf((float)D);
    ScratchMark m = cpu_scratch_begin(n);
    float *p = cpu_scratch(n, pos + Tn);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < Tn; i++)
            for (int64_t h = 0; h < H; h++) {
                const float *qi = q + (b * Tn + i) * C + h * D;
                int64_t len = pos + i + 1;
                float mx = -INFINITY;
                for (int64_t j = 0; j < len; j++) {
                    const float *kj = kc + (b * Tmax + j) * C + h * D;
                    float s = 0.0f;
                    for (int64_t d = 0; d < D; d++) s += qi[d] * kj[d];
                    p[j] = s * scale;
                    mx = fmaxf(mx, p[j]);
                }
                double sum = 0.0;
                for (int64_t j = 0; j < len; j++) sum += p[j] = expf(p[j] - mx);
                float *o = out + (b * Tn + i) * C + h * D;
                memset(o, 0, (size_t)D * sizeof *o);
                for (int64_t j = 0; j < len; j++) {
                    const float *vj = vc + (b * Tmax + j) * C + h * D;
                    float w = (float)(p[j] / sum);
                    for (int64_t d = 0; d < D; d++) o[d] += w * vj[d];
                }
            }
    cpu_scratch_end(n, m);
}
