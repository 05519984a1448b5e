// Finite-difference gradient checks of every op's CPU kernels (see op_check.h).
#include "op_check.h"

TestSuite(ops, .init = op_check_setup, .fini = op_check_teardown);

// ---- linear ----
typedef struct LinearCase {
    Tensor *x, *w, *b, *res;
    LoraRef lora;
    bool use_lora;
} LinearCase;

static Tensor *build_linear(Tape *t, void *ctx) {
    LinearCase *c = ctx;
    return op_linear_residual(t, c->x, c->w, c->b, c->use_lora ? &c->lora : NULL, c->res, "lin");
}

Test(ops, linear_with_bias) {
    LinearCase c = {.x = IN3("x", true, 2, 3, 5), .w = IN2("w", true, 4, 5), .b = IN1("b", true, 4)};
    GRAD_CHECK("linear+bias", build_linear, &c, c.x, c.w, c.b);
}

Test(ops, linear_residual) {
    LinearCase c = {.x = IN3("x", true, 2, 3, 5), .w = IN2("w", true, 4, 5), .b = IN1("b", true, 4),
                    .res = IN3("res", true, 2, 3, 4)};
    GRAD_CHECK("linear+bias+residual", build_linear, &c, c.x, c.w, c.b, c.res);
}

Test(ops, linear_without_bias) {
    LinearCase c = {.x = IN2("x", true, 3, 5), .w = IN2("w", true, 4, 5)};
    GRAD_CHECK("linear", build_linear, &c, c.x, c.w);
}

// The frozen w gets a gradient buffer anyway: it must stay untouched.
static void expect_untouched(const Tensor *w) {
    for (int64_t e = 0; e < w->numel; e++)
        cr_expect(tensor_f32(w->grad)[e] == GRAD_PREFILL, "%s.grad[%lld] was written", w->name, (long long)e);
}

static Tensor *frozen(Tensor *w) {
    w->requires_grad = false;
    return w;
}

Test(ops, lora_dense_with_dropout) {
    LinearCase c = {.x = IN3("x", true, 2, 3, 6), .w = frozen(IN2("w", true, 5, 6)), .b = IN1("b", true, 5),
                    .use_lora = true};
    c.lora = (LoraRef){.A = IN2("A", true, 2, 6), .B = IN2("B", true, 5, 2), .scale = 2.0f, .dropout = 0.3f};
    g_tape.training = true;
    GRAD_CHECK("lora dense, dropout 0.3", build_linear, &c, c.x, c.b, c.lora.A, c.lora.B);
    expect_untouched(c.w);
}

Test(ops, lora_dense_trainable_w) {
    LinearCase c = {.x = IN2("x", true, 4, 6), .w = IN2("w", true, 5, 6), .use_lora = true};
    c.lora = (LoraRef){.A = IN2("A", true, 3, 6), .B = IN2("B", true, 5, 3), .scale = 0.5f};
    GRAD_CHECK("lora dense", build_linear, &c, c.x, c.w, c.lora.A, c.lora.B);
}

Test(ops, lora_dense_residual) {
    LinearCase c = {.x = IN2("x", true, 4, 6), .w = frozen(IN2("w", true, 5, 6)), .res = IN2("res", true, 4, 5),
                    .use_lora = true};
    c.lora = (LoraRef){.A = IN2("A", true, 3, 6), .B = IN2("B", true, 5, 3), .scale = 0.5f};
    GRAD_CHECK("lora dense + residual", build_linear, &c, c.x, c.lora.A, c.lora.B, c.res);
}

static Tensor *random_mask(const char *name, DType dt, int64_t out, int64_t in) {
    Tensor *m = tensor_new2(&g_inputs, dt, out, in, name);
    for (int64_t e = 0; e < m->numel; e++) {
        bool keep = rng_uniform(&g_rng) < 0.5f;
        if (dt == DT_U8) ((uint8_t *)m->data)[e] = keep;
        else tensor_f32(m)[e] = keep ? 1.0f : 0.0f;
    }
    return m;
}

