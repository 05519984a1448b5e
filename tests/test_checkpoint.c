// Checkpoints: exact round trip of params, LoRA, masks, moments, state and config; optional
// groups; mismatches; corrupt files; a failed save keeps the previous checkpoint.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/checkpoint.h"
#include "train/h5io.h"
#include "scratch_dir.h"
#include "test_helpers.h"

TestSuite(checkpoint, .init = scratch_make, .fini = scratch_remove);

// A tiny model: frozen bf16 base weight with LoRA, a trainable dense weight and bias, 2 masks.
typedef struct Model {
    Arena arena;
    ParamList params;
    float *m[8], *v[8];
    int n_trainable;
    CkptMask masks[2];
    CkptState state[5];
} Model;

static uint64_t rng_state;
static uint32_t next_u32(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng_state >> 32);
}
static void fill_random(void *data, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) ((uint8_t *)data)[i] = (uint8_t)next_u32();
}

// out_dim changes the shape of the dense weight (to provoke mismatches); extra adds a param.
static void model_init(Model *md, uint64_t seed, int out_dim, bool extra) {
    memset(md, 0, sizeof *md);
    rng_state = seed;
    arena_init(&md->arena, "ckpt", DEV_CPU, 1 << 20);
    Arena *a = &md->arena;
    params_add(&md->params, tensor_new2(a, DT_BF16, 6, 4, "blocks.0.attn.qkv.weight"), PARAM_BASE, false, true);
    params_add(&md->params, tensor_new2(a, DT_F32, 2, 4, "blocks.0.attn.qkv.lora_A"), PARAM_LORA, true, false);
    params_add(&md->params, tensor_new2(a, DT_F32, 6, 2, "blocks.0.attn.qkv.lora_B"), PARAM_LORA, true, false);
    params_add(&md->params, tensor_new2(a, DT_F32, out_dim, 6, "head.weight"), PARAM_BASE, true, true);
    params_add(&md->params, tensor_new1(a, DT_F32, out_dim, "head.bias"), PARAM_BASE, true, false);
    if (extra) params_add(&md->params, tensor_new1(a, DT_F32, 3, "norm.weight"), PARAM_BASE, true, false);
    for (int i = 0; i < md->params.n; i++) {
        Tensor *t = md->params.items[i].value;
        fill_random(t->data, (size_t)t->numel * dtype_size(t->dtype));
        if (!md->params.items[i].trainable) continue;
        int k = md->n_trainable++;
        md->m[k] = calloc((size_t)t->numel, sizeof(float));
        md->v[k] = calloc((size_t)t->numel, sizeof(float));
        fill_random(md->m[k], (size_t)t->numel * 4);
        fill_random(md->v[k], (size_t)t->numel * 4);
    }
    md->masks[0] = (CkptMask){"blocks.0.attn.qkv", tensor_new2(a, DT_U8, 6, 4, "mask0")};
    md->masks[1] = (CkptMask){"head", tensor_new2(a, DT_U8, out_dim, 6, "mask1")};
    for (int i = 0; i < 2; i++) fill_random(md->masks[i].mask->data, (size_t)md->masks[i].mask->numel);
    const char *names[5] = {"step", "stage", "rng0", "rng1", "data_pos"};
    for (int i = 0; i < 5; i++) md->state[i] = (CkptState){names[i], ((uint64_t)next_u32() << 32) | next_u32()};
}

static void model_free(Model *md) {
    for (int k = 0; k < md->n_trainable; k++) free(md->m[k]), free(md->v[k]);
    params_free(&md->params);
    arena_free(&md->arena);
}

static CkptContent content(Model *md, const char *config) {
    return (CkptContent){.params = &md->params, .m = md->m, .v = md->v, .masks = md->masks, .n_masks = 2,
                         .state = md->state, .n_state = 5, .config = config};
}

static void assert_same(Model *a, Model *b) {
    cr_assert_eq(a->params.n, b->params.n);
    for (int i = 0; i < a->params.n; i++) {
        Tensor *x = a->params.items[i].value, *y = b->params.items[i].value;
        cr_assert_eq(memcmp(x->data, y->data, (size_t)x->numel * dtype_size(x->dtype)), 0, "param %s", x->name);
    }
    for (int k = 0; k < a->n_trainable; k++) {
        int64_t n = 0;
        for (int i = 0, t = 0; i < a->params.n; i++)
            if (a->params.items[i].trainable && t++ == k) n = a->params.items[i].value->numel;
        cr_assert_eq(memcmp(a->m[k], b->m[k], (size_t)n * 4), 0, "m[%d]", k);
        cr_assert_eq(memcmp(a->v[k], b->v[k], (size_t)n * 4), 0, "v[%d]", k);
    }
    for (int i = 0; i < 2; i++)
        cr_assert_eq(memcmp(a->masks[i].mask->data, b->masks[i].mask->data, (size_t)a->masks[i].mask->numel), 0);
    for (int i = 0; i < 5; i++) cr_assert_eq(a->state[i].value, b->state[i].value, "state %s", a->state[i].name);
}

