// V:N:M export files: round trip, validation of corrupt files, SpMM on loaded layers, inspect.
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/rng.h"
#include "autograd/tensor.h"
#include "train/h5io.h"
#include "train/vnm_export.h"
#include "train/vnm_mask.h"
#include "train/vnm_permute.h"
#include "scratch_dir.h"

TestSuite(vnm_export, .init = scratch_make, .fini = scratch_remove);

// A pruned, permuted layer built the way training exports it: scores -> permutation -> mask ->
// vnm_compress_permuted. W and the mask in original order are returned for reference.
static void make_layer(int64_t out, int64_t in, VnmPattern p, uint64_t seed, float *W, uint8_t *mask_orig,
                       VnmMatrix *m) {
    Rng r;
    rng_seed(&r, seed);
    for (int64_t k = 0; k < out * in; k++) W[k] = bf16_to_f32(f32_to_bf16(rng_normal(&r)));
    float *S = xmalloc(out * in * sizeof(float)), *Sp = xmalloc(out * in * sizeof(float));
    uint8_t *mask_p = xmalloc(out * in);
    int32_t *pi = xmalloc(in * sizeof(int32_t)), *po = xmalloc(out * sizeof(int32_t));
    vnm_scores(W, out, in, SCORE_MAGNITUDE, NULL, 0.5f, S);
    VnmPermuteOptions opt = vnm_permute_defaults();
    opt.time_budget_s = 0.05;
    Err err = {{0}};
    cr_assert_eq(vnm_permute_search(S, out, in, p, &opt, "t", pi, po, NULL, &err), 0, "%s", err.msg);
    vnm_permute_apply(S, out, in, pi, po, Sp);
    MaskSpec spec = {.kind = MASK_VNM, .vnm = p};
    cr_assert_eq(mask_compute(Sp, out, in, &spec, "t", mask_p, &err), 0, "%s", err.msg);
    vnm_unpermute_mask(mask_p, out, in, pi, po, mask_orig);
    cr_assert_eq(vnm_compress_permuted(W, mask_p, out, in, p, pi, po, m, &err), 0, "%s", err.msg);
    free(S), free(Sp), free(mask_p), free(pi), free(po);
}

static void assert_same_matrix(const VnmMatrix *a, const VnmMatrix *b) {
    cr_assert(a->p.V == b->p.V && a->p.N == b->p.N && a->p.M == b->p.M);
    cr_assert(a->out == b->out && a->in == b->in && a->R == b->R && a->C == b->C);
    cr_assert_arr_eq(a->values, b->values, a->out * 2 * a->C * sizeof(uint16_t));
    cr_assert_arr_eq(a->columns, b->columns, a->R * a->C * 4 * sizeof(uint16_t));
    cr_assert_arr_eq(a->idx, b->idx, a->out * a->C);
    cr_assert_eq(a->meta_words, b->meta_words);
    cr_assert_arr_eq(a->meta, b->meta, a->meta_words * sizeof(uint32_t));
    cr_assert_eq(a->row_perm == NULL, b->row_perm == NULL);
    if (a->row_perm) cr_assert_arr_eq(a->row_perm, b->row_perm, a->out * sizeof(int32_t));
}