Test(ops, lora_masked_u8_trainable_w) {
    LinearCase c = {.x = IN3("x", true, 2, 3, 8), .w = IN2("w", true, 6, 8), .b = IN1("b", true, 6),
                    .use_lora = true};
    c.lora = (LoraRef){.A = IN2("A", true, 2, 8), .B = IN2("B", true, 6, 2), .mask = random_mask("m", DT_U8, 6, 8),
                       .scale = 1.5f, .dropout = 0.2f};  // dropout is not applied in masked mode
    GRAD_CHECK("lora masked u8", build_linear, &c, c.x, c.w, c.b, c.lora.A, c.lora.B);
    // pruned positions of w get no gradient
    const uint8_t *m = c.lora.mask->data;
    for (int64_t e = 0; e < c.w->numel; e++)
        if (!m[e]) cr_expect(tensor_f32(c.w->grad)[e] == GRAD_PREFILL, "masked w.grad[%lld] written", (long long)e);
}

Test(ops, lora_masked_f32_frozen_w) {
    LinearCase c = {.x = IN2("x", true, 5, 8), .w = frozen(IN2("w", true, 4, 8)), .use_lora = true};
    c.lora = (LoraRef){.A = IN2("A", true, 3, 8), .B = IN2("B", true, 4, 3), .mask = random_mask("m", DT_F32, 4, 8),
                       .scale = 0.7f};
    GRAD_CHECK("lora masked f32", build_linear, &c, c.x, c.lora.A, c.lora.B);
    expect_untouched(c.w);
}

// ---- norms ----
typedef struct NormCase {
    Tensor *x, *gamma, *beta;
} NormCase;

static Tensor *build_layernorm(Tape *t, void *ctx) {
    NormCase *c = ctx;
    return op_layernorm(t, c->x, c->gamma, c->beta, 1e-5f, "ln");
}

static Tensor *build_rmsnorm(Tape *t, void *ctx) {
    NormCase *c = ctx;
    return op_rmsnorm(t, c->x, c->gamma, 1e-6f, "rms");
}

Test(ops, layernorm) {
    NormCase c = {.x = input("x", true, 2.0f, 3, 2, 3, 8, 0), .gamma = IN1("gamma", true, 8), .beta = IN1("beta", true, 8)};
    GRAD_CHECK("layernorm", build_layernorm, &c, c.x, c.gamma, c.beta);
}

Test(ops, layernorm_no_affine) {
    NormCase c = {.x = IN2("x", true, 3, 6)};
    GRAD_CHECK("layernorm, no affine", build_layernorm, &c, c.x);
}

Test(ops, rmsnorm) {
    NormCase c = {.x = IN3("x", true, 2, 3, 8), .gamma = IN1("gamma", true, 8)};
    GRAD_CHECK("rmsnorm", build_rmsnorm, &c, c.x, c.gamma);
}

// ---- attention ----
typedef struct AttnCase {
    Tensor *qkv;
    int heads;
    bool causal;
} AttnCase;

static Tensor *build_attention(Tape *t, void *ctx) {
    AttnCase *c = ctx;
    return op_attention(t, c->qkv, c->heads, c->causal, "attn");
}

Test(ops, attention) {
    AttnCase c = {.qkv = IN3("qkv", true, 2, 4, 3 * 8), .heads = 2};
    GRAD_CHECK("attention", build_attention, &c, c.qkv);
}

Test(ops, attention_causal) {
    AttnCase c = {.qkv = IN3("qkv", true, 2, 5, 3 * 6), .heads = 3, .causal = true};
    GRAD_CHECK("attention causal", build_attention, &c, c.qkv);
}

// ---- elementwise ----
typedef struct PairCase {
    Tensor *a, *b;
} PairCase;

static Tensor *build_gelu(Tape *t, void *ctx) { return op_gelu(t, ((PairCase *)ctx)->a, "gelu"); }
static Tensor *build_add(Tape *t, void *ctx) { return op_add(t, ((PairCase *)ctx)->a, ((PairCase *)ctx)->b, "add"); }
static Tensor *build_swiglu(Tape *t, void *ctx) {
    return op_swiglu(t, ((PairCase *)ctx)->a, ((PairCase *)ctx)->b, "swiglu");
}

Test(ops, gelu) {
    PairCase c = {.a = input("x", true, 2.0f, 2, 3, 7, 0, 0)};
    GRAD_CHECK("gelu", build_gelu, &c, c.a);
}

