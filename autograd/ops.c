// The op constructors: check shapes, allocate outputs from the tape's activation arena, fill the
// TapeNode as documented in ops.h and hand it to tape_exec (which runs and records it).
#include "ops.h"

#include <stdio.h>
#include <string.h>

#include "util.h"

// "[2, 3, 4]" for error messages (a few rotating buffers, so one message can show several shapes).
static const char *shape_of(const Tensor *t) {
    static char bufs[4][64];
    static int next;
    char *b = bufs[next++ % 4];
    return t ? tensor_shape_str(t, b, 64) : "(none)";
}

static void check_tensor(Tape *t, const char *op, const char *name, const char *role, const Tensor *x) {
    if (!x) fatal("%s('%s'): %s is NULL", op, name, role);
    if (x->device != t->act->device)
        fatal("%s('%s'): %s '%s' is on device %d, the tape's arena on %d", op, name, role, x->name, (int)x->device,
              (int)t->act->device);
}

static void check_dtype(const char *op, const char *name, const char *role, const Tensor *x, DType want) {
    if (x->dtype != want)
        fatal("%s('%s'): %s '%s' is %s, expected %s", op, name, role, x->name, dtype_name(x->dtype), dtype_name(want));
}

static void check_float(const char *op, const char *name, const char *role, const Tensor *x) {
    if (x->dtype != DT_F32 && x->dtype != DT_BF16)
        fatal("%s('%s'): %s '%s' is %s, expected f32 or bf16", op, name, role, x->name, dtype_name(x->dtype));
}

static void check_ndim(const char *op, const char *name, const char *role, const Tensor *x, int lo, int hi) {
    if (x->ndim < lo || x->ndim > hi)
        fatal("%s('%s'): %s '%s' has shape %s, expected %d to %d dims", op, name, role, x->name, shape_of(x), lo, hi);
}

// Two float inputs: both present on the tape's device first, then both f32/bf16.
static void check_float_pair(Tape *t, const char *op, const char *name, const char *role_a, const Tensor *a,
                             const char *role_b, const Tensor *b) {
    check_tensor(t, op, name, role_a, a);
    check_tensor(t, op, name, role_b, b);
    check_float(op, name, role_a, a);
    check_float(op, name, role_b, b);
}

// Optional bias b of a layer with weight w and `out` outputs.
static void check_bias(Tape *t, const char *op, const char *name, const Tensor *b, const Tensor *w, int64_t out) {
    if (!b) return;
    check_tensor(t, op, name, "b", b);
    if (b->numel != out)
        fatal("%s('%s'): b %s for w %s: expected %lld values", op, name, shape_of(b), shape_of(w), (long long)out);
}

static Tensor *new_output(Tape *t, DType dt, int ndim, const int64_t *shape, const char *name) {
    return tensor_new(t->act, dt, ndim, shape, name);
}

// Output shaped like x with the last dim replaced by `last`.
static Tensor *new_output_last(Tape *t, const Tensor *x, int64_t last, const char *name) {
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = last;
    return new_output(t, x->dtype, x->ndim, shape, name);
}

static Tensor *run1(Tape *t, TapeNode *n) {
    tape_exec(t, n);
    return n->out[0];
}

Tensor *op_linear(Tape *t, Tensor *x, Tensor *w, Tensor *b, const LoraRef *lora, const char *name) {
    return op_linear_residual(t, x, w, b, lora, NULL, name);
}

