// V:N:M patterns, mask specs, scores and masks (train/vnm_pattern.c, train/vnm_mask.c).
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "train/vnm_mask.h"

// ---- patterns and specs ----

Test(vnm_pattern, parses_valid) {
    VnmPattern p;
    Err err;
    cr_assert_eq(vnm_pattern_parse("64:2:5", &p, &err), 0);
    cr_assert(p.V == 64 && p.N == 2 && p.M == 5);
    cr_assert_eq(vnm_pattern_parse("128:2:16", &p, &err), 0);
    cr_assert(p.V == 128 && p.M == 16);
    cr_assert_eq(vnm_pattern_parse("2:4", &p, &err), 0);
    cr_assert(p.V == VNM_DEFAULT_V_FOR_24 && p.N == 2 && p.M == 4);
}

Test(vnm_pattern, rejects_bad_strings_naming_them) {
    const char *bad[] = {"64:2:3", "0:2:5", "a:b:c", "64:3:8", "2:5", "", "64:2:", ":2:5",
                         "64:2:5:1", "-64:2:5", "64:2:5x", "64:2:8x", "64:2:17", " 64:2:5", "64"};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        VnmPattern p;
        Err err = {{0}};
        cr_assert_eq(vnm_pattern_parse(bad[i], &p, &err), -1, "accepted '%s'", bad[i]);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        cr_assert(strstr(err.msg, quoted), "message for '%s' does not name it: %s", bad[i], err.msg);
    }
}

Test(vnm_pattern, fits_names_layer) {
    VnmPattern p = {64, 2, 5};
    Err err = {{0}};
    cr_assert_eq(vnm_pattern_fits(p, 128, 20, "blocks.0.fc1", &err), 0);
    cr_assert_eq(vnm_pattern_fits((VnmPattern){64, 2, 8}, 128, 64, "l", &err), 0);
    cr_assert_eq(vnm_pattern_fits(p, 100, 20, "blocks.0.fc1", &err), -1);
    cr_assert(strstr(err.msg, "blocks.0.fc1"), "%s", err.msg);
    cr_assert_eq(vnm_pattern_fits(p, 128, 21, "blocks.1.fc2", &err), -1);
    cr_assert(strstr(err.msg, "blocks.1.fc2"), "%s", err.msg);
}

Test(mask_spec, parses_kinds) {
    MaskSpec s;
    Err err;
    char buf[64];
    cr_assert_eq(mask_spec_parse("64:2:8", &s, &err), 0);
    cr_assert(s.kind == MASK_VNM && s.vnm.V == 64 && s.vnm.M == 8 && s.density == 0.25);
    cr_assert_str_eq(mask_spec_str(&s, buf, sizeof buf), "64:2:8");
    cr_assert_eq(mask_spec_parse("2:4", &s, &err), 0);
    cr_assert(s.kind == MASK_VNM && s.vnm.V == VNM_DEFAULT_V_FOR_24 && s.vnm.M == 4);
    cr_assert_eq(mask_spec_parse("2:8", &s, &err), 0);
    cr_assert(s.kind == MASK_NM && s.n == 2 && s.m == 8 && s.density == 0.25);
    cr_assert_str_eq(mask_spec_str(&s, buf, sizeof buf), "2:8");
    cr_assert_eq(mask_spec_parse("1:4", &s, &err), 0);
    cr_assert(s.kind == MASK_NM && s.n == 1 && s.m == 4);
    cr_assert_eq(mask_spec_parse("unstructured:0.5", &s, &err), 0);
    cr_assert(s.kind == MASK_UNSTRUCTURED && s.density == 0.5);
    cr_assert_str_eq(mask_spec_str(&s, buf, sizeof buf), "unstructured:0.5");
    const char *bad[] = {"4:4", "0:4", "unstructured:0", "unstructured:1.5", "unstructured:",
                         "unstructured:x", "64:3:8", "dense", ""};
    for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
        Err e = {{0}};
        cr_assert_eq(mask_spec_parse(bad[i], &s, &e), -1, "accepted '%s'", bad[i]);
        cr_assert(strstr(e.msg, bad[i]), "message does not name '%s': %s", bad[i], e.msg);
    }
}

