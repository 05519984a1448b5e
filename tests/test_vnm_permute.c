// V:N:M channel permutation search (train/vnm_permute.c).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "autograd/tensor.h"
#include "train/vnm_mask.h"
#include "train/vnm_permute.h"

static void random_abs(float *s, int64_t n, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) s[i] = fabsf(rng_normal(&r));
}

// Kept score of the V:N:M mask of scores permuted by (perm_in, perm_out), from scratch.
static double permuted_kept(const float *S, int64_t out, int64_t in, VnmPattern p,
                            const int32_t *perm_in, const int32_t *perm_out) {
    float *Sp = xmalloc(out * in * sizeof(float));
    uint8_t *mask = xmalloc(out * in);
    vnm_permute_apply(S, out, in, perm_in, perm_out, Sp);
    MaskSpec spec = {.kind = MASK_VNM, .vnm = p};
    Err err = {{0}};
    cr_assert_eq(mask_compute(Sp, out, in, &spec, "t", mask, &err), 0, "%s", err.msg);
    double kept = mask_kept_score(Sp, mask, out * in);
    free(Sp);
    free(mask);
    return kept;
}

static bool is_identity(const int32_t *perm, int64_t n) {
    for (int64_t k = 0; k < n; k++)
        if (perm[k] != k) return false;
    return true;
}

// Runs the search and checks the invariants; returns the relative gain.
static double search_and_check(const float *S, int64_t out, int64_t in, VnmPattern p,
                               VnmPermuteOptions opt, int32_t *pi, int32_t *po, VnmPermuteStats *st) {
    Err err = {{0}};
    cr_assert_eq(vnm_permute_search(S, out, in, p, &opt, "t", pi, po, st, &err), 0, "%s", err.msg);
    cr_assert_eq(vnm_check_perm(pi, in, "perm_in", &err), 0, "%s", err.msg);
    cr_assert_eq(vnm_check_perm(po, out, "perm_out", &err), 0, "%s", err.msg);
    int32_t *id_in = xmalloc(in * sizeof(int32_t));
    for (int64_t k = 0; k < in; k++) id_in[k] = (int32_t)k;
    double before = permuted_kept(S, out, in, p, id_in, NULL);
    double after = permuted_kept(S, out, in, p, pi, po);
    free(id_in);
    cr_log_info("kept %g -> %g (%+.2f%%), col swaps %lld/%lld, row swaps %lld/%lld, %.2fs", before,
                after, 100 * (after / before - 1), (long long)st->col_swaps, (long long)st->col_tries,
                (long long)st->row_swaps, (long long)st->row_tries, st->seconds);
    cr_assert(after >= before * (1 - 1e-6), "kept %g < identity %g", after, before);
    cr_assert_float_eq(before, st->kept_identity, 1e-5 * before);
    cr_assert_float_eq(after, st->kept_final, 1e-5 * after, "%g vs stats %g", after, st->kept_final);
    return after / before - 1;
}

Test(vnm_permute, never_below_identity_on_random_scores) {
    int64_t out = 128, in = 240;
    float *S = xmalloc(out * in * sizeof(float));
    int32_t pi[240], po[128];
    int Ms[] = {5, 8, 6};
    for (size_t t = 0; t < ARRAY_LEN(Ms); t++) {
        VnmPattern p = {16, 2, Ms[t]};
        random_abs(S, out * in, 100 + t);
        VnmPermuteOptions opt = vnm_permute_defaults();
        opt.time_budget_s = 0.3;
        VnmPermuteStats st;
        double gain = search_and_check(S, out, in, p, opt, pi, po, &st);
        cr_assert(gain >= 0);
        cr_assert(st.col_tries > 0);
    }
    free(S);
}