// Models a and b: same shapes, different contents.
static void two_models(Model *a, Model *b) {
    model_init(a, 1, 5, false);
    model_init(b, 2, 5, false);
}

// Saves c to <scratch>/ckpt.h5, which must succeed; returns the path.
static char *save_ok(const CkptContent *c) {
    char *p = scratch_path("ckpt.h5");
    Err err;
    cr_assert_eq(ckpt_save(p, c, &err), 0, "%s", err.msg);
    return p;
}

static void load_ok(const char *path, CkptContent *c) {
    Err err;
    cr_assert_eq(ckpt_load(path, c, &err), 0, "%s", err.msg);
}

static const char *CONFIG = "model:\n  arch: \"deit\"\ntrain:\n  steps: 100\n";

Test(checkpoint, round_trip_bit_exact) {
    Model a, b;
    two_models(&a, &b);
    CkptContent ca = content(&a, CONFIG), cb = content(&b, NULL);
    char *p = save_ok(&ca);
    load_ok(p, &cb);
    assert_same(&a, &b);
    cr_assert(cb.loaded_optim && cb.loaded_masks);
    cr_assert_str_eq(cb.config_loaded, CONFIG);
    free(cb.config_loaded);
    Err err;
    char *cfg = ckpt_read_config(p, &err);
    cr_assert_str_eq(cfg, CONFIG);
    free(cfg);

    // The layout of DESIGN.md §6.
    H5File f;
    cr_assert_eq(h5_open_read(&f, p, &err), 0, "%s", err.msg);
    cr_assert(h5_exists(&f, "/model/blocks.0.attn.qkv.weight"));
    cr_assert(h5_exists(&f, "/lora/blocks.0.attn.qkv/A"));
    cr_assert(h5_exists(&f, "/lora/blocks.0.attn.qkv/B"));
    cr_assert(h5_exists(&f, "/mask/head"));
    cr_assert(h5_exists(&f, "/optim/m/head.bias"));
    cr_assert(h5_exists(&f, "/optim/v/blocks.0.attn.qkv.lora_A"));
    cr_assert_not(h5_exists(&f, "/optim/m/blocks.0.attn.qkv.weight"));  // frozen: no moments
    cr_assert(h5_exists(&f, "/state/data_pos"));
    h5_close_commit(&f, &err);
    model_free(&a);
    model_free(&b);
}

Test(checkpoint, optional_groups) {
    Model a, b;
    two_models(&a, &b);
    float m0 = b.m[0][0];
    uint8_t k0 = ((uint8_t *)b.masks[0].mask->data)[0];
    // No optimizer state, no masks, no config.
    CkptContent ca = {.params = &a.params, .state = a.state, .n_state = 5};
    char *p = save_ok(&ca);
    CkptContent cb = content(&b, NULL);
    load_ok(p, &cb);
    cr_assert_not(cb.loaded_optim);
    cr_assert_not(cb.loaded_masks);
    cr_assert_null(cb.config_loaded);
    cr_assert_eq(b.m[0][0], m0);
    cr_assert_eq(((uint8_t *)b.masks[0].mask->data)[0], k0);
    cr_assert_eq(memcmp(a.params.items[3].value->data, b.params.items[3].value->data, 30 * 4), 0);
    // A full file loads without asking for the optional groups too.
    ca = content(&a, CONFIG);
    p = save_ok(&ca);
    CkptContent only_params = {.params = &b.params};
    load_ok(p, &only_params);
    free(only_params.config_loaded);
    model_free(&a);
    model_free(&b);
}

Test(checkpoint, skip_frozen) {
    Model a, b;
    two_models(&a, &b);
    CkptContent ca = content(&a, NULL), cb = content(&b, NULL);
    ca.skip_frozen = true;
    char *p = save_ok(&ca);
    Err err;
    cr_assert_eq(ckpt_load(p, &cb, &err), -1);
    cr_assert(strstr(err.msg, "saved without the frozen params"), "%s", err.msg);
    cb.skip_frozen = true;
    uint16_t frozen0 = ((uint16_t *)b.params.items[0].value->data)[0];
    load_ok(p, &cb);
    cr_assert_eq(((uint16_t *)b.params.items[0].value->data)[0], frozen0, "frozen param was touched");
    cr_assert_eq(memcmp(a.params.items[1].value->data, b.params.items[1].value->data, 8 * 4), 0);
    model_free(&a);
    model_free(&b);
}