Test(vnm_export, round_trip_and_spmm_on_loaded_layer) {
    int64_t out = 32, in = 40, n = 3;
    VnmPattern p = {16, 2, 5};
    float *W = xmalloc(out * in * sizeof(float));
    uint8_t *mask = xmalloc(out * in);
    VnmMatrix a, b;
    make_layer(out, in, p, 1, W, mask, &a);
    vnm_random((VnmPattern){8, 2, 8}, 16, 64, 2, 0, &b);  // no permutation, no row_perm
    float bias[3] = {1, 2, 3}, proj[2 * 3] = {1, 2, 3, 4, 5, 6};
    VnmDense dense[2] = {{.name = "head.bias", .ndim = 1, .shape = {3}, .data = bias},
                         {.name = "head.weight", .ndim = 2, .shape = {2, 3}, .data = proj}};
    VnmExportLayer layers[2] = {{"blocks.0.mlp.fc1", &a}, {"blocks.0.attn.proj", &b}};
    const char *path = scratch_path("model.h5");
    Err err = {{0}};
    cr_assert_eq(vnm_export_write(path, layers, 2, dense, 2, "model:\n  arch: deit\n", &err), 0, "%s", err.msg);

    VnmExport e;
    cr_assert_eq(vnm_export_read(path, &e, &err), 0, "%s", err.msg);
    cr_assert_str_eq(e.config, "model:\n  arch: deit\n");
    cr_assert_eq(e.n_layers, 2);
    cr_assert_str_eq(e.layer_names[0], "blocks.0.attn.proj");  // sorted
    cr_assert_str_eq(e.layer_names[1], "blocks.0.mlp.fc1");
    assert_same_matrix(&e.layers[0], &b);
    assert_same_matrix(&e.layers[1], &a);
    cr_assert_eq(e.n_dense, 2);
    cr_assert_str_eq(e.dense[0].name, "head.bias");
    cr_assert(e.dense[1].ndim == 2 && e.dense[1].shape[0] == 2 && e.dense[1].shape[1] == 3);
    cr_assert_arr_eq(e.dense[1].data, proj, sizeof proj);
    cr_assert(vnm_has_col_perm(&e.layers[1]) && !vnm_has_col_perm(&e.layers[0]));

    // CPU SpMM over the loaded layer == x · (W ⊙ mask)ᵀ in the original order
    float x[3 * 40], y[3 * 32];
    Rng r;
    rng_seed(&r, 5);
    for (int k = 0; k < n * in; k++) x[k] = rng_normal(&r);
    vnm_spmm_cpu(&e.layers[1], x, n, NULL, y);
    for (int64_t t = 0; t < n; t++)
        for (int64_t o = 0; o < out; o++) {
            double ref = 0;
            for (int64_t j = 0; j < in; j++)
                if (mask[o * in + j]) ref += (double)W[o * in + j] * x[t * in + j];
            cr_assert_float_eq(y[t * out + o], ref, 1e-4 * (1 + fabs(ref)));
        }
    vnm_export_free(&e);
    vnm_free(&a);
    vnm_free(&b);
    free(W);
    free(mask);
}

Test(vnm_export, inspect_lists_layers) {
    VnmMatrix a;
    vnm_random((VnmPattern){16, 2, 8}, 32, 64, 3, VNM_RANDOM_PERMUTE_COLS | VNM_RANDOM_PERMUTE_ROWS, &a);
    VnmExportLayer layers[1] = {{"blocks.1.mlp.fc2", &a}};
    float bias[4] = {0};
    VnmDense dense[1] = {{.name = "norm.bias", .ndim = 1, .shape = {4}, .data = bias}};
    const char *path = scratch_path("inspect.h5");
    Err err = {{0}};
    cr_assert_eq(vnm_export_write(path, layers, 1, dense, 1, NULL, &err), 0, "%s", err.msg);
    char *buf;
    size_t len;
    FILE *f = open_memstream(&buf, &len);
    cr_assert_eq(vnm_inspect(path, f, &err), 0, "%s", err.msg);
    fclose(f);
    cr_assert(strstr(buf, "1 V:N:M layer(s), 1 dense tensor(s), config absent"), "%s", buf);
    cr_assert(strstr(buf, "blocks.1.mlp.fc2") && strstr(buf, "16:2:8") && strstr(buf, "32x64") &&
              strstr(buf, "0.2500") && strstr(buf, "in+out"), "%s", buf);
    // values 32*16*2 + columns 2*8*4*2 + meta 2*1*16*4 + row_perm 32*4 = 1024+128+128+128
    cr_assert(strstr(buf, " 1408 ") && strstr(buf, " 4096 "), "%s", buf);
    cr_assert(strstr(buf, "norm.bias"), "%s", buf);
    free(buf);
    char *argv[] = {"inspect", (char *)path};
    cr_redirect_stdout();
    cr_redirect_stderr();
    cr_assert_eq(vnm_inspect_main(2, argv), 0);
    char *bad_argv[] = {"inspect"};
    cr_assert_eq(vnm_inspect_main(1, bad_argv), 2);
    vnm_free(&a);
}

