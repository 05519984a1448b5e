#include "deit.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"

// ---- initialisation (timm: trunc_normal_(std=.02) for Linear and pos_embed, zeros for biases) ----

static void fill_host(Tensor *t, float *host) {
    tensor_set_f32(t, host, t->numel);
    free(host);
}

static void init_trunc_normal(Tensor *t, Rng *r, float std) {
    float *h = xmalloc((size_t)t->numel * sizeof *h);
    for (int64_t i = 0; i < t->numel; i++) {
        float v;
        do v = (float)rng_normal(r) * std; while (fabsf(v) > 2.0f);  // timm's bounds are absolute ±2
        h[i] = v;
    }
    fill_host(t, h);
}

static void init_const(Tensor *t, float value) {
    float *h = xmalloc((size_t)t->numel * sizeof *h);
    for (int64_t i = 0; i < t->numel; i++) h[i] = value;
    fill_host(t, h);
}

static Tensor *new_param(Deit *m, DType dt, int ndim, const int64_t *shape, const char *name, bool decay) {
    Tensor *t = tensor_new(m->arena, dt, ndim, shape, name);
    params_add(&m->params, t, PARAM_BASE, true, decay);
    return t;
}

static void linear_init(Deit *m, Linear *l, DType dt, const char *name, int64_t in, int64_t out, bool bias, Rng *r) {
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->in = in;
    l->out = out;
    char nm[TENSOR_NAME_LEN];
    snprintf(nm, sizeof nm, "%s.weight", name);
    l->w = new_param(m, dt, 2, (int64_t[]){out, in}, nm, true);
    init_trunc_normal(l->w, r, 0.02f);
    if (bias) {
        snprintf(nm, sizeof nm, "%s.bias", name);
        l->b = new_param(m, dt, 1, &out, nm, false);
    }
    m->linears[m->n_linears++] = l;
}

static Tensor *norm_param(Deit *m, DType dt, const char *name, const char *suffix, float value) {
    char nm[TENSOR_NAME_LEN];
    snprintf(nm, sizeof nm, "%s.%s", name, suffix);
    int64_t d = m->cfg.embed_dim;
    Tensor *t = new_param(m, dt, 1, &d, nm, false);
    init_const(t, value);
    return t;
}

void deit_init(Deit *m, const ModelConfig *cfg, Arena *arena, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->arena = arena;
    DType dt = arena->device == DEV_CPU ? DT_F32 : DT_BF16;
    int64_t D = cfg->embed_dim, C = cfg->in_chans, p = cfg->patch_size;
    int64_t hidden = (int64_t)(cfg->mlp_ratio * (float)D);
    int grid = cfg->img_size / cfg->patch_size;
    m->n_patches = grid * grid;
    Rng r;
    rng_seed(&r, seed);

    m->linears = xcalloc((size_t)(4 * cfg->depth + 1), sizeof *m->linears);
    m->patch_w = new_param(m, dt, 4, (int64_t[]){D, C, p, p}, "patch_embed.proj.weight", true);
    // PyTorch's Conv2d default: kaiming_uniform(a=√5) = U(-1/√fan_in, 1/√fan_in)
    float bound = 1.0f / sqrtf((float)(C * p * p));
    float *h = xmalloc((size_t)m->patch_w->numel * sizeof *h);
    for (int64_t i = 0; i < m->patch_w->numel; i++) h[i] = (2.0f * (float)rng_uniform(&r) - 1.0f) * bound;
    fill_host(m->patch_w, h);
    m->patch_b = new_param(m, dt, 1, &D, "patch_embed.proj.bias", false);
    m->cls_token = new_param(m, dt, 3, (int64_t[]){1, 1, D}, "cls_token", false);
    h = xmalloc((size_t)D * sizeof *h);
    for (int64_t i = 0; i < D; i++) h[i] = 1e-6f * (float)rng_normal(&r);
    fill_host(m->cls_token, h);
    m->pos_embed = new_param(m, dt, 3, (int64_t[]){1, m->n_patches + 1, D}, "pos_embed", false);
    init_trunc_normal(m->pos_embed, &r, 0.02f);

    m->blocks = xcalloc((size_t)cfg->depth, sizeof *m->blocks);
    for (int i = 0; i < cfg->depth; i++) {
        DeitBlock *b = &m->blocks[i];
        char pre[64], nm[80];
        snprintf(pre, sizeof pre, "blocks.%d", i);
        snprintf(nm, sizeof nm, "%s.norm1", pre);
        b->norm1_w = norm_param(m, dt, nm, "weight", 1.0f);
        b->norm1_b = norm_param(m, dt, nm, "bias", 0.0f);
        snprintf(nm, sizeof nm, "%s.attn.qkv", pre);
        linear_init(m, &b->qkv, dt, nm, D, 3 * D, cfg->qkv_bias, &r);
        snprintf(nm, sizeof nm, "%s.attn.proj", pre);
        linear_init(m, &b->proj, dt, nm, D, D, true, &r);
        snprintf(nm, sizeof nm, "%s.norm2", pre);
        b->norm2_w = norm_param(m, dt, nm, "weight", 1.0f);
        b->norm2_b = norm_param(m, dt, nm, "bias", 0.0f);
        snprintf(nm, sizeof nm, "%s.mlp.fc1", pre);
        linear_init(m, &b->fc1, dt, nm, D, hidden, true, &r);
        snprintf(nm, sizeof nm, "%s.mlp.fc2", pre);
        linear_init(m, &b->fc2, dt, nm, hidden, D, true, &r);
    }
    m->norm_w = norm_param(m, dt, "norm", "weight", 1.0f);
    m->norm_b = norm_param(m, dt, "norm", "bias", 0.0f);
    linear_init(m, &m->head, dt, "head", D, cfg->num_classes, true, &r);
}

