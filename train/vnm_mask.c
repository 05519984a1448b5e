// Importance scores and pruning masks (V:N:M, plain N:M, unstructured). See vnm_mask.h.
#include "train/vnm_mask.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// scores

static const char *score_names[] = {"magnitude", "wanda", "ria"};

int score_kind_parse(const char *s, ScoreKind *kind, Err *err) {
    for (int k = 0; k < (int)ARRAY_LEN(score_names); k++)
        if (strcmp(s, score_names[k]) == 0) {
            *kind = (ScoreKind)k;
            return 0;
        }
    return err_set(err, "score '%s': expected magnitude, wanda or ria", s);
}

const char *score_kind_name(ScoreKind kind) { return score_names[kind]; }

// RIA: relative importance |W_ij| / Σ_row |W| + |W_ij| / Σ_col |W|, times act_norm[j]^alpha.
static void scores_ria(const float *W, int64_t out, int64_t in, const float *act_norm, float alpha,
                       float *scores) {
    double *col_sum = xcalloc((size_t)in, sizeof(double));
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j++) col_sum[j] += fabsf(W[i * in + j]);
    float *inv_col = xmalloc((size_t)in * sizeof(float));
    float *act_pow = xmalloc((size_t)in * sizeof(float));
    for (int64_t j = 0; j < in; j++) {
        inv_col[j] = col_sum[j] > 0 ? (float)(1.0 / col_sum[j]) : 0.0f;
        act_pow[j] = act_norm ? powf(act_norm[j], alpha) : 1.0f;
    }
    for (int64_t i = 0; i < out; i++) {
        const float *w = W + i * in;
        double row_sum = 0;
        for (int64_t j = 0; j < in; j++) row_sum += fabsf(w[j]);
        float inv_row = row_sum > 0 ? (float)(1.0 / row_sum) : 0.0f;
        for (int64_t j = 0; j < in; j++) {
            float a = fabsf(w[j]);
            scores[i * in + j] = (a * inv_row + a * inv_col[j]) * act_pow[j];
        }
    }
    free(col_sum);
    free(inv_col);
    free(act_pow);
}

void vnm_scores(const float *W, int64_t out, int64_t in, ScoreKind kind, const float *act_norm,
                float ria_alpha, float *scores) {
    switch (kind) {
    case SCORE_MAGNITUDE:
        for (int64_t k = 0; k < out * in; k++) scores[k] = fabsf(W[k]);
        break;
    case SCORE_WANDA:
        CHECK(act_norm, "vnm_scores: wanda needs activation norms");
        for (int64_t i = 0; i < out; i++)
            for (int64_t j = 0; j < in; j++) scores[i * in + j] = fabsf(W[i * in + j]) * act_norm[j];
        break;
    case SCORE_RIA: scores_ria(W, out, in, act_norm, ria_alpha, scores); break;
    default: fatal("vnm_scores: bad score kind %d", (int)kind);
    }
}

// ---------------------------------------------------------------------------------------------
// exact V:N:M block search

void vnm_solver_init(VnmBlockSolver *s, int V, int M) {
    CHECK(V >= 1 && M >= 4 && M <= VNM_MAX_M, "vnm_solver_init: bad V=%d M=%d", V, M);
    int n = M * (M - 1) * (M - 2) * (M - 3) / 24;
    *s = (VnmBlockSolver){.V = V, .M = M, .n_subsets = n};
    s->subsets = xmalloc((size_t)n * sizeof *s->subsets);
    int k = 0;
    for (int a = 0; a < M; a++)
        for (int b = a + 1; b < M; b++)
            for (int c = b + 1; c < M; c++)
                for (int d = c + 1; d < M; d++) {
                    uint8_t *q = s->subsets[k++];
                    q[0] = (uint8_t)a, q[1] = (uint8_t)b, q[2] = (uint8_t)c, q[3] = (uint8_t)d;
                }
    s->colmajor = xmalloc((size_t)M * (size_t)V * sizeof(float));
}

void vnm_solver_free(VnmBlockSolver *s) {
    free(s->subsets);
    free(s->colmajor);
    *s = (VnmBlockSolver){0};
}

static inline float maxf(float a, float b) { return a > b ? a : b; }
static inline float minf(float a, float b) { return a < b ? a : b; }

// Sum of the two largest of (a, b, c, d): a 4-input sorting network cut down to the top two.
static inline float top2_of_4(float a, float b, float c, float d) {
    float hi1 = maxf(a, b), lo1 = minf(a, b), hi2 = maxf(c, d), lo2 = minf(c, d);
    return maxf(hi1, hi2) + maxf(minf(hi1, hi2), maxf(lo1, lo2));
}

