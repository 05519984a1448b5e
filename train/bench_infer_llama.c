// `vnmtune bench infer --model llama2_7b|llama_tiny`: Llama prefill and decode tokens/s on the GPU,
// dense (cuBLASLt on the masked weights) vs V:N:M sparse linears (the SpMM of the compressed
// weights), in one run, and how far the sparse logits are from the masked dense model's.
//
// Weights are random by default: every q/k/v/o/gate/up/down projection is a random valid V:N:M
// matrix (vnm_random: random kept columns and 2:4 positions, values ~ N(0, 1/(kept inputs))).
// With --export FILE they are a V:N:M export (`vnmtune prune`), model sizes from its config. The
// dense model computes with the decompressed form, i.e. exactly the masked dense weights.
// Embedding, norms and lm_head stay dense in both (DESIGN.md §2). Attention is the same kernel in
// both runs. --device cpu runs the same on the CPU reference ops (a check, not a benchmark).
//   prefill: B sequences × T tokens from position 0 (causal op_attention), full logits.
//   decode:  B sequences, a KV cache filled by a prefill of `context` tokens (not timed), then
//            `steps` timed steps of one new token per sequence (op_attention_cached over the cache,
//            full logits); the token ids of each step are given (no sampling).
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "autograd/rng.h"
#include "train/bench_infer.h"
#include "train/llama.h"
#include "train/llama_export.h"
#include "train/vnm_linear.h"
#ifdef VNMTUNE_HAVE_CUDA
#include "kernels/ops_cuda.h"
#endif

// ---- what only the CUDA build has ----
#ifdef VNMTUNE_HAVE_CUDA
static void backend_init(void) { ops_cuda_register(); }
static double gpu_free_gb(void) { return (double)ops_cuda_device_free_bytes() / 1e9; }
static void profile(bool on) { ops_cuda_profile(on); }
static void profile_report(int steps, double step_ms) { ops_cuda_profile_report(stdout, steps, step_ms); }
#else
static void backend_init(void) {}
static double gpu_free_gb(void) { return 0; }
static void profile(bool on) { (void)on; }
static void profile_report(int steps, double step_ms) { (void)steps, (void)step_ms; }
#endif

static int model_config(const LlamaInferOpts *o, ModelConfig *c, Err *err) {
    if (o->export_path) {
        if (o->layers > 0) return err_set(err, "bench infer: --layers does not apply to --export (the export has its layers)");
        return llama_export_config(o->export_path, c, err);
    }
    memset(c, 0, sizeof *c);
    snprintf(c->arch, sizeof c->arch, "llama");
    c->rope_theta = 10000.0f, c->rms_eps = 1e-5f;
    if (!strcmp(o->model, "llama2_7b")) {
        c->vocab_size = 32000, c->hidden_size = 4096, c->intermediate_size = 11008, c->n_layers = 32, c->n_heads = 32;
    } else if (!strcmp(o->model, "llama_tiny")) {
        c->vocab_size = 4096, c->hidden_size = 512, c->intermediate_size = 1376, c->n_layers = 4, c->n_heads = 4;
    } else {
        return err_set(err, "bench infer: unknown model '%s' (deit_small, deit_base, llama_tiny, llama2_7b)", o->model);
    }
    if (o->layers > 0) c->n_layers = o->layers;
    c->n_kv_heads = c->n_heads;
    return llama_check_config(c, err);
}

// ---- random V:N:M weights, prepared on the host by worker threads ----
typedef struct Prep {
    Linear *l;
    VnmPattern p;
    uint64_t seed;
    VnmMatrix m;      // the compressed weight
    void *dense;      // its decompressed form (out, in) in the weight's dtype (bf16 or fp32)
} Prep;

typedef struct PrepQueue {
    Prep *items;
    int n, next;
    pthread_mutex_t lock;
} PrepQueue;

