// SparseGPT: the mask has the requested structure and the updated weights reconstruct the layer's
// outputs on the calibration data better than plain magnitude pruning with the same pattern.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "train/sparsegpt.h"

#define OUT 32
#define IN 40
#define T 300

// ‖X (W − Wp)ᵀ‖²
static double output_error(const float *X, const float *W, const float *Wp) {
    double e = 0;
    for (int t = 0; t < T; t++)
        for (int o = 0; o < OUT; o++) {
            double d = 0;
            for (int i = 0; i < IN; i++) d += (double)X[t * IN + i] * (W[o * IN + i] - Wp[o * IN + i]);
            e += d * d;
        }
    return e;
}

static void check(const char *pattern) {
    Rng r;
    rng_seed(&r, 3);
    static float X[T * IN], W[OUT * IN], Wg[OUT * IN], Wm[OUT * IN], scores[OUT * IN];
    static double gram[IN * IN];
    for (int t = 0; t < T; t++) {  // correlated channels: x = z + 0.5·(shared factor)
        float f = rng_normal(&r);
        for (int i = 0; i < IN; i++) X[t * IN + i] = rng_normal(&r) + 0.5f * f * (float)(i % 3);
    }
    for (int k = 0; k < OUT * IN; k++) W[k] = rng_normal(&r);
    memset(gram, 0, sizeof gram);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < IN; i++)
            for (int j = 0; j < IN; j++) gram[i * IN + j] += (double)X[t * IN + i] * X[t * IN + j];
    MaskSpec spec;
    Err err;
    cr_assert_eq(mask_spec_parse(pattern, &spec, &err), 0, "%s", err.msg);
    uint8_t mask[OUT * IN], mmask[OUT * IN];
    memcpy(Wg, W, sizeof W);
    cr_assert_eq(sparsegpt_prune(Wg, gram, OUT, IN, &spec, "t", mask, &err), 0, "%s", err.msg);
    for (int k = 0; k < OUT * IN; k++) {
        scores[k] = fabsf(W[k]);
        if (!mask[k]) cr_assert_eq(Wg[k], 0.0f);
    }
    cr_expect_float_eq(mask_density(mask, OUT * IN), spec.density, 1e-9);
    if (spec.kind == MASK_VNM) cr_expect_eq(mask_check_vnm(mask, OUT, IN, spec.vnm, &err), 0, "%s", err.msg);
    cr_assert_eq(mask_compute(scores, OUT, IN, &spec, "t", mmask, &err), 0);
    for (int k = 0; k < OUT * IN; k++) Wm[k] = mmask[k] ? W[k] : 0.0f;
    double eg = output_error(X, W, Wg), em = output_error(X, W, Wm);
    cr_expect(eg < 0.8 * em, "%s: sparsegpt output error %.4g vs magnitude %.4g", pattern, eg, em);
}

Test(sparsegpt, vnm_beats_magnitude) { check("16:2:8"); }
Test(sparsegpt, two_four_beats_magnitude) { check("2:4"); }

Test(sparsegpt, rejects_unstructured) {
    MaskSpec spec;
    Err err;
    cr_assert_eq(mask_spec_parse("unstructured:0.5", &spec, &err), 0);
    static float W[4 * 8];
    static double g[8 * 8];
    uint8_t m[32];
    cr_expect_eq(sparsegpt_prune(W, g, 4, 8, &spec, "layer7", m, &err), -1);
    cr_expect(strstr(err.msg, "layer7"), "%s", err.msg);
}
