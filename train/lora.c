#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"

static bool matches_any(const Linear *l, const LoraConfig *cfg) {
    for (int i = 0; i < cfg->n_targets; i++)
        if (linear_name_matches(l, cfg->targets[i])) return true;
    return false;
}

static void set_trainable(Param *p, bool on) {
    p->trainable = on;
    p->value->requires_grad = on;
}

int lora_attach(Linear **linears, int n, ParamList *params, Arena *arena, const LoraConfig *cfg, uint64_t seed) {
    for (int i = 0; i < params->n; i++)
        if (params->items[i].kind == PARAM_BASE) set_trainable(&params->items[i], false);
    Rng r;
    rng_seed(&r, seed ^ 0x10a4a10a4ull);
    DType dt = arena->device == DEV_CPU ? DT_F32 : DT_BF16;
    int adapted = 0;
    for (int k = 0; k < n; k++) {
        Linear *l = linears[k];
        if (cfg->train_head && (strcmp(l->name, "head") == 0 || strcmp(l->name, "lm_head") == 0)) {
            set_trainable(params_find(params, l->w->name), true);
            if (l->b) set_trainable(params_find(params, l->b->name), true);
            continue;
        }
        if (!matches_any(l, cfg)) continue;
        char nm[TENSOR_NAME_LEN];
        snprintf(nm, sizeof nm, "%s.lora_A", l->name);
        l->lora_A = tensor_new2(arena, dt, cfg->rank, l->in, nm);
        snprintf(nm, sizeof nm, "%s.lora_B", l->name);
        l->lora_B = tensor_new2(arena, dt, l->out, cfg->rank, nm);  // zeros
        float bound = 1.0f / sqrtf((float)l->in);
        float *h = xmalloc((size_t)l->lora_A->numel * sizeof *h);
        for (int64_t i = 0; i < l->lora_A->numel; i++) h[i] = (2.0f * rng_uniform(&r) - 1.0f) * bound;
        tensor_set_f32(l->lora_A, h, l->lora_A->numel);
        free(h);
        l->lora_scale = cfg->alpha / (float)cfg->rank;
        l->lora_dropout = cfg->dropout;
        params_add(params, l->lora_A, PARAM_LORA, true, true);
        params_add(params, l->lora_B, PARAM_LORA, true, true);
        adapted++;
    }
    return adapted;
}

void lora_merge(Linear *l, ParamList *params) {
    if (!l->lora_A) return;
    int64_t out = l->out, in = l->in, r = l->lora_A->shape[0];
    float *W = tensor_to_host_f32(l->w), *A = tensor_to_host_f32(l->lora_A), *B = tensor_to_host_f32(l->lora_B);
    for (int64_t o = 0; o < out; o++)
        for (int64_t k = 0; k < r; k++) {
            float s = l->lora_scale * B[o * r + k];
            for (int64_t i = 0; i < in; i++) W[o * in + i] += s * A[k * in + i];
        }
    tensor_set_f32(l->w, W, out * in);
    free(W), free(A), free(B);
    Param *pa = params_find(params, l->lora_A->name), *pb = params_find(params, l->lora_B->name);
    if (pa) set_trainable(pa, false);
    if (pb) set_trainable(pb, false);
    l->lora_A = l->lora_B = NULL;
    if (l->mask) linear_apply_mask(l);
}

void linear_apply_mask(Linear *l) {
    if (!l->mask) return;
    float *W = tensor_to_host_f32(l->w);
    uint8_t *mask = xmalloc((size_t)l->mask->numel);
    tensor_read_host(l->mask, mask);
    for (int64_t i = 0; i < l->w->numel; i++)
        if (!mask[i]) W[i] = 0.0f;
    tensor_set_f32(l->w, W, l->w->numel);
    free(W), free(mask);
}