static void prep_one(Prep *w) {
    vnm_random(w->p, w->l->out, w->l->in, w->seed, 0, &w->m);
    // unit-variance outputs for unit-variance inputs: each row keeps 2·in/M inputs
    float scale = 1.0f / sqrtf(2.0f * (float)w->l->in / (float)w->p.M);
    int64_t nv = w->l->out * 2 * w->m.C;
    for (int64_t e = 0; e < nv; e++) w->m.values[e] = f32_to_bf16(scale * bf16_to_f32(w->m.values[e]));
    int64_t n = w->l->out * w->l->in;
    float *W = xmalloc((size_t)n * sizeof *W);
    vnm_decompress(&w->m, W);
    if (w->l->w->dtype == DT_F32) {
        w->dense = W;
        return;
    }
    uint16_t *h = xmalloc((size_t)n * sizeof *h);
    for (int64_t e = 0; e < n; e++) h[e] = f32_to_bf16(W[e]);
    w->dense = h;
    free(W);
}

static void *prep_worker(void *arg) {
    PrepQueue *q = arg;
    for (;;) {
        pthread_mutex_lock(&q->lock);
        int i = q->next++;
        pthread_mutex_unlock(&q->lock);
        if (i >= q->n) return NULL;
        prep_one(&q->items[i]);
    }
}

// Uniform(-a, a) values for a dense tensor (embedding, lm_head): fast, no Box-Muller.
static void fill_uniform(Tensor *t, Rng *r, float a) {
    float *h = xmalloc((size_t)t->numel * sizeof *h);
    for (int64_t e = 0; e < t->numel; e++) h[e] = a * (2.0f * rng_uniform(r) - 1.0f);
    tensor_set_f32(t, h, t->numel);
    free(h);
}

// Fills the model with random weights; returns the V:N:M layer of every linear (NULL for lm_head),
// on the model's device, attached later.
static VnmLayer **random_weights(Llama *m, VnmPattern want, Err *err) {
    Rng r;
    rng_seed(&r, 7);
    fill_uniform(m->embed, &r, 1.0f);
    fill_uniform(m->lm_head.w, &r, sqrtf(3.0f / (float)m->cfg.hidden_size));
    for (int i = 0; i < m->params.n; i++)
        if (m->params.items[i].value->ndim == 1) {  // RMSNorm weights
            Tensor *t = m->params.items[i].value;
            float *ones = xmalloc((size_t)t->numel * sizeof *ones);
            for (int64_t e = 0; e < t->numel; e++) ones[e] = 1.0f;
            tensor_set_f32(t, ones, t->numel);
            free(ones);
        }
    int n = m->n_linears - 1;  // all but lm_head
    PrepQueue q = {.items = xcalloc((size_t)n, sizeof(Prep)), .n = n};
    pthread_mutex_init(&q.lock, NULL);
    for (int i = 0; i < n; i++) {
        Prep *w = &q.items[i];
        w->l = m->linears[i], w->p = want, w->seed = 1000 + (uint64_t)i;
        while (w->p.V > 16 && w->l->out % w->p.V) w->p.V /= 2;  // as the schedule adapts V
        if (vnm_pattern_fits(w->p, w->l->out, w->l->in, w->l->name, err)) {
            free(q.items);
            return NULL;
        }
    }
    pthread_t threads[16];
    int nt = n < 16 ? n : 16;
    for (int k = 0; k < nt; k++) pthread_create(&threads[k], NULL, prep_worker, &q);
    for (int k = 0; k < nt; k++) pthread_join(threads[k], NULL);
    pthread_mutex_destroy(&q.lock);
    VnmLayer **sparse = xcalloc((size_t)m->n_linears, sizeof *sparse);
    for (int i = 0; i < n && !err->msg[0]; i++) {
        Prep *w = &q.items[i];
        tensor_write_host(w->l->w, w->dense);
        free(w->dense);
        sparse[i] = xcalloc(1, sizeof **sparse);
        if (vnm_layer_init(sparse[i], &w->m, m->arena->device, w->l->name, err)) break;
    }
    free(q.items);
    if (err->msg[0]) return NULL;
    return sparse;
}

