// CPU tests of the V:N:M compressed format: parsing, compress/decompress round trip, the
// kernels' meta layout, the CPU reference SpMM and rejection of masks that break the structure.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/rng.h"
#include "autograd/tensor.h"
#include "train/vnm_device_layout.h"
#include "train/vnm_format.h"

// A random V:N:M mask: per block 4 random columns shared by the V rows, 2 of them per row.
static uint8_t *random_mask(VnmPattern p, int64_t out, int64_t in, Rng *rng) {
    uint8_t *mask = calloc((size_t)(out * in), 1);
    for (int64_t r0 = 0; r0 < out; r0 += p.V)
        for (int64_t c0 = 0; c0 < in; c0 += p.M) {
            int cols[64];
            for (int j = 0; j < p.M; j++) cols[j] = j;
            for (int j = 0; j < 4; j++) {
                int k = j + (int)rng_below(rng, (uint64_t)(p.M - j)), t = cols[j];
                cols[j] = cols[k], cols[k] = t;
            }
            for (int64_t r = r0; r < r0 + p.V; r++) {
                int a = (int)rng_below(rng, 4), b = (a + 1 + (int)rng_below(rng, 3)) % 4;
                mask[r * in + c0 + cols[a]] = 1;
                mask[r * in + c0 + cols[b]] = 1;
            }
        }
    return mask;
}

static float *random_floats(int64_t n, Rng *rng) {
    float *a = malloc((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++) a[i] = rng_normal(rng);
    return a;
}

static float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }

// Pattern parsing and vnm_pattern_fits are tested with the masks, in test_vnm_mask.c.

Test(vnm_format, round_trip_and_meta) {
    VnmPattern pats[] = {{16, 2, 4}, {32, 2, 5}, {64, 2, 8}, {16, 2, 16}, {8, 2, 7}};
    Rng rng;
    rng_seed(&rng, 1);
    for (size_t t = 0; t < ARRAY_LEN(pats); t++) {
        VnmPattern p = pats[t];
        int64_t out = p.V * 3, in = p.M * 11;  // C = 11: a partial k-step of 8 column blocks
        float *W = random_floats(out * in, &rng);
        uint8_t *mask = random_mask(p, out, in, &rng);
        VnmMatrix m;
        Err err;
        cr_assert_eq(vnm_compress(W, mask, out, in, p, NULL, &m, &err), 0, "%s", err.msg);
        cr_assert_eq(m.R, 3);
        cr_assert_eq(m.C, 11);
        float *D = malloc((size_t)(out * in) * sizeof(float));
        vnm_decompress(&m, D);
        for (int64_t i = 0; i < out * in; i++)
            cr_assert_eq(D[i], mask[i] ? bf16_round(W[i]) : 0.0f, "pattern %zu element %lld", t, (long long)i);
        for (int64_t b = 0; b < m.R * m.C; b++)
            for (int k = 0; k < 3; k++) cr_assert_lt(m.columns[b * 4 + k], m.columns[b * 4 + k + 1]);
        uint8_t *idx = malloc((size_t)(out * m.C));
        vnm_unpack_meta(&m, idx);
        cr_assert_eq(memcmp(idx, m.idx, (size_t)(out * m.C)), 0);
        for (int64_t i = 0; i < out * m.C; i++) cr_assert_lt(m.idx[i] & 3, m.idx[i] >> 2);
        free(idx);
        free(D);
        free(W);
        free(mask);
        vnm_free(&m);
    }
}

// The documented bit layout, checked on one hand-picked word.
Test(vnm_format, meta_word_layout) {
    VnmPattern p = {16, 2, 4};
    VnmMatrix m;
    vnm_random(p, 32, 4 * 16, 3, 0, &m);  // C = 16: two k-steps
    int64_t KT = vnm_meta_ksteps(&m);
    cr_assert_eq(KT, 2);
    // 16-row group q = 1, k-step s = 1, g = 5, h = 1: rows 21 and 29, column blocks 12..15.
    uint32_t w = m.meta[(1 * KT + 1) * 16 + 2 * 5 + 1], want = 0;
    for (int j = 0; j < 4; j++)
        want |= (uint32_t)m.idx[21 * m.C + 12 + j] << (4 * j) | (uint32_t)m.idx[29 * m.C + 12 + j] << (16 + 4 * j);
    cr_assert_eq(w, want);
    vnm_free(&m);
}