void deit_free(Deit *m) {
    for (int i = 0; i < m->n_linears; i++) linear_free_sparse(m->linears[i]);
    free(m->blocks);
    free(m->linears);
    params_free(&m->params);
    memset(m, 0, sizeof *m);
}

Tensor *deit_forward(Deit *m, Tape *t, Tensor *img) {
    const ModelConfig *c = &m->cfg;
    Tensor *x = op_patch_embed(t, img, m->patch_w, m->patch_b, c->patch_size, "patch_embed");
    x = op_cls_pos(t, x, m->cls_token, m->pos_embed, "cls_pos");
    for (int i = 0; i < c->depth; i++) {
        DeitBlock *b = &m->blocks[i];
        Tensor *h = op_layernorm(t, x, b->norm1_w, b->norm1_b, c->ln_eps, b->norm1_w->name);
        h = linear_forward(t, &b->qkv, h);
        h = op_attention(t, h, c->num_heads, false, "attn");
        x = linear_forward_residual(t, &b->proj, h, x);  // x + proj(h)
        h = op_layernorm(t, x, b->norm2_w, b->norm2_b, c->ln_eps, b->norm2_w->name);
        h = linear_forward(t, &b->fc1, h);
        h = op_gelu(t, h, "gelu");
        x = linear_forward_residual(t, &b->fc2, h, x);
    }
    x = op_layernorm(t, x, m->norm_w, m->norm_b, c->ln_eps, "norm");
    x = op_select_token(t, x, 0, "cls");
    return linear_forward(t, &m->head, x);
}

size_t deit_param_bytes(const ModelConfig *c, DType dt) {
    int64_t D = c->embed_dim, p = c->patch_size, hidden = (int64_t)(c->mlp_ratio * (float)D);
    int64_t N = (int64_t)(c->img_size / p) * (c->img_size / p) + 1;
    int64_t per_block = 4 * D + (3 * D * D + 3 * D) + (D * D + D) + (D * hidden + hidden) + (hidden * D + D);
    int64_t n = D * c->in_chans * p * p + D + D + N * D + c->depth * per_block + 2 * D +
                D * c->num_classes + c->num_classes;
    // + alignment slack per tensor
    return (size_t)n * dtype_size(dt) + (size_t)(16 * c->depth + 16) * 128;
}

size_t deit_activation_bytes(const ModelConfig *c, int batch, DType dt) {
    int64_t D = c->embed_dim, hidden = (int64_t)(c->mlp_ratio * (float)D);
    int64_t T = (int64_t)(c->img_size / c->patch_size) * (c->img_size / c->patch_size) + 1;
    int64_t B = batch, H = c->num_heads;
    // per block, forward outputs + saved: 2 norms, qkv, attn out, proj, 2 residuals, fc1, gelu, fc2
    int64_t per_block = B * T * (D * 8 + 3 * D + 2 * hidden) + 2 * B * H * T * T + 4 * B * T;
    int64_t fwd = B * c->in_chans * (int64_t)c->img_size * c->img_size + 3 * B * T * D +
                  c->depth * per_block + 4 * B * c->num_classes;
    // backward: a gradient for every activation, plus scratch (attention and GEMM temporaries)
    size_t elems = (size_t)(2 * fwd + 4 * B * H * T * T + 4 * B * T * (3 * D + hidden));
    // 4 bytes an element for either dtype: on the GPU the bf16 activations leave the room that f32
    // gradients and the kernels' scratch take
    (void)dt;
    return elems * 4 + ((size_t)64 << 20);
}

double deit_forward_flops(const ModelConfig *c) {
    double D = c->embed_dim, hidden = c->mlp_ratio * D, p = c->patch_size;
    double Np = (double)(c->img_size / c->patch_size) * (c->img_size / c->patch_size), T = Np + 1;
    double per_block = 2 * T * (3 * D * D + D * D + 2 * D * hidden) + 2 * 2 * T * T * D;
    return 2 * Np * D * c->in_chans * p * p + c->depth * per_block + 2 * D * c->num_classes;
}
