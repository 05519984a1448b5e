#include "sparsegpt.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// In-place lower Cholesky factor of the SPD matrix a (n, n): a = L Lᵀ. Returns -1 if not SPD.
static int cholesky_lower(double *a, int64_t n) {
    for (int64_t j = 0; j < n; j++) {
        double d = a[j * n + j];
        for (int64_t k = 0; k < j; k++) d -= a[j * n + k] * a[j * n + k];
        if (d <= 0) return -1;
        d = sqrt(d);
        a[j * n + j] = d;
        for (int64_t i = j + 1; i < n; i++) {
            double s = a[i * n + j];
            for (int64_t k = 0; k < j; k++) s -= a[i * n + k] * a[j * n + k];
            a[i * n + j] = s / d;
        }
        for (int64_t k = j + 1; k < n; k++) a[j * n + k] = 0;
    }
    return 0;
}

// H⁻¹ from its lower Cholesky factor L: H⁻¹ = L⁻ᵀ L⁻¹ (out (n, n)).
static void inverse_from_cholesky(const double *L, int64_t n, double *out) {
    double *Linv = calloc((size_t)(n * n), sizeof *Linv);
    for (int64_t c = 0; c < n; c++) {  // column c of L⁻¹ by forward substitution
        for (int64_t i = c; i < n; i++) {
            double s = i == c ? 1.0 : 0.0;
            for (int64_t k = c; k < i; k++) s -= L[i * n + k] * Linv[k * n + c];
            Linv[i * n + c] = s / L[i * n + i];
        }
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t k = i > j ? i : j; k < n; k++) s += Linv[k * n + i] * Linv[k * n + j];
            out[i * n + j] = s;
        }
    free(Linv);
}

int sparsegpt_prune(float *W, const double *gram, int64_t out, int64_t in, const MaskSpec *spec, const char *layer,
                    uint8_t *mask, Err *err) {
    if (spec->kind == MASK_UNSTRUCTURED) return err_set(err, "%s: sparsegpt supports V:N:M and N:M masks", layer);
    int64_t group = spec->kind == MASK_VNM ? spec->vnm.M : spec->m;
    if (in % group) return err_set(err, "%s: %lld input channels are not a multiple of %lld", layer, (long long)in, (long long)group);
    double *H = malloc((size_t)(in * in) * sizeof *H), *U = malloc((size_t)(in * in) * sizeof *U);
    memcpy(H, gram, (size_t)(in * in) * sizeof *H);
    double mean_diag = 0;
    for (int64_t j = 0; j < in; j++) mean_diag += H[j * in + j] / (double)in;
    for (int64_t j = 0; j < in; j++) {
        if (H[j * in + j] == 0) {  // a channel that is never active: its weights do not matter
            H[j * in + j] = 1;
            for (int64_t r = 0; r < out; r++) W[r * in + j] = 0;
        }
        H[j * in + j] += 0.01 * (mean_diag > 0 ? mean_diag : 1);
    }
    int rc = cholesky_lower(H, in);
    if (rc == 0) {
        inverse_from_cholesky(H, in, U);  // U = H⁻¹ ...
        rc = cholesky_lower(U, in);       // ... = L2 L2ᵀ; the upper factor is L2ᵀ: U_jk = L2[k][j]
    }
    if (rc) {
        free(H), free(U);
        return err_set(err, "%s: the calibration Gram matrix is not positive definite", layer);
    }
    float *scores = malloc((size_t)(out * group) * sizeof *scores);
    uint8_t *gmask = malloc((size_t)(out * group));
    MaskSpec gspec = *spec;
    for (int64_t j0 = 0; j0 < in && rc == 0; j0 += group) {
        for (int64_t r = 0; r < out; r++)
            for (int64_t c = 0; c < group; c++) {
                double d = U[(j0 + c) * in + (j0 + c)], w = W[r * in + j0 + c];
                scores[r * group + c] = (float)(w * w / (d * d));
            }
        rc = mask_compute(scores, out, group, &gspec, layer, gmask, err);
        for (int64_t c = 0; c < group && rc == 0; c++) {
            int64_t j = j0 + c;
            double ujj = U[j * in + j];
            for (int64_t r = 0; r < out; r++) {
                bool keep = gmask[r * group + c];
                mask[r * in + j] = keep;
                double w = W[r * in + j], e = keep ? 0.0 : w / ujj;
                if (!keep) W[r * in + j] = 0;
                if (e != 0)
                    for (int64_t k = j + 1; k < in; k++) W[r * in + k] -= (float)(e * U[k * in + j]);
            }
        }
    }
    free(H), free(U), free(scores), free(gmask);
    return rc;
}