// ---- corrupt files ----

typedef enum { SKIP_META, BAD_OUT_ATTR, BAD_META_LAYOUT, META_AS_I32 } HandEdit;

// Writes one layer "L" by hand with h5io (as a foreign or damaged writer would); meta is written
// as int32 (h5io has no uint32) or left out.
static void write_by_hand(const char *path, const VnmMatrix *m, HandEdit edit) {
    H5File f;
    Err err = {{0}};
    cr_assert_eq(h5_create(&f, path, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_set_attr_str(&f, "/", "format", VNM_EXPORT_FORMAT, &err), 0);
    int64_t vs[2] = {m->out, 2 * m->C}, cs[3] = {m->R, m->C, 4};
    cr_assert_eq(h5_write(&f, "/vnm/L/values", DT_BF16, 2, vs, m->values, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write_u16(&f, "/vnm/L/columns", 3, cs, m->columns, &err), 0, "%s", err.msg);
    if (edit != SKIP_META)
        cr_assert_eq(h5_write(&f, "/vnm/L/meta", DT_I32, 1, &m->meta_words, m->meta, &err), 0);
    const char *keys[] = {"V", "N", "M", "out", "in"};
    int64_t vals[] = {m->p.V, 2, m->p.M, edit == BAD_OUT_ATTR ? m->out + m->p.V : m->out, m->in};
    for (int k = 0; k < 5; k++) cr_assert_eq(h5_set_attr_i64(&f, "/vnm/L", keys[k], vals[k], &err), 0);
    cr_assert_eq(h5_set_attr_str(&f, "/vnm/L", "dtype", "bf16", &err), 0);
    cr_assert_eq(h5_set_attr_str(&f, "/vnm/L", "meta_layout",
                                 edit == BAD_META_LAYOUT ? "other-layout" : VNM_META_LAYOUT, &err), 0);
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);
}

// Loading path must fail with a message containing each of the wanted strings.
static void expect_load_error(const char *path, const char *want1, const char *want2) {
    VnmExport e;
    Err err = {{0}};
    cr_assert_eq(vnm_export_read(path, &e, &err), -1, "loaded a corrupt file (%s, %s)", want1, want2 ? want2 : "");
    cr_assert(strstr(err.msg, path), "no file name: %s", err.msg);
    cr_assert(strstr(err.msg, want1), "want '%s': %s", want1, err.msg);
    if (want2) cr_assert(strstr(err.msg, want2), "want '%s': %s", want2, err.msg);
    FILE *f = fopen("/dev/null", "w");
    cr_assert_eq(vnm_inspect(path, f, &err), -1);
    fclose(f);
}

static void write_edited(const char *path, const VnmMatrix *m) {
    VnmExportLayer l = {"L", m};
    Err err = {{0}};
    cr_assert_eq(vnm_export_write(path, &l, 1, NULL, 0, NULL, &err), 0, "%s", err.msg);
}

Test(vnm_export, corrupt_files_give_clear_errors) {
    VnmMatrix m;
    vnm_random((VnmPattern){16, 2, 5}, 32, 40, 4, VNM_RANDOM_PERMUTE_COLS | VNM_RANDOM_PERMUTE_ROWS, &m);
    uint16_t c5 = m.columns[5];
    int32_t rp1 = m.row_perm[1];
    uint32_t w0 = m.meta[0];
    uint16_t v7 = m.values[7];

    m.columns[5] = (uint16_t)(m.in + 3);  // a column index >= in
    write_edited(scratch_path("col.h5"), &m);
    expect_load_error(scratch_path("col.h5"), "layer 'L'", "is not < in = 40");
    m.columns[5] = c5;

    uint16_t t = m.columns[0];  // not ascending within a block
    m.columns[0] = m.columns[1], m.columns[1] = t;
    write_edited(scratch_path("order.h5"), &m);
    expect_load_error(scratch_path("order.h5"), "layer 'L'", "not ascending");
    m.columns[1] = m.columns[0], m.columns[0] = t;

    // block (0, 1) repeats the channels of block (0, 0)
    for (int k = 0; k < 4; k++) m.columns[4 + k] = m.columns[k];
    write_edited(scratch_path("dup.h5"), &m);
    expect_load_error(scratch_path("dup.h5"), "layer 'L'", "used twice in row block 0");
    vnm_free(&m);
    vnm_random((VnmPattern){16, 2, 5}, 32, 40, 4, VNM_RANDOM_PERMUTE_COLS | VNM_RANDOM_PERMUTE_ROWS, &m);

    m.row_perm[1] = m.row_perm[0];  // row_perm not a permutation
    write_edited(scratch_path("perm.h5"), &m);
    expect_load_error(scratch_path("perm.h5"), "layer 'L'", "row_perm[1]");
    m.row_perm[1] = rp1;

    m.meta[0] = 0xFFFFFFFFu;  // code 0xF: positions (3, 3)
    write_edited(scratch_path("meta.h5"), &m);
    expect_load_error(scratch_path("meta.h5"), "layer 'L'", "not a valid 2:4 pair");
    m.meta[0] = w0;


    m.values[7] = 0x7fc0;  // bf16 NaN
    write_edited(scratch_path("nan.h5"), &m);
    expect_load_error(scratch_path("nan.h5"), "layer 'L'", "non-finite value at row 0");
    m.values[7] = v7;

    write_by_hand(scratch_path("nometa.h5"), &m, SKIP_META);
    expect_load_error(scratch_path("nometa.h5"), "missing dataset '/vnm/L/meta'", NULL);
    write_by_hand(scratch_path("i32meta.h5"), &m, META_AS_I32);
    expect_load_error(scratch_path("i32meta.h5"), "/vnm/L/meta", "not uint32");
    write_by_hand(scratch_path("shape.h5"), &m, BAD_OUT_ATTR);
    expect_load_error(scratch_path("shape.h5"), "/vnm/L/values", "expected shape");
    write_by_hand(scratch_path("layout.h5"), &m, BAD_META_LAYOUT);
    expect_load_error(scratch_path("layout.h5"), "layer 'L'", "meta_layout is 'other-layout'");

    FILE *f = fopen(scratch_path("garbage.h5"), "wb");
    for (int i = 0; i < 4096; i++) fputc((i * 7919) & 0xff, f);
    fclose(f);
    expect_load_error(scratch_path("garbage.h5"), "not an HDF5 file", NULL);

    // C = 5 column blocks: in the meta word of thread (g = 0, h = 1) nibble 1 is column block 5,
    // padding (code 0x4); a valid but different code there is caught by the re-pack check
    VnmMatrix padded;
    vnm_random((VnmPattern){16, 2, 8}, 32, 40, 6, 0, &padded);
    padded.meta[1] ^= (0x4u ^ 0x8u) << 4;
    write_edited(scratch_path("pad.h5"), &padded);
    expect_load_error(scratch_path("pad.h5"), "layer 'L'", "meta word 1 has invalid padding");
    vnm_free(&padded);

    // a valid file cut in half
    write_edited(scratch_path("full.h5"), &m);
    FILE *src = fopen(scratch_path("full.h5"), "rb");
    fseek(src, 0, SEEK_END);
    long size = ftell(src);
    fseek(src, 0, SEEK_SET);
    char *bytes = xmalloc(size);
    cr_assert_eq(fread(bytes, 1, size, src), (size_t)size);
    fclose(src);
    FILE *dst = fopen(scratch_path("cut.h5"), "wb");
    fwrite(bytes, 1, size / 2, dst);
    fclose(dst);
    free(bytes);
    VnmExport e;
    Err err = {{0}};
    cr_assert_eq(vnm_export_read(scratch_path("cut.h5"), &e, &err), -1);
    cr_assert(strstr(err.msg, "cut.h5"), "%s", err.msg);

    // layer names with '/' are refused by the writer
    VnmExportLayer bad = {"a/b", &m};
    cr_assert_eq(vnm_export_write(scratch_path("x.h5"), &bad, 1, NULL, 0, NULL, &err), -1);
    cr_assert(strstr(err.msg, "a/b"), "%s", err.msg);
    cr_assert_neq(access(scratch_path("x.h5"), F_OK), 0);
    vnm_free(&m);
}
