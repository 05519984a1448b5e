// `vnmtune bench train` (see bench_train.h).
#include "bench_train.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/util.h"

#ifndef VNMTUNE_HAVE_CUDA
int bench_train_main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "vnmtune: error: bench train needs the CUDA build (VNMTUNE_CUDA=ON)\n");
    return 1;
}
#else

#include <cjson/cJSON.h>

#include "autograd/device.h"
#include "autograd/rng.h"
#include "kernels/adamw.h"
#include "kernels/ops_cuda.h"
#include "train/deit.h"
#include "train/lora.h"

#define PEAK_FLOPS 989.4e12  // H100 SXM dense bf16, as in experiments/bench_train_torch.py

typedef struct BenchOpts {
    const char *models;
    int batch, steps, warmup, rank, profile;
    float alpha;
    bool torch;
    const char *torch_modes, *python, *script, *json;
} BenchOpts;

typedef struct BenchResult {
    char model[16];
    double step_ms, img_per_s, mfu, tflops, peak_gib, device_gib, loss;
    int64_t trainable;
    double torch_eager, torch_compile;  // img/s, 0 = not measured
} BenchResult;

// FLOPs of one LoRA training step per image; the same count as train_flops_per_image() in
// experiments/bench_train_torch.py (frozen linears 2x, attention 3x, LoRA and head 3x, patch 1x).
static double train_flops_per_image(const ModelConfig *c, int rank) {
    double n = (double)(c->img_size / c->patch_size) * (c->img_size / c->patch_size), t = n + 1, d = c->embed_dim;
    double frozen = 2 * t * d * (3 * d + d + 4 * d + 4 * d);
    double attn = 2 * 2 * t * t * d;
    double lora = 2 * t * rank * ((d + 3 * d) + (d + d) + (d + 4 * d) + (4 * d + d));
    double head = 2 * d * c->num_classes;
    double patch = 2 * n * d * c->in_chans * c->patch_size * c->patch_size;
    return c->depth * (2 * frozen + 3 * attn + 3 * lora) + 3 * head + patch;
}

static ModelConfig deit_config(const char *name) {
    ModelConfig c;
    memset(&c, 0, sizeof c);
    snprintf(c.arch, sizeof c.arch, "deit");
    c.img_size = 224, c.patch_size = 16, c.in_chans = 3, c.num_classes = 1000;
    c.depth = 12, c.mlp_ratio = 4.0f, c.qkv_bias = true, c.ln_eps = 1e-6f;
    if (strcmp(name, "deit_small") == 0) c.embed_dim = 384, c.num_heads = 6;
    else if (strcmp(name, "deit_base") == 0) c.embed_dim = 768, c.num_heads = 12;
    else fatal("bench train: unknown model '%s' (deit_small, deit_base)", name);
    return c;
}

static Tensor *random_input(Arena *a, DType dt, int ndim, const int64_t *shape, Rng *r, const char *name) {
    Tensor *t = tensor_new(a, dt, ndim, shape, name);
    float *h = xmalloc((size_t)t->numel * sizeof *h);
    for (int64_t i = 0; i < t->numel; i++) h[i] = rng_normal(r);
    tensor_set_f32(t, h, t->numel);
    free(h);
    return t;
}

