// Llama on token data (train/llama_eval.h): the perplexity of the transformers fixture equals
// exp(its loss); an export's perplexity equals the masked dense model's; wanda / ria / sparsegpt
// pruning calibrated on a random-token file writes valid exports, and SparseGPT's reconstruction
// error of every projection (on the calibration inputs) is below magnitude pruning's.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/rng.h"
#include "fixture_check.h"
#include "train/llama_eval.h"
#include "train/llama_export.h"
#include "train/vnm_export.h"
#include "llama_fixture.h"
#include "scratch_dir.h"

TestSuite(llama_eval, .init = scratch_make, .fini = scratch_remove);

static float fixture_value(const char *name, int64_t want_n, int64_t i) {
    StFile st;
    Err err = {0};
    cr_assert_eq(st_open(&st, LLAMA_FIXTURE, &err), 0, "%s", err.msg);
    int64_t n;
    float *v = fixture_read(&st, name, &n);
    cr_assert_eq(n, want_n);
    float x = v[i];
    free(v);
    st_close(&st);
    return x;
}

// Perplexity of the model at `path` (fixture sizes; an export or safetensors) on the fixture tokens.
static Perplexity perplexity_of(const char *path, int batch, int64_t limit) {
    Config c = llama_fixture_job(NULL);
    LlamaRun r;
    llama_run_init(&r, &c.model, DEV_CPU, batch, c.data.seq_len);
    Err err = {0};
    TokenFile f;
    cr_assert_eq(llama_run_load(&r, path, &err), 0, "%s", err.msg);
    cr_assert_eq(token_file_open(&f, LLAMA_TOKENS, c.model.vocab_size, &err), 0, "%s", err.msg);
    Perplexity p;
    cr_assert_eq(llama_perplexity(&r, &f, limit, NULL, &p, &err), 0, "%s", err.msg);
    token_file_close(&f);
    llama_run_free(&r);
    return p;
}

Test(llama_eval, fixture_token_file_holds_the_fixture_ids) {
    TokenFile f;
    Err err = {0};
    cr_assert_eq(token_file_open(&f, LLAMA_TOKENS, 64, &err), 0, "%s", err.msg);
    cr_assert_eq(f.n, 24);
    for (int i = 0; i < 24; i++) cr_expect_eq(f.tokens[i], (int)fixture_value("input_ids", 24, i), "token %d", i);
    token_file_close(&f);
}

// Two windows of 12 = the fixture's (2, 12) batch: the mean loss is transformers' loss.
Test(llama_eval, perplexity_of_the_fixture_is_exp_of_its_loss) {
    double want = fixture_value("loss", 1, 0);
    for (int batch = 1; batch <= 2; batch++) {
        Perplexity p = perplexity_of(LLAMA_FIXTURE, batch, 0);
        cr_expect_eq(p.windows, 2);
        cr_expect_eq(p.tokens, 22);
        cr_expect(fabs(p.loss - want) < 1e-5, "batch %d: loss %.7f, transformers %.7f", batch, p.loss, want);
        cr_expect(fabs(p.ppl - exp(want)) < 1e-5 * exp(want), "batch %d: perplexity %.6f, exp(loss) %.6f", batch, p.ppl, exp(want));
    }
    Perplexity one = perplexity_of(LLAMA_FIXTURE, 2, 1);  // data.test_limit = 1 window
    cr_expect_eq(one.windows, 1);
    cr_expect_eq(one.tokens, 11);
}

