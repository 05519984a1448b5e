#include "bench_infer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/device.h"
#include "autograd/rng.h"
#include "train/deit.h"
#include "train/model_export.h"
#include "train/pipeline.h"
#include "train/schedule.h"
#include "train/select_vm.h"
#include "train/vnm_linear.h"
#ifdef VNMTUNE_HAVE_CUDA
#include "kernels/ops_cuda.h"
#endif

typedef struct InferOpts {
    const char *model, *pattern, *table;
    int batch, iters, permute;
    LlamaInferOpts llama;
} InferOpts;

static int parse_batches(const char *s, LlamaInferOpts *o) {
    o->n_batches = 0;
    for (const char *p = s; *p && o->n_batches < INFER_MAX_BATCHES; p = strchr(p, ',') ? strchr(p, ',') + 1 : "") {
        int b = atoi(p);
        if (b <= 0) return -1;
        o->batches[o->n_batches++] = b;
    }
    return o->n_batches ? 0 : -1;
}

static int parse(int argc, char **argv, InferOpts *o) {
    *o = (InferOpts){.model = "deit_base", .pattern = "64:2:8", .batch = 256, .iters = 0};
    o->llama = (LlamaInferOpts){.seq = 2048, .batches = {1, 2, 4, 8}, .n_batches = 4, .decode_batch = 16, .context = 512,
                                .steps = 64};
    int bad = 0;
    bool model_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v || strncmp(a, "--", 2)) {
            bad = 1;
            break;
        }
        i++;
        if (!strcmp(a, "--model")) o->model = v, model_given = true;
        else if (!strcmp(a, "--pattern")) o->pattern = v;
        else if (!strcmp(a, "--batch")) o->batch = atoi(v);
        else if (!strcmp(a, "--iters")) o->iters = atoi(v);
        else if (!strcmp(a, "--table")) o->table = v;
        else if (!strcmp(a, "--permute")) {
            if (strcmp(v, "0") && strcmp(v, "1")) {
                fprintf(stderr, "vnmtune: error: bench infer: --permute: '%s' is not 0 or 1\n", v);
                return 2;
            }
            o->permute = v[0] == '1';
        }
        else if (!strcmp(a, "--layers")) o->llama.layers = atoi(v);
        else if (!strcmp(a, "--seq")) o->llama.seq = atoi(v);
        else if (!strcmp(a, "--batches")) bad |= parse_batches(v, &o->llama) != 0;
        else if (!strcmp(a, "--decode-batch")) o->llama.decode_batch = atoi(v);
        else if (!strcmp(a, "--context")) o->llama.context = atoi(v);
        else if (!strcmp(a, "--steps")) o->llama.steps = atoi(v);
        else if (!strcmp(a, "--profile")) o->llama.profile = atoi(v);
        else if (!strcmp(a, "--export")) o->llama.export_path = v;
        else if (!strcmp(a, "--device")) o->llama.device = v;
        else bad = 1;
    }
    LlamaInferOpts *l = &o->llama;
    if (bad || o->batch <= 0 || o->iters < 0 || l->seq <= 0 || l->decode_batch <= 0 || l->context <= 0 || l->steps < 0) {
        fprintf(stderr,
                "usage: vnmtune bench infer [--model deit_small|deit_base|llama_tiny|llama2_7b] [--pattern 64:2:8] [--iters N]\n"
                "  DeiT:  [--batch 256] [--table FILE]      forward img/s (magnitude masks on random weights)\n"
                "         [--permute 1] channel permutations searched per layer, sparse model through an export\n"
                "         (its permutation folds, vnmtune export)\n"
                "  Llama: [--layers N] [--seq 2048] [--batches 1,2,4,8] [--decode-batch 16] [--context 512] [--steps 64]\n"
                "         [--profile STEPS] (per-op GPU time of extra decode steps)\n"
                "         [--export FILE] [--device cuda|cpu]\n"
                "         prefill tok/s of batches × seq tokens, decode tok/s of one token per sequence per step\n"
                "         over a KV cache of `context` tokens; random V:N:M weights, or with --export the weights\n"
                "         and sizes of a V:N:M export (`vnmtune prune`; --model may be left out). --device cpu\n"
                "         runs the CPU reference ops (checks the logits; the tok/s mean nothing)\n"
                "Dense vs V:N:M sparse in one run, with the max relative difference of the logits.\n"
                "--table: a `bench spmm` table; layers whose sparse kernel measured slower run dense.\n");
        return 2;
    }
    bool llama = !strncmp(o->model, "llama", 5);
    if (o->llama.export_path && !model_given) o->model = "llama", llama = true;
    if (o->llama.export_path && !llama) {
        fprintf(stderr, "vnmtune: error: bench infer: --export is for Llama exports (--model llama_tiny|llama2_7b)\n");
        return 2;
    }
    if (!o->iters) o->iters = llama ? 3 : 20;
    l->model = o->model, l->pattern = o->pattern, l->iters = o->iters;
    return 0;
}

