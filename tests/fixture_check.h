// Comparisons against a PyTorch fixture (safetensors written by tests/reference/make_*_fixture.py),
// shared by the model tests.
#pragma once
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

#include "autograd/tensor.h"
#include "train/safetensors.h"

// The whole fixture tensor `name` as fp32 (malloc'ed: free it); its element count into *n.
__attribute__((unused)) static float *fixture_read(const StFile *st, const char *name, int64_t *n) {
    const StEntry *e = st_find(st, name);
    cr_assert(e, "fixture lacks '%s'", name);
    float *v = malloc((size_t)e->numel * sizeof *v);
    Err err;
    cr_assert_eq(st_read_f32(st, name, v, e->ndim, e->shape, &err), 0, "%s", err.msg);
    *n = e->numel;
    return v;
}

// Expects max |got - ref| / max |ref| < tol over the tensor.
__attribute__((unused)) static void fixture_expect_close(const StFile *st, const char *ref_name, const float *got,
                                                         int64_t n, double tol) {
    int64_t m;
    float *ref = fixture_read(st, ref_name, &m);
    cr_assert_eq(m, n, "%s: %lld values, fixture has %lld", ref_name, (long long)n, (long long)m);
    double diff = 0, scale = 1e-12;
    for (int64_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)got[i] - ref[i]));
        scale = fmax(scale, fabs((double)ref[i]));
    }
    cr_expect(diff / scale < tol, "%s: max abs diff %.3g, relative %.3g (tolerance %.1g)", ref_name, diff, diff / scale, tol);
    free(ref);
}

// ‖got − want‖ / ‖want‖ (relative L2): the measure for bf16 GPU results, where every activation is
// rounded and elementwise maxima are noisy.
__attribute__((unused)) static double rel_l2(const float *got, const float *want, int64_t n) {
    double num = 0, den = 0;
    for (int64_t e = 0; e < n; e++) num += (got[e] - want[e]) * (double)(got[e] - want[e]), den += want[e] * (double)want[e];
    return sqrt(num) / (sqrt(den) + 1e-30);
}

// Expects rel_l2(tensor `got` (any device, any dtype), fixture tensor `ref`) < tol; prints the error.
__attribute__((unused)) static void fixture_expect_near(const StFile *st, const char *ref, const Tensor *got, double tol) {
    int64_t n;
    float *want = fixture_read(st, ref, &n), *h = tensor_to_host_f32(got);
    cr_assert_eq(n, got->numel, "%s: size", ref);
    double e = rel_l2(h, want, n);
    printf("  %-52s rel err %.2e (tol %.0e)\n", ref, e, tol);
    cr_expect(e < tol, "%s: relative L2 error %.3g (tolerance %.1g)", ref, e, tol);
    free(want), free(h);
}