Test(ops, add) {
    PairCase c = {.a = IN3("a", true, 2, 3, 4), .b = IN3("b", true, 2, 3, 4)};
    GRAD_CHECK("add", build_add, &c, c.a, c.b);
}

Test(ops, add_same_tensor_twice) {
    Tensor *a = IN2("a", true, 3, 4);
    PairCase c = {.a = a, .b = a};
    GRAD_CHECK("add(a, a)", build_add, &c, a);
}

Test(ops, swiglu) {
    PairCase c = {.a = input("gate", true, 2.0f, 3, 2, 3, 4, 0), .b = IN3("up", true, 2, 3, 4)};
    GRAD_CHECK("swiglu", build_swiglu, &c, c.a, c.b);
}

// ---- rope ----
typedef struct RopeCase {
    Tensor *x;
    int heads;
} RopeCase;

static Tensor *build_rope(Tape *t, void *ctx) {
    RopeCase *c = ctx;
    return op_rope(t, c->x, c->heads, 10.0f, "rope");
}

Test(ops, rope_fused_heads) {
    RopeCase c = {.x = IN3("x", true, 2, 3, 2 * 4), .heads = 2};
    GRAD_CHECK("rope (B,T,H*D)", build_rope, &c, c.x);
}

Test(ops, rope_split_heads) {
    RopeCase c = {.x = IN4("x", true, 1, 4, 2, 6), .heads = 2};
    GRAD_CHECK("rope (B,T,H,D)", build_rope, &c, c.x);
}

// rope at positions pos0.. equals rope over the whole sequence, sliced from pos0 (and its backward
// is the inverse rotation there too: grad check)
typedef struct RopeAtCase {
    Tensor *x;
    int64_t pos0;
    Tensor *pos_t;  // when set: holds the position, pos0 is ignored by the kernel
} RopeAtCase;

static Tensor *build_rope_at(Tape *t, void *ctx) {
    RopeAtCase *c = ctx;
    return op_rope_at(t, c->x, 2, 10.0f, c->pos0, c->pos_t, "rope_at");
}

Test(ops, rope_at_offset) {
    Tensor *full_x = IN3("x", false, 1, 7, 2 * 4);
    RopeAtCase c = {.x = IN3("tail", true, 1, 3, 2 * 4), .pos0 = 4};
    memcpy(tensor_f32(c.x), tensor_f32(full_x) + 4 * 8, 3 * 8 * sizeof(float));
    tape_reset(&g_tape);
    Tensor *full = op_rope(&g_tape, full_x, 2, 10.0f, "rope"), *tail = build_rope_at(&g_tape, &c);
    float want[3 * 8];
    memcpy(want, tensor_f32(tail), sizeof want);
    for (int e = 0; e < 3 * 8; e++) cr_expect_float_eq(want[e], tensor_f32(full)[4 * 8 + e], 1e-6f, "element %d", e);
    GRAD_CHECK("rope at position 4", build_rope_at, &c, c.x);
    // the position read from a tensor when the op runs (pos0 = 0 only passes the checks)
    c.pos_t = tensor_new1(&g_inputs, DT_I32, 1, "pos");
    ((int32_t *)c.pos_t->data)[0] = 4;
    c.pos0 = 0;
    tape_reset(&g_tape);
    Tensor *from_t = build_rope_at(&g_tape, &c);
    for (int e = 0; e < 3 * 8; e++) cr_expect_float_eq(tensor_f32(from_t)[e], want[e], 0.0f, "element %d", e);
}

// ---- concat ----
typedef struct ConcatCase {
    Tensor *x[3];
} ConcatCase;

static Tensor *build_concat(Tape *t, void *ctx) { return op_concat(t, ((ConcatCase *)ctx)->x, 3, "concat"); }

Test(ops, concat_last_dim) {
    ConcatCase c = {.x = {IN3("a", true, 2, 3, 4), IN3("b", false, 2, 3, 1), IN3("c", true, 2, 3, 5)}};
    tape_reset(&g_tape);
    Tensor *y = build_concat(&g_tape, &c);
    cr_assert_eq(y->shape[2], 10);
    cr_expect_eq(tensor_f32(y)[10 + 4], tensor_f32(c.x[1])[1]);      // row 1, column 4 = b[1, 0]
    cr_expect_eq(tensor_f32(y)[5 * 10 + 9], tensor_f32(c.x[2])[5 * 5 + 4]);
    GRAD_CHECK("concat", build_concat, &c, c.x[0], c.x[2]);
}

