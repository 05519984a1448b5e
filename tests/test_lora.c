// LoRA: merging gives the same forward as the unmerged layer (dense and masked), targets by name.
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "autograd/rng.h"
#include "train/deit.h"
#include "train/lora.h"
#include "train/vnm_mask.h"

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
            l->masked = true;
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

// The V:N:M SDDMM (G only at each row block's kept columns) gives the gradients of the dense
// dyᵀx path: masked LoRA linear with vnm_V/vnm_M set vs unset, same inputs.
static void masked_grads(bool structured, float *out[4]) {
    Arena p, acts;
    arena_init(&p, "p", DEV_CPU, 8 << 20);
    arena_init(&acts, "a", DEV_CPU, 32 << 20);
    Tape tape;
    tape_init(&tape, &acts);
    Rng r;
    rng_seed(&r, 21);
    int64_t T = 37, in = 40, outd = 32, rank = 3;
    Tensor *x = tensor_new2(&p, DT_F32, T, in, "x"), *w = tensor_new2(&p, DT_F32, outd, in, "w");
    Tensor *A = tensor_new2(&p, DT_F32, rank, in, "A"), *B = tensor_new2(&p, DT_F32, outd, rank, "B");
    Tensor *mask = tensor_new2(&p, DT_U8, outd, in, "mask");
    Tensor *ts[] = {x, w, A, B};
    for (int k = 0; k < 4; k++) randomize(ts[k], &r, 1.0f);
    float *scores = malloc((size_t)(outd * in) * sizeof *scores);
    for (int64_t k = 0; k < outd * in; k++) scores[k] = rng_uniform(&r);
    MaskSpec spec;
    Err err;
    cr_assert_eq(mask_spec_parse("16:2:8", &spec, &err), 0);
    cr_assert_eq(mask_compute(scores, outd, in, &spec, "t", mask->data, &err), 0, "%s", err.msg);
    free(scores);
    for (int k = 0; k < 4; k++) {
        ts[k]->requires_grad = true;
        tensor_ensure_grad(ts[k], &p);
    }
    LoraRef lr = {.A = A, .B = B, .mask = mask, .scale = 1.5f, .vnm_V = structured ? 16 : 0, .vnm_M = structured ? 8 : 0};
    Tensor *y = op_linear(&tape, x, w, NULL, &lr, "lin");
    Tensor *R = tensor_like(&p, y, "R");
    randomize(R, &r, 1.0f);
    tensor_ensure_grad(y, &acts);
    memcpy(y->grad->data, R->data, (size_t)y->numel * sizeof(float));
    // backward of this one node only: seed dy = R
    TapeNode *node = &tape.nodes[tape.n - 1];
    g_ops[OP_LINEAR].backward[DEV_CPU](node);
    for (int k = 0; k < 4; k++) {
        out[k] = malloc((size_t)ts[k]->numel * sizeof(float));
        memcpy(out[k], ts[k]->grad->data, (size_t)ts[k]->numel * sizeof(float));
    }
    tape_free(&tape);
    arena_free(&p), arena_free(&acts);
}

Test(lora, vnm_sddmm_matches_dense_gradient) {
    float *dense[4], *sddmm[4];
    masked_grads(false, dense);
    masked_grads(true, sddmm);
    const int64_t n[4] = {37 * 40, 32 * 40, 3 * 40, 32 * 3};
    const char *names[4] = {"dx", "dw", "dA", "dB"};
    for (int k = 0; k < 4; k++) {
        for (int64_t i = 0; i < n[k]; i++)
            cr_assert(fabsf(dense[k][i] - sddmm[k][i]) <= 1e-4f * (1 + fabsf(dense[k][i])), "%s[%lld]: %g vs %g", names[k],
                      (long long)i, dense[k][i], sddmm[k][i]);
        free(dense[k]), free(sddmm[k]);
    }
}
