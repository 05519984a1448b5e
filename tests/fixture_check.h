// Comparisons against a PyTorch fixture (safetensors written by tests/reference/make_*_fixture.py),
// shared by the model tests.
#pragma once
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

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