static void expect_load_error(const char *path, Model *md, const char *want) {
    Err err;
    CkptContent c = content(md, NULL);
    cr_assert_eq(ckpt_load(path, &c, &err), -1, "loaded %s", path);
    cr_assert(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    cr_assert(strstr(err.msg, path), "message '%s' lacks the path", err.msg);
    cr_assert_null(c.config_loaded);
}

Test(checkpoint, mismatches) {
    Model a, other_shape, bigger;
    model_init(&a, 1, 5, false);
    model_init(&other_shape, 2, 7, false);
    model_init(&bigger, 3, 5, true);
    CkptContent ca = content(&a, NULL);
    char *p = save_ok(&ca);
    expect_load_error(p, &other_shape, "dataset '/model/head.weight': expected shape [7, 6], file has [5, 6]");
    expect_load_error(p, &bigger, "missing dataset '/model/norm.weight'");
    // The file has a param the model lacks.
    CkptContent cb = content(&bigger, NULL);
    save_ok(&cb);
    expect_load_error(p, &a, "'/model/norm.weight' is not a base param of this model");
    // A state entry the file does not have.
    save_ok(&ca);
    a.state[4].name = "epoch";
    expect_load_error(p, &a, "missing dataset '/state/epoch'");
    a.state[4].name = "data_pos";
    // A mask layer the file does not have, and a dtype change (f32 weight loaded into bf16).
    a.masks[1].layer = "fc9";
    expect_load_error(p, &a, "missing dataset '/mask/fc9'");
    a.masks[1].layer = "head";
    a.params.items[4].value->dtype = DT_BF16;
    expect_load_error(p, &a, "dataset '/model/head.bias': stored as f32, expected bf16");
    a.params.items[4].value->dtype = DT_F32;
    model_free(&a);
    model_free(&other_shape);
    model_free(&bigger);
}

Test(checkpoint, corrupt_files) {
    Model a;
    model_init(&a, 1, 5, false);
    CkptContent ca = content(&a, CONFIG);
    char *p = save_ok(&ca);
    size_t n;
    char *bytes = read_bytes(p, &n);
    char *cut = scratch_path("cut.h5");
    write_bytes(cut, bytes, n * 2 / 3);
    free(bytes);
    expect_load_error(cut, &a, "truncated");
    char *garbage = scratch_path("garbage.h5");
    const char *text = "garbage garbage garbage";
    write_bytes(garbage, text, strlen(text));
    expect_load_error(garbage, &a, "not an HDF5 file");
    Err err;
    cr_assert_null(ckpt_read_config(garbage, &err));
    // A valid HDF5 file that is not a checkpoint.
    H5File f;
    char *plain = scratch_path("plain.h5");
    cr_assert_eq(h5_create(&f, plain, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_write_u64(&f, "/x", 1, (uint64_t[]){1}, &err), 0, "%s", err.msg);
    cr_assert_eq(h5_close_commit(&f, &err), 0, "%s", err.msg);
    expect_load_error(plain, &a, "not a vnmtune checkpoint");
    model_free(&a);
}

Test(checkpoint, failed_save_keeps_previous) {
    Model a, b;
    two_models(&a, &b);
    CkptContent ca = content(&a, CONFIG);
    char *p = save_ok(&ca);
    // A save that fails half-way (two masks with the same name: the second dataset cannot be created).
    Model c;
    model_init(&c, 3, 5, false);
    c.masks[1].layer = c.masks[0].layer;
    c.masks[1].mask = c.masks[0].mask;
    CkptContent cc = content(&c, "other config");
    Err err;
    cr_assert_eq(ckpt_save(p, &cc, &err), -1);
    cr_assert(strstr(err.msg, "cannot create dataset '/mask/blocks.0.attn.qkv'"), "%s", err.msg);
    cr_assert_eq(access(scratch_path("ckpt.h5.tmp"), F_OK), -1, "tmp file left behind");
    // A save into a directory that does not exist.
    cr_assert_eq(ckpt_save(scratch_path("missing/scratch/ckpt.h5"), &cc, &err), -1);
    cr_assert(strstr(err.msg, "cannot create: No such file or directory"), "%s", err.msg);
    // The previous checkpoint is intact.
    CkptContent cb = content(&b, NULL);
    load_ok(p, &cb);
    assert_same(&a, &b);
    cr_assert_str_eq(cb.config_loaded, CONFIG);
    free(cb.config_loaded);
    model_free(&a);
    model_free(&b);
    model_free(&c);
}
