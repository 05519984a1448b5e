// The tiny Llama fixture (tests/fixtures/llama_tiny_ref.safetensors, made by
// tests/reference/make_llama_fixture.py), its token ids as a token file
// (tests/fixtures/llama_tiny_tokens.bin = `vnmtune convert tokens tests/fixtures/llama_tiny_ids.txt`),
// the embedded prune job on them, and the magnitude masks that job applies; shared by the Llama tests.
#pragma once
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "train/commands.h"
#include "train/llama.h"
#include "train/vnm_mask.h"

#define LLAMA_FIXTURE VNMTUNE_SOURCE_DIR "/tests/fixtures/llama_tiny_ref.safetensors"
#define LLAMA_TOKENS VNMTUNE_SOURCE_DIR "/tests/fixtures/llama_tiny_tokens.bin"

// The embedded configs/<name>.yaml with the `n` overrides of `set` and then `overrides` ("key=value",
// NULL-terminated), validated.
__attribute__((unused)) static Config llama_embedded_job(const char *name, char set[][600], int n, const char *const *overrides) {
    Config c;
    Err err = {0};
    config_defaults(&c);
    cr_assert_eq(config_load_string(&c, embedded_config(name), name, &err), 0, "%s", err.msg);
    for (int i = 0; i < n; i++) cr_assert_eq(config_override(&c, set[i], &err), 0, "%s", err.msg);
    for (int i = 0; overrides && overrides[i]; i++) cr_assert_eq(config_override(&c, overrides[i], &err), 0, "%s", err.msg);
    cr_assert_eq(config_validate(&c, &err), 0, "%s", err.msg);
    return c;
}

// The embedded configs/llama_tiny_prune.yaml with absolute fixture paths, then `overrides`
// ("key=value", NULL-terminated), validated.
__attribute__((unused)) static Config llama_fixture_job(const char *const *overrides) {
    char set[3][600] = {"model.init=" LLAMA_FIXTURE, "data.path=" LLAMA_TOKENS, "data.test_path=" LLAMA_TOKENS};
    return llama_embedded_job("llama_tiny_prune", set, 3, overrides);
}

// The embedded configs/llama_tiny_lora.yaml (LoRA training) on the fixture, the token files `train`
// and `test`, its outputs in `out_dir`, then `overrides`, validated.
__attribute__((unused)) static Config llama_lora_job(const char *train, const char *test, const char *out_dir,
                                                     const char *const *overrides) {
    char set[4][600];
    snprintf(set[0], sizeof set[0], "model.init=%s", LLAMA_FIXTURE);
    snprintf(set[1], sizeof set[1], "data.path=%.500s", train);
    snprintf(set[2], sizeof set[2], "data.test_path=%.500s", test);
    snprintf(set[3], sizeof set[3], "train.out_dir=%.500s", out_dir);
    return llama_embedded_job("llama_tiny_lora", set, 4, overrides);
}

// Every projection of m (all linears but lm_head) pruned in place to `pattern` (V halved until it
// divides the rows) by its magnitude mask, the kept values rounded to bf16 when `bf16`.
__attribute__((unused)) static void llama_fixture_mask(Llama *m, VnmPattern pattern, bool bf16) {
    Err err = {0};
    for (int i = 0; i < m->n_linears - 1; i++) {
        Linear *l = m->linears[i];
        float *W = tensor_f32(l->w), *S = malloc((size_t)l->w->numel * sizeof *S);
        uint8_t *mask = malloc((size_t)l->w->numel);
        MaskSpec spec = {.kind = MASK_VNM, .vnm = pattern};
        while (l->out % spec.vnm.V) spec.vnm.V /= 2;
        vnm_scores(W, l->out, l->in, SCORE_MAGNITUDE, NULL, 0, S);
        cr_assert_eq(mask_compute(S, l->out, l->in, &spec, l->name, mask, &err), 0, "%s", err.msg);
        for (int64_t e = 0; e < l->w->numel; e++) W[e] = !mask[e] ? 0.0f : bf16 ? bf16_to_f32(f32_to_bf16(W[e])) : W[e];
        free(S), free(mask);
    }
}
