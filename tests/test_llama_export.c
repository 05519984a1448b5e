// Llama -> V:N:M export -> Llama: `vnmtune prune` of the transformers fixture (tests/fixtures/
// llama_tiny_ref.safetensors), loaded back as sparse linears (CPU SpMM) and as dense masked weights,
// against the masked dense model computed here from the fixture; the KV-cache forward too; and
// exports with a missing layer or a layer of the wrong shape.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "train/commands.h"
#include "train/llama_export.h"
#include "train/model_io.h"
#include "train/vnm_export.h"
#include "train/vnm_linear.h"
#include "train/vnm_mask.h"
#include "llama_fixture.h"
#include "scratch_dir.h"

#define B 2
#define T 12

TestSuite(llama_export, .init = scratch_make, .fini = scratch_remove);

static Config prune_job(const char *const *overrides) { return llama_fixture_job(overrides); }

static const char *prune_to(const char *name, const char *const *overrides) {
    Config c = prune_job(overrides);
    const char *path = scratch_path(name);
    Err err = {0};
    cr_assert_eq(llama_prune_export(&c, path, &err), 0, "%s", err.msg);
    return path;
}

typedef struct Model {
    Arena params;
    Llama m;
} Model;

// A Llama of the export's sizes, loaded from it (sparse: V:N:M linears, else masked dense weights).
static void load_export(Model *md, const char *path, bool sparse) {
    ModelConfig c;
    Err err = {0};
    cr_assert_eq(llama_export_config(path, &c, &err), 0, "%s", err.msg);
    arena_init(&md->params, "params", DEV_CPU, llama_param_bytes(&c, DT_F32));
    llama_alloc(&md->m, &c, &md->params);
    cr_assert_eq(llama_load_export(&md->m, path, sparse, &err), 0, "%s", err.msg);
}

// The fixture's dense model.
static void fixture_model(Model *md) {
    ModelConfig c = prune_job(NULL).model;
    Err err = {0};
    arena_init(&md->params, "params", DEV_CPU, llama_param_bytes(&c, DT_F32));
    llama_alloc(&md->m, &c, &md->params);
    cr_assert_eq(model_load_safetensors(&md->m.params, LLAMA_FIXTURE, false, &err), 0, "%s", err.msg);
}

// The masked dense model: the fixture with every projection pruned to `pattern` by its magnitude
// mask, the kept values rounded to bf16 when `bf16`.
static void masked_reference(Model *md, VnmPattern pattern, bool bf16) {
    fixture_model(md);
    llama_fixture_mask(&md->m, pattern, bf16);
}

static void model_free(Model *md) {
    llama_free(&md->m);
    arena_free(&md->params);
}

static void fill_ids(int32_t *ids, int n, int vocab) {
    for (int i = 0; i < n; i++) ids[i] = (i * 37 + 11) % vocab;
}

// Logits (B, T, vocab) of a full forward (malloc'ed).
static float *forward_logits(Llama *m) {
    Arena a;
    arena_init(&a, "acts", DEV_CPU, 16 << 20);
    Tape t;
    tape_init(&t, &a);
    t.record = false;
    Tensor *ids = tensor_new2(&a, DT_I32, B, T, "ids");
    fill_ids(ids->data, B * T, m->cfg.vocab_size);
    Tensor *y = llama_forward(m, &t, ids);
    float *out = malloc((size_t)y->numel * sizeof *out);
    memcpy(out, tensor_f32(y), (size_t)y->numel * sizeof *out);
    tape_free(&t);
    arena_free(&a);
    return out;
}

