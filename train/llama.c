#include "llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "autograd/rng.h"

int llama_check_config(const ModelConfig *c, Err *err) {
    if (c->vocab_size <= 0 || c->hidden_size <= 0 || c->intermediate_size <= 0 || c->n_layers <= 0 || c->n_heads <= 0)
        return err_set(err, "llama: vocab_size %d, hidden_size %d, intermediate_size %d, n_layers %d, n_heads %d must be "
                            "positive", c->vocab_size, c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads);
    if (c->hidden_size % c->n_heads || (c->hidden_size / c->n_heads) % 2)
        return err_set(err, "llama: hidden_size %d does not split into %d heads of an even size", c->hidden_size,
                       c->n_heads);
    if (c->n_kv_heads != c->n_heads)
        return err_set(err, "llama: n_kv_heads %d != n_heads %d: grouped-query attention is not supported",
                       c->n_kv_heads, c->n_heads);
    if (c->rope_theta <= 0.0f || c->rms_eps < 0.0f)
        return err_set(err, "llama: rope_theta %g must be > 0 and rms_eps %g >= 0", (double)c->rope_theta,
                       (double)c->rms_eps);
    return 0;
}

// ---- parameters ----

static Tensor *add_param(Llama *m, const char *name, int64_t d0, int64_t d1, bool decay) {
    DType dt = m->arena->device == DEV_CPU ? DT_F32 : DT_BF16;
    Tensor *t = d1 ? tensor_new2(m->arena, dt, d0, d1, name) : tensor_new1(m->arena, dt, d0, name);
    params_add(&m->params, t, PARAM_BASE, true, decay);
    return t;
}

// A bias-free Linear "<prefix>.<name>" of (out, in).
static void add_linear(Llama *m, Linear *l, const char *prefix, const char *name, int64_t in, int64_t out) {
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s%s%s", prefix, *prefix ? "." : "", name);
    l->in = in, l->out = out;
    char nm[TENSOR_NAME_LEN];
    snprintf(nm, sizeof nm, "%s.weight", l->name);
    l->w = add_param(m, nm, out, in, true);
    m->linears[m->n_linears++] = l;
}

// model.layers.<layer>.<which>.weight (C), an RMSNorm weight.
static Tensor *layer_norm_param(Llama *m, int layer, const char *which) {
    char nm[TENSOR_NAME_LEN];
    snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", layer, which);
    return add_param(m, nm, m->cfg.hidden_size, 0, false);
}

void llama_alloc(Llama *m, const ModelConfig *cfg, Arena *arena) {
    Err err = {0};
    if (llama_check_config(cfg, &err)) fatal("%s", err.msg);
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->arena = arena;
    int64_t C = cfg->hidden_size, F = cfg->intermediate_size, V = cfg->vocab_size;
    m->linears = xcalloc((size_t)(7 * cfg->n_layers + 1), sizeof *m->linears);
    m->layers = xcalloc((size_t)cfg->n_layers, sizeof *m->layers);
    m->embed = add_param(m, "model.embed_tokens.weight", V, C, false);
    for (int i = 0; i < cfg->n_layers; i++) {
        LlamaLayer *L = &m->layers[i];
        L->model = m, L->index = i;
        char pre[64];
        L->attn_norm = layer_norm_param(m, i, "input_layernorm");
        snprintf(pre, sizeof pre, "model.layers.%d.self_attn", i);
        Linear *attn[4] = {&L->q, &L->k, &L->v, &L->o};
        const char *attn_names[4] = {"q_proj", "k_proj", "v_proj", "o_proj"};
        for (int k = 0; k < 4; k++) add_linear(m, attn[k], pre, attn_names[k], C, C);
        L->mlp_norm = layer_norm_param(m, i, "post_attention_layernorm");
        snprintf(pre, sizeof pre, "model.layers.%d.mlp", i);
        add_linear(m, &L->gate, pre, "gate_proj", C, F);
        add_linear(m, &L->up, pre, "up_proj", C, F);
        add_linear(m, &L->down, pre, "down_proj", F, C);
    }
    m->norm = add_param(m, "model.norm.weight", C, 0, false);
    add_linear(m, &m->lm_head, "", "lm_head", C, V);
}

void llama_init(Llama *m, const ModelConfig *cfg, Arena *arena, uint64_t seed) {
    llama_alloc(m, cfg, arena);
    Rng r;
    rng_seed(&r, seed);
    for (int i = 0; i < m->params.n; i++) {
        Tensor *t = m->params.items[i].value;
        float *h = xmalloc((size_t)t->numel * sizeof *h);
        bool is_norm = t->ndim == 1;  // the RMSNorm weights start at 1, matrices ~ N(0, 0.02²) (HF _init_weights)
        for (int64_t e = 0; e < t->numel; e++) h[e] = is_norm ? 1.0f : 0.02f * rng_normal(&r);
        tensor_set_f32(t, h, t->numel);
        free(h);
    }
}

