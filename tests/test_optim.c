// AdamW against the torch.optim.AdamW update written out by hand, the warmup + cosine schedule,
// and global-norm clipping.
#include <criterion/criterion.h>
#include <math.h>

#include "train/optim.h"

static Arena arena, grads;

static Tensor *param(ParamList *pl, const char *name, float value, float grad, bool decay) {
    Tensor *t = tensor_new1(&arena, DT_F32, 1, name);
    tensor_f32(t)[0] = value;
    params_add(pl, t, PARAM_BASE, true, decay);
    tensor_f32(tensor_ensure_grad(t, &grads))[0] = grad;
    return t;
}

Test(optim, adamw_matches_torch_formula) {
    arena_init(&arena, "p", DEV_CPU, 1 << 16);
    arena_init(&grads, "g", DEV_CPU, 1 << 16);
    ParamList pl = {0};
    Tensor *w = param(&pl, "w", 0.5f, 0.2f, true), *b = param(&pl, "b", -1.0f, -0.3f, false);
    OptimConfig c = {.lr = 0.1f, .weight_decay = 0.05f, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    AdamW o;
    adamw_init(&o, &pl, DEV_CPU);
    adamw_step(&o, &c, c.lr);
    // step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+eps) = ±lr; decay only on w
    cr_expect_float_eq(tensor_f32(w)[0], 0.5f * (1 - 0.1f * 0.05f) - 0.1f, 1e-6);
    cr_expect_float_eq(tensor_f32(b)[0], -1.0f + 0.1f, 1e-6);
    tensor_f32(w->grad)[0] = -0.4f;
    float w1 = tensor_f32(w)[0];
    adamw_step(&o, &c, c.lr);
    double m = 0.9 * 0.1 * 0.2 + 0.1 * -0.4, v = 0.999 * 0.001 * 0.04 + 0.001 * 0.16;
    double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
    double want = w1 * (1 - 0.1 * 0.05) - 0.1 * mh / (sqrt(vh) + 1e-8);
    cr_expect(fabs(tensor_f32(w)[0] - want) < 1e-5, "w %f want %f", tensor_f32(w)[0], want);
    adamw_free(&o);
    params_free(&pl);
    arena_free(&arena), arena_free(&grads);
}

Test(optim, clip_grad_norm) {
    arena_init(&arena, "p", DEV_CPU, 1 << 16);
    arena_init(&grads, "g", DEV_CPU, 1 << 16);
    ParamList pl = {0};
    Tensor *a = param(&pl, "a", 0, 3.0f, true), *b = param(&pl, "b", 0, 4.0f, true);
    AdamW o;
    adamw_init(&o, &pl, DEV_CPU);
    cr_expect_float_eq(adamw_clip_grad_norm(&o, 1.0f), 5.0f, 1e-6);
    cr_expect_float_eq(tensor_f32(a->grad)[0], 0.6f, 1e-5);
    cr_expect_float_eq(tensor_f32(b->grad)[0], 0.8f, 1e-5);
    cr_expect_float_eq(adamw_clip_grad_norm(&o, 10.0f), 1.0f, 1e-5);  // below the limit: unchanged
    cr_expect_float_eq(tensor_f32(b->grad)[0], 0.8f, 1e-5);
    adamw_free(&o);
    params_free(&pl);
    arena_free(&arena), arena_free(&grads);
}

Test(optim, warmup_then_cosine) {
    OptimConfig c = {.lr = 1.0f, .min_lr = 0.1f, .warmup = 0.1f};
    cr_expect_float_eq(lr_schedule(&c, 0, 100), 0.1f, 1e-6);   // (0+1)/10
    cr_expect_float_eq(lr_schedule(&c, 9, 100), 1.0f, 1e-6);   // end of warmup
    cr_expect_float_eq(lr_schedule(&c, 10, 100), 1.0f, 1e-6);  // cosine starts at lr
    cr_expect_float_eq(lr_schedule(&c, 55, 100), 0.55f, 1e-5); // halfway: (lr + min_lr)/2
    cr_expect_float_eq(lr_schedule(&c, 100, 100), 0.1f, 1e-6);
    c.warmup = 5;  // a step count
    cr_expect_float_eq(lr_schedule(&c, 4, 100), 1.0f, 1e-6);
}