// Logits of the same tokens through the KV cache, fed in chunks of 8, 3 and 1 positions.
static float *cached_logits(Llama *m) {
    int64_t V = m->cfg.vocab_size;
    Arena a, acts;
    arena_init(&a, "cache", DEV_CPU, 4 << 20);
    arena_init(&acts, "acts", DEV_CPU, 16 << 20);
    Tape t;
    tape_init(&t, &acts);
    t.record = false;
    LlamaCache cache;
    llama_cache_init(&cache, m, &a, B, T);
    int32_t all[B * T];
    fill_ids(all, B * T, m->cfg.vocab_size);
    float *out = malloc((size_t)(B * T * V) * sizeof *out);
    const int chunks[3] = {8, 3, 1};
    for (int k = 0, t0 = 0; k < 3; t0 += chunks[k++]) {
        tape_reset(&t);
        Tensor *part = tensor_new2(&acts, DT_I32, B, chunks[k], "chunk");
        for (int b = 0; b < B; b++) memcpy((int32_t *)part->data + b * chunks[k], all + b * T + t0, chunks[k] * sizeof(int32_t));
        const float *y = tensor_f32(llama_forward_cached(m, &t, part, &cache));
        for (int b = 0; b < B; b++) memcpy(out + (b * T + t0) * V, y + b * chunks[k] * V, (size_t)(chunks[k] * V) * sizeof *out);
    }
    cr_expect_eq(cache.len, T);
    llama_cache_free(&cache);
    tape_free(&t);
    arena_free(&acts), arena_free(&a);
    return out;
}

// max |got - want| < tol · max |want|
static void expect_close(const float *got, const float *want, int64_t n, double tol, const char *what) {
    double diff = 0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) diff = fmax(diff, fabs(got[i] - want[i])), scale = fmax(scale, fabs(want[i]));
    cr_expect(diff < tol * scale, "%s: max |diff| %.3g, max |logit| %.3g (tolerance %.1g relative)", what, diff, scale, tol);
}

static const VnmMatrix *export_layer(const VnmExport *e, const char *name) {
    for (int i = 0; i < e->n_layers; i++)
        if (!strcmp(e->layer_names[i], name)) return &e->layers[i];
    return NULL;
}

// 128:2:8: the 64-row projections get V = 64, gate/up (128 rows) keep V = 128.
Test(llama_export, prune_writes_projections_sparse_and_the_rest_dense) {
    const char *path = prune_to("llama.h5", (const char *[]){"sparsity.pattern=128:2:8", NULL});
    VnmExport e;
    Err err = {0};
    cr_assert_eq(vnm_export_read(path, &e, &err), 0, "%s", err.msg);
    cr_expect_eq(e.n_layers, 14);
    cr_expect_eq(e.n_dense, 7);  // embedding, 4 layer norms, final norm, lm_head
    const VnmMatrix *q = export_layer(&e, "model.layers.0.self_attn.q_proj"), *g = export_layer(&e, "model.layers.1.mlp.gate_proj");
    cr_assert(q && g);
    cr_expect_eq(q->p.V, 64);
    cr_expect_eq(g->p.V, 128);
    cr_expect_eq(g->p.M, 8);
    cr_expect_null(export_layer(&e, "lm_head"));
    const char *dense[] = {"lm_head.weight", "model.embed_tokens.weight", "model.norm.weight"};
    for (int k = 0; k < 3; k++) {
        bool found = false;
        for (int i = 0; i < e.n_dense; i++) found |= !strcmp(e.dense[i].name, dense[k]);
        cr_expect(found, "no /dense/%s", dense[k]);
    }
    cr_expect(e.config && strstr(e.config, "arch: \"llama\"") && strstr(e.config, "mode: \"one_shot\""), "config: %s", e.config);
    vnm_export_free(&e);
}

Test(llama_export, sparse_and_dense_loads_equal_the_masked_dense_model) {
    const char *path = prune_to("llama.h5", (const char *[]){"sparsity.pattern=128:2:8", NULL});
    Model ref, ref_bf16, sparse, dense;
    masked_reference(&ref, (VnmPattern){128, 2, 8}, false);
    masked_reference(&ref_bf16, (VnmPattern){128, 2, 8}, true);
    load_export(&sparse, path, true);
    load_export(&dense, path, false);
    for (int i = 0; i < sparse.m.n_linears; i++) {
        bool is_head = sparse.m.linears[i] == &sparse.m.lm_head;
        cr_expect_eq(sparse.m.linears[i]->vnm == NULL, is_head, "%s", sparse.m.linears[i]->name);
        cr_expect_null(dense.m.linears[i]->vnm);
    }
    int64_t n = B * T * ref.m.cfg.vocab_size;
    float *want = forward_logits(&ref.m), *want_bf16 = forward_logits(&ref_bf16.m);
    float *got_sparse = forward_logits(&sparse.m), *got_dense = forward_logits(&dense.m);
    cr_expect_str_eq(sparse.m.layers[1].down.vnm->kernel, "cpu");
    expect_close(got_sparse, want_bf16, n, 1e-5, "sparse export vs masked dense (bf16 kept values)");
    expect_close(got_dense, want_bf16, n, 1e-5, "dense load of the export vs masked dense (bf16 kept values)");
    expect_close(got_sparse, want, n, 2e-2, "sparse export vs masked dense (fp32)");
    free(want), free(want_bf16), free(got_sparse), free(got_dense);
    model_free(&ref), model_free(&ref_bf16), model_free(&sparse), model_free(&dense);
}