// Heavy channels crowded into the first column block: 6 heavy channels compete for 4 columns
// (and 2 per row), so spreading them over the blocks gains a lot.
Test(vnm_permute, spreads_heavy_channels) {
    int64_t out = 32, in = 64;
    VnmPattern p = {8, 2, 8};
    float *S = xmalloc(out * in * sizeof(float));
    random_abs(S, out * in, 9);
    for (int64_t i = 0; i < out; i++)
        for (int j = 0; j < 6; j++) S[i * in + j] *= 20;
    int32_t pi[64], po[32];
    VnmPermuteOptions opt = vnm_permute_defaults();
    opt.time_budget_s = 0.5;
    opt.try_striped_start = false;  // the swap search alone must find it
    VnmPermuteStats st;
    double gain = search_and_check(S, out, in, p, opt, pi, po, &st);
    cr_assert(gain > 0.5, "gain %g", gain);
    // each column block ends up with at most 2 of the 6 heavy channels
    for (int64_t c = 0; c < in / p.M; c++) {
        int heavy = 0;
        for (int m = 0; m < p.M; m++) heavy += pi[c * p.M + m] < 6;
        cr_assert_leq(heavy, 2, "block %lld has %d heavy channels", (long long)c, heavy);
    }
}

// Three kinds of rows, each strong in 2 different columns of every column block; interleaved
// so that every row block mixes all three and its 4 shared columns cannot serve them all.
Test(vnm_permute, groups_rows_of_the_same_kind) {
    int64_t out = 24, in = 16;
    VnmPattern p = {4, 2, 8};
    float S[24 * 16];
    random_abs(S, out * in, 21);
    for (int64_t i = 0; i < out; i++)
        for (int64_t c = 0; c < in; c += 8)
            for (int k = 0; k < 2; k++) S[i * in + c + 2 * (i % 3) + k] += 10;
    int32_t pi[16], po[24];
    VnmPermuteOptions opt = vnm_permute_defaults();
    opt.time_budget_s = 0.5;
    VnmPermuteStats st;
    double gain = search_and_check(S, out, in, p, opt, pi, po, &st);
    cr_assert(st.row_swaps > 0);
    cr_assert(gain > 0.1, "gain %g", gain);

    opt.permute_rows = false;
    search_and_check(S, out, in, p, opt, pi, po, &st);
    cr_assert(is_identity(po, out));
    cr_assert_eq(st.row_tries, 0);
}

Test(vnm_permute, apply_and_unpermute) {
    const float W[6] = {1, 2, 3, 4, 5, 6};  // (2, 3)
    const int32_t pi[3] = {2, 0, 1}, po[2] = {1, 0};
    float Wp[6];
    vnm_permute_apply(W, 2, 3, pi, po, Wp);
    const float want[6] = {6, 4, 5, 3, 1, 2};
    cr_assert_arr_eq(Wp, want, sizeof want);
    const uint8_t mp[6] = {1, 0, 0, 0, 1, 1};
    uint8_t mo[6];
    vnm_unpermute_mask(mp, 2, 3, pi, po, mo);
    // mask_perm[r][k] belongs to W[po[r]][pi[k]]: (0,0)->(1,2); (1,1)->(0,0); (1,2)->(0,1)
    const uint8_t want_m[6] = {1, 1, 0, 0, 0, 1};
    cr_assert_arr_eq(mo, want_m, 6);
}

Test(vnm_permute, errors) {
    Err err = {{0}};
    const int32_t dup[3] = {0, 2, 2}, out_of_range[3] = {0, 3, 1};
    cr_assert_eq(vnm_check_perm(dup, 3, "blocks.0.fc1 perm_in", &err), -1);
    cr_assert(strstr(err.msg, "blocks.0.fc1 perm_in") && strstr(err.msg, "twice"), "%s", err.msg);
    cr_assert_eq(vnm_check_perm(out_of_range, 3, "p", &err), -1);
    cr_assert(strstr(err.msg, "outside"), "%s", err.msg);
    float S[8 * 10] = {0};
    int32_t pi[10], po[8];
    VnmPermuteOptions opt = vnm_permute_defaults();
    VnmPattern p = {4, 2, 8};
    cr_assert_eq(vnm_permute_search(S, 8, 10, p, &opt, "odd_layer", pi, po, NULL, &err), -1);
    cr_assert(strstr(err.msg, "odd_layer"), "%s", err.msg);
}

