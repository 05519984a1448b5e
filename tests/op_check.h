// Finite-difference gradient checks of ops (shared by tests/test_ops*.c).
//
// A case builds one op (or a small chain) from inputs in a persistent arena. The scalar loss is
// L = Σ out ⊙ R for a fixed random R (or out itself when it has one element, then through
// tape_backward). Backward is compared with central differences of the forward (eval mode,
// tape->counter reset so dropout draws the same mask). Gradients start at GRAD_PREFILL so the
// check also proves that kernels accumulate (+=) instead of overwriting.
#pragma once
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/rng.h"

#define GRAD_PREFILL 0.25f
#define FD_EPS 1e-3f
#define FD_TOL 1e-2

static Arena g_inputs, g_act;
static float g_fd_eps;  // finite-difference step, FD_EPS unless a case needs a larger one
static Tape g_tape;
static Rng g_rng;

static inline void op_check_setup(void) {
    arena_init(&g_inputs, "inputs", DEV_CPU, 4 << 20);
    arena_init(&g_act, "act", DEV_CPU, 16 << 20);
    tape_init(&g_tape, &g_act);
    g_tape.seed = 1234;
    g_fd_eps = FD_EPS;
    rng_seed(&g_rng, 42);
}

static inline void op_check_teardown(void) {
    tape_free(&g_tape);
    arena_free(&g_act);
    arena_free(&g_inputs);
}

static inline void fill_normal(Tensor *t, float scale) {
    for (int64_t e = 0; e < t->numel; e++) tensor_f32(t)[e] = scale * rng_normal(&g_rng);
}

// A random f32 input; `grad` makes it trainable with a gradient prefilled to GRAD_PREFILL.
static inline Tensor *input(const char *name, bool grad, float scale, int ndim, int64_t d0, int64_t d1, int64_t d2,
                     int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    Tensor *t = tensor_new(&g_inputs, DT_F32, ndim, shape, name);
    fill_normal(t, scale);
    if (grad) {
        t->requires_grad = true;
        Tensor *g = tensor_ensure_grad(t, &g_inputs);
        for (int64_t e = 0; e < g->numel; e++) tensor_f32(g)[e] = GRAD_PREFILL;
    }
    return t;
}
#define IN1(name, grad, d0) input(name, grad, 1.0f, 1, d0, 0, 0, 0)
#define IN2(name, grad, d0, d1) input(name, grad, 1.0f, 2, d0, d1, 0, 0)
#define IN3(name, grad, d0, d1, d2) input(name, grad, 1.0f, 3, d0, d1, d2, 0)
#define IN4(name, grad, d0, d1, d2, d3) input(name, grad, 1.0f, 4, d0, d1, d2, d3)

static inline Tensor *int_input(const char *name, int ndim, const int64_t *shape, const int32_t *values) {
    Tensor *t = tensor_new(&g_inputs, DT_I32, ndim, shape, name);
    memcpy(t->data, values, (size_t)t->numel * sizeof *values);
    return t;
}

typedef Tensor *(*BuildFn)(Tape *t, void *ctx);

static inline double weighted_sum(const Tensor *out, const float *R) {
    double s = 0.0;
    for (int64_t e = 0; e < out->numel; e++) s += (double)tensor_f32(out)[e] * R[e];
    return s;
}

// Forward only, not recorded, with the dropout stream of the recorded run.
static inline double eval_loss(BuildFn build, void *ctx, const float *R) {
    tape_reset(&g_tape);
    g_tape.counter = 0;
    g_tape.record = false;
    Tensor *out = build(&g_tape, ctx);
    g_tape.record = true;
    return weighted_sum(out, R);
}

// Seeds out->grad = R and runs the recorded nodes backward (tape_backward for a 1-element out).
static inline void backward_seeded(Tensor *out, const float *R) {
    if (out->numel == 1) {
        tape_backward(&g_tape, out);
        return;
    }
    Tensor *g = tensor_ensure_grad(out, &g_act);
    memcpy(g->data, R, (size_t)out->numel * sizeof *R);
    for (int k = g_tape.n - 1; k >= 0; k--) {
        TapeNode *node = &g_tape.nodes[k];
        if (!node->out[0]->grad) continue;
        for (int i = 0; i < node->nin; i++)
            if (node->in[i] && node->in[i]->requires_grad) tensor_ensure_grad(node->in[i], &g_act);
        g_ops[node->op].backward[DEV_CPU](node);
    }
}

// Worst relative error over the checked inputs: per element |analytic - numeric| divided by
// |numeric| + 5% of the tensor's largest numeric gradient (so near-zero entries are not judged
// on float rounding alone).
static inline double grad_check(const char *label, BuildFn build, void *ctx, Tensor **check, int ncheck) {
    tape_reset(&g_tape);
    g_tape.counter = 0;
    g_tape.record = true;
    Tensor *out = build(&g_tape, ctx);
    cr_assert(g_tape.n > 0, "%s: nothing recorded", label);
    float *R = malloc((size_t)out->numel * sizeof *R);
    for (int64_t e = 0; e < out->numel; e++) R[e] = out->numel == 1 ? 1.0f : rng_normal(&g_rng);
    backward_seeded(out, R);
    double worst = 0.0;
    for (int c = 0; c < ncheck; c++) {
        Tensor *x = check[c];
        float *v = tensor_f32(x), *g = tensor_f32(x->grad);
        double *num = malloc((size_t)x->numel * sizeof *num), scale = 1e-3;
        for (int64_t e = 0; e < x->numel; e++) {
            float keep = v[e];
            v[e] = keep + g_fd_eps;
            double lp = eval_loss(build, ctx, R);
            v[e] = keep - g_fd_eps;
            double lm = eval_loss(build, ctx, R);
            v[e] = keep;
            num[e] = (lp - lm) / (2.0 * g_fd_eps);
            scale = fmax(scale, fabs(num[e]));
        }
        double err = 0.0;
        for (int64_t e = 0; e < x->numel; e++) {
            double analytic = (double)g[e] - GRAD_PREFILL;
            err = fmax(err, fabs(analytic - num[e]) / (fabs(num[e]) + 0.05 * scale));
        }
        printf("  %-28s d%-8s max|grad| %.3g  rel err %.2e\n", label, x->name, scale, err);
        cr_expect(err < FD_TOL, "%s: gradient of %s off by %.3g (relative)", label, x->name, err);
        worst = fmax(worst, err);
        free(num);
    }
    free(R);
    return worst;
}

#define GRAD_CHECK(label, build, ctx, ...)                                                   \
    do {                                                                                      \
        Tensor *check_[] = {__VA_ARGS__};                                                     \
        grad_check(label, build, ctx, check_, (int)(sizeof check_ / sizeof check_[0]));      \
    } while (0)