Test(llama_export, kv_cache_forward_of_the_sparse_export_matches) {
    const char *path = prune_to("llama.h5", NULL);  // 64:2:8
    Model ref, sparse;
    masked_reference(&ref, (VnmPattern){64, 2, 8}, true);
    load_export(&sparse, path, true);
    float *want = forward_logits(&ref.m), *got = cached_logits(&sparse.m);
    expect_close(got, want, B * T * ref.m.cfg.vocab_size, 1e-5, "cached sparse export vs full masked dense");
    free(want), free(got);
    model_free(&ref), model_free(&sparse);
}

// With channel permutation the export stores original input indices and row_perm: the SpMM of the
// permuted layers must compute what their decompressed (masked) weights compute.
Test(llama_export, permuted_export_sparse_equals_its_dense_load) {
    const char *path = prune_to("llama_perm.h5", (const char *[]){"sparsity.permute=true", NULL});
    Model sparse, dense;
    load_export(&sparse, path, true);
    load_export(&dense, path, false);
    cr_expect(vnm_has_col_perm(&sparse.m.layers[0].up.vnm->m) || sparse.m.layers[0].up.vnm->m.row_perm);
    float *want = forward_logits(&dense.m), *got = forward_logits(&sparse.m);
    expect_close(got, want, B * T * dense.m.cfg.vocab_size, 1e-5, "permuted sparse vs its dense load");
    free(want), free(got);
    model_free(&sparse), model_free(&dense);
}

// export.fold_permutations (default): down_proj's input permutation is folded into the rows of
// gate_proj and up_proj, so down_proj keeps plain columns (its 2:4 prefill form needs no gather),
// and the model computes what the export without the fold computes.
Test(llama_export, folded_permutation_computes_the_same) {
    const char *folded = prune_to("llama_fold.h5", (const char *[]){"sparsity.permute=true", NULL});
    const char *plain = prune_to("llama_nofold.h5", (const char *[]){"sparsity.permute=true", "export.fold_permutations=false", NULL});
    Model a, b;
    load_export(&a, folded, true);
    load_export(&b, plain, true);
    for (int l = 0; l < a.m.cfg.n_layers; l++) {
        cr_expect(!vnm_has_col_perm(&a.m.layers[l].down.vnm->m), "layer %d: down_proj keeps an input permutation", l);
        cr_expect(a.m.layers[l].gate.vnm->m.row_perm && a.m.layers[l].up.vnm->m.row_perm, "layer %d", l);
    }
    cr_expect(vnm_has_col_perm(&b.m.layers[0].down.vnm->m), "without the fold down_proj is permuted");
    float *want = forward_logits(&b.m), *got = forward_logits(&a.m);
    expect_close(got, want, B * T * a.m.cfg.vocab_size, 1e-5, "folded vs unfolded permuted export");
    free(want), free(got);
    model_free(&a), model_free(&b);
}

// A copy of the export at src with layer `drop` left out and, when `swap_to` is set, the matrix of
// layer `swap_from` stored under the name `swap_to` instead of its own.
static const char *edited_copy(const char *src, const char *dst_name, const char *drop, const char *swap_to,
                               const char *swap_from) {
    VnmExport e;
    Err err = {0};
    cr_assert_eq(vnm_export_read(src, &e, &err), 0, "%s", err.msg);
    VnmExportLayer *layers = calloc((size_t)e.n_layers, sizeof *layers);
    int n = 0;
    for (int i = 0; i < e.n_layers; i++) {
        const char *name = e.layer_names[i];
        if (drop && !strcmp(name, drop)) continue;
        const VnmMatrix *m = swap_to && !strcmp(name, swap_to) ? export_layer(&e, swap_from) : &e.layers[i];
        layers[n++] = (VnmExportLayer){name, m};
    }
    const char *dst = scratch_path(dst_name);
    cr_assert_eq(vnm_export_write(dst, layers, n, e.dense, e.n_dense, e.config, &err), 0, "%s", err.msg);
    free(layers);
    vnm_export_free(&e);
    return dst;
}