static void run_ours(const char *name, const BenchOpts *o, BenchResult *res) {
    ModelConfig cfg = deit_config(name);
    size_t used0 = ops_cuda_device_used_bytes();
    Arena params, grads, inputs, act;
    arena_init(&params, "params", DEV_CUDA, deit_param_bytes(&cfg, DT_BF16) + ((size_t)64 << 20));
    arena_init(&grads, "grads", DEV_CUDA, (size_t)256 << 20);
    int64_t B = o->batch;
    arena_init(&inputs, "inputs", DEV_CUDA, (size_t)(B * 3 * 224 * 224 * 2 + B * 4) + ((size_t)1 << 20));
    Deit m;
    deit_init(&m, &cfg, &params, 1);
    LoraConfig lc;
    memset(&lc, 0, sizeof lc);
    lc.enabled = true, lc.rank = o->rank, lc.alpha = o->alpha, lc.train_head = true;
    const char *targets[4] = {"qkv", "proj", "fc1", "fc2"};
    for (int i = 0; i < 4; i++) snprintf(lc.targets[i], sizeof lc.targets[i], "%s", targets[i]);
    lc.n_targets = 4;
    lora_attach(m.linears, m.n_linears, &m.params, &params, &lc, 2);

    Tensor **values = xcalloc((size_t)m.params.n, sizeof *values);
    bool *decay = xcalloc((size_t)m.params.n, sizeof *decay);
    int nt = 0;
    res->trainable = 0;
    for (int i = 0; i < m.params.n; i++) {
        Param *p = &m.params.items[i];
        if (!p->trainable) continue;
        tensor_ensure_grad(p->value, &grads);
        values[nt] = p->value;
        decay[nt++] = p->decay;
        res->trainable += p->value->numel;
    }
    AdamwCudaGroup *opt = adamw_cuda_create(nt, values, decay);

    Rng r;
    rng_seed(&r, 3);
    int64_t ishape[4] = {B, 3, 224, 224};
    Tensor *img = random_input(&inputs, DT_BF16, 4, ishape, &r, "img");
    Tensor *labels = tensor_new1(&inputs, DT_I32, B, "labels");
    int32_t *lab = xmalloc((size_t)B * sizeof *lab);
    for (int64_t i = 0; i < B; i++) lab[i] = (int32_t)rng_below(&r, 1000);
    device_copy_h2d(labels->data, lab, (size_t)B * sizeof *lab);
    free(lab);

    // activations: what is left on the GPU, less a margin for scratch buffers and cuBLASLt
    size_t want = deit_activation_bytes(&cfg, o->batch, DT_BF16), avail = ops_cuda_device_free_bytes();
    size_t margin = (size_t)4 << 30;
    if (avail < margin + ((size_t)1 << 30)) fatal("bench train: only %zu bytes free on the GPU", avail);
    size_t cap = want < avail - margin ? want : avail - margin;
    arena_init(&act, "activations", DEV_CUDA, cap);
    act.no_zero = true;
    Tape tape;
    tape_init(&tape, &act);
    tape.seed = 7;

    double t0 = 0, secs = 0;
    Tensor *loss = NULL;
    int total = o->warmup + o->steps + o->profile;
    for (int s = 0; s < total; s++) {
        if (s == o->warmup) {
            device_synchronize();
            t0 = now_seconds();
        }
        if (s == o->warmup + o->steps) {
            device_synchronize();
            secs = now_seconds() - t0;
            ops_cuda_profile(true);
        }
        tape_reset(&tape);
        Tensor *logits = deit_forward(&m, &tape, img);
        loss = op_cross_entropy(&tape, logits, labels, 0.0f, "loss");
        tape_backward(&tape, loss);
        adamw_cuda_step(opt, 1e-4f, 0.9f, 0.999f, 1e-8f, 0.05f, 1.0f, s + 1, NULL);
    }
    device_synchronize();
    if (o->profile) {
        printf("%s: ", name);
        ops_cuda_profile_report(stdout, o->profile, 1e3 * secs / o->steps);
        ops_cuda_profile(false);
    } else {
        secs = now_seconds() - t0;
    }
    float lv = 0;
    tensor_get_f32(loss, &lv, 1);
    snprintf(res->model, sizeof res->model, "%s", name);
    res->step_ms = 1e3 * secs / o->steps;
    res->img_per_s = (double)o->batch * o->steps / secs;
    double flops = train_flops_per_image(&cfg, o->rank) * res->img_per_s;
    res->tflops = flops / 1e12;
    res->mfu = flops / PEAK_FLOPS;
    res->loss = lv;
    size_t opt_bytes = (size_t)res->trainable * 12;
    res->peak_gib = (double)(params.high_water + grads.high_water + inputs.high_water + act.high_water +
                             ops_cuda_scratch_bytes() + opt_bytes) / (double)(1u << 30);
    res->device_gib = (double)(ops_cuda_device_used_bytes() - used0 - (act.capacity - act.high_water)) / (double)(1u << 30);

    tape_free(&tape);
    adamw_cuda_free(opt);
    free(values);
    free(decay);
    deit_free(&m);
    arena_free(&act);
    arena_free(&inputs);
    arena_free(&grads);
    arena_free(&params);
}

// The torch script next to the executable's source tree: --torch-script, ./experiments/..., or
// <exe dir>/../experiments/...
static const char *find_script(const BenchOpts *o, char *buf, size_t n) {
    if (o->script) return o->script;
    if (access("experiments/bench_train_torch.py", R_OK) == 0) return "experiments/bench_train_torch.py";
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        char *slash = strrchr(exe, '/');
        if (slash) *slash = 0;
        snprintf(buf, n, "%s/../experiments/bench_train_torch.py", exe);
        if (access(buf, R_OK) == 0) return buf;
    }
    return NULL;
}

// Runs the PyTorch baseline for one model; fills torch_eager / torch_compile.
static void run_torch(const BenchOpts *o, BenchResult *res) {
    char path[1200];
    const char *script = find_script(o, path, sizeof path);
    if (!script) {
        fprintf(stderr, "bench train: experiments/bench_train_torch.py not found (use --torch-script)\n");
        return;
    }
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s --models %s --modes %s --batch %d --steps %d --warmup %d --rank %d --alpha %g",
             o->python, script, res->model, o->torch_modes, o->batch, o->steps, o->warmup, o->rank, (double)o->alpha);
    printf("running: %s\n", cmd);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (!p) {
        perror("popen");
        return;
    }
    char line[8192];
    while (fgets(line, sizeof line, p)) {
        fputs(line, stdout);
        cJSON *j = cJSON_Parse(line);
        if (!j) continue;
        cJSON *mode = cJSON_GetObjectItem(j, "mode"), *ips = cJSON_GetObjectItem(j, "img_per_s");
        if (cJSON_IsString(mode) && cJSON_IsNumber(ips)) {
            if (strcmp(mode->valuestring, "eager") == 0) res->torch_eager = ips->valuedouble;
            if (strcmp(mode->valuestring, "compile") == 0) res->torch_compile = ips->valuedouble;
        }
        cJSON_Delete(j);
    }
    int rc = pclose(p);
    if (rc != 0) fprintf(stderr, "bench train: the PyTorch baseline exited with status %d\n", rc);
}

