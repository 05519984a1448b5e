// DeiT forward/backward against PyTorch: the fixture tests/fixtures/deit_small_ref.safetensors was
// made by tests/reference/make_deit_fixture.py (timm VisionTransformer, fp32, + PEFT LoRA).
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "train/deit.h"
#include "train/lora.h"
#include "train/model_io.h"
#include "train/safetensors.h"
#include "deit_fixture.h"
#include "fixture_check.h"

typedef struct Fixture {
    StFile st;
    Arena params, grads, acts;
    Tape tape;
    Deit model;
    Tensor *x, *y;
} Fixture;

static void fixture_open(Fixture *f) {
    Err err = {0};
    cr_assert_eq(st_open(&f->st, DEIT_FIXTURE, &err), 0, "%s", err.msg);
    ModelConfig c = deit_fixture_config();
    arena_init(&f->params, "params", DEV_CPU, 8 << 20);
    arena_init(&f->grads, "grads", DEV_CPU, 8 << 20);
    arena_init(&f->acts, "acts", DEV_CPU, 64 << 20);
    tape_init(&f->tape, &f->acts);
    deit_init(&f->model, &c, &f->params, 1);
    cr_assert_eq(model_load_safetensors(&f->model.params, DEIT_FIXTURE, false, &err), 0, "%s", err.msg);
    int64_t n;
    float *x = fixture_read(&f->st, "input", &n), *y = fixture_read(&f->st, "labels", &n);
    f->x = tensor_new(&f->params, DT_F32, 4, (int64_t[]){4, 3, 32, 32}, "input");
    memcpy(f->x->data, x, sizeof(float) * (size_t)f->x->numel);
    f->y = tensor_new1(&f->params, DT_I32, 4, "labels");
    for (int i = 0; i < 4; i++) ((int32_t *)f->y->data)[i] = (int32_t)y[i];
    free(x), free(y);
}

static void fixture_close(Fixture *f) {
    st_close(&f->st);
    deit_free(&f->model);
    tape_free(&f->tape);
    arena_free(&f->params), arena_free(&f->grads), arena_free(&f->acts);
}

static Tensor *forward_backward(Fixture *f, Tensor **logits) {
    for (int i = 0; i < f->model.params.n; i++) {
        Param *p = &f->model.params.items[i];
        if (p->trainable) tensor_zero(tensor_ensure_grad(p->value, &f->grads));
    }
    tape_reset(&f->tape);
    *logits = deit_forward(&f->model, &f->tape, f->x);
    Tensor *loss = op_cross_entropy(&f->tape, *logits, f->y, 0.0f, "loss");
    tape_backward(&f->tape, loss);
    return loss;
}

Test(deit, matches_timm_forward_and_gradients) {
    Fixture f;
    fixture_open(&f);
    Tensor *logits, *loss = forward_backward(&f, &logits);
    fixture_expect_close(&f.st, "logits", tensor_f32(logits), logits->numel, 1e-4);
    fixture_expect_close(&f.st, "loss", tensor_f32(loss), 1, 1e-5);
    const char *grads[] = {"patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.norm1.weight",
                           "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.1.mlp.fc1.weight",
                           "blocks.1.mlp.fc2.bias", "norm.bias", "head.weight"};
    for (size_t i = 0; i < sizeof grads / sizeof *grads; i++) {
        Param *p = params_find(&f.model.params, grads[i]);
        cr_assert(p, "no parameter %s", grads[i]);
        char ref[128];
        snprintf(ref, sizeof ref, "grad.%s", grads[i]);
        fixture_expect_close(&f.st, ref, tensor_f32(p->value->grad), p->value->numel, 1e-4);
    }
    fixture_close(&f);
}

Test(deit, lora_matches_peft) {
    Fixture f;
    fixture_open(&f);
    LoraConfig lc = {.enabled = true, .rank = 4, .alpha = 8, .dropout = 0, .n_targets = 4, .train_head = false};
    const char *targets[] = {"qkv", "proj", "fc1", "fc2"};
    for (int i = 0; i < 4; i++) snprintf(lc.targets[i], sizeof lc.targets[i], "%s", targets[i]);
    cr_assert_eq(lora_attach(f.model.linears, f.model.n_linears, &f.model.params, &f.params, &lc, 3), 8);
    Err err = {0};
    cr_assert_eq(model_load_safetensors(&f.model.params, DEIT_FIXTURE, true, &err), 0, "%s", err.msg);
    Tensor *logits, *loss = forward_backward(&f, &logits);
    fixture_expect_close(&f.st, "lora_logits", tensor_f32(logits), logits->numel, 1e-4);
    fixture_expect_close(&f.st, "lora_loss", tensor_f32(loss), 1, 1e-5);
    int checked = 0;
    for (int i = 0; i < f.model.params.n; i++) {
        Param *p = &f.model.params.items[i];
        if (p->kind != PARAM_LORA) continue;
        cr_expect(p->trainable);
        char ref[128];
        snprintf(ref, sizeof ref, "lora_grad.%s", p->value->name);
        fixture_expect_close(&f.st, ref, tensor_f32(p->value->grad), p->value->numel, 1e-4);
        checked++;
    }
    cr_expect_eq(checked, 16);
    // the frozen base got no gradient buffer
    cr_expect_null(params_find(&f.model.params, "blocks.0.attn.qkv.weight")->value->grad);
    fixture_close(&f);
}

Test(deit, missing_tensor_is_named) {
    Arena a;
    arena_init(&a, "p", DEV_CPU, 8 << 20);
    ModelConfig c = deit_fixture_config();
    c.depth = 3;  // the fixture has 2 blocks
    Deit m;
    deit_init(&m, &c, &a, 1);
    Err err = {0};
    cr_expect_eq(model_load_safetensors(&m.params, DEIT_FIXTURE, false, &err), -1);
    cr_expect(strstr(err.msg, "blocks.2.norm1.weight") && strstr(err.msg, "deit_small_ref.safetensors"), "%s", err.msg);
    c = deit_fixture_config();
    c.embed_dim = 96, c.num_heads = 3;  // wrong widths
    deit_free(&m);
    arena_reset(&a);
    deit_init(&m, &c, &a, 1);
    cr_expect_eq(model_load_safetensors(&m.params, DEIT_FIXTURE, false, &err), -1);
    cr_expect(strstr(err.msg, "patch_embed.proj.weight"), "%s", err.msg);
    deit_free(&m);
    arena_free(&a);
}