Test(vnm_format, spmm_cpu_matches_masked_dense) {
    Rng rng;
    rng_seed(&rng, 7);
    VnmPattern p = {16, 2, 6};
    int64_t out = 48, in = 60, n = 5;
    float *W = random_floats(out * in, &rng), *x = random_floats(n * in, &rng), *bias = random_floats(out, &rng);
    uint8_t *mask = random_mask(p, out, in, &rng);
    int32_t perm[48];
    for (int i = 0; i < out; i++) perm[i] = (i * 7) % 48;  // 7 is coprime with 48
    VnmMatrix m;
    Err err;
    cr_assert_eq(vnm_compress(W, mask, out, in, p, perm, &m, &err), 0, "%s", err.msg);
    float *y = malloc((size_t)(n * out) * sizeof(float));
    vnm_spmm_cpu(&m, x, n, bias, y);
    for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < out; r++) {
            double ref = 0;
            for (int64_t k = 0; k < in; k++)
                if (mask[r * in + k]) ref += (double)bf16_round(W[r * in + k]) * x[t * in + k];
            ref += bias[perm[r]];
            cr_assert_float_eq(y[t * out + perm[r]], ref, 1e-4, "t %lld row %lld", (long long)t, (long long)r);
        }
    free(W), free(x), free(bias), free(mask), free(y);
    vnm_free(&m);
}