// The weights of a V:N:M export; returns the V:N:M layer of every linear (NULL where the export keeps
// it dense), detached: the dense run computes with the decompressed weights.
static VnmLayer **export_weights(Llama *m, const char *path, Err *err) {
    if (llama_load_export(m, path, true, err)) return NULL;
    VnmLayer **sparse = xcalloc((size_t)m->n_linears, sizeof *sparse);
    for (int i = 0; i < m->n_linears; i++) sparse[i] = m->linears[i]->vnm, m->linears[i]->vnm = NULL;
    return sparse;
}

// ---- timing ----
typedef struct Bench {
    Llama *m;
    Tape *t;
    Arena *inputs;
    Rng rng;
} Bench;

// Waits for the GPU's queued work (nothing to wait for on the CPU, where no CUDA context may exist).
static void bench_sync(const Bench *b) {
    if (b->m->arena->device == DEV_CUDA) device_synchronize();
}

static Tensor *random_ids(Bench *b, int64_t B, int64_t T, const char *name) {
    Tensor *ids = tensor_new2(b->inputs, DT_I32, B, T, name);
    int32_t *h = xmalloc((size_t)ids->numel * sizeof *h);
    for (int64_t e = 0; e < ids->numel; e++) h[e] = (int32_t)rng_below(&b->rng, (uint64_t)b->m->cfg.vocab_size);
    tensor_write_host(ids, h);
    free(h);
    return ids;
}

// Seconds per prefill forward (mean of `iters` after one warm-up); the logits into *out (malloc'ed).
static double time_prefill(Bench *b, Tensor *ids, int iters, float **out) {
    Tensor *y = NULL;
    double t0 = 0;
    for (int i = -1; i < iters; i++) {
        if (i == 0) bench_sync(b), t0 = now_seconds();
        tape_reset(b->t);
        y = llama_forward(b->m, b->t, ids);
    }
    bench_sync(b);
    double secs = (now_seconds() - t0) / iters;
    *out = tensor_to_host_f32(y);
    return secs;
}

// Seconds per decode step: prefill `context` tokens into a fresh cache (not timed), one untimed
// step, then `steps` timed steps. The last step's logits into *out.
// With `graph` (CUDA), the timed steps replay the untimed one recorded as a CUDA graph
// (llama_step_graph_*): the GPU time of a step without the host work of building it.
// With `n_profile` > 0 (CUDA), that many more steps (ids reused) run under the per-op profiler afterwards.
// *host_secs: time per step the host took to enqueue the steps (close to the step time: host-bound).
static double time_decode(Bench *b, LlamaCache *cache, Tensor *prompt, Tensor **step_ids, int steps, bool graph,
                          int n_profile, float **out, double *host_secs) {
    llama_cache_reset(cache);
    tape_reset(b->t);
    llama_forward_cached(b->m, b->t, prompt, cache);
    tape_reset(b->t);
    Tensor *y = llama_forward_cached(b->m, b->t, step_ids[0], cache);
    LlamaStepGraph g = {0};
    if (graph) llama_step_graph_record(&g, b->m, b->t, cache, tensor_new2(b->inputs, DT_I32, step_ids[0]->shape[0], 1, "ids_in"));
    bench_sync(b);
    double t0 = now_seconds();
    for (int s = 1; s <= steps; s++) {
        if (graph) {
            y = llama_step_graph_run(&g, cache, step_ids[s]);
            continue;
        }
        tape_reset(b->t);
        y = llama_forward_cached(b->m, b->t, step_ids[s], cache);
    }
    *host_secs = (now_seconds() - t0) / steps;
    bench_sync(b);
    double secs = (now_seconds() - t0) / steps;
    *out = tensor_to_host_f32(y);
    if (graph) llama_step_graph_free(&g);
    if (n_profile > 0 && cache->len + n_profile <= cache->max_len) {
        profile(true);
        for (int s = 0; s < n_profile; s++) {
            tape_reset(b->t);
            llama_forward_cached(b->m, b->t, step_ids[s], cache);
        }
        profile_report(n_profile, 1e3 * secs);
        profile(false);
    }
    return secs;
}