void llama_free(Llama *m) {
    for (int i = 0; i < m->n_linears; i++) linear_free_sparse(m->linears[i]);
    free(m->layers);
    free(m->linears);
    params_free(&m->params);
    memset(m, 0, sizeof *m);
}

// ---- forward ----

// x + o_proj(attention(h)) with h = rmsnorm(x). Without a cache: causal attention over the T tokens
// (q, k, v concatenated into op_attention's fused layout); with one: over the cached positions too.
static Tensor *attention_block(Llama *m, Tape *t, int li, Tensor *x, LlamaCache *cache) {
    const ModelConfig *c = &m->cfg;
    LlamaLayer *L = &m->layers[li];
    int64_t pos = cache ? cache->len : 0;
    Tensor *pos_t = cache ? cache->pos : NULL;
    Tensor *h = op_rmsnorm(t, x, L->attn_norm, c->rms_eps, L->attn_norm->name);
    Tensor *q = op_rope_at(t, linear_forward(t, &L->q, h), c->n_heads, c->rope_theta, pos, pos_t, "q_rope");
    Tensor *k = op_rope_at(t, linear_forward(t, &L->k, h), c->n_heads, c->rope_theta, pos, pos_t, "k_rope");
    Tensor *v = linear_forward(t, &L->v, h);
    Tensor *a;
    if (cache) {
        a = op_attention_cached(t, q, k, v, cache->k[li], cache->v[li], c->n_heads, pos, pos_t, "attn");
    } else {
        Tensor *qkv[3] = {q, k, v};
        a = op_attention(t, op_concat(t, qkv, 3, "qkv"), c->n_heads, true, "attn");
    }
    return linear_forward_residual(t, &L->o, a, x);
}

// x + down_proj(silu(gate_proj(h)) · up_proj(h)) with h = rmsnorm(x).
static Tensor *mlp_block(Llama *m, Tape *t, int li, Tensor *x) {
    LlamaLayer *L = &m->layers[li];
    Tensor *h = op_rmsnorm(t, x, L->mlp_norm, m->cfg.rms_eps, L->mlp_norm->name);
    Tensor *s = op_swiglu(t, linear_forward(t, &L->gate, h), linear_forward(t, &L->up, h), "swiglu");
    return linear_forward_residual(t, &L->down, s, x);
}

// One decoder layer without a cache: a checkpoint segment of the training forward (tape_segment).
static Tensor *decoder_layer(Tape *t, Tensor *x, void *layer) {
    LlamaLayer *L = layer;
    return mlp_block(L->model, t, L->index, attention_block(L->model, t, L->index, x, NULL));
}

static Tensor *forward(Llama *m, Tape *t, Tensor *ids, LlamaCache *cache) {
    if (ids->ndim != 2 || ids->dtype != DT_I32)
        fatal("llama_forward: ids '%s' must be (B, T) int32", ids->name);
    if (cache && (ids->shape[0] != cache->batch || cache->len + ids->shape[1] > cache->max_len))
        fatal("llama_forward_cached: %lld × %lld tokens after %lld cached do not fit the cache (batch %lld, %lld "
              "positions)", (long long)ids->shape[0], (long long)ids->shape[1], (long long)cache->len,
              (long long)cache->batch, (long long)cache->max_len);
    Arena *main_arena = t->act;
    bool rotate = m->layer_arenas[0] && m->layer_arenas[1] && !t->record;
    Tensor *x = op_embedding(t, ids, m->embed, "embed");
    for (int i = 0; i < m->cfg.n_layers; i++) {
        if (rotate) {
            t->act = m->layer_arenas[i % 2];
            arena_reset(t->act);
        }
        if (cache) x = mlp_block(m, t, i, attention_block(m, t, i, x, cache));
        else x = tape_segment(t, decoder_layer, x, &m->layers[i], "layer_out");
    }
    t->act = main_arena;
    x = op_rmsnorm(t, x, m->norm, m->cfg.rms_eps, "model.norm");
    Tensor *logits = linear_forward(t, &m->lm_head, x);
    if (cache) llama_cache_advance(cache, ids->shape[1], true);
    return logits;
}

Tensor *llama_forward(Llama *m, Tape *t, Tensor *ids) { return forward(m, t, ids, NULL); }

Tensor *llama_forward_cached(Llama *m, Tape *t, Tensor *ids, LlamaCache *cache) { return forward(m, t, ids, cache); }

void llama_shift_labels(const int32_t *ids, int64_t B, int64_t T, int32_t *labels) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < T; i++) labels[b * T + i] = i + 1 < T ? ids[b * T + i + 1] : -1;
}