// The sparse export (CPU SpMM) has the perplexity of the fixture masked like prune masks it (bf16
// kept values).
Test(llama_eval, export_perplexity_equals_the_masked_dense_model) {
    Config c = llama_fixture_job(NULL);
    const char *path = scratch_path("export.h5");
    Err err = {0};
    cr_assert_eq(llama_prune_export(&c, path, &err), 0, "%s", err.msg);
    Perplexity got = perplexity_of(path, 2, 0);
    LlamaRun r;
    llama_run_init(&r, &c.model, DEV_CPU, 2, c.data.seq_len);
    cr_assert_eq(llama_run_load(&r, LLAMA_FIXTURE, &err), 0, "%s", err.msg);
    llama_fixture_mask(&r.m, (VnmPattern){64, 2, 8}, true);
    TokenFile f;
    cr_assert_eq(token_file_open(&f, LLAMA_TOKENS, 64, &err), 0, "%s", err.msg);
    Perplexity want;
    cr_assert_eq(llama_perplexity(&r, &f, 0, NULL, &want, &err), 0, "%s", err.msg);
    cr_expect(fabs(got.loss - want.loss) < 1e-5, "export loss %.7f, masked dense %.7f", got.loss, want.loss);
    cr_expect(fabs(want.loss - fixture_value("loss", 1, 0)) > 1e-3, "pruning changed nothing");
    token_file_close(&f);
    llama_run_free(&r);
}

// ---- calibrated pruning ----

// A token file of n uniform random tokens below 64.
static const char *random_tokens(int64_t n) {
    int32_t *t = malloc((size_t)n * sizeof *t);
    Rng r;
    rng_seed(&r, 11);
    for (int64_t i = 0; i < n; i++) t[i] = (int32_t)rng_below(&r, 64);
    const char *path = scratch_path("random.bin");
    Err err = {0};
    cr_assert_eq(token_file_write(path, t, n, &err), 0, "%s", err.msg);
    free(t);
    return path;
}

static char calib_path[600];

// `score` pruning calibrated on 16 windows of the random-token file into scratch <score>.h5.
static const char *prune_with(const char *score) {
    char s[64], d[700];
    snprintf(s, sizeof s, "sparsity.score=%s", score);
    snprintf(d, sizeof d, "data.path=%s", calib_path);
    Config c = llama_fixture_job((const char *[]){s, d, "sparsity.calib_batches=16", NULL});
    char name[64];
    snprintf(name, sizeof name, "%s.h5", score);
    const char *path = scratch_path(name);
    Err err = {0};
    cr_assert_eq(llama_prune_export(&c, path, &err), 0, "%s: %s", score, err.msg);
    return path;
}

// Every /vnm layer of the export decompresses to a mask of its V:N:M pattern; the dense weights (the
// export loaded without the SpMM) into w[i] (n_linears, malloc'ed).
static void check_export(const char *path, float **w) {
    VnmExport e;
    Err err = {0};
    cr_assert_eq(vnm_export_read(path, &e, &err), 0, "%s", err.msg);
    cr_expect_eq(e.n_layers, 14);
    for (int i = 0; i < e.n_layers; i++) {
        const VnmMatrix *m = &e.layers[i];
        float *W = malloc((size_t)(m->out * m->in) * sizeof *W);
        uint8_t *mask = malloc((size_t)(m->out * m->in));
        vnm_decompress(m, W);
        for (int64_t k = 0; k < m->out * m->in; k++) mask[k] = W[k] != 0.0f;
        cr_expect_eq(mask_check_vnm(mask, m->out, m->in, m->p, &err), 0, "%s %s: %s", path, e.layer_names[i], err.msg);
        cr_expect_float_eq(mask_density(mask, m->out * m->in), 2.0 / m->p.M, 1e-9, "%s", e.layer_names[i]);
        free(W), free(mask);
    }
    vnm_export_free(&e);
    Config c = llama_fixture_job(NULL);
    LlamaRun r;
    llama_run_init(&r, &c.model, DEV_CPU, 0, c.data.seq_len);
    cr_assert_eq(llama_load_export(&r.m, path, false, &err), 0, "%s", err.msg);
    for (int i = 0; i < r.m.n_linears; i++) w[i] = tensor_to_host_f32(r.m.linears[i]->w);
    llama_run_free(&r);
}

static void free_weights(float **w, int n) {
    for (int i = 0; i < n; i++) free(w[i]);
}

// Σ_r (W − W')_r G (W − W')_rᵀ = ‖X (W − W')ᵀ‖² for G = XᵀX: the layer's output error on X.
static double output_error(const float *W, const float *Wp, const double *G, int64_t out, int64_t in) {
    double e = 0, *d = malloc((size_t)in * sizeof *d);
    for (int64_t r = 0; r < out; r++) {
        for (int64_t j = 0; j < in; j++) d[j] = (double)W[r * in + j] - Wp[r * in + j];
        for (int64_t i = 0; i < in; i++)
            for (int64_t j = 0; j < in; j++) e += d[i] * G[i * in + j] * d[j];
    }
    free(d);
    return e;
}