static double max_rel_diff(const float *dense, const float *sparse, int64_t n) {
    double diff = 0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) diff = fmax(diff, fabs(dense[i] - sparse[i])), scale = fmax(scale, fabs(dense[i]));
    return diff / scale;
}

static void set_sparse(Llama *m, VnmLayer **sparse, bool on) {
    for (int i = 0; i < m->n_linears; i++) m->linears[i]->vnm = on ? sparse[i] : NULL;
}

static const char *kernel_of(const Linear *l) { return l->vnm && l->vnm->kernel ? l->vnm->kernel : "dense"; }

// ---- the run ----

typedef struct Arenas {
    Arena params, acts, layer[2], inputs, kv;
} Arenas;

static void arenas_init(Arenas *a, const ModelConfig *c, const LlamaInferOpts *o, Device dev, int64_t max_len) {
    int64_t C = c->hidden_size, F = c->intermediate_size, V = c->vocab_size, T = o->seq;
    int64_t maxB = 1, sumB = 0;
    for (int i = 0; i < o->n_batches; i++) maxB = o->batches[i] > maxB ? o->batches[i] : maxB, sumB += o->batches[i];
    int64_t N = maxB * T > o->decode_batch * (int64_t)o->context ? maxB * T : o->decode_batch * (int64_t)o->context;
    size_t es = dev == DEV_CPU ? 4 : 2;  // fp32 on the CPU, bf16 on the GPU
    arena_init(&a->params, "params", dev, llama_param_bytes(c, es == 4 ? DT_F32 : DT_BF16));
    arena_init(&a->acts, "activations", dev, (size_t)(N * (2 * C + V)) * es + ((size_t)64 << 20));
    a->acts.no_zero = true;
    for (int k = 0; k < 2; k++) {
        arena_init(&a->layer[k], "layer activations", dev, (size_t)(N * (14 * C + 3 * F)) * es + ((size_t)64 << 20));
        a->layer[k].no_zero = true;
    }
    arena_init(&a->inputs, "inputs", dev, (size_t)(sumB * T + (int64_t)o->decode_batch * (max_len + 1)) * 4 + (size_t)(o->steps + 8) * 256);
    arena_init(&a->kv, "kv cache", dev, (size_t)(2 * c->n_layers) * (size_t)(o->decode_batch * max_len * C) * es + 65536);
}

static void arenas_free(Arenas *a) {
    Arena *all[] = {&a->params, &a->acts, &a->layer[0], &a->layer[1], &a->inputs, &a->kv};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) arena_free(all[i]);
}

static int pick_device(const LlamaInferOpts *o, Device *dev, Err *err) {
    if (o->device && !strcmp(o->device, "cpu")) {
        *dev = DEV_CPU;
        return 0;
    }
    if (o->device && strcmp(o->device, "cuda")) return err_set(err, "bench infer: --device '%s' (cuda or cpu)", o->device);
    if (!device_cuda_available()) return err_set(err, "bench infer needs a GPU (or --device cpu, a check on the CPU reference ops)");
    *dev = DEV_CUDA;
    backend_init();
    return 0;
}

static void print_setup(const LlamaInferOpts *o, const Llama *m, Device dev, double setup_s) {
    const ModelConfig *c = &m->cfg;
    printf("bench infer on %s: %s (%d layers, dim %d, ffn %d, %d heads, vocab %d), %s, ", dev == DEV_CPU ? "the CPU" : device_cuda_name(),
           o->export_path ? o->export_path : o->model, c->n_layers, c->hidden_size, c->intermediate_size, c->n_heads,
           c->vocab_size, dev == DEV_CPU ? "fp32" : "bf16");
    const VnmLayer *q = m->layers[0].q.vnm;
    if (o->export_path) printf("V:N:M export (q_proj %d:2:%d)", q ? q->m.p.V : 0, q ? q->m.p.M : 0);
    else printf("%s random V:N:M", o->pattern);
    printf("\n  projections (V lowered where it does not divide the rows); the dense run uses their decompressed\n"
           "  (masked) weights; embedding, norms, lm_head and attention are the same in both. setup %.1f s", setup_s);
    if (dev == DEV_CUDA) printf(", GPU free %.1f GB", gpu_free_gb());
    printf("\n");
}

