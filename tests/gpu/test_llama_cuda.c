// The Llama model on the GPU (bf16 storage, fp32 accumulation): against HF transformers (the fixture
// of tests/test_llama.c) and, with the KV cache, against its own full forward.
// Errors are relative L2 (‖gpu − ref‖ / ‖ref‖); bf16 rounding of every activation makes ~1e-2 normal.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "tests/fixture_check.h"
#include "kernels/ops_cuda.h"
#include "train/llama.h"
#include "train/model_io.h"

#define FIXTURE VNMTUNE_SOURCE_DIR "/tests/fixtures/llama_tiny_ref.safetensors"

static ModelConfig config(int hidden, int heads) {
    ModelConfig c = {0};
    c.vocab_size = 64, c.hidden_size = hidden, c.intermediate_size = 2 * hidden, c.n_layers = 2, c.n_heads = heads;
    c.n_kv_heads = heads, c.rope_theta = 10000.0f, c.rms_eps = 1e-5f;
    return c;
}

static Tensor *device_ids(Arena *a, const int32_t *host, int64_t B, int64_t T, const char *name) {
    Tensor *t = tensor_new2(a, DT_I32, B, T, name);
    tensor_write_host(t, host);
    return t;
}


Test(llama_cuda, matches_transformers_forward_and_gradients) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    ops_cuda_register();
    StFile st;
    Err err = {0};
    cr_assert_eq(st_open(&st, FIXTURE, &err), 0, "%s", err.msg);
    ModelConfig c = config(64, 4);
    Arena params, grads, acts;
    arena_init(&params, "params", DEV_CUDA, 8 << 20);
    arena_init(&grads, "grads", DEV_CUDA, 8 << 20);
    arena_init(&acts, "acts", DEV_CUDA, 64 << 20);
    Llama m;
    llama_alloc(&m, &c, &params);
    cr_assert_eq(model_load_safetensors(&m.params, FIXTURE, false, &err), 0, "%s", err.msg);
    int64_t n;
    float *f = fixture_read(&st, "input_ids", &n);
    int32_t ids[24], labels[24];
    for (int i = 0; i < 24; i++) ids[i] = (int32_t)f[i];
    free(f);
    llama_shift_labels(ids, 2, 12, labels);
    Tape t;
    tape_init(&t, &acts);
    for (int i = 0; i < m.params.n; i++) tensor_zero(tensor_ensure_grad(m.params.items[i].value, &grads));
    Tensor *logits = llama_forward(&m, &t, device_ids(&params, ids, 2, 12, "ids"));
    Tensor *loss = op_cross_entropy(&t, logits, device_ids(&params, labels, 2, 12, "labels"), 0.0f, "loss");
    tape_backward(&t, loss);
    device_synchronize();
    fixture_expect_near(&st, "logits", logits, 2e-2);
    fixture_expect_near(&st, "loss", loss, 1e-2);
    const char *names[] = {"model.embed_tokens.weight", "model.layers.0.self_attn.q_proj.weight",
                           "model.layers.0.self_attn.k_proj.weight", "model.layers.1.mlp.down_proj.weight",
                           "model.layers.1.post_attention_layernorm.weight", "lm_head.weight"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char ref[160];
        snprintf(ref, sizeof ref, "grad.%s", names[i]);
        fixture_expect_near(&st, ref, params_find(&m.params, names[i])->value->grad, 5e-2);
    }
    st_close(&st);
    llama_free(&m);
    tape_free(&t);
    arena_free(&params), arena_free(&grads), arena_free(&acts);
}