#define N_LINEARS 15  // 2 layers × 7 projections + lm_head

Test(llama_eval, calibrated_pruning_writes_valid_exports_and_sparsegpt_beats_magnitude) {
    snprintf(calib_path, sizeof calib_path, "%s", random_tokens(4000));
    float *mag[N_LINEARS], *wanda[N_LINEARS], *ria[N_LINEARS], *sgpt[N_LINEARS];
    check_export(prune_with("magnitude"), mag);
    check_export(prune_with("wanda"), wanda);
    check_export(prune_with("ria"), ria);
    check_export(prune_with("sparsegpt"), sgpt);
    // the calibrated masks differ from magnitude's: the activation norms were used
    int differ_wanda = 0, differ_ria = 0;
    for (int i = 0; i < N_LINEARS - 1; i++)
        for (int64_t k = 0; k < 64 * 64; k++) differ_wanda += (mag[i][k] != 0) != (wanda[i][k] != 0), differ_ria += (mag[i][k] != 0) != (ria[i][k] != 0);
    cr_expect(differ_wanda > 0 && differ_ria > 0, "masks differ from magnitude's: wanda %d, ria %d", differ_wanda, differ_ria);

    // the Gram matrices of the same calibration windows on the dense model, from the same machinery
    char d[700];
    snprintf(d, sizeof d, "data.path=%s", calib_path);
    Config c = llama_fixture_job((const char *[]){"sparsity.score=sparsegpt", d, "sparsity.calib_batches=16", NULL});
    LlamaRun r;
    llama_run_init(&r, &c.model, DEV_CPU, 2, c.data.seq_len);
    Err err = {0};
    cr_assert_eq(llama_run_load(&r, LLAMA_FIXTURE, &err), 0, "%s", err.msg);
    Arena masks;
    arena_init(&masks, "masks", DEV_CPU, 1 << 20);
    Schedule s;
    cr_assert_eq(schedule_init(&s, &c, r.m.linears, r.m.n_linears, 0, &masks, &err), 0, "%s", err.msg);
    cr_assert_eq(llama_calibrate(&r, &s, calib_path, 16, c.train.seed, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n_layers, N_LINEARS - 1);
    for (int i = 0; i < s.n_layers; i++) {
        const Linear *l = s.layers[i];
        cr_assert_eq(l, r.m.linears[i]);
        float *W = tensor_to_host_f32(l->w);
        double eg = output_error(W, sgpt[i], s.gram[i], l->out, l->in), em = output_error(W, mag[i], s.gram[i], l->out, l->in);
        cr_expect(eg < 0.9 * em, "%s: sparsegpt output error %.4g, magnitude %.4g", l->name, eg, em);
        free(W);
    }
    schedule_free(&s);
    arena_free(&masks);
    llama_run_free(&r);
    free_weights(mag, N_LINEARS), free_weights(wanda, N_LINEARS), free_weights(ria, N_LINEARS), free_weights(sgpt, N_LINEARS);
}

// A calibration file with a token beyond the vocabulary fails the prune with the file and the index.
Test(llama_eval, calibration_file_out_of_vocabulary_is_named) {
    int32_t t[40];
    for (int i = 0; i < 40; i++) t[i] = i == 17 ? 64 : i;
    const char *bad = scratch_path("bad.bin");
    Err err = {0};
    cr_assert_eq(token_file_write(bad, t, 40, &err), 0, "%s", err.msg);
    char d[700];
    snprintf(d, sizeof d, "data.path=%s", bad);
    Config c = llama_fixture_job((const char *[]){"sparsity.score=wanda", d, NULL});
    cr_expect_eq(llama_prune_export(&c, scratch_path("x.h5"), &err), -1);
    cr_expect(strstr(err.msg, bad) && strstr(err.msg, "token 17 (byte offset 1058) is 64"), "%s", err.msg);
}
