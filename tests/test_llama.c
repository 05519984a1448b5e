// Llama forward/backward against HF transformers: the fixture tests/fixtures/llama_tiny_ref.safetensors
// was made by tests/reference/make_llama_fixture.py (LlamaForCausalLM, fp32, + PEFT LoRA).
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "fixture_check.h"
#include "train/llama.h"
#include "train/lora.h"
#include "train/model_io.h"

#define FIXTURE VNMTUNE_SOURCE_DIR "/tests/fixtures/llama_tiny_ref.safetensors"
#define B 2
#define T 12

static ModelConfig tiny_config(void) {
    ModelConfig c = {0};
    snprintf(c.arch, sizeof c.arch, "llama");
    c.vocab_size = 64, c.hidden_size = 64, c.intermediate_size = 128, c.n_layers = 2, c.n_heads = 4, c.n_kv_heads = 4;
    c.max_seq_len = 64, c.rope_theta = 10000.0f, c.rms_eps = 1e-5f;
    return c;
}

typedef struct Run {
    StFile st;
    Arena params, grads, acts;
    Tape tape;
    Llama model;
    Tensor *ids, *labels;
} Run;

static void run_open(Run *r) {
    Err err = {0};
    cr_assert_eq(st_open(&r->st, FIXTURE, &err), 0, "%s", err.msg);
    ModelConfig c = tiny_config();
    arena_init(&r->params, "params", DEV_CPU, 8 << 20);
    arena_init(&r->grads, "grads", DEV_CPU, 8 << 20);
    arena_init(&r->acts, "acts", DEV_CPU, 32 << 20);
    tape_init(&r->tape, &r->acts);
    llama_init(&r->model, &c, &r->params, 1);
    cr_assert_eq(model_load_safetensors(&r->model.params, FIXTURE, false, &err), 0, "%s", err.msg);
    int64_t n;
    float *ids = fixture_read(&r->st, "input_ids", &n);
    cr_assert_eq(n, B * T);
    r->ids = tensor_new2(&r->params, DT_I32, B, T, "input_ids");
    r->labels = tensor_new2(&r->params, DT_I32, B, T, "labels");
    int32_t *id = r->ids->data;
    for (int i = 0; i < B * T; i++) id[i] = (int32_t)ids[i];
    llama_shift_labels(id, B, T, r->labels->data);
    free(ids);
}

static void run_close(Run *r) {
    st_close(&r->st);
    llama_free(&r->model);
    tape_free(&r->tape);
    arena_free(&r->params), arena_free(&r->grads), arena_free(&r->acts);
}

// Zeroed gradients, one forward + backward of the LM loss; the logits into *logits.
static Tensor *lm_step(Run *r, Tensor **logits) {
    for (int i = 0; i < r->model.params.n; i++)
        if (r->model.params.items[i].trainable) tensor_zero(tensor_ensure_grad(r->model.params.items[i].value, &r->grads));
    tape_reset(&r->tape);
    *logits = llama_forward(&r->model, &r->tape, r->ids);
    Tensor *loss = op_cross_entropy(&r->tape, *logits, r->labels, 0.0f, "loss");
    tape_backward(&r->tape, loss);
    return loss;
}

Test(llama, matches_transformers_forward_and_gradients) {
    Run r;
    run_open(&r);
    Tensor *logits, *loss = lm_step(&r, &logits);
    fixture_expect_close(&r.st, "logits", tensor_f32(logits), logits->numel, 1e-4);
    fixture_expect_close(&r.st, "loss", tensor_f32(loss), 1, 1e-5);
    const char *names[] = {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                           "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                           "model.layers.0.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
                           "model.layers.1.post_attention_layernorm.weight", "model.layers.1.mlp.gate_proj.weight",
                           "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight",
                           "model.norm.weight", "lm_head.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        Param *p = params_find(&r.model.params, names[i]);
        cr_assert(p, "no parameter %s", names[i]);
        char ref[160];
        snprintf(ref, sizeof ref, "grad.%s", names[i]);
        fixture_expect_close(&r.st, ref, tensor_f32(p->value->grad), p->value->numel, 1e-4);
    }
    run_close(&r);
}