Test(vnm_format, random_matrix_is_valid) {
    VnmPattern p = {32, 2, 8};
    VnmMatrix m, m2;
    vnm_random(p, 64, 128, 5, VNM_RANDOM_PERMUTE_COLS | VNM_RANDOM_PERMUTE_ROWS, &m);
    float *D = malloc(64 * 128 * sizeof(float));
    vnm_decompress(&m, D);
    uint8_t *mask = malloc(64 * 128);
    for (int i = 0; i < 64 * 128; i++) mask[i] = D[i] != 0.0f;
    // Recompressing the permuted-column matrix needs the columns un-permuted: check instead that
    // every row keeps 2 values per block among the block's 4 columns.
    for (int64_t row = 0; row < 64; row++)
        for (int64_t cb = 0; cb < m.C; cb++) {
            const uint16_t *col = m.columns + ((row / 32) * m.C + cb) * 4;
            int kept = 0;
            for (int k = 0; k < 4; k++) kept += mask[row * 128 + col[k]];
            cr_assert_eq(kept, 2);
        }
    vnm_random(p, 64, 128, 5, 0, &m2);  // unpermuted: compresses back to itself
    vnm_decompress(&m2, D);
    for (int i = 0; i < 64 * 128; i++) mask[i] = D[i] != 0.0f;
    VnmMatrix m3;
    Err err;
    cr_assert_eq(vnm_compress(D, mask, 64, 128, p, NULL, &m3, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(m3.values, m2.values, 64 * 2 * m2.C * sizeof(uint16_t)), 0);
    cr_assert_eq(memcmp(m3.columns, m2.columns, m2.R * m2.C * 4 * sizeof(uint16_t)), 0);
    free(D), free(mask);
    vnm_free(&m), vnm_free(&m2), vnm_free(&m3);
}

Test(vnm_format, fewer_than_four_columns_are_padded) {
    VnmPattern p = {4, 2, 8};
    float W[4 * 8];
    uint8_t mask[4 * 8] = {0};
    for (int i = 0; i < 32; i++) W[i] = (float)i;
    for (int r = 0; r < 4; r++) mask[r * 8 + 3] = mask[r * 8 + 6] = 1;  // every row keeps cols 3, 6
    VnmMatrix m;
    Err err;
    cr_assert_eq(vnm_compress(W, mask, 4, 8, p, NULL, &m, &err), 0, "%s", err.msg);
    cr_assert(m.columns[0] == 0 && m.columns[1] == 1 && m.columns[2] == 3 && m.columns[3] == 6);
    cr_assert_eq(m.idx[0], 2 | (3 << 2));
    vnm_free(&m);
}

Test(vnm_format, bad_masks_rejected) {
    VnmPattern p = {4, 2, 8};
    float W[8 * 16] = {0};
    uint8_t mask[8 * 16];
    VnmMatrix m;
    Err err;
    Rng rng;
    rng_seed(&rng, 9);
    uint8_t *good = random_mask(p, 8, 16, &rng);

    memcpy(mask, good, sizeof mask);  // a row keeping 3 values in a block
    for (int j = 0; j < 8; j++)
        if (!mask[5 * 16 + 8 + j]) { mask[5 * 16 + 8 + j] = 1; break; }
    cr_assert_eq(vnm_compress(W, mask, 8, 16, p, NULL, &m, &err), -1);
    cr_assert(strstr(err.msg, "row 5"), "%s", err.msg);

    memset(mask, 0, sizeof mask);  // 4 rows of a block using 5 distinct columns
    for (int r = 0; r < 8; r++)
        for (int c = 0; c < 16; c += 8) mask[r * 16 + c] = mask[r * 16 + c + 1] = 1;
    mask[1 * 16 + 1] = 0, mask[1 * 16 + 2] = 1;
    mask[2 * 16 + 1] = 0, mask[2 * 16 + 3] = 1;
    mask[3 * 16 + 1] = 0, mask[3 * 16 + 4] = 1;
    mask[3 * 16 + 0] = 0, mask[3 * 16 + 5] = 1;
    cr_assert_eq(vnm_compress(W, mask, 8, 16, p, NULL, &m, &err), -1);
    cr_assert(strstr(err.msg, "more than 4"), "%s", err.msg);
    cr_assert(strstr(err.msg, "row block 0"), "%s", err.msg);

    cr_assert_eq(vnm_compress(W, good, 8, 12, p, NULL, &m, &err), -1);  // 12 % 8 != 0
    int32_t perm[8] = {0, 1, 2, 3, 4, 5, 6, 6};
    cr_assert_eq(vnm_compress(W, good, 8, 16, p, perm, &m, &err), -1);
    cr_assert(strstr(err.msg, "row_perm"), "%s", err.msg);
    free(good);
}

// vnm_to_24: V:N:M with M a multiple of 4 regroups into plain 2:4 with the same products (rows put
// in output order); 64:2:5 (groups of 4 straddle blocks) and permuted input channels are refused.
Test(vnm_format, to_24_same_products) {
    static const struct {
        int V, M;
        unsigned flags;
        int ok;
    } cases[] = {
        {64, 8, 0, 1}, {16, 12, VNM_RANDOM_PERMUTE_ROWS, 1}, {32, 16, 0, 1}, {16, 4, 0, 1}, {64, 4, VNM_RANDOM_PERMUTE_ROWS, 1},
        {64, 5, 0, 0}, {64, 8, VNM_RANDOM_PERMUTE_COLS, 0},
    };
    Rng rng;
    rng_seed(&rng, 11);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        VnmPattern p = {cases[i].V, 2, cases[i].M};
        const int64_t out = 128, in = 240, n = 3;
        VnmMatrix m, m24;
        vnm_random(p, out, in, 40 + i, cases[i].flags, &m);
        int rc = vnm_to_24(&m, &m24);
        cr_assert_eq(rc, cases[i].ok ? 0 : -1, "%d:2:%d flags %u", p.V, p.M, cases[i].flags);
        if (rc == 0) {
            cr_assert(m24.p.M == 4 && m24.C == in / 4 && m24.row_perm == NULL);  // rows already in output order
            float *x = random_floats(n * in, &rng), *y = malloc(n * out * sizeof(float)), *y24 = malloc(n * out * sizeof(float));
            vnm_spmm_cpu(&m, x, n, NULL, y);
            vnm_spmm_cpu(&m24, x, n, NULL, y24);
            for (int64_t k = 0; k < n * out; k++) cr_assert_float_eq(y24[k], y[k], 1e-4, "%d:2:%d at %lld", p.V, p.M, (long long)k);
            uint8_t *idx = malloc((size_t)(out * m24.C));  // meta packed from idx
            vnm_unpack_meta(&m24, idx);
            cr_assert_eq(memcmp(idx, m24.idx, (size_t)(out * m24.C)), 0);
            free(x), free(y), free(y24), free(idx);
            vnm_free(&m24);
        } else {
            cr_assert(m24.values == NULL && m24.meta == NULL);
        }
        vnm_free(&m);
    }
}