// Σ_r top2(a[r], b[r], c[r], d[r]), in 8 independent lanes so that the compiler can vectorise
// it (a float reduction would otherwise be kept sequential). Deterministic order.
static float kept_sum(const float *a, const float *b, const float *c, const float *d, int V) {
    float lane[8] = {0};
    int r = 0;
    for (; r + 8 <= V; r += 8)
        for (int l = 0; l < 8; l++) lane[l] += top2_of_4(a[r + l], b[r + l], c[r + l], d[r + l]);
    for (; r < V; r++) lane[0] += top2_of_4(a[r], b[r], c[r], d[r]);
    return ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
}

float vnm_solver_best_cm(const VnmBlockSolver *s, const float *t, int64_t cs, int cols4[4]) {
    const int V = s->V;
    float best = -INFINITY;
    int best_k = 0;
    for (int k = 0; k < s->n_subsets; k++) {
        const uint8_t *q = s->subsets[k];
        float v = kept_sum(t + q[0] * cs, t + q[1] * cs, t + q[2] * cs, t + q[3] * cs, V);
        if (v > best) best = v, best_k = k;
    }
    if (cols4)
        for (int i = 0; i < 4; i++) cols4[i] = s->subsets[best_k][i];
    return best;
}

float vnm_solver_best(VnmBlockSolver *s, const float *block, int64_t stride, int cols4[4]) {
    const int V = s->V, M = s->M;
    float *t = s->colmajor;
    for (int r = 0; r < V; r++)
        for (int c = 0; c < M; c++) t[c * V + r] = block[r * stride + c];
    return vnm_solver_best_cm(s, t, V, cols4);
}

float vnm_block_kept_cm(const float *t, int64_t cs, int V, const int cols4[4]) {
    return kept_sum(t + cols4[0] * cs, t + cols4[1] * cs, t + cols4[2] * cs, t + cols4[3] * cs, V);
}

// ---------------------------------------------------------------------------------------------
// masks

// Marks the n largest of x[0..m) (ties: lowest index) in keep[0..m) (stride 1).
static void keep_top_n(const float *x, int m, int n, uint8_t *keep) {
    memset(keep, 0, (size_t)m);
    for (int t = 0; t < n; t++) {
        int best = -1;
        for (int j = 0; j < m; j++)
            if (!keep[j] && (best < 0 || x[j] > x[best])) best = j;
        keep[best] = 1;
    }
}

static int mask_vnm(const float *scores, int64_t out, int64_t in, VnmPattern p, uint8_t *mask) {
    VnmBlockSolver s;
    vnm_solver_init(&s, p.V, p.M);
    memset(mask, 0, (size_t)(out * in));
    for (int64_t r0 = 0; r0 < out; r0 += p.V)
        for (int64_t c0 = 0; c0 < in; c0 += p.M) {
            const float *block = scores + r0 * in + c0;
            int cols[4];
            vnm_solver_best(&s, block, in, cols);
            for (int r = 0; r < p.V; r++) {
                const float *x = block + r * in;
                float four[4] = {x[cols[0]], x[cols[1]], x[cols[2]], x[cols[3]]};
                uint8_t keep[4];
                keep_top_n(four, 4, 2, keep);
                for (int i = 0; i < 4; i++) mask[(r0 + r) * in + c0 + cols[i]] = keep[i];
            }
        }
    vnm_solver_free(&s);
    return 0;
}

static void mask_nm(const float *scores, int64_t out, int64_t in, int n, int m, uint8_t *mask) {
    for (int64_t i = 0; i < out; i++)
        for (int64_t j = 0; j < in; j += m) keep_top_n(scores + i * in + j, m, n, mask + i * in + j);
}

// k-th largest value (k counted from 0) of x[0..n), partially reordering x. Quickselect with a
// three-way partition so that many equal values cost nothing.
static float kth_largest(float *x, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n;  // the answer lies in x[lo..hi)
    for (;;) {
        float a = x[lo], b = x[lo + (hi - lo) / 2], c = x[hi - 1];
        float pivot = maxf(minf(a, b), minf(maxf(a, b), c));  // median of three
        // x[lo..gt) > pivot, x[gt..i) == pivot, x[lt..hi) < pivot
        int64_t gt = lo, i = lo, lt = hi;
        while (i < lt) {
            float v = x[i];
            if (v > pivot) x[i] = x[gt], x[gt++] = v, i++;
            else if (v < pivot) x[i] = x[--lt], x[lt] = v;
            else i++;
        }
        if (k < gt) hi = gt;
        else if (k < lt) return pivot;
        else lo = lt;
    }
}