#ifdef VNMTUNE_HAVE_CUDA
static double time_forward(Deit *m, Tape *t, Tensor *img, int iters, float *logits_out) {
    Tensor *y = NULL;
    for (int w = 0; w < 3; w++) {  // warm-up
        tape_reset(t);
        y = deit_forward(m, t, img);
    }
    device_synchronize();
    double t0 = now_seconds();
    for (int i = 0; i < iters; i++) {
        tape_reset(t);
        y = deit_forward(m, t, img);
    }
    device_synchronize();
    double secs = (now_seconds() - t0) / iters;
    tensor_get_f32(y, logits_out, y->numel);
    return secs;
}
#endif

static int bench_deit(const InferOpts *op) {
    InferOpts o = *op;
#ifndef VNMTUNE_HAVE_CUDA
    (void)o;
    fprintf(stderr, "vnmtune: error: bench infer needs the CUDA build\n");
    return 1;
#else
    if (!device_cuda_available()) {
        fprintf(stderr, "vnmtune: error: bench infer needs a GPU\n");
        return 1;
    }
    ops_cuda_register();
    Err err = {0};
    Config c;
    config_defaults(&c);
    ModelConfig *mc = &c.model;
    mc->img_size = 224, mc->patch_size = 16, mc->in_chans = 3, mc->num_classes = 1000, mc->depth = 12, mc->mlp_ratio = 4;
    mc->embed_dim = strcmp(o.model, "deit_small") ? 768 : 384;
    mc->num_heads = mc->embed_dim / 64;
    c.sparsity.enabled = true, c.sparsity.permute = o.permute != 0;
    snprintf(c.sparsity.pattern, sizeof c.sparsity.pattern, "%s", o.pattern);
    snprintf(c.sparsity.score, sizeof c.sparsity.score, "magnitude");
    snprintf(c.schedule.mode, sizeof c.schedule.mode, "one_shot");
    Arena params, acts, inputs;
    arena_init(&params, "params", DEV_CUDA, deit_param_bytes(mc, DT_F32) * 2);
    arena_init(&acts, "activations", DEV_CUDA, deit_activation_bytes(mc, o.batch, DT_BF16) / 2);
    acts.no_zero = true;
    arena_init(&inputs, "inputs", DEV_CUDA, (size_t)o.batch * 3 * 224 * 224 * 2 + 4096);
    Deit m;
    deit_init(&m, mc, &params, 1);
    Tape t;
    tape_init(&t, &acts);
    t.record = t.training = false;
    Rng r;
    rng_seed(&r, 2);
    Tensor *img = tensor_new(&inputs, DT_BF16, 4, (int64_t[]){o.batch, 3, 224, 224}, "img");
    float *h = xmalloc((size_t)img->numel * sizeof *h);
    for (int64_t i = 0; i < img->numel; i++) h[i] = rng_normal(&r);
    tensor_set_f32(img, h, img->numel);
    free(h);

    // prune (the dense run computes with the same, masked weights), then time dense vs sparse
    Schedule s;
    if (schedule_init(&s, &c, m.linears, m.n_linears, 0, &params, &err)) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    s.permute_budget_s = 0.2;  // per layer: the speed, not the kept weight, is measured here
    schedule_update_masks(&s);
    int64_t K = mc->num_classes * o.batch;
    float *dense = xmalloc((size_t)K * sizeof *dense), *sparse = xmalloc((size_t)K * sizeof *sparse);
    double td = time_forward(&m, &t, img, o.iters, dense);
    if (o.permute) {  // as a user's model: written as an export (permutation folds) and loaded
        char path[] = "/tmp/vnmtune_bench_export_XXXXXX";
        const int fd = mkstemp(path);
        if (fd < 0) fatal("bench infer: cannot create a temporary export file in /tmp");
        close(fd);
        const int rc = model_export_write(&m.params, &s, &c, path, &err) || model_load_export(&m, path, true, &err);
        unlink(path);
        if (rc) fatal("bench infer: %s", err.msg);
    }
    for (int i = 0; i < s.n_layers && !o.permute; i++) {
        Linear *l = s.layers[i];
        float *W = xmalloc((size_t)l->w->numel * sizeof *W);
        tensor_get_f32(l->w, W, l->w->numel);
        VnmMatrix vm;
        if (vnm_compress(W, s.host_mask[i], l->out, l->in, s.layer_pattern[i], NULL, &vm, &err)) fatal("%s: %s", l->name, err.msg);
        free(W);
        l->vnm = xcalloc(1, sizeof *l->vnm);
        if (vnm_layer_init(l->vnm, &vm, DEV_CUDA, l->name, &err)) fatal("%s", err.msg);
    }
    double ts = time_forward(&m, &t, img, o.iters, sparse);
    double diff = 0, scale = 1e-6;
    for (int64_t i = 0; i < K; i++) diff = fmax(diff, fabs(dense[i] - sparse[i])), scale = fmax(scale, fabs(dense[i]));
    printf("bench infer on %s: %s 224x224 batch %d, %s%s (magnitude masks on random weights, V lowered where needed)\n",
           device_cuda_name(), o.model, o.batch, o.pattern, o.permute ? ", permuted channels" : "");
    printf("  dense  (cuBLASLt bf16): %8.1f img/s  (%.2f ms)\n", o.batch / td, 1e3 * td);
    printf("  sparse (V:N:M SpMM%s): %8.1f img/s  (%.2f ms)  ratio %.2fx\n", o.table ? ", table dispatch" : "", o.batch / ts,
           1e3 * ts, td / ts);
    printf("  logits: max |dense - sparse| = %.3g (relative to max |logit| %.3g)\n", diff, diff / scale);
    size_t vnm_b = 0, as24_b = 0, dense_b = 0;
    for (int i = 0; i < s.n_layers; i++) {
        size_t a24;
        vnm_b += vnm_layer_device_bytes(s.layers[i]->vnm, &a24), as24_b += a24;
        dense_b += (size_t)(s.layers[i]->out * s.layers[i]->in) * 2;
    }
    printf("  sparse linears on the GPU: %.1f MB V:N:M form + %.1f MB 2:4 form for prefill (bf16 dense: %.1f MB)\n",
           vnm_b / 1e6, as24_b / 1e6, dense_b / 1e6);
    for (int i = 0; i < s.n_layers && i < 4; i++)
        printf("  %-22s %lldx%lld %d:2:%d kernel %s\n", s.layers[i]->name, (long long)s.layers[i]->out,
               (long long)s.layers[i]->in, s.layer_pattern[i].V, s.layer_pattern[i].M, s.layers[i]->vnm->kernel);
    free(dense), free(sparse);
    schedule_free(&s);
    deit_free(&m);
    tape_free(&t);
    arena_free(&params), arena_free(&acts), arena_free(&inputs);
    return 0;
#endif
}

int bench_infer_main(int argc, char **argv) {
    InferOpts o;
    if (parse(argc, argv, &o)) return 2;
    SpeedTable table = {0};
    Err err = {0};
    if (o.table && speed_table_load(o.table, &table, &err)) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    vnm_dispatch_set_table(o.table ? &table : NULL);
    int rc = strncmp(o.model, "llama", 5) ? bench_deit(&o) : bench_infer_llama(&o.llama);
    vnm_dispatch_set_table(NULL);
    speed_table_free(&table);
    return rc;
}