Test(scores, kinds) {
    ScoreKind k;
    Err err = {{0}};
    cr_assert_eq(score_kind_parse("ria", &k, &err), 0);
    cr_assert_eq(k, SCORE_RIA);
    cr_assert_str_eq(score_kind_name(SCORE_WANDA), "wanda");
    cr_assert_eq(score_kind_parse("snip", &k, &err), -1);
    cr_assert(strstr(err.msg, "snip"));

    // W = [[1, -2], [3, 0]], act_norm = [4, 9]
    const float W[4] = {1, -2, 3, 0}, act[2] = {4, 9};
    float s[4];
    vnm_scores(W, 2, 2, SCORE_MAGNITUDE, NULL, 0.5f, s);
    cr_assert(s[0] == 1 && s[1] == 2 && s[2] == 3 && s[3] == 0);
    vnm_scores(W, 2, 2, SCORE_WANDA, act, 0.5f, s);
    cr_assert(s[0] == 4 && s[1] == 18 && s[2] == 12 && s[3] == 0);
    // row sums 3, 3; column sums 4, 2; act^0.5 = 2, 3
    vnm_scores(W, 2, 2, SCORE_RIA, act, 0.5f, s);
    const float want[4] = {(1.f / 3 + 1.f / 4) * 2, (2.f / 3 + 2.f / 2) * 3, (3.f / 3 + 3.f / 4) * 2, 0};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(s[i], want[i], 1e-6, "ria[%d] = %g", i, s[i]);
}

// ---- V:N:M masks against brute force ----

static void random_scores(float *s, int64_t n, uint64_t seed) {
    Rng r;
    rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) s[i] = fabsf(rng_normal(&r));
}

// Best kept score of one block over every valid V:N:M mask: any 4 columns, any 2 of them per row.
static double brute_block(const float *s, int64_t in, int V, int M) {
    double best = -1;
    int c[4];
    for (c[0] = 0; c[0] < M; c[0]++)
        for (c[1] = c[0] + 1; c[1] < M; c[1]++)
            for (c[2] = c[1] + 1; c[2] < M; c[2]++)
                for (c[3] = c[2] + 1; c[3] < M; c[3]++) {
                    int combos = 1;
                    for (int r = 0; r < V; r++) combos *= 6;
                    for (int code = 0; code < combos; code++) {  // one 2-of-4 choice per row
                        double sum = 0;
                        for (int r = 0, x = code; r < V; r++, x /= 6) {
                            static const int pa[6] = {0, 0, 0, 1, 1, 2}, pb[6] = {1, 2, 3, 2, 3, 3};
                            sum += s[r * in + c[pa[x % 6]]] + s[r * in + c[pb[x % 6]]];
                        }
                        if (sum > best) best = sum;
                    }
                }
    return best;
}

Test(vnm_mask, optimal_against_brute_force) {
    for (int M = 4; M <= 8; M++)
        for (int V = 1; V <= 3; V++)
            for (int trial = 0; trial < 3; trial++) {
                int64_t out = 2 * V, in = 2 * M;
                float *s = xmalloc(out * in * sizeof(float));
                uint8_t *mask = xmalloc(out * in);
                random_scores(s, out * in, 1000 * M + 10 * V + trial);
                MaskSpec spec = {.kind = MASK_VNM, .vnm = {V, 2, M}};
                Err err = {{0}};
                cr_assert_eq(mask_compute(s, out, in, &spec, "t", mask, &err), 0, "%s", err.msg);
                cr_assert_eq(mask_check_vnm(mask, out, in, spec.vnm, &err), 0, "%s", err.msg);
                cr_assert_eq(mask_density(mask, out * in), 2.0 / M);
                for (int64_t r0 = 0; r0 < out; r0 += V)
                    for (int64_t c0 = 0; c0 < in; c0 += M) {
                        double ours = 0;
                        for (int r = 0; r < V; r++)
                            for (int c = 0; c < M; c++) {
                                int64_t k = (r0 + r) * in + c0 + c;
                                if (mask[k]) ours += s[k];
                            }
                        double best = brute_block(s + r0 * in + c0, in, V, M);
                        cr_assert(ours >= best - 1e-5 * best, "V=%d M=%d block (%lld,%lld): %g < %g", V, M,
                                  (long long)r0, (long long)c0, ours, best);
                    }
                free(s);
                free(mask);
            }
}