// ---- attention over a KV cache: prefill 3 tokens, then 2, then 1 = causal attention over all 6 ----
Test(ops, attention_cached_matches_causal) {
    const int64_t B = 2, T = 6, H = 2, D = 4, C = H * D;
    Tensor *qkv = IN3("qkv", false, B, T, 3 * C);
    Tensor *kc = tensor_new(&g_inputs, DT_F32, 3, (int64_t[]){B, 8, C}, "k_cache");
    Tensor *vc = tensor_new(&g_inputs, DT_F32, 3, (int64_t[]){B, 8, C}, "v_cache");
    tape_reset(&g_tape);
    const float *want = tensor_f32(op_attention(&g_tape, qkv, (int)H, true, "attn"));
    const int chunks[3] = {3, 2, 1};
    int64_t pos = 0;
    Tensor *pos_t = tensor_new1(&g_inputs, DT_I32, 1, "pos");  // the last chunk reads its position from it
    for (int k = 0; k < 3; k++) {
        Tensor *part[3];  // q, k, v of this chunk
        for (int j = 0; j < 3; j++) {
            part[j] = tensor_new(&g_inputs, DT_F32, 3, (int64_t[]){B, chunks[k], C}, "part");
            for (int64_t b = 0; b < B; b++)
                for (int64_t i = 0; i < chunks[k]; i++)
                    memcpy(tensor_f32(part[j]) + (b * chunks[k] + i) * C,
                           tensor_f32(qkv) + (b * T + pos + i) * 3 * C + j * C, (size_t)C * sizeof(float));
        }
        ((int32_t *)pos_t->data)[0] = (int32_t)pos;
        const float *got = tensor_f32(
            k < 2 ? op_attention_cached(&g_tape, part[0], part[1], part[2], kc, vc, (int)H, pos, NULL, "ac")
                  : op_attention_cached(&g_tape, part[0], part[1], part[2], kc, vc, (int)H, 0, pos_t, "ac"));
        for (int64_t b = 0; b < B; b++)
            for (int64_t e = 0; e < chunks[k] * C; e++)
                cr_expect_float_eq(got[b * chunks[k] * C + e], want[(b * T + pos) * C + e], 1e-5f, "chunk %d b %lld e %lld",
                                   k, (long long)b, (long long)e);
        pos += chunks[k];
    }
}

// ---- embeddings ----
typedef struct EmbedCase {
    Tensor *x, *w, *b, *ids;
    int index;
} EmbedCase;

static Tensor *build_patch_embed(Tape *t, void *ctx) {
    EmbedCase *c = ctx;
    return op_patch_embed(t, c->x, c->w, c->b, 2, "patch");
}
static Tensor *build_cls_pos(Tape *t, void *ctx) {
    EmbedCase *c = ctx;
    return op_cls_pos(t, c->x, c->w, c->b, "cls_pos");
}
static Tensor *build_select_token(Tape *t, void *ctx) {
    EmbedCase *c = ctx;
    return op_select_token(t, c->x, c->index, "select");
}
static Tensor *build_mean_tokens(Tape *t, void *ctx) {
    EmbedCase *c = ctx;
    return op_mean_tokens(t, c->x, c->index, "mean");
}
static Tensor *build_embedding(Tape *t, void *ctx) {
    EmbedCase *c = ctx;
    return op_embedding(t, c->ids, c->w, "embed");
}

Test(ops, patch_embed) {
    EmbedCase c = {.x = IN4("img", true, 2, 2, 4, 6), .w = IN4("w", true, 5, 2, 2, 2), .b = IN1("b", true, 5)};
    GRAD_CHECK("patch_embed", build_patch_embed, &c, c.x, c.w, c.b);
}

Test(ops, cls_pos) {
    EmbedCase c = {.x = IN3("x", true, 2, 3, 4), .w = IN3("cls", true, 1, 1, 4), .b = IN3("pos", true, 1, 4, 4)};
    GRAD_CHECK("cls_pos", build_cls_pos, &c, c.x, c.w, c.b);
}

Test(ops, select_token) {
    EmbedCase c = {.x = IN3("x", true, 2, 3, 4), .index = 1};
    GRAD_CHECK("select_token", build_select_token, &c, c.x);
}

