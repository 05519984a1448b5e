// Fused CUDA AdamW (kernels/adamw.h) against a double-precision reference of the same update
// (PyTorch AdamW semantics, global-norm clipping), over parameters that span several 64k chunks.
// Tolerances: fp32 master weights 1e-5 relative L2 (fp32 vs double), grad norm 1e-5 relative,
// the bf16 model copy equal to the master rounded to bf16, gradients zero after each step.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "autograd/rng.h"
#include "autograd/tensor.h"
#include "kernels/adamw.h"

#define NP 4
static const int64_t SIZES[NP] = {150001, 1000, 3, 65536};
static const bool DECAY[NP] = {true, false, true, true};

typedef struct Ref {
    double *w, *m, *v;
} Ref;

static double ref_norm(float *const *grads) {
    double s = 0.0;
    for (int p = 0; p < NP; p++)
        for (int64_t i = 0; i < SIZES[p]; i++) s += (double)grads[p][i] * grads[p][i];
    return sqrt(s);
}

static void ref_step(Ref *r, float *const *grads, double lr, double b1, double b2, double eps, double wd, double clip,
                     int64_t step) {
    double norm = ref_norm(grads);
    double coef = clip > 0 ? fmin(1.0, clip / (norm + 1e-6)) : 1.0;
    double bc1 = 1.0 - pow(b1, (double)step), bc2 = 1.0 - pow(b2, (double)step);
    for (int p = 0; p < NP; p++)
        for (int64_t i = 0; i < SIZES[p]; i++) {
            double g = grads[p][i] * coef;
            r[p].m[i] = b1 * r[p].m[i] + (1 - b1) * g;
            r[p].v[i] = b2 * r[p].v[i] + (1 - b2) * g * g;
            if (DECAY[p]) r[p].w[i] *= 1.0 - lr * wd;
            r[p].w[i] -= lr / bc1 * r[p].m[i] / (sqrt(r[p].v[i]) / sqrt(bc2) + eps);
        }
}

static void run(DType grad_dtype, float clip) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    Arena arena;
    arena_init(&arena, "params", DEV_CUDA, 8 << 20);
    Rng rng;
    rng_seed(&rng, 5);
    Tensor *values[NP];
    Ref ref[NP];
    float *grads[NP];
    for (int p = 0; p < NP; p++) {
        values[p] = tensor_new1(&arena, DT_BF16, SIZES[p], "w");
        values[p]->requires_grad = true;
        values[p]->grad_f32 = grad_dtype == DT_F32;
        tensor_ensure_grad(values[p], &arena);
        float *h = malloc((size_t)SIZES[p] * sizeof *h);
        ref[p].w = calloc((size_t)SIZES[p], sizeof(double));
        ref[p].m = calloc((size_t)SIZES[p], sizeof(double));
        ref[p].v = calloc((size_t)SIZES[p], sizeof(double));
        for (int64_t i = 0; i < SIZES[p]; i++) {
            h[i] = rng_normal(&rng) * 0.1f;
            ref[p].w[i] = h[i];
        }
        tensor_set_f32(values[p], h, SIZES[p]);
        grads[p] = malloc((size_t)SIZES[p] * sizeof(float));
        free(h);
    }
    AdamwCudaGroup *g = adamw_cuda_create(NP, values, DECAY);
    for (int p = 0; p < NP; p++) {  // exact fp32 masters (not the bf16-rounded values)
        float *h = malloc((size_t)SIZES[p] * sizeof *h);
        for (int64_t i = 0; i < SIZES[p]; i++) h[i] = (float)ref[p].w[i];
        adamw_cuda_set_master(g, p, h);
        free(h);
    }
    for (int64_t step = 1; step <= 3; step++) {
        for (int p = 0; p < NP; p++) {
            for (int64_t i = 0; i < SIZES[p]; i++) {
                float v = rng_normal(&rng) * (p == 2 ? 5.0f : 0.01f);
                grads[p][i] = grad_dtype == DT_BF16 ? bf16_to_f32(f32_to_bf16(v)) : v;
            }
            tensor_set_f32(values[p]->grad, grads[p], SIZES[p]);
        }
        float norm = 0.0f;
        adamw_cuda_step(g, 1e-3f, 0.9f, 0.999f, 1e-8f, 0.05f, clip, step, &norm);
        double want_norm = ref_norm(grads);
        ref_step(ref, grads, 1e-3, 0.9, 0.999, 1e-8, 0.05, clip, step);
        cr_expect(fabs(norm - want_norm) <= 1e-5 * want_norm, "step %lld: grad norm %.8g, want %.8g", (long long)step, norm,
                  want_norm);
        for (int p = 0; p < NP; p++) {
            float *master = malloc((size_t)SIZES[p] * sizeof *master), *model = malloc((size_t)SIZES[p] * sizeof *model);
            float *gr = malloc((size_t)SIZES[p] * sizeof *gr);
            adamw_cuda_get_state(g, p, master, NULL, NULL);
            tensor_get_f32(values[p], model, SIZES[p]);
            tensor_get_f32(values[p]->grad, gr, SIZES[p]);
            double num = 0, den = 0;
            int64_t bad_copy = 0, nonzero_grad = 0;
            for (int64_t i = 0; i < SIZES[p]; i++) {
                num += (master[i] - ref[p].w[i]) * (master[i] - ref[p].w[i]);
                den += ref[p].w[i] * ref[p].w[i];
                bad_copy += model[i] != bf16_to_f32(f32_to_bf16(master[i]));
                nonzero_grad += gr[i] != 0.0f;
            }
            double err = sqrt(num) / sqrt(den);
            cr_expect(err < 1e-5, "step %lld param %d: master rel err %.3g", (long long)step, p, err);
            cr_expect(bad_copy == 0, "step %lld param %d: %lld model values differ from bf16(master)", (long long)step, p,
                      (long long)bad_copy);
            cr_expect(nonzero_grad == 0, "step %lld param %d: %lld gradients not zeroed", (long long)step, p,
                      (long long)nonzero_grad);
            free(master);
            free(model);
            free(gr);
        }
    }
    adamw_cuda_free(g);
    for (int p = 0; p < NP; p++) {
        free(ref[p].w);
        free(ref[p].m);
        free(ref[p].v);
        free(grads[p]);
    }
    arena_free(&arena);
}

Test(adamw_cuda, f32_grads_clipped) { run(DT_F32, 1.0f); }
Test(adamw_cuda, bf16_grads_unclipped) { run(DT_BF16, 0.0f); }
