// LoRA: merging gives the same forward as the unmerged layer (dense and masked), targets by name.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/rng.h"
#include "train/deit.h"
#include "train/lora.h"

static ModelConfig tiny(void) {
    ModelConfig c = {0};
    c.img_size = 16, c.patch_size = 4, c.in_chans = 1, c.num_classes = 5;
    c.embed_dim = 32, c.depth = 2, c.num_heads = 2, c.mlp_ratio = 2.0f, c.qkv_bias = true, c.ln_eps = 1e-6f;
    return c;
}

static LoraConfig lora_cfg(void) {
    LoraConfig lc = {.enabled = true, .rank = 4, .alpha = 8, .n_targets = 4, .train_head = true};
    const char *t[] = {"qkv", "proj", "fc1", "fc2"};
    for (int i = 0; i < 4; i++) snprintf(lc.targets[i], sizeof lc.targets[i], "%s", t[i]);
    return lc;
}

static void randomize(Tensor *t, Rng *r, float std) {
    for (int64_t i = 0; i < t->numel; i++) tensor_f32(t)[i] = std * rng_normal(r);
}

static float *logits_of(Deit *m, Tape *tape, Tensor *x) {
    tape_reset(tape);
    tape->record = tape->training = false;
    Tensor *y = deit_forward(m, tape, x);
    float *out = malloc((size_t)y->numel * sizeof *out);
    memcpy(out, y->data, (size_t)y->numel * sizeof *out);
    return out;
}

static void check_merge(bool masked) {
    Arena params, acts;
    arena_init(&params, "p", DEV_CPU, 16 << 20);
    arena_init(&acts, "a", DEV_CPU, 64 << 20);
    Tape tape;
    tape_init(&tape, &acts);
    ModelConfig c = tiny();
    Deit m;
    deit_init(&m, &c, &params, 7);
    LoraConfig lc = lora_cfg();
    cr_assert_eq(lora_attach(m.linears, m.n_linears, &m.params, &params, &lc, 7), 8);
    Rng r;
    rng_seed(&r, 11);
    for (int i = 0; i < m.n_linears; i++) {
        Linear *l = m.linears[i];
        if (!l->lora_A) continue;
        randomize(l->lora_B, &r, 0.1f);  // B starts at zero: make the branch matter
        if (masked) {
            l->mask = tensor_new2(&params, DT_U8, l->out, l->in, "mask");
            for (int64_t k = 0; k < l->mask->numel; k++) ((uint8_t *)l->mask->data)[k] = rng_uniform(&r) < 0.5f;
        }
    }
    Tensor *x = tensor_new(&params, DT_F32, 4, (int64_t[]){3, 1, 16, 16}, "x");
    randomize(x, &r, 1.0f);
    float *before = logits_of(&m, &tape, x);
    for (int i = 0; i < m.n_linears; i++) lora_merge(m.linears[i], &m.params);
    for (int i = 0; i < m.n_linears; i++) cr_expect_null(m.linears[i]->lora_A);
    float *after = logits_of(&m, &tape, x);
    for (int i = 0; i < 15; i++) cr_expect(fabsf(before[i] - after[i]) < 1e-4f, "logit %d: %f vs %f", i, before[i], after[i]);
    if (masked) {  // the merged weight is zero wherever the mask is
        Linear *l = m.linears[0];
        for (int64_t k = 0; k < l->w->numel; k++)
            if (!((uint8_t *)l->mask->data)[k]) cr_assert_eq(tensor_f32(l->w)[k], 0.0f);
    }
    free(before), free(after);
    deit_free(&m);
    tape_free(&tape);
    arena_free(&params), arena_free(&acts);
}

Test(lora, merge_equals_unmerged) { check_merge(false); }
Test(lora, masked_merge_equals_masked_forward) { check_merge(true); }

Test(lora, freezes_base_and_targets_by_name) {
    Arena params;
    arena_init(&params, "p", DEV_CPU, 16 << 20);
    ModelConfig c = tiny();
    Deit m;
    deit_init(&m, &c, &params, 1);
    LoraConfig lc = lora_cfg();
    lc.n_targets = 1;
    snprintf(lc.targets[0], sizeof lc.targets[0], "attn.proj");
    cr_expect_eq(lora_attach(m.linears, m.n_linears, &m.params, &params, &lc, 1), 2);
    cr_expect_not_null(m.blocks[1].proj.lora_A);
    cr_expect_null(m.blocks[1].qkv.lora_A);
    cr_expect_eq(m.blocks[0].proj.lora_A->shape[0], 4);
    cr_expect(!params_find(&m.params, "blocks.0.attn.proj.weight")->trainable);
    cr_expect(params_find(&m.params, "head.weight")->trainable);  // train_head
    cr_expect(params_find(&m.params, "blocks.0.attn.proj.lora_B")->trainable);
    // B starts at zero: the adapted model computes what the base computes
    for (int64_t k = 0; k < m.blocks[0].proj.lora_B->numel; k++) cr_assert_eq(tensor_f32(m.blocks[0].proj.lora_B)[k], 0.0f);
    deit_free(&m);
    arena_free(&params);
}