static void bench_prefill(Bench *b, VnmLayer **sparse, const LlamaInferOpts *o) {
    Llama *m = b->m;
    int64_t T = o->seq, V = m->cfg.vocab_size;
    printf("  prefill (T = %lld from position 0, causal, full logits; mean of %d after a warm-up):\n", (long long)T, o->iters);
    printf("    %-9s %14s %10s %14s %10s %7s %12s\n", "batch", "dense tok/s", "ms", "sparse tok/s", "ms", "ratio",
           "max rel diff");
    for (int i = 0; i < o->n_batches; i++) {
        int64_t B = o->batches[i];
        Tensor *ids = random_ids(b, B, T, "prompt");
        float *yd, *ys;
        set_sparse(m, sparse, false);
        double td = time_prefill(b, ids, o->iters, &yd);
        set_sparse(m, sparse, true);
        double ts = time_prefill(b, ids, o->iters, &ys);
        printf("    %-9lld %14.0f %10.2f %14.0f %10.2f %6.2fx %12.3g\n", (long long)B, B * T / td, 1e3 * td, B * T / ts,
               1e3 * ts, td / ts, max_rel_diff(yd, ys, B * T * V));
        free(yd), free(ys);
        fflush(stdout);
    }
    printf("    kernels at n = %lld: q_proj %s, gate_proj %s, down_proj %s\n", (long long)(o->batches[o->n_batches - 1] * T),
           kernel_of(&m->layers[0].q), kernel_of(&m->layers[0].gate), kernel_of(&m->layers[0].down));
}

typedef struct DecodeRun {
    double secs, host_secs;  // per step: GPU-inclusive time, host time to enqueue
    float *logits;           // of the last step (malloc'ed)
} DecodeRun;

// The same decode steps dense (run[0]) and sparse (run[1]), op by op or as a CUDA graph.
static void decode_pair(Bench *b, VnmLayer **sparse, LlamaCache *cache, Tensor *prompt, Tensor **step_ids,
                        const LlamaInferOpts *o, bool graph, DecodeRun run[2]) {
    for (int sp = 0; sp < 2; sp++) {
        set_sparse(b->m, sparse, sp);
        run[sp].secs = time_decode(b, cache, prompt, step_ids, o->steps, graph, graph ? 0 : o->profile, &run[sp].logits,
                                   &run[sp].host_secs);
    }
}