Test(llama, lora_matches_peft) {
    Run r;
    run_open(&r);
    LoraConfig lc = {.enabled = true, .rank = 4, .alpha = 8, .dropout = 0, .n_targets = 7, .train_head = false};
    const char *targets[] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
    for (int i = 0; i < 7; i++) snprintf(lc.targets[i], sizeof lc.targets[i], "%s", targets[i]);
    cr_assert_eq(lora_attach(r.model.linears, r.model.n_linears, &r.model.params, &r.params, &lc, 3), 14);
    Err err = {0};
    cr_assert_eq(model_load_safetensors(&r.model.params, FIXTURE, true, &err), 0, "%s", err.msg);
    Tensor *logits, *loss = lm_step(&r, &logits);
    fixture_expect_close(&r.st, "lora_logits", tensor_f32(logits), logits->numel, 1e-4);
    fixture_expect_close(&r.st, "lora_loss", tensor_f32(loss), 1, 1e-5);
    int checked = 0;
    for (int i = 0; i < r.model.params.n; i++) {
        Param *p = &r.model.params.items[i];
        if (p->kind != PARAM_LORA) continue;
        char ref[160];
        snprintf(ref, sizeof ref, "lora_grad.%s", p->value->name);
        fixture_expect_close(&r.st, ref, tensor_f32(p->value->grad), p->value->numel, 1e-4);
        checked++;
    }
    cr_expect_eq(checked, 28);
    cr_expect_null(params_find(&r.model.params, "lm_head.weight")->value->grad);
    run_close(&r);
}

// Prefill of 8 tokens into the KV cache, then 3 + 1 more: the logits equal the full forward's
// (random weights, scaled up so that attention is far from uniform).
Test(llama, kv_cache_matches_full_forward) {
    ModelConfig c = tiny_config();
    Arena a;
    arena_init(&a, "kv", DEV_CPU, 32 << 20);
    Tape tape;
    tape_init(&tape, &a);
    tape.record = false;
    Llama m;
    llama_init(&m, &c, &a, 5);
    for (int i = 0; i < m.n_linears; i++)
        for (int64_t e = 0; e < m.linears[i]->w->numel; e++) tensor_f32(m.linears[i]->w)[e] *= 5.0f;
    Tensor *ids = tensor_new2(&a, DT_I32, B, T, "ids");
    for (int i = 0; i < B * T; i++) ((int32_t *)ids->data)[i] = (i * 37 + 11) % c.vocab_size;
    LlamaCache cache;
    llama_cache_init(&cache, &m, &a, B, 16);
    size_t mark = a.used;  // tape_reset must keep the model, ids and cache: a second arena for activations
    Arena acts;
    arena_init(&acts, "acts", DEV_CPU, 16 << 20);
    tape.act = &acts;
    tape_reset(&tape);
    const float *want = tensor_f32(llama_forward(&m, &tape, ids));
    const int chunks[3] = {8, 3, 1};
    int t0 = 0;
    int64_t V = c.vocab_size;
    Arena chunk_arena;
    arena_init(&chunk_arena, "chunks", DEV_CPU, 1 << 20);
    for (int k = 0; k < 3; k++) {
        Tensor *part = tensor_new2(&chunk_arena, DT_I32, B, chunks[k], "chunk");
        for (int b = 0; b < B; b++)
            memcpy((int32_t *)part->data + b * chunks[k], (int32_t *)ids->data + b * T + t0, chunks[k] * sizeof(int32_t));
        size_t before = acts.used;  // keep the full forward's logits: allocate after them, release after
        const float *got = tensor_f32(llama_forward_cached(&m, &tape, part, &cache));
        double diff = 0, scale = 0;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < chunks[k] * V; i++) {
                diff = fmax(diff, fabs(got[b * chunks[k] * V + i] - want[(b * T + t0) * V + i]));
                scale = fmax(scale, fabs(want[(b * T + t0) * V + i]));
            }
        cr_expect(diff < 1e-5 * scale, "chunk %d (positions %d..%d): max |cached - full| = %.3g of %.3g", k, t0,
                  t0 + chunks[k] - 1, diff, scale);
        acts.used = before;
        t0 += chunks[k];
    }
    cr_expect_eq(cache.len, T);
    cr_expect_eq(a.used, mark);
    llama_cache_free(&cache);
    llama_free(&m);
    tape_free(&tape);
    arena_free(&chunk_arena), arena_free(&acts), arena_free(&a);
}

Test(llama, bad_config_and_missing_tensor_are_named) {
    ModelConfig c = tiny_config();
    c.n_kv_heads = 2;
    Err err = {0};
    cr_expect_eq(llama_check_config(&c, &err), -1);
    cr_expect(strstr(err.msg, "n_kv_heads 2") && strstr(err.msg, "grouped-query"), "%s", err.msg);
    c = tiny_config();
    c.n_layers = 3;  // the fixture has 2
    Arena a;
    arena_init(&a, "p", DEV_CPU, 8 << 20);
    Llama m;
    llama_alloc(&m, &c, &a);
    cr_expect_eq(model_load_safetensors(&m.params, FIXTURE, false, &err), -1);
    cr_expect(strstr(err.msg, "model.layers.2.input_layernorm.weight") && strstr(err.msg, "llama_tiny_ref"), "%s", err.msg);
    llama_free(&m);
    arena_free(&a);
}