static void expect_load_error(const char *path, const char *layer, const char *detail) {
    Model md;
    ModelConfig c;
    Err err = {0};
    cr_assert_eq(llama_export_config(path, &c, &err), 0, "%s", err.msg);
    arena_init(&md.params, "params", DEV_CPU, llama_param_bytes(&c, DT_F32));
    llama_alloc(&md.m, &c, &md.params);
    cr_expect_eq(llama_load_export(&md.m, path, true, &err), -1);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, layer) && strstr(err.msg, detail), "%s", err.msg);
    model_free(&md);
}

Test(llama_export, missing_layer_and_wrong_shape_are_named) {
    const char *path = prune_to("llama.h5", NULL);
    const char *missing = edited_copy(path, "missing.h5", "model.layers.1.mlp.up_proj", NULL, NULL);
    expect_load_error(missing, "model.layers.1.mlp.up_proj", "missing");
    const char *wrong = edited_copy(path, "wrong.h5", NULL, "model.layers.0.self_attn.q_proj", "model.layers.0.mlp.up_proj");
    expect_load_error(wrong, "model.layers.0.self_attn.q_proj", "128x64");
}

Test(llama_export, prune_refuses_calibration_without_tokens_and_other_models) {
    Err err = {0};
    Config c = prune_job((const char *[]){"sparsity.score=wanda", "data.dataset=fashion_mnist", NULL});
    cr_expect_eq(llama_prune_export(&c, scratch_path("x.h5"), &err), -1);
    cr_expect(strstr(err.msg, "wanda") && strstr(err.msg, "data.dataset tokens"), "%s", err.msg);
    c = prune_job((const char *[]){"model.arch=deit", "data.dataset=fashion_mnist", NULL});
    cr_expect_eq(llama_prune_export(&c, scratch_path("x.h5"), &err), -1);
    cr_expect(strstr(err.msg, "model.arch 'deit'"), "%s", err.msg);
    c = prune_job((const char *[]){"sparsity.targets=all", NULL});  // lm_head stays dense all the same
    const char *path = scratch_path("all.h5");
    cr_assert_eq(llama_prune_export(&c, path, &err), 0, "%s", err.msg);
    VnmExport e;
    cr_assert_eq(vnm_export_read(path, &e, &err), 0, "%s", err.msg);
    cr_expect_eq(e.n_layers, 14);
    vnm_export_free(&e);
}

// The fixture's tensors split over two files: model.init lists both (a sharded HF checkpoint), and
// the export equals the one pruned from the single file.
Test(llama_export, prune_reads_a_sharded_checkpoint) {
    Model md;
    fixture_model(&md);
    Err err = {0};
    ParamList half[2] = {{0}};
    for (int i = 0; i < md.m.params.n; i++) params_add(&half[i % 2], md.m.params.items[i].value, PARAM_BASE, false, false);
    char init[600];
    snprintf(init, sizeof init, "model.init=%s,%s", scratch_path("shard1.safetensors"), scratch_path("shard2.safetensors"));
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(model_save_safetensors(&half[k], scratch_path(k ? "shard2.safetensors" : "shard1.safetensors"), false, &err), 0, "%s", err.msg);
        params_free(&half[k]);
    }
    model_free(&md);
    const char *single = prune_to("single.h5", NULL), *sharded = prune_to("sharded.h5", (const char *[]){init, NULL});
    VnmExport a, b;
    cr_assert_eq(vnm_export_read(single, &a, &err), 0, "%s", err.msg);
    cr_assert_eq(vnm_export_read(sharded, &b, &err), 0, "%s", err.msg);
    cr_assert_eq(a.n_layers, b.n_layers);
    for (int i = 0; i < a.n_layers; i++)
        cr_expect(!memcmp(a.layers[i].values, b.layers[i].values, (size_t)(a.layers[i].out * 2 * a.layers[i].C) * 2), "%s", a.layer_names[i]);
    vnm_export_free(&a), vnm_export_free(&b);
}