static void print_result(const BenchResult *r, FILE *json) {
    printf("vnmtune %-10s  %8.1f img/s  %7.2f ms/step  MFU %5.1f%%  %6.1f TFLOP/s  peak %5.2f GiB (device %5.2f)  loss %.4f\n",
           r->model, r->img_per_s, r->step_ms, 100 * r->mfu, r->tflops, r->peak_gib, r->device_gib, r->loss);
    if (r->torch_eager > 0) printf("  vs PyTorch+PEFT eager   %8.1f img/s: %.2fx\n", r->torch_eager, r->img_per_s / r->torch_eager);
    if (r->torch_compile > 0)
        printf("  vs PyTorch+PEFT compile %8.1f img/s: %.2fx\n", r->torch_compile, r->img_per_s / r->torch_compile);
    if (json)
        fprintf(json,
                "{\"framework\": \"vnmtune\", \"model\": \"%s\", \"img_per_s\": %.1f, \"step_ms\": %.3f, \"mfu\": %.4f, "
                "\"tflops\": %.1f, \"peak_mem_gib\": %.2f, \"device_mem_gib\": %.2f, \"loss\": %.4f, "
                "\"trainable_params\": %lld, \"torch_eager_img_per_s\": %.1f, \"torch_compile_img_per_s\": %.1f, "
                "\"device\": \"%s\"}\n",
                r->model, r->img_per_s, r->step_ms, r->mfu, r->tflops, r->peak_gib, r->device_gib, r->loss,
                (long long)r->trainable, r->torch_eager, r->torch_compile, device_cuda_name());
}

static int usage(void) {
    fprintf(stderr, "usage: vnmtune bench train [--model deit_small|deit_base|both] [--batch N] [--steps N] [--warmup N]\n"
                    "       [--rank R] [--alpha A] [--no-torch] [--torch-modes eager,compile] [--python PATH]\n"
                    "       [--torch-script PATH] [--json FILE] [--profile STEPS]\n");
    return 2;
}

int bench_train_main(int argc, char **argv) {
    BenchOpts o = {.models = "both", .batch = 256, .steps = 20, .warmup = 5, .rank = 16, .alpha = 32.0f, .torch = true,
                   .torch_modes = "eager,compile", .python = "/opt/torch/.venv/bin/python"};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "train") == 0 && i == 0) continue;
        if (strcmp(a, "--no-torch") == 0) {
            o.torch = false;
            continue;
        }
        if (!v) return usage();
        if (strcmp(a, "--model") == 0) o.models = v;
        else if (strcmp(a, "--batch") == 0) o.batch = atoi(v);
        else if (strcmp(a, "--steps") == 0) o.steps = atoi(v);
        else if (strcmp(a, "--warmup") == 0) o.warmup = atoi(v);
        else if (strcmp(a, "--rank") == 0) o.rank = atoi(v);
        else if (strcmp(a, "--alpha") == 0) o.alpha = (float)atof(v);
        else if (strcmp(a, "--torch-modes") == 0) o.torch_modes = v;
        else if (strcmp(a, "--python") == 0) o.python = v;
        else if (strcmp(a, "--torch-script") == 0) o.script = v;
        else if (strcmp(a, "--json") == 0) o.json = v;
        else if (strcmp(a, "--profile") == 0) o.profile = atoi(v);
        else return usage();
        i++;
    }
    if (o.batch < 1 || o.steps < 1 || o.warmup < 0 || o.rank < 1) return usage();
    if (!device_cuda_available()) {
        fprintf(stderr, "vnmtune: error: bench train: no CUDA GPU visible\n");
        return 1;
    }
    ops_cuda_register();
    printf("bench train on %s: batch %d, %d steps after %d warm-up, LoRA r=%d alpha=%g on qkv/proj/fc1/fc2 + head\n",
           device_cuda_name(), o.batch, o.steps, o.warmup, o.rank, (double)o.alpha);
    const char *names[2];
    int n = 0;
    if (strcmp(o.models, "both") == 0) {
        names[n++] = "deit_small";
        names[n++] = "deit_base";
    } else {
        names[n++] = o.models;
    }
    FILE *json = o.json ? fopen(o.json, "w") : NULL;
    BenchResult res[2];
    memset(res, 0, sizeof res);
    for (int k = 0; k < n; k++) {
        run_ours(names[k], &o, &res[k]);
        print_result(&res[k], NULL);
        fflush(stdout);
    }
    if (o.torch)
        for (int k = 0; k < n; k++) run_torch(&o, &res[k]);
    printf("\n== summary ==\n");
    for (int k = 0; k < n; k++) print_result(&res[k], json);
    if (json) fclose(json);
    return 0;
}
#endif
