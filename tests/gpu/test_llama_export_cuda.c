// A Llama V:N:M export (`vnmtune prune` of the transformers fixture) loaded on the GPU: the
// projections run the sparse tensor-core SpMM; the logits must match the CPU load of the same
// export (fp32 reference ops) within bf16 tolerance, for the full and the KV-cache forward.
// Errors are relative L2; bf16 rounding of every activation makes ~1e-2 normal.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "kernels/ops_cuda.h"
#include "tests/fixture_check.h"
#include "tests/scratch_dir.h"
#include "train/commands.h"
#include "train/llama_export.h"
#include "train/vnm_linear.h"

#define FIXTURE VNMTUNE_SOURCE_DIR "/tests/fixtures/llama_tiny_ref.safetensors"
#define B 2
#define T 12

TestSuite(llama_export_cuda, .init = scratch_make, .fini = scratch_remove);

static const char *prune_fixture(void) {
    Config c;
    Err err = {0};
    config_defaults(&c);
    cr_assert_eq(config_load_string(&c, embedded_config("llama_tiny_prune"), "llama_tiny_prune", &err), 0, "%s", err.msg);
    cr_assert_eq(config_override(&c, "model.init=" FIXTURE, &err), 0, "%s", err.msg);
    const char *path = scratch_path("llama.h5");
    cr_assert_eq(llama_prune_export(&c, path, &err), 0, "%s", err.msg);
    return path;
}

// The export loaded on `dev` with sparse linears; ids (B, T) in the params arena.
static void load(Llama *m, Arena *params, Device dev, const char *path) {
    ModelConfig c;
    Err err = {0};
    cr_assert_eq(llama_export_config(path, &c, &err), 0, "%s", err.msg);
    arena_init(params, "params", dev, 16 << 20);
    llama_alloc(m, &c, params);
    cr_assert_eq(llama_load_export(m, path, true, &err), 0, "%s", err.msg);
}

static Tensor *ids_on(Arena *a, int32_t *host, int64_t t0, int64_t n) {
    Tensor *t = tensor_new2(a, DT_I32, B, n, "ids");
    int32_t part[B * T];
    for (int b = 0; b < B; b++) memcpy(part + b * n, host + b * T + t0, (size_t)n * sizeof(int32_t));
    tensor_write_host(t, part);
    return t;
}

Test(llama_export_cuda, sparse_export_on_gpu_matches_cpu_full_and_cached) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    ops_cuda_register();
    const char *path = prune_fixture();
    Llama cpu, gpu;
    Arena cpu_params, gpu_params, cpu_acts, gpu_acts;
    load(&cpu, &cpu_params, DEV_CPU, path);
    load(&gpu, &gpu_params, DEV_CUDA, path);
    arena_init(&cpu_acts, "acts", DEV_CPU, 16 << 20);
    arena_init(&gpu_acts, "acts", DEV_CUDA, 16 << 20);
    int32_t ids[B * T];
    for (int i = 0; i < B * T; i++) ids[i] = (i * 37 + 11) % cpu.cfg.vocab_size;
    Tape tc, tg;
    tape_init(&tc, &cpu_acts), tape_init(&tg, &gpu_acts);
    tc.record = tg.record = false;
    int64_t V = cpu.cfg.vocab_size;
    const float *want = tensor_f32(llama_forward(&cpu, &tc, ids_on(&cpu_params, ids, 0, T)));
    float *got = tensor_to_host_f32(llama_forward(&gpu, &tg, ids_on(&gpu_params, ids, 0, T)));
    double e = rel_l2(got, want, B * T * V);
    cr_expect(e < 2e-2, "GPU sparse export vs CPU: relative L2 %.3g", e);
    cr_expect(strcmp(gpu.layers[0].q.vnm->kernel, "cpu"), "q_proj ran '%s'", gpu.layers[0].q.vnm->kernel);
    free(got);
    LlamaCache cache;
    llama_cache_init(&cache, &gpu, &gpu_params, B, T);
    const int chunks[3] = {8, 3, 1};
    for (int k = 0, t0 = 0; k < 3; t0 += chunks[k++]) {
        tape_reset(&tg);
        float *y = tensor_to_host_f32(llama_forward_cached(&gpu, &tg, ids_on(&gpu_acts, ids, t0, chunks[k]), &cache));
        float *ref = malloc(sizeof(float) * B * chunks[k] * V);
        for (int b = 0; b < B; b++) memcpy(ref + b * chunks[k] * V, want + (b * T + t0) * V, sizeof(float) * chunks[k] * V);
        e = rel_l2(y, ref, B * chunks[k] * V);
        cr_expect(e < 2e-2, "cached chunk %d (positions %d..): relative L2 %.3g", k, t0, e);
        free(y), free(ref);
    }
    llama_cache_free(&cache);
    llama_free(&cpu), llama_free(&gpu);
    tape_free(&tc), tape_free(&tg);
    arena_free(&cpu_params), arena_free(&gpu_params), arena_free(&cpu_acts), arena_free(&gpu_acts);
}