static void bench_decode(Bench *b, VnmLayer **sparse, const LlamaInferOpts *o, Arena *kv, int64_t max_len) {
    Llama *m = b->m;
    int64_t Bd = o->decode_batch;
    LlamaCache cache;
    llama_cache_init(&cache, m, kv, Bd, max_len);
    Tensor *prompt = random_ids(b, Bd, o->context, "context");
    Tensor **step_ids = xcalloc((size_t)o->steps + 1, sizeof *step_ids);
    for (int s = 0; s <= o->steps; s++) step_ids[s] = random_ids(b, Bd, 1, "step");
    DecodeRun eager[2], graph[2];  // [0] dense, [1] sparse
    decode_pair(b, sparse, &cache, prompt, step_ids, o, false, eager);
    int64_t V = m->cfg.vocab_size;
    printf("  decode (batch %lld, one new token per sequence per step over a KV cache of %d..%d positions,\n"
           "          given token ids, full logits; cache filled by an untimed prefill; mean of %d steps):\n",
           (long long)Bd, o->context + 1, o->context + o->steps, o->steps);
    printf("    dense  %10.0f tok/s (%.3f ms/step)\n    sparse %10.0f tok/s (%.3f ms/step)  ratio %.2fx  "
           "last-step logits max rel diff %.3g\n",
           Bd / eager[0].secs, 1e3 * eager[0].secs, Bd / eager[1].secs, 1e3 * eager[1].secs, eager[0].secs / eager[1].secs,
           max_rel_diff(eager[0].logits, eager[1].logits, Bd * V));
    printf("    host time to enqueue a step: dense %.3f ms, sparse %.3f ms\n", 1e3 * eager[0].host_secs,
           1e3 * eager[1].host_secs);
    if (b->m->arena->device == DEV_CUDA) {  // the same steps replayed from a CUDA graph of one step
        decode_pair(b, sparse, &cache, prompt, step_ids, o, true, graph);
        printf("    as a CUDA graph (one step recorded, replayed; no per-op host work):\n"
               "    dense  %10.0f tok/s (%.3f ms/step)\n    sparse %10.0f tok/s (%.3f ms/step)  ratio %.2fx  "
               "logits max rel diff to the op-by-op steps: dense %.3g, sparse %.3g\n",
               Bd / graph[0].secs, 1e3 * graph[0].secs, Bd / graph[1].secs, 1e3 * graph[1].secs,
               graph[0].secs / graph[1].secs, max_rel_diff(eager[0].logits, graph[0].logits, Bd * V),
               max_rel_diff(eager[1].logits, graph[1].logits, Bd * V));
        free(graph[0].logits), free(graph[1].logits);
    }
    printf("    kernels at n = %lld: q_proj %s, down_proj %s\n", (long long)Bd, kernel_of(&m->layers[0].q),
           kernel_of(&m->layers[0].down));
    free(eager[0].logits), free(eager[1].logits), free(step_ids);
    llama_cache_free(&cache);
}

static void free_sparse(Llama *m, VnmLayer **sparse) {
    set_sparse(m, sparse, false);
    for (int i = 0; i < m->n_linears; i++)
        if (sparse[i]) vnm_layer_free(sparse[i]), free(sparse[i]);
    free(sparse);
}

int bench_infer_llama(const LlamaInferOpts *o) {
    Err err = {0};
    Device dev = DEV_CPU;
    ModelConfig c;
    VnmPattern pat;
    if (pick_device(o, &dev, &err) || model_config(o, &c, &err) || vnm_pattern_parse(o->pattern, &pat, &err)) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    double t_setup = now_seconds();
    int64_t max_len = o->context + o->steps + 1 + o->profile;
    Arenas a;
    arenas_init(&a, &c, o, dev, max_len);
    Llama m;
    llama_alloc(&m, &c, &a.params);
    m.layer_arenas[0] = &a.layer[0], m.layer_arenas[1] = &a.layer[1];
    VnmLayer **sparse = o->export_path ? export_weights(&m, o->export_path, &err) : random_weights(&m, pat, &err);
    if (!sparse) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        llama_free(&m);
        arenas_free(&a);
        return 1;
    }
    Tape t;
    tape_init(&t, &a.acts);
    t.record = t.training = false;
    Bench b = {.m = &m, .t = &t, .inputs = &a.inputs};
    rng_seed(&b.rng, 3);
    bench_sync(&b);
    set_sparse(&m, sparse, true);
    print_setup(o, &m, dev, now_seconds() - t_setup);
    if (dev == DEV_CUDA) {
        size_t vnm_b = 0, as24_b = 0, dense_b = 0;
        for (int i = 0; i < m.n_linears; i++) {
            if (!sparse[i]) continue;
            size_t a24;
            vnm_b += vnm_layer_device_bytes(sparse[i], &a24), as24_b += a24;
            dense_b += (size_t)(sparse[i]->m.out * sparse[i]->m.in) * 2;
        }
        printf("  sparse projections on the GPU: %.2f GB V:N:M form + %.2f GB 2:4 form for prefill (bf16 dense: %.2f GB)\n",
               vnm_b / 1e9, as24_b / 1e9, dense_b / 1e9);
    }
    bench_prefill(&b, sparse, o);
    if (o->steps > 0) bench_decode(&b, sparse, o, &a.kv, max_len);
    free_sparse(&m, sparse);
    llama_free(&m);
    tape_free(&t);
    arenas_free(&a);
    return 0;
}