// vnm_to_24_gathered: any M and input permutation, as 2:4 over gathered inputs x'[:, j] = x[:, src[j]].
Test(vnm_format, to_24_gathered_same_products) {
    static const struct {
        int V, M;
        unsigned flags;
    } cases[] = {{64, 8, VNM_RANDOM_PERMUTE_COLS}, {64, 5, 0}, {16, 6, VNM_RANDOM_PERMUTE_COLS | VNM_RANDOM_PERMUTE_ROWS},
                 {32, 7, 0}, {16, 12, VNM_RANDOM_PERMUTE_COLS}};
    Rng rng;
    rng_seed(&rng, 12);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        VnmPattern p = {cases[i].V, 2, cases[i].M};
        const int64_t out = 128, in = 840, n = 3;  // 840 = lcm(5, 6, 7, 8) * 5
        VnmMatrix m, m24;
        int32_t *src = NULL;
        int64_t ns = 0;
        vnm_random(p, out, in, 60 + i, cases[i].flags, &m);
        cr_assert_eq(vnm_to_24_gathered(&m, &m24, &src, &ns), 0, "%d:2:%d", p.V, p.M);
        cr_assert(ns % 64 == 0 && ns >= in / p.M * 4 && m24.in == ns && m24.p.M == 4);
        // Slots per block: 4 and a half group (M = 5: lone leftovers in pairs), 8 (M = 6, 7), M (M = 8, 12);
        // then padding to a multiple of 64 (128-byte rows of x').
        const int64_t C = in / p.M, per_block[] = {[5] = 6, [6] = 8, [7] = 8, [8] = 8, [12] = 12};
        cr_assert(ns <= (C * per_block[p.M] + 63) / 64 * 64, "%d:2:%d: %lld slots for %lld channels", p.V, p.M, (long long)ns,
                  (long long)in);
        float *x = random_floats(n * in, &rng), *xg = calloc((size_t)(n * ns), sizeof(float));
        for (int64_t t = 0; t < n; t++)
            for (int64_t j = 0; j < ns; j++) xg[t * ns + j] = src[j] >= 0 ? x[t * in + src[j]] : 0.0f;
        float *y = malloc(n * out * sizeof(float)), *y24 = malloc(n * out * sizeof(float));
        vnm_spmm_cpu(&m, x, n, NULL, y);
        vnm_spmm_cpu(&m24, xg, n, NULL, y24);
        for (int64_t k = 0; k < n * out; k++) cr_assert_float_eq(y24[k], y[k], 1e-4, "%d:2:%d at %lld", p.V, p.M, (long long)k);
        free(x), free(xg), free(y), free(y24), free(src);
        vnm_free(&m24), vnm_free(&m);
    }
}

// Dense weights (compressed-row order, like vnm_decompress) read back from a device layout
// (train/vnm_device_layout.h) the way the kernels read it: each value word by its position in the
// layout, its two channels by the metadata nibble the sparse MMA takes for that row and block
// (fragment layout: from lane 4g + h, selector 0; SS layout: from lane 4g + 2·(s % 2) + h, the
// selector of the k-step's parity), h = the block's half of the k-step.
static void decode_layout(const VnmMatrix *m, int64_t KT, const uint32_t *vals, const uint32_t *meta, bool ss,
                          float *W) {
    memset(W, 0, (size_t)(m->out * m->in) * sizeof(float));
    for (int64_t row = 0; row < m->out; row++)
        for (int64_t cb = 0; cb < m->C; cb++) {
            const int64_t q = row / 16, rt = q / 16, R = row % 256, s = cb / 8;
            const int r = (int)(row % 16), g = r % 8, hi = r / 8, j = (int)(cb % 8), h = j / 4;
            uint32_t v, w;
            if (ss) {
                const uint32_t *block = vals + vnm_ss_block(rt, s / 2, KT);
                v = block[vnm_ss_value_word((int)R, s, j)];
                w = block[vnm_ss_meta_word((int)(q % 16), (int)(4 * g + 2 * (s % 2) + h))];
            } else {
                v = vals[vnm_frag_index(q, s, KT, 4 * g + j % 4) * 4 + hi + 2 * h];
                w = meta[vnm_frag_index(q, s, KT, 4 * g + h)];
            }
            const unsigned code = (w >> (16 * hi + 4 * (j % 4))) & 0xF;
            const uint16_t *chan = m->columns + ((row / m->p.V) * m->C + cb) * 4;
            W[row * m->in + chan[code & 3]] = bf16_to_f32((uint16_t)(v & 0xFFFF));
            W[row * m->in + chan[code >> 2]] = bf16_to_f32((uint16_t)(v >> 16));
        }
}