Test(vnm_mask, structure_on_larger_layer) {
    int64_t out = 128, in = 96;
    float *s = xmalloc(out * in * sizeof(float));
    uint8_t *mask = xmalloc(out * in);
    random_scores(s, out * in, 7);
    int Ms[] = {4, 6, 8, 12, 16};
    for (size_t t = 0; t < ARRAY_LEN(Ms); t++) {
        VnmPattern p = {64, 2, Ms[t]};
        MaskSpec spec = {.kind = MASK_VNM, .vnm = p};
        Err err = {{0}};
        cr_assert_eq(mask_compute(s, out, in, &spec, "t", mask, &err), 0, "%s", err.msg);
        cr_assert_eq(mask_check_vnm(mask, out, in, p, &err), 0, "%s", err.msg);
        cr_assert_eq(mask_density(mask, out * in), 2.0 / p.M);
        // Every block uses exactly 4 columns (V = 64 random rows never agree on fewer).
        for (int64_t c0 = 0; c0 < in; c0 += p.M) {
            int used = 0;
            for (int c = 0; c < p.M; c++) {
                int any = 0;
                for (int r = 0; r < 64; r++) any |= mask[r * in + c0 + c];
                used += any;
            }
            cr_assert_eq(used, 4);
        }
    }
    free(s);
    free(mask);
}

Test(vnm_mask, ties_go_to_lowest_index) {
    float s[2 * 8] = {0};
    uint8_t mask[2 * 8];
    MaskSpec spec = {.kind = MASK_VNM, .vnm = {2, 2, 8}};
    Err err = {{0}};
    cr_assert_eq(mask_compute(s, 2, 8, &spec, "zeros", mask, &err), 0);
    const uint8_t want[16] = {1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0};
    cr_assert_arr_eq(mask, want, 16);
}

Test(vnm_mask, errors_name_layer) {
    float s[6 * 10] = {0};
    uint8_t mask[6 * 10];
    Err err = {{0}};
    MaskSpec spec = {.kind = MASK_VNM, .vnm = {4, 2, 5}};
    cr_assert_eq(mask_compute(s, 6, 10, &spec, "blocks.3.attn.qkv", mask, &err), -1);
    cr_assert(strstr(err.msg, "blocks.3.attn.qkv"), "%s", err.msg);
    spec.vnm = (VnmPattern){2, 2, 4};
    cr_assert_eq(mask_compute(s, 6, 10, &spec, "blocks.4.mlp", mask, &err), -1);
    cr_assert(strstr(err.msg, "blocks.4.mlp"), "%s", err.msg);
    s[13] = NAN;
    spec.vnm = (VnmPattern){2, 2, 5};
    cr_assert_eq(mask_compute(s, 6, 10, &spec, "nanlayer", mask, &err), -1);
    cr_assert(strstr(err.msg, "nanlayer") && strstr(err.msg, "(1, 3)"), "%s", err.msg);
    MaskSpec nm = {.kind = MASK_NM, .n = 2, .m = 4};
    s[13] = 0;
    cr_assert_eq(mask_compute(s, 6, 10, &nm, "nm_layer", mask, &err), -1);
    cr_assert(strstr(err.msg, "nm_layer"), "%s", err.msg);
}