// head dim 64 (what the cached-attention kernel takes): prefill 9 tokens, then 2 + 1 + 1 + 1
Test(llama_cuda, kv_cache_matches_full_forward) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    ops_cuda_register();
    enum { B = 3, T = 14 };
    ModelConfig c = config(128, 2);
    Arena params, acts, step;
    arena_init(&params, "params", DEV_CUDA, 16 << 20);
    arena_init(&acts, "acts", DEV_CUDA, 64 << 20);
    arena_init(&step, "step", DEV_CUDA, 64 << 20);
    Llama m;
    llama_init(&m, &c, &params, 9);
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 29 + 5) % c.vocab_size;
    Tape t;
    tape_init(&t, &acts);
    t.record = false;
    float *want = tensor_to_host_f32(llama_forward(&m, &t, device_ids(&params, ids, B, T, "ids")));
    LlamaCache cache;
    llama_cache_init(&cache, &m, &params, B, T);
    t.act = &step;
    const int chunks[5] = {9, 2, 1, 1, 1};
    int t0 = 0;
    for (int k = 0; k < 5; k++) {
        int32_t part[B * 9];
        for (int b = 0; b < B; b++) memcpy(part + b * chunks[k], ids + b * T + t0, chunks[k] * sizeof(int32_t));
        tape_reset(&t);
        float *got = tensor_to_host_f32(llama_forward_cached(&m, &t, device_ids(&step, part, B, chunks[k], "part"), &cache));
        float *ref = malloc(sizeof(float) * B * chunks[k] * c.vocab_size);
        for (int b = 0; b < B; b++)
            memcpy(ref + b * chunks[k] * c.vocab_size, want + (b * T + t0) * c.vocab_size,
                   sizeof(float) * chunks[k] * c.vocab_size);
        double e = rel_l2(got, ref, B * chunks[k] * c.vocab_size);
        printf("  cached chunk %d (positions %d..%d) rel err %.2e\n", k, t0, t0 + chunks[k] - 1, e);
        cr_expect(e < 2e-2, "chunk %d: cached logits off by %.3g (relative L2)", k, e);
        free(got), free(ref);
        t0 += chunks[k];
    }
    llama_cache_free(&cache);
    free(want);
    llama_free(&m);
    tape_free(&t);
    arena_free(&params), arena_free(&acts), arena_free(&step);
}

// Decode steps replayed from one recorded CUDA graph (llama_step_graph_*) give the logits of the
// same steps run op by op: the kernels read the position from the cache's device tensor.
Test(llama_cuda, decode_graph_replay_matches_eager_steps) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    ops_cuda_register();
    enum { B = 2, P = 6, STEPS = 4 };
    ModelConfig c = config(128, 2);
    Arena params, step;
    arena_init(&params, "params", DEV_CUDA, 16 << 20);
    arena_init(&step, "step", DEV_CUDA, 64 << 20);
    Llama m;
    llama_init(&m, &c, &params, 11);
    int32_t prompt[B * P], tok[STEPS][B];
    for (int i = 0; i < B * P; i++) prompt[i] = (i * 13 + 3) % c.vocab_size;
    for (int s = 0; s < STEPS; s++)
        for (int b = 0; b < B; b++) tok[s][b] = (s * 7 + b * 31 + 1) % c.vocab_size;
    Tensor *prompt_t = device_ids(&params, prompt, B, P, "prompt"), *step_t[STEPS];
    for (int s = 0; s < STEPS; s++) step_t[s] = device_ids(&params, tok[s], B, 1, "step");
    Tape t;
    tape_init(&t, &step);
    t.record = false;
    LlamaCache cache;
    llama_cache_init(&cache, &m, &params, B, P + STEPS);
    float *eager[STEPS];
    for (int run = 0; run < 2; run++) {  // run 0: every step op by op; run 1: step 0 so, then the graph
        llama_cache_reset(&cache);
        tape_reset(&t);
        llama_forward_cached(&m, &t, prompt_t, &cache);
        LlamaStepGraph g = {0};
        for (int s = 0; s < STEPS; s++) {
            Tensor *y;
            if (run == 0 || s == 0) {
                tape_reset(&t);
                y = llama_forward_cached(&m, &t, step_t[s], &cache);
                if (run == 1) llama_step_graph_record(&g, &m, &t, &cache, tensor_new2(&params, DT_I32, B, 1, "ids_in"));
            } else {
                y = llama_step_graph_run(&g, &cache, step_t[s]);
            }
            float *got = tensor_to_host_f32(y);
            if (run == 0) {
                eager[s] = got;
                continue;
            }
            if (s > 0) {
                double e = rel_l2(got, eager[s], B * c.vocab_size);
                printf("  graph replay, step %d (position %d): rel diff to the eager step %.2e\n", s, P + s, e);
                cr_expect(e == 0.0, "step %d: the replayed graph's logits differ from the eager step's (%.3g)", s, e);
            }
            free(got);
        }
        cr_expect_eq(cache.len, P + STEPS);
        llama_step_graph_free(&g);
    }
    for (int s = 0; s < STEPS; s++) free(eager[s]);
    llama_cache_free(&cache);
    llama_free(&m);
    tape_free(&t);
    arena_free(&params), arena_free(&step);
}