static void mask_unstructured(const float *scores, int64_t numel, double density, uint8_t *mask) {
    int64_t kept = llround(density * (double)numel);
    memset(mask, 0, (size_t)numel);
    if (kept <= 0) return;
    float *tmp = xmalloc((size_t)numel * sizeof(float));
    memcpy(tmp, scores, (size_t)numel * sizeof(float));
    float t = kth_largest(tmp, numel, kept - 1);
    free(tmp);
    int64_t above = 0;
    for (int64_t k = 0; k < numel; k++) above += scores[k] > t;
    int64_t ties_left = kept - above;  // values equal to t, taken lowest index first
    for (int64_t k = 0; k < numel; k++) {
        if (scores[k] > t) mask[k] = 1;
        else if (scores[k] == t && ties_left > 0) mask[k] = 1, ties_left--;
    }
}

int mask_compute(const float *scores, int64_t out, int64_t in, const MaskSpec *spec,
                 const char *layer, uint8_t *mask, Err *err) {
    const char *name = layer ? layer : "?";
    for (int64_t k = 0; k < out * in; k++)
        if (!isfinite(scores[k]))
            return err_set(err, "layer '%s': non-finite score %g at (%lld, %lld)", name,
                           (double)scores[k], (long long)(k / in), (long long)(k % in));
    switch (spec->kind) {
    case MASK_VNM:
        if (spec->vnm.N != 2 || spec->vnm.M < 4 || spec->vnm.M > VNM_MAX_M || spec->vnm.V < 1)
            return err_set(err, "layer '%s': bad pattern %d:%d:%d (N must be 2, M in 4..%d)", name,
                           spec->vnm.V, spec->vnm.N, spec->vnm.M, VNM_MAX_M);
        if (vnm_pattern_fits(spec->vnm, out, in, name, err)) return -1;
        return mask_vnm(scores, out, in, spec->vnm, mask);
    case MASK_NM:
        if (in % spec->m != 0)
            return err_set(err, "layer '%s': in=%lld is not a multiple of M=%d for %d:%d sparsity",
                           name, (long long)in, spec->m, spec->n, spec->m);
        mask_nm(scores, out, in, spec->n, spec->m, mask);
        return 0;
    case MASK_UNSTRUCTURED: mask_unstructured(scores, out * in, spec->density, mask); return 0;
    }
    fatal("mask_compute: bad mask kind %d", (int)spec->kind);
}

// ---------------------------------------------------------------------------------------------
// mask statistics and checks

double mask_kept_score(const float *scores, const uint8_t *mask, int64_t n) {
    double sum = 0;
    for (int64_t k = 0; k < n; k++)
        if (mask[k]) sum += scores[k];
    return sum;
}

double mask_density(const uint8_t *mask, int64_t n) {
    int64_t kept = 0;
    for (int64_t k = 0; k < n; k++) kept += mask[k] != 0;
    return n > 0 ? (double)kept / (double)n : 0.0;
}

double mask_flip_rate(const uint8_t *old_mask, const uint8_t *new_mask, int64_t n) {
    int64_t flips = 0;
    for (int64_t k = 0; k < n; k++) flips += (old_mask[k] != 0) != (new_mask[k] != 0);
    return n > 0 ? (double)flips / (double)n : 0.0;
}

int mask_check_vnm(const uint8_t *mask, int64_t out, int64_t in, VnmPattern p, Err *err) {
    if (p.M > VNM_MAX_M) return err_set(err, "mask check: M=%d is above %d", p.M, VNM_MAX_M);
    if (vnm_pattern_fits(p, out, in, "mask", err)) return -1;
    uint8_t used[VNM_MAX_M];
    for (int64_t r0 = 0; r0 < out; r0 += p.V)
        for (int64_t c0 = 0; c0 < in; c0 += p.M) {
            memset(used, 0, sizeof used);
            for (int64_t i = r0; i < r0 + p.V; i++) {
                int kept = 0;
                for (int c = 0; c < p.M; c++) {
                    uint8_t v = mask[i * in + c0 + c];
                    if (v > 1)
                        return err_set(err, "mask value %d at (%lld, %lld) is not 0/1", v,
                                       (long long)i, (long long)(c0 + c));
                    kept += v, used[c] |= v;
                }
                if (kept != 2)
                    return err_set(err, "%d:%d:%d mask: row %lld keeps %d values in block (%lld, %lld), "
                                   "expected 2", p.V, p.N, p.M, (long long)i, kept,
                                   (long long)(r0 / p.V), (long long)(c0 / p.M));
            }
            int n_used = 0;
            for (int c = 0; c < p.M; c++) n_used += used[c];
            if (n_used > 4)
                return err_set(err, "%d:%d:%d mask: block (%lld, %lld) uses %d columns, at most 4 allowed",
                               p.V, p.N, p.M, (long long)(r0 / p.V), (long long)(c0 / p.M), n_used);
        }
    return 0;
}