Tensor *op_linear_residual(Tape *t, Tensor *x, Tensor *w, Tensor *b, const LoraRef *lora, Tensor *residual,
                           const char *name) {
    const char *op = residual ? "op_linear_residual" : "op_linear";
    if (!name) name = op;
    check_float_pair(t, op, name, "x", x, "w", w);
    check_ndim(op, name, "x", x, 1, TENSOR_MAX_DIMS);
    if (w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        fatal("%s('%s'): x %s and w %s: expected w (out, in) with in = last dim of x", op, name, shape_of(x),
              shape_of(w));
    int64_t in = w->shape[1], out = w->shape[0];
    check_bias(t, op, name, b, w, out);
    TapeNode n = {.op = OP_LINEAR, .in = {x, w, b}, .nin = 6, .nout = 1};
    if (lora) {
        Tensor *A = lora->A, *B = lora->B, *mask = lora->mask;
        if (!A != !B) fatal("%s('%s'): LoRA needs both A and B (A %s, B %s)", op, name, shape_of(A), shape_of(B));
        if (A) {
            check_tensor(t, op, name, "lora A", A);
            check_tensor(t, op, name, "lora B", B);
            if (A->ndim != 2 || B->ndim != 2 || A->shape[1] != in || B->shape[0] != out || B->shape[1] != A->shape[0])
                fatal("%s('%s'): LoRA A %s, B %s for w %s: expected A (r, %lld), B (%lld, r)", op, name, shape_of(A),
                      shape_of(B), shape_of(w), (long long)in, (long long)out);
        }
        if (mask) {
            check_tensor(t, op, name, "mask", mask);
            if (mask->dtype != DT_U8 && mask->dtype != DT_F32)
                fatal("%s('%s'): mask '%s' is %s, expected u8 or f32", op, name, mask->name, dtype_name(mask->dtype));
            if (mask->ndim != 2 || mask->shape[0] != out || mask->shape[1] != in)
                fatal("%s('%s'): mask %s for w %s: expected the same shape", op, name, shape_of(mask), shape_of(w));
        }
        if (lora->dropout < 0.0f || lora->dropout >= 1.0f)
            fatal("%s('%s'): LoRA dropout %g is outside [0, 1)", op, name, (double)lora->dropout);
        n.in[3] = A;
        n.in[4] = B;
        n.in[5] = mask;
        n.f[0] = lora->scale;
        n.f[1] = lora->dropout;
        if (mask && mask->dtype == DT_U8 && lora->vnm_V > 0 && lora->vnm_M > 0 && out % lora->vnm_V == 0 &&
            in % lora->vnm_M == 0) {
            n.i[2] = lora->vnm_V;
            n.i[3] = lora->vnm_M;
        }
    }
    n.i[0] = (int64_t)t->seed;
    n.i[1] = (int64_t)t->counter;
    n.out[0] = new_output_last(t, x, out, name);
    if (residual) {
        check_float_pair(t, op, name, "x", x, "residual", residual);
        if (!tensor_same_shape(residual, n.out[0]) || residual->dtype != x->dtype)
            fatal("%s('%s'): residual %s (%s) must match the output %s (%s)", op, name, shape_of(residual),
                  dtype_name(residual->dtype), shape_of(n.out[0]), dtype_name(x->dtype));
        n.in[6] = residual;
        n.nin = 7;
    }
    return run1(t, &n);
}

// Shared by layernorm and rmsnorm: gamma/beta (if given) hold one value per channel.
static void check_norm_param(Tape *t, const char *op, const char *name, const char *role, const Tensor *p,
                             const Tensor *x) {
    if (!p) return;
    check_tensor(t, op, name, role, p);
    if (p->numel != x->shape[x->ndim - 1])
        fatal("%s('%s'): %s %s for x %s: expected one value per channel", op, name, role, shape_of(p), shape_of(x));
}

// LayerNorm (gamma, beta) or RMSNorm (gamma only) over the last dim of x.
static Tensor *norm(Tape *t, OpId id, const char *op, Tensor *x, Tensor *gamma, Tensor *beta, float eps,
                    const char *name) {
    bool has_beta = id == OP_LAYERNORM;
    if (!name) name = op;
    check_tensor(t, op, name, "x", x);
    check_float(op, name, "x", x);
    check_ndim(op, name, "x", x, 1, TENSOR_MAX_DIMS);
    check_norm_param(t, op, name, "gamma", gamma, x);
    if (has_beta) check_norm_param(t, op, name, "beta", beta, x);
    TapeNode n = {.op = id, .in = {x, gamma, beta}, .nin = has_beta ? 3 : 2, .nout = 1, .f = {eps}};
    n.out[0] = tensor_like(t->act, x, name);
    return run1(t, &n);
}

Tensor *op_layernorm(Tape *t, Tensor *x, Tensor *gamma, Tensor *beta, float eps, const char *name) {
    return norm(t, OP_LAYERNORM, "op_layernorm", x, gamma, beta, eps, name);
}

Tensor *op_rmsnorm(Tape *t, Tensor *x, Tensor *gamma, float eps, const char *name) {
    return norm(t, OP_RMSNORM, "op_rmsnorm", x, gamma, NULL, eps, name);
}

Tensor *op_attention(Tape *t, Tensor *qkv, int n_heads, bool causal, const char *name) {
    const char *op = "op_attention";
    if (!name) name = op;
    check_tensor(t, op, name, "qkv", qkv);
    check_float(op, name, "qkv", qkv);
    if (qkv->ndim != 3 || n_heads <= 0 || qkv->shape[2] % (3 * (int64_t)n_heads) != 0)
        fatal("%s('%s'): qkv %s with %d heads: expected (B, T, 3·H·D)", op, name, shape_of(qkv), n_heads);
    TapeNode n = {.op = OP_ATTENTION, .in = {qkv}, .nin = 1, .nout = 1, .i = {n_heads, causal ? 1 : 0}};
    n.out[0] = new_output_last(t, qkv, qkv->shape[2] / 3, name);
    return run1(t, &n);
}

static Tensor *unary(Tape *t, OpId id, const char *op, Tensor *x, const char *name) {
    if (!name) name = op;
    check_tensor(t, op, name, "x", x);
    check_float(op, name, "x", x);
    TapeNode n = {.op = id, .in = {x}, .nin = 1, .nout = 1};
    n.out[0] = tensor_like(t->act, x, name);
    return run1(t, &n);
}

static Tensor *binary_same_shape(Tape *t, OpId id, const char *op, Tensor *a, Tensor *b, const char *name) {
    if (!name) name = op;
    check_float_pair(t, op, name, "first input", a, "second input", b);
    if (!tensor_same_shape(a, b) || a->dtype != b->dtype)
        fatal("%s('%s'): '%s' %s %s and '%s' %s %s differ", op, name, a->name, shape_of(a), dtype_name(a->dtype),
              b->name, shape_of(b), dtype_name(b->dtype));
    TapeNode n = {.op = id, .in = {a, b}, .nin = 2, .nout = 1};
    n.out[0] = tensor_like(t->act, a, name);
    return run1(t, &n);
}

Tensor *op_gelu(Tape *t, Tensor *x, const char *name) { return unary(t, OP_GELU, "op_gelu", x, name); }

Tensor *op_add(Tape *t, Tensor *a, Tensor *b, const char *name) {
    return binary_same_shape(t, OP_ADD, "op_add", a, b, name);
}

Tensor *op_swiglu(Tape *t, Tensor *gate, Tensor *up, const char *name) {
    return binary_same_shape(t, OP_SWIGLU, "op_swiglu", gate, up, name);
}

Tensor *op_rope(Tape *t, Tensor *x, int n_heads, float theta, const char *name) {
    return op_rope_at(t, x, n_heads, theta, 0, NULL, name);
}

// pos_t of op_rope_at / op_attention_cached: I32, one element, on the tape's device.
static void check_position(Tape *t, const char *op, const char *name, const Tensor *pos_t) {
    if (!pos_t) return;
    check_tensor(t, op, name, "pos_t", pos_t);
    check_dtype(op, name, "pos_t", pos_t, DT_I32);
    if (pos_t->numel != 1) fatal("%s('%s'): pos_t '%s' has shape %s, expected one element", op, name, pos_t->name, shape_of(pos_t));
}

Tensor *op_rope_at(Tape *t, Tensor *x, int n_heads, float theta, int64_t pos0, Tensor *pos_t, const char *name) {
    const char *op = "op_rope";
    if (!name) name = op;
    check_tensor(t, op, name, "x", x);
    check_float(op, name, "x", x);
    int64_t hd = x->ndim == 3 ? x->shape[2] : x->ndim == 4 ? x->shape[2] * x->shape[3] : 0;
    bool heads_ok = n_heads > 0 && (x->ndim == 3 || x->shape[2] == n_heads);
    if (!hd || !heads_ok || hd % n_heads || (hd / n_heads) % 2 || theta <= 0.0f || pos0 < 0)
        fatal("%s('%s'): x %s with %d heads, theta %g, first position %lld: expected (B, T, H·D) or (B, T, H, D), D "
              "even, theta > 0, position >= 0",
              op, name, shape_of(x), n_heads, (double)theta, (long long)pos0);
    check_position(t, op, name, pos_t);
    TapeNode n = {.op = OP_ROPE, .in = {x, pos_t}, .nin = pos_t ? 2 : 1, .nout = 1, .f = {theta}, .i = {n_heads, pos0}};
    n.out[0] = tensor_like(t->act, x, name);
    return run1(t, &n);
}

Tensor *op_patch_embed(Tape *t, Tensor *img, Tensor *w, Tensor *b, int patch, const char *name) {
    const char *op = "op_patch_embed";
    if (!name) name = op;
    check_float_pair(t, op, name, "img", img, "w", w);
    if (img->ndim != 4 || patch <= 0 || img->shape[2] % patch || img->shape[3] % patch)
        fatal("%s('%s'): img %s with patch %d: expected (B, C, H, W) with H and W multiples of the patch", op, name,
              shape_of(img), patch);
    int64_t D = w->shape[0];
    if (w->ndim != 4 || w->shape[1] != img->shape[1] || w->shape[2] != patch || w->shape[3] != patch)
        fatal("%s('%s'): w %s for img %s, patch %d: expected (D, C, p, p)", op, name, shape_of(w), shape_of(img), patch);
    check_bias(t, op, name, b, w, D);
    int64_t shape[3] = {img->shape[0], (img->shape[2] / patch) * (img->shape[3] / patch), D};
    TapeNode n = {.op = OP_PATCH_EMBED, .in = {img, w, b}, .nin = 3, .nout = 1, .i = {patch}};
    n.out[0] = new_output(t, img->dtype, 3, shape, name);
    return run1(t, &n);
}

Tensor *op_cls_pos(Tape *t, Tensor *x, Tensor *cls, Tensor *pos, const char *name) {
    const char *op = "op_cls_pos";
    if (!name) name = op;
    check_tensor(t, op, name, "x", x);
    check_tensor(t, op, name, "cls", cls);
    check_tensor(t, op, name, "pos", pos);
    check_float(op, name, "x", x);
    if (x->ndim != 3) fatal("%s('%s'): x %s: expected (B, N, D)", op, name, shape_of(x));
    int64_t N = x->shape[1], D = x->shape[2];
    check_float(op, name, "cls", cls);
    check_float(op, name, "pos", pos);
    if (cls->numel != D || pos->numel != (N + 1) * D)
        fatal("%s('%s'): x %s, cls %s, pos %s: expected cls (1, 1, D), pos (1, N+1, D)", op, name,
              shape_of(x), shape_of(cls), shape_of(pos));
    int64_t shape[3] = {x->shape[0], N + 1, D};
    TapeNode n = {.op = OP_CLS_POS, .in = {x, cls, pos}, .nin = 3, .nout = 1};
    n.out[0] = new_output(t, x->dtype, 3, shape, name);
    return run1(t, &n);
}

// select_token / mean_tokens: x (B, T, D) -> (B, D) with a token index in [0, T).
static Tensor *token_reduce(Tape *t, OpId id, const char *op, Tensor *x, int index, const char *name) {
    if (!name) name = op;
    check_tensor(t, op, name, "x", x);
    check_float(op, name, "x", x);
    if (x->ndim != 3 || index < 0 || index >= x->shape[1])
        fatal("%s('%s'): x %s, token %d: expected (B, T, D) and 0 <= token < T", op, name, shape_of(x), index);
    int64_t shape[2] = {x->shape[0], x->shape[2]};
    TapeNode n = {.op = id, .in = {x}, .nin = 1, .nout = 1, .i = {index}};
    n.out[0] = new_output(t, x->dtype, 2, shape, name);
    return run1(t, &n);
}

Tensor *op_select_token(Tape *t, Tensor *x, int index, const char *name) {
    return token_reduce(t, OP_SELECT_TOKEN, "op_select_token", x, index, name);
}

Tensor *op_mean_tokens(Tape *t, Tensor *x, int start, const char *name) {
    return token_reduce(t, OP_MEAN_TOKENS, "op_mean_tokens", x, start, name);
}

Tensor *op_cross_entropy(Tape *t, Tensor *logits, Tensor *labels, float label_smoothing, const char *name) {
    const char *op = "op_cross_entropy";
    if (!name) name = op;
    check_tensor(t, op, name, "logits", logits);
    check_tensor(t, op, name, "labels", labels);
    check_float(op, name, "logits", logits);
    check_dtype(op, name, "labels", labels, DT_I32);
    check_ndim(op, name, "logits", logits, 1, TENSOR_MAX_DIMS);
    int64_t K = logits->shape[logits->ndim - 1];
    if (labels->numel != logits->numel / K)
        fatal("%s('%s'): logits %s and labels %s: expected one label per row of logits", op, name, shape_of(logits),
              shape_of(labels));
    if (label_smoothing < 0.0f || label_smoothing > 1.0f)
        fatal("%s('%s'): label smoothing %g is outside [0, 1]", op, name, (double)label_smoothing);
    int64_t one = 1;
    TapeNode n = {.op = OP_CROSS_ENTROPY, .in = {logits, labels}, .nin = 2, .nout = 1, .f = {label_smoothing}};
    n.out[0] = new_output(t, logits->dtype, 1, &one, name);
    return run1(t, &n);
}

Tensor *op_embedding(Tape *t, Tensor *ids, Tensor *table, const char *name) {
    const char *op = "op_embedding";
    if (!name) name = op;
    check_tensor(t, op, name, "ids", ids);
    check_tensor(t, op, name, "table", table);
    check_dtype(op, name, "ids", ids, DT_I32);
    check_float(op, name, "table", table);
    check_ndim(op, name, "ids", ids, 1, TENSOR_MAX_DIMS - 1);
    if (table->ndim != 2) fatal("%s('%s'): table %s: expected (V, D)", op, name, shape_of(table));
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, ids->shape, sizeof shape);
    shape[ids->ndim] = table->shape[1];
    TapeNode n = {.op = OP_EMBEDDING, .in = {ids, table}, .nin = 2, .nout = 1};
    n.out[0] = new_output(t, table->dtype, ids->ndim + 1, shape, name);
    return run1(t, &n);
}