void llama_cache_init(LlamaCache *c, const Llama *m, Arena *arena, int64_t batch, int64_t max_len) {
    memset(c, 0, sizeof *c);
    int n = m->cfg.n_layers;
    c->k = xcalloc((size_t)n, sizeof *c->k);
    c->v = xcalloc((size_t)n, sizeof *c->v);
    c->batch = batch, c->max_len = max_len;
    DType dt = arena->device == DEV_CPU ? DT_F32 : DT_BF16;
    int64_t shape[3] = {batch, max_len, m->cfg.hidden_size};
    for (int i = 0; i < n; i++) {
        c->k[i] = tensor_new(arena, dt, 3, shape, "k_cache");
        c->v[i] = tensor_new(arena, dt, 3, shape, "v_cache");
    }
    c->pos = tensor_new1(arena, DT_I32, 1, "cache_position");
    llama_cache_reset(c);
}

void llama_cache_reset(LlamaCache *c) {
    int32_t zero = 0;
    c->len = 0;
    tensor_write_host(c->pos, &zero);
}

void llama_cache_advance(LlamaCache *c, int64_t tokens, bool device) {
    c->len += tokens;
    if (!device) return;
    if (c->pos->device == DEV_CPU) ((int32_t *)c->pos->data)[0] += (int32_t)tokens;
    else device_i32_add(c->pos->data, (int)tokens);
}

void llama_cache_free(LlamaCache *c) {
    free(c->k);
    free(c->v);
    memset(c, 0, sizeof *c);
}

void llama_step_graph_record(LlamaStepGraph *g, Llama *m, Tape *t, LlamaCache *cache, Tensor *ids_in) {
    if (cache->pos->device != DEV_CUDA || ids_in->device != DEV_CUDA)
        fatal("llama_step_graph_record: the cache and the ids must be on the GPU");
    memset(g, 0, sizeof *g);
    tape_reset(t);
    device_graph_begin();
    g->logits = llama_forward_cached(m, t, ids_in, cache);
    g->graph = device_graph_end();
    llama_cache_advance(cache, -ids_in->shape[1], false);  // the host's position moved, nothing ran
    g->ids_in = ids_in;
}

Tensor *llama_step_graph_run(LlamaStepGraph *g, LlamaCache *cache, const Tensor *ids) {
    int64_t T = g->ids_in->shape[1];
    if (!tensor_same_shape(ids, g->ids_in)) {
        char a[64], b[64];
        fatal("llama_step_graph_run: ids %s, the step was recorded for %s", tensor_shape_str(ids, a, sizeof a),
              tensor_shape_str(g->ids_in, b, sizeof b));
    }
    if (cache->len + T > cache->max_len)
        fatal("llama_step_graph_run: %lld more tokens after %lld cached do not fit the cache of %lld positions",
              (long long)T, (long long)cache->len, (long long)cache->max_len);
    if (ids != g->ids_in) device_copy_d2d(g->ids_in->data, ids->data, (size_t)ids->numel * sizeof(int32_t));
    device_graph_launch(g->graph);
    llama_cache_advance(cache, T, false);  // the graph moved the device's position
    return g->logits;
}

void llama_step_graph_free(LlamaStepGraph *g) {
    device_graph_free(g->graph);
    memset(g, 0, sizeof *g);
}

// ---- sizes ----

size_t llama_param_bytes(const ModelConfig *c, DType dt) {
    int64_t C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    int64_t n = 2 * V * C + C + (int64_t)c->n_layers * (4 * C * C + 3 * C * F + 2 * C);
    return (size_t)n * dtype_size(dt) + (size_t)(9 * c->n_layers + 4) * 128;
}

// Activation elements of one decoder layer's forward.
static int64_t layer_elements(const ModelConfig *c, int64_t B, int64_t T) {
    int64_t C = c->hidden_size, F = c->intermediate_size, H = c->n_heads, N = B * T;
    // 2 norms, q, k, v, 2 ropes, qkv, attention out, 2 residuals (11 C), gate, up, swiglu (3 F),
    // attention probabilities and scratch (B, H, T, T) twice
    return N * (11 * C + 3 * F) + 2 * B * H * T * T;
}

// forward elements -> bytes: a gradient per activation plus kernel scratch, 4 bytes an element for either dtype
static size_t tape_bytes(int64_t forward_elements) { return (size_t)(3 * forward_elements) * 4 + ((size_t)64 << 20); }

size_t llama_activation_bytes(const ModelConfig *c, int64_t B, int64_t T, bool recompute) {
    int64_t N = B * T, per_layer = recompute ? N * c->hidden_size : layer_elements(c, B, T);
    return tape_bytes(N * (2 * c->hidden_size + 2 * c->vocab_size) + c->n_layers * per_layer);
}

size_t llama_segment_bytes(const ModelConfig *c, int64_t B, int64_t T) { return tape_bytes(layer_elements(c, B, T)); }

double llama_forward_flops(const ModelConfig *c, int64_t T) {
    double C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size;
    double per_layer = 2.0 * T * (4 * C * C + 3 * C * F) + 2.0 * 2 * T * T * C;  // attention: q kᵀ and p v
    return c->n_layers * per_layer + 2.0 * T * C * V;
}