Test(vnm_mask, check_rejects_broken_structure) {
    int64_t out = 4, in = 10;
    float s[40];
    uint8_t mask[40];
    random_scores(s, 40, 3);
    VnmPattern p = {2, 2, 5};
    MaskSpec spec = {.kind = MASK_VNM, .vnm = p};
    Err err = {{0}};
    cr_assert_eq(mask_compute(s, out, in, &spec, "t", mask, &err), 0);
    // a row keeping 3 values
    uint8_t bad[40];
    memcpy(bad, mask, 40);
    for (int c = 0; c < 5; c++)
        if (!bad[c]) {
            bad[c] = 1;
            break;
        }
    cr_assert_eq(mask_check_vnm(bad, out, in, p, &err), -1);
    cr_assert(strstr(err.msg, "row 0"), "%s", err.msg);
    // by hand, 4:2:5: rows keep {0,1}, {2,3}, {0,1}, {0,1} in block (0, 0) and {5,6} in (0, 1)
    VnmPattern p4 = {4, 2, 5};
    memset(bad, 0, 40);
    for (int i = 0; i < 4; i++) bad[i * 10 + 5] = bad[i * 10 + 6] = 1;
    bad[0] = bad[1] = 1;
    bad[10 + 2] = bad[10 + 3] = 1;
    bad[20 + 0] = bad[20 + 1] = 1;
    bad[30 + 0] = bad[30 + 1] = 1;
    cr_assert_eq(mask_check_vnm(bad, out, in, p4, &err), 0, "%s", err.msg);
    bad[20 + 1] = 0, bad[20 + 4] = 1;  // row 2 keeps {0,4}: the block now uses 5 columns
    cr_assert_eq(mask_check_vnm(bad, out, in, p4, &err), -1);
    cr_assert(strstr(err.msg, "block (0, 0)") && strstr(err.msg, "5 columns"), "%s", err.msg);
}

// ---- plain N:M and unstructured ----

Test(nm_mask, keeps_top_n_per_group) {
    int64_t out = 8, in = 24;
    float s[8 * 24];
    uint8_t mask[8 * 24];
    random_scores(s, out * in, 11);
    int cases[][2] = {{2, 8}, {1, 4}, {3, 6}, {2, 4}};
    for (size_t t = 0; t < ARRAY_LEN(cases); t++) {
        MaskSpec spec = {.kind = MASK_NM, .n = cases[t][0], .m = cases[t][1]};
        Err err = {{0}};
        cr_assert_eq(mask_compute(s, out, in, &spec, "t", mask, &err), 0, "%s", err.msg);
        for (int64_t g = 0; g < out * in; g += spec.m) {
            int kept = 0;
            float min_kept = INFINITY, max_pruned = -INFINITY;
            for (int j = 0; j < spec.m; j++) {
                if (mask[g + j]) kept++, min_kept = fminf(min_kept, s[g + j]);
                else max_pruned = fmaxf(max_pruned, s[g + j]);
            }
            cr_assert_eq(kept, spec.n);
            cr_assert(min_kept >= max_pruned);
        }
    }
}

Test(unstructured_mask, global_threshold) {
    int64_t n = 37 * 13;
    float *s = xmalloc(n * sizeof(float));
    uint8_t *mask = xmalloc(n);
    random_scores(s, n, 5);
    for (int i = 0; i < 40; i++) s[i * 7] = 0.5f;  // many ties
    double densities[] = {0.5, 0.1, 1.0, 0.333, 0.001};
    for (size_t t = 0; t < ARRAY_LEN(densities); t++) {
        MaskSpec spec = {.kind = MASK_UNSTRUCTURED, .density = densities[t]};
        Err err = {{0}};
        cr_assert_eq(mask_compute(s, 37, 13, &spec, "t", mask, &err), 0);
        int64_t kept = 0;
        float min_kept = INFINITY, max_pruned = -INFINITY;
        for (int64_t k = 0; k < n; k++) {
            if (mask[k]) kept++, min_kept = fminf(min_kept, s[k]);
            else max_pruned = fmaxf(max_pruned, s[k]);
        }
        cr_assert_eq(kept, llround(densities[t] * n));
        cr_assert(min_kept >= max_pruned);
    }
    // ties at the threshold: lowest index first
    float z[10] = {0};
    MaskSpec half = {.kind = MASK_UNSTRUCTURED, .density = 0.3};
    Err err;
    cr_assert_eq(mask_compute(z, 2, 5, &half, "z", mask, &err), 0);
    const uint8_t want[10] = {1, 1, 1, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_arr_eq(mask, want, 10);
    free(s);
    free(mask);
}

Test(mask_stats, kept_density_flips) {
    const float s[4] = {1, 2, 3, 4};
    const uint8_t a[4] = {1, 0, 1, 0}, b[4] = {1, 1, 0, 0};
    cr_assert_eq(mask_kept_score(s, a, 4), 4.0);
    cr_assert_eq(mask_density(a, 4), 0.5);
    cr_assert_eq(mask_flip_rate(a, b, 4), 0.5);
    cr_assert_eq(mask_flip_rate(a, a, 4), 0.0);
}