Tensor *op_concat(Tape *t, Tensor *const *xs, int count, const char *name) {
    const char *op = "op_concat";
    if (!name) name = op;
    if (count < 1 || count > NODE_MAX_IN) fatal("%s('%s'): %d inputs, expected 1 to %d", op, name, count, NODE_MAX_IN);
    TapeNode n = {.op = OP_CONCAT, .nin = count, .nout = 1};
    int64_t last = 0;
    for (int k = 0; k < count; k++) {
        const Tensor *x = xs[k], *x0 = xs[0];
        check_tensor(t, op, name, "input", x);
        check_float(op, name, "input", x);
        bool same = x->ndim == x0->ndim && x->dtype == x0->dtype;
        for (int d = 0; same && d < x->ndim - 1; d++) same = x->shape[d] == x0->shape[d];
        if (!same)
            fatal("%s('%s'): input %d '%s' %s %s does not match input 0 '%s' %s %s except in the last dim", op, name, k,
                  x->name, shape_of(x), dtype_name(x->dtype), x0->name, shape_of(x0), dtype_name(x0->dtype));
        n.in[k] = xs[k];
        last += x->shape[x->ndim - 1];
    }
    n.out[0] = new_output_last(t, xs[0], last, name);
    return run1(t, &n);
}

Tensor *op_attention_cached(Tape *t, Tensor *q, Tensor *k, Tensor *v, Tensor *k_cache, Tensor *v_cache, int n_heads,
                            int64_t pos, Tensor *pos_t, const char *name) {
    const char *op = "op_attention_cached";
    if (!name) name = op;
    Tensor *all[5] = {q, k, v, k_cache, v_cache};
    const char *roles[5] = {"q", "k", "v", "k_cache", "v_cache"};
    for (int j = 0; j < 5; j++) {
        check_tensor(t, op, name, roles[j], all[j]);
        check_float(op, name, roles[j], all[j]);
        check_ndim(op, name, roles[j], all[j], 3, 3);
        if (all[j]->dtype != q->dtype)
            fatal("%s('%s'): %s '%s' is %s, q is %s", op, name, roles[j], all[j]->name, dtype_name(all[j]->dtype),
                  dtype_name(q->dtype));
    }
    int64_t B = q->shape[0], Tn = q->shape[1], C = q->shape[2], Tmax = k_cache->shape[1];
    if (!tensor_same_shape(k, q) || !tensor_same_shape(v, q) || !tensor_same_shape(v_cache, k_cache) ||
        k_cache->shape[0] != B || k_cache->shape[2] != C || n_heads <= 0 || C % n_heads)
        fatal("%s('%s'): q %s, k %s, v %s, caches %s %s, %d heads: expected q, k, v (B, Tn, H·D) and caches (B, Tmax, "
              "H·D)",
              op, name, shape_of(q), shape_of(k), shape_of(v), shape_of(k_cache), shape_of(v_cache), n_heads);
    if (pos < 0 || pos + Tn > Tmax)
        fatal("%s('%s'): positions [%lld, %lld) do not fit the cache of %lld positions", op, name, (long long)pos,
              (long long)(pos + Tn), (long long)Tmax);
    check_position(t, op, name, pos_t);
    TapeNode n = {.op = OP_ATTENTION_CACHED, .in = {q, k, v, k_cache, v_cache, pos_t}, .nin = pos_t ? 6 : 5, .nout = 1,
                  .i = {n_heads, pos}};
    n.out[0] = tensor_like(t->act, q, name);
    return run1(t, &n);
}