Test(ops, mean_tokens) {
    EmbedCase c = {.x = IN3("x", true, 2, 4, 3), .index = 1};
    GRAD_CHECK("mean_tokens", build_mean_tokens, &c, c.x);
}

Test(ops, embedding_repeated_ids) {
    int64_t shape[2] = {2, 3};
    EmbedCase c = {.ids = int_input("ids", 2, shape, (int32_t[]){1, 4, 1, 0, 4, 1}), .w = IN2("table", true, 5, 4)};
    GRAD_CHECK("embedding", build_embedding, &c, c.w);
}

// ---- cross entropy ----
typedef struct CeCase {
    Tensor *logits, *labels;
    float smoothing;
} CeCase;

static Tensor *build_ce(Tape *t, void *ctx) {
    CeCase *c = ctx;
    return op_cross_entropy(t, c->logits, c->labels, c->smoothing, "loss");
}

Test(ops, cross_entropy_ignored_label_and_smoothing) {
    int64_t n = 4;
    CeCase c = {.logits = input("logits", true, 2.0f, 2, 4, 5, 0, 0),
                .labels = int_input("labels", 1, &n, (int32_t[]){2, -1, 0, 4}), .smoothing = 0.1f};
    GRAD_CHECK("cross_entropy, smoothing", build_ce, &c, c.logits);
}

Test(ops, cross_entropy_token_rows) {
    int64_t shape[2] = {2, 3};
    CeCase c = {.logits = IN3("logits", true, 2, 3, 7), .labels = int_input("labels", 2, shape, (int32_t[]){0, 6, 3, 3, 1, 5})};
    GRAD_CHECK("cross_entropy (B,T,K)", build_ce, &c, c.logits);
}

Test(ops, cross_entropy_value) {
    // one row, logits (0, ln 3): p = (1/4, 3/4); label 1, smoothing 0.2 over K=2:
    // loss = lse - 0.9·z1 - 0.1·z0 = ln 4 - 0.9 ln 3
    int64_t n = 1;
    Tensor *logits = IN2("logits", false, 1, 2);
    tensor_f32(logits)[0] = 0.0f;
    tensor_f32(logits)[1] = logf(3.0f);
    Tensor *loss = op_cross_entropy(&g_tape, logits, int_input("labels", 1, &n, (int32_t[]){1}), 0.2f, "loss");
    cr_expect_float_eq(tensor_f32(loss)[0], logf(4.0f) - 0.9f * logf(3.0f), 1e-6);
}

// ---- a small chain through tape_backward: linear (LoRA) -> gelu -> layernorm -> linear -> CE ----
typedef struct ChainCase {
    Tensor *x, *w1, *A, *B, *gamma, *beta, *w2, *b2, *labels;
} ChainCase;

static Tensor *build_chain(Tape *t, void *ctx) {
    ChainCase *c = ctx;
    LoraRef lora = {.A = c->A, .B = c->B, .scale = 1.0f, .dropout = 0.25f};
    Tensor *h = op_linear(t, c->x, c->w1, NULL, &lora, "fc1");
    h = op_gelu(t, h, "gelu");
    h = op_layernorm(t, h, c->gamma, c->beta, 1e-5f, "ln");
    h = op_linear(t, h, c->w2, c->b2, NULL, "head");
    return op_cross_entropy(t, h, c->labels, 0.0f, "loss");
}

Test(ops, chain_through_tape_backward) {
    int64_t n = 3;
    ChainCase c = {.x = IN2("x", false, 3, 6), .w1 = frozen(IN2("w1", true, 8, 6)), .A = IN2("A", true, 2, 6),
                   .B = IN2("B", true, 8, 2), .gamma = IN1("gamma", true, 8), .beta = IN1("beta", true, 8),
                   .w2 = IN2("w2", true, 4, 8), .b2 = IN1("b2", true, 4),
                   .labels = int_input("labels", 1, &n, (int32_t[]){3, 0, 2})};
    g_fd_eps = 3e-3f;  // the fp32 rounding of a 5-op chain's scalar loss dominates at eps = 1e-3
    GRAD_CHECK("chain", build_chain, &c, c.A, c.B, c.gamma, c.beta, c.w2, c.b2);
    expect_untouched(c.w1);
}