// The pruned permuted layer, compressed with original column indices and row_perm, computes the
// same outputs as the masked dense layer in the original order.
Test(vnm_permute, compressed_permuted_layer_equals_masked_dense) {
    int64_t out = 32, in = 48, n = 5;
    VnmPattern p = {8, 2, 6};
    float *W = xmalloc(out * in * sizeof(float)), *S = xmalloc(out * in * sizeof(float));
    float *Sp = xmalloc(out * in * sizeof(float)), *Wd = xmalloc(out * in * sizeof(float));
    uint8_t *mask_p = xmalloc(out * in), *mask_o = xmalloc(out * in);
    Rng r;
    rng_seed(&r, 77);
    for (int64_t k = 0; k < out * in; k++) W[k] = rng_normal(&r) * (k % in >= 3 && k % in <= 5 ? 10 : 1);
    for (int64_t k = 0; k < out * in; k++) W[k] = bf16_to_f32(f32_to_bf16(W[k]));  // exact in bf16
    vnm_scores(W, out, in, SCORE_MAGNITUDE, NULL, 0.5f, S);
    int32_t pi[48], po[32];
    VnmPermuteOptions opt = vnm_permute_defaults();
    opt.time_budget_s = 0.2;
    Err err = {{0}};
    cr_assert_eq(vnm_permute_search(S, out, in, p, &opt, "t", pi, po, NULL, &err), 0, "%s", err.msg);
    cr_assert(!is_identity(pi, in) || !is_identity(po, out), "the test needs a real permutation");
    vnm_permute_apply(S, out, in, pi, po, Sp);
    MaskSpec spec = {.kind = MASK_VNM, .vnm = p};
    cr_assert_eq(mask_compute(Sp, out, in, &spec, "t", mask_p, &err), 0, "%s", err.msg);
    vnm_unpermute_mask(mask_p, out, in, pi, po, mask_o);

    VnmMatrix m;
    cr_assert_eq(vnm_compress_permuted(W, mask_p, out, in, p, pi, po, &m, &err), 0, "%s", err.msg);
    cr_assert_arr_eq(m.row_perm, po, sizeof po);
    for (int64_t b = 0; b < m.R * m.C; b++)
        for (int k = 1; k < 4; k++) cr_assert_lt(m.columns[b * 4 + k - 1], m.columns[b * 4 + k]);
    // decompressed row r is original row po[r], in original column order
    vnm_decompress(&m, Wd);
    for (int64_t row = 0; row < out; row++)
        for (int64_t j = 0; j < in; j++) {
            int64_t o = po[row] * in + j;
            cr_assert_eq(Wd[row * in + j], mask_o[o] ? W[o] : 0.0f, "(%lld, %lld)", (long long)row, (long long)j);
        }
    // SpMM with x and y in the original channel order == x · (W ⊙ mask)ᵀ
    float x[5 * 48], y[5 * 32];
    for (int64_t k = 0; k < n * in; k++) x[k] = rng_normal(&r);
    vnm_spmm_cpu(&m, x, n, NULL, y);
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < out; o++) {
            double ref = 0;
            for (int64_t j = 0; j < in; j++)
                if (mask_o[o * in + j]) ref += (double)W[o * in + j] * x[t * in + j];
            cr_assert_float_eq(y[t * out + o], ref, 1e-4 * (1 + fabs(ref)), "y[%lld][%lld]", (long long)t, (long long)o);
        }
    // without row permutation row_perm stays NULL
    VnmMatrix m2;
    vnm_permute_apply(S, out, in, pi, NULL, Sp);
    cr_assert_eq(mask_compute(Sp, out, in, &spec, "t", mask_p, &err), 0);
    cr_assert_eq(vnm_compress_permuted(W, mask_p, out, in, p, pi, NULL, &m2, &err), 0, "%s", err.msg);
    cr_assert_null(m2.row_perm);
    vnm_free(&m);
    vnm_free(&m2);
    free(W), free(S), free(Sp), free(Wd), free(mask_p), free(mask_o);
}