// Both device layouts of the GPU kernels decode to the matrix: rows padded to 256, k-steps to an
// even count (C not a multiple of 8 or 16), permuted rows and input channels.
Test(vnm_format, device_layouts_decode) {
    const struct {
        VnmPattern p;
        int64_t out, in;
        unsigned flags;
    } cases[] = {
        {{16, 2, 4}, 320, 4 * 52, 0},
        {{64, 2, 8}, 256, 8 * 40, VNM_RANDOM_PERMUTE_ROWS},
        {{128, 2, 5}, 640, 5 * 36, VNM_RANDOM_PERMUTE_COLS},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        VnmMatrix m;
        vnm_random(cases[i].p, cases[i].out, cases[i].in, 40 + i, cases[i].flags, &m);
        const int64_t kt_host = vnm_meta_ksteps(&m), KT = (kt_host + 1) / 2 * 2, Q = (m.out + 255) / 256 * 16;
        float *want = malloc((size_t)(m.out * m.in) * sizeof(float)), *got = malloc((size_t)(m.out * m.in) * sizeof(float));
        vnm_decompress(&m, want);
        for (int ss = 0; ss < 2; ss++) {
            VnmLayoutPack pk = {&m, KT, kt_host, calloc((size_t)(Q * KT * 144), sizeof(uint32_t)),
                                calloc((size_t)(Q * KT * 32), sizeof(uint32_t))};
            (ss ? vnm_pack_ss : vnm_pack_fragments)(&pk, 0, Q);
            decode_layout(&m, KT, pk.vals, pk.meta, ss, got);
            cr_assert_eq(memcmp(got, want, (size_t)(m.out * m.in) * sizeof(float)), 0, "case %zu, %s layout", i,
                         ss ? "SS" : "fragment");
            free(pk.vals), free(pk.meta);
        }
        free(want), free(got);
        vnm_free(&m);
    }
}

// The prefill kernels' tile order (vnm_tile_band) on an H200's L2 (50 MB) and 132 SMs: Llama's
// 11008 × 4096 (2:4 form, 0.58 MB of weights per 128-row tile, 2 MB of x per 256-token tile) in two
// bands of 43 row tiles; 4096 × 11008 row-first (one round's x would not fit); 4096² row-first (W fits);
// forced bands; pairs make the band even.
Test(vnm_format, tile_band) {
    const double l2 = 50.0 * 1024 * 1024, w_11008 = 128 * 2048 * 2.25, x_11008 = 256 * 4096 * 2.0;
    cr_expect_eq(vnm_tile_band(86, 32, w_11008, x_11008, 132, l2, 0, -1), 43);
    cr_expect_eq(vnm_tile_band(86, 8, w_11008, x_11008, 132, l2, 0, -1), 43);  // n = 2048
    cr_expect_eq(vnm_tile_band(32, 32, 128 * 5504 * 2.25, 256 * 11008 * 2.0, 132, l2, 0, -1), 32);
    cr_expect_eq(vnm_tile_band(32, 32, 128 * 2048 * 2.25, 256 * 4096 * 2.0, 132, l2, 0, -1), 32);
    cr_expect_eq(vnm_tile_band(86, 32, w_11008, x_11008, 132, l2, 1, -1), 44);  // pairs: even
    cr_expect_eq(vnm_tile_band(86, 32, w_11008, x_11008, 132, l2, 0, 0), 86);   // VNM_TILE_BAND=0
    cr_expect_eq(vnm_tile_band(86, 32, w_11008, x_11008, 132, l2, 0, 11), 11);
    cr_expect_eq(vnm_tile_band(10, 4, 1, 1, 132, l2, 1, 3), 4);
    cr_expect_eq(vnm_tile_band(10, 4, 1, 1, 132, l2, 0, 500), 10);  // at most all row tiles
}
