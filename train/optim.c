#include "optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void adamw_init(AdamW *o, ParamList *pl, Device dev) {
    memset(o, 0, sizeof *o);
    for (int i = 0; i < pl->n; i++) o->n += pl->items[i].trainable;
    o->params = xcalloc((size_t)o->n, sizeof *o->params);
    o->m = xcalloc((size_t)o->n, sizeof *o->m);
    o->v = xcalloc((size_t)o->n, sizeof *o->v);
    for (int i = 0, k = 0; i < pl->n; i++) {
        if (!pl->items[i].trainable) continue;
        Param *p = &pl->items[i];
        if (dev == DEV_CPU && (p->value->device != DEV_CPU || p->value->dtype != DT_F32))
            fatal("adamw: parameter '%s' is not an fp32 CPU tensor", p->value->name);
        o->params[k] = p;
        o->m[k] = xcalloc((size_t)p->value->numel, sizeof(float));
        o->v[k] = xcalloc((size_t)p->value->numel, sizeof(float));
        k++;
    }
}

void adamw_free(AdamW *o) {
    for (int i = 0; i < o->n; i++) free(o->m[i]), free(o->v[i]);
    free(o->params), free(o->m), free(o->v);
    memset(o, 0, sizeof *o);
}

void adamw_zero_grad(AdamW *o, Arena *grads) {
    for (int i = 0; i < o->n; i++) tensor_zero(tensor_ensure_grad(o->params[i]->value, grads));
}

float adamw_clip_grad_norm(AdamW *o, float clip) {
    double sum = 0.0;
    for (int i = 0; i < o->n; i++) {
        const float *g = tensor_f32(o->params[i]->value->grad);
        for (int64_t j = 0; j < o->params[i]->value->numel; j++) sum += (double)g[j] * g[j];
    }
    float norm = (float)sqrt(sum);
    if (clip > 0 && norm > clip) {
        float s = clip / (norm + 1e-6f);  // as torch.nn.utils.clip_grad_norm_
        for (int i = 0; i < o->n; i++) {
            float *g = tensor_f32(o->params[i]->value->grad);
            for (int64_t j = 0; j < o->params[i]->value->numel; j++) g[j] *= s;
        }
    }
    return norm;
}

void adamw_step(AdamW *o, const OptimConfig *c, float lr) {
    o->step++;
    float bc1 = 1.0f - powf(c->beta1, (float)o->step), bc2 = 1.0f - powf(c->beta2, (float)o->step);
    for (int i = 0; i < o->n; i++) {
        Param *p = o->params[i];
        float *w = tensor_f32(p->value), *g = tensor_f32(p->value->grad), *m = o->m[i], *v = o->v[i];
        float decay = p->decay ? lr * c->weight_decay : 0.0f;
        for (int64_t j = 0; j < p->value->numel; j++) {
            w[j] -= decay * w[j];
            m[j] = c->beta1 * m[j] + (1.0f - c->beta1) * g[j];
            v[j] = c->beta2 * v[j] + (1.0f - c->beta2) * g[j] * g[j];
            w[j] -= lr * (m[j] / bc1) / (sqrtf(v[j] / bc2) + c->eps);
        }
    }
}

float lr_schedule(const OptimConfig *c, int64_t step, int64_t total) {
    int64_t warm = c->warmup < 1.0f ? (int64_t)(c->warmup * (float)total) : (int64_t)c->warmup;
    if (step < warm) return c->lr * (float)(step + 1) / (float)warm;
    if (total <= warm) return c->lr;
    double t = (double)(step - warm) / (double)(total - warm);
    if (t > 1.0) t = 1.0;
    return c->min_lr + (c->lr - c->min_lr) * 0.5f * (float)(1.0 + cos(M_PI * t));
}
