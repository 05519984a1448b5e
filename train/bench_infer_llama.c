// `vnmtune bench infer --model llama2_7b|llama_tiny`: Llama prefill and decode tokens/s on the GPU,
// dense (cuBLASLt on the masked weights) vs V:N:M sparse linears (the SpMM of the compressed
// weights), in one run, and how far the sparse logits are from the masked dense model's.
//
// Weights are random: every q/k/v/o/gate/up/down projection is a random valid V:N:M matrix
// (vnm_random: random kept columns and 2:4 positions, values ~ N(0, 1/(kept inputs))); the dense
// model computes with its decompressed form, i.e. exactly the masked dense weights. Embedding,
// norms and lm_head stay dense in both (DESIGN.md §2). Attention is the same kernel in both runs.
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
#include "train/vnm_linear.h"
#ifdef VNMTUNE_HAVE_CUDA
#include "kernels/ops_cuda.h"
#endif

#ifndef VNMTUNE_HAVE_CUDA
int bench_infer_llama(const LlamaInferOpts *o) {
    (void)o;
    fprintf(stderr, "vnmtune: error: bench infer needs the CUDA build\n");
    return 1;
}
#else

static int model_config(const LlamaInferOpts *o, ModelConfig *c, Err *err) {
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
    uint16_t *dense;  // its decompressed form, bf16 (out, in)
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
    w->dense = xmalloc((size_t)n * sizeof *w->dense);
    for (int64_t e = 0; e < n; e++) w->dense[e] = f32_to_bf16(W[e]);
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

// Fills the model; returns the uploaded V:N:M layer of every projection (attached later).
static VnmLayer **init_weights(Llama *m, VnmPattern want, Err *err) {
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
    VnmLayer **sparse = xcalloc((size_t)n, sizeof *sparse);
    for (int i = 0; i < n && !err->msg[0]; i++) {
        Prep *w = &q.items[i];
        tensor_write_host(w->l->w, w->dense);
        free(w->dense);
        sparse[i] = xcalloc(1, sizeof **sparse);
        if (vnm_layer_init(sparse[i], &w->m, DEV_CUDA, w->l->name, err)) break;
    }
    free(q.items);
    if (err->msg[0]) return NULL;
    return sparse;
}

// ---- timing ----
typedef struct Bench {
    Llama *m;
    Tape *t;
    Arena *inputs;
    Rng rng;
} Bench;

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
        if (i == 0) device_synchronize(), t0 = now_seconds();
        tape_reset(b->t);
        y = llama_forward(b->m, b->t, ids);
    }
    device_synchronize();
    double secs = (now_seconds() - t0) / iters;
    *out = tensor_to_host_f32(y);
    return secs;
}

// Seconds per decode step: prefill `context` tokens into a fresh cache (not timed), one untimed
// step, then `steps` timed steps. The last step's logits into *out.
// With `profile` > 0, that many more steps (ids reused) run under the per-op profiler afterwards.
static double time_decode(Bench *b, LlamaCache *cache, Tensor *prompt, Tensor **step_ids, int steps, int profile,
                          float **out) {
    cache->len = 0;
    tape_reset(b->t);
    llama_forward_cached(b->m, b->t, prompt, cache);
    Tensor *y = NULL;
    double t0 = 0;
    for (int s = 0; s <= steps; s++) {
        if (s == 1) device_synchronize(), t0 = now_seconds();
        tape_reset(b->t);
        y = llama_forward_cached(b->m, b->t, step_ids[s], cache);
    }
    device_synchronize();
    double secs = (now_seconds() - t0) / steps;
    *out = tensor_to_host_f32(y);
    if (profile > 0 && cache->len + profile <= cache->max_len) {
        ops_cuda_profile(true);
        for (int s = 0; s < profile; s++) {
            tape_reset(b->t);
            llama_forward_cached(b->m, b->t, step_ids[s], cache);
        }
        ops_cuda_profile_report(stdout, profile, 1e3 * secs);
        ops_cuda_profile(false);
    }
    return secs;
}

static double max_rel_diff(const float *dense, const float *sparse, int64_t n) {
    double diff = 0, scale = 1e-30;
    for (int64_t i = 0; i < n; i++) diff = fmax(diff, fabs(dense[i] - sparse[i])), scale = fmax(scale, fabs(dense[i]));
    return diff / scale;
}

static void set_sparse(Llama *m, VnmLayer **sparse, bool on) {
    for (int i = 0; i < m->n_linears - 1; i++) m->linears[i]->vnm = on ? sparse[i] : NULL;
}

int bench_infer_llama(const LlamaInferOpts *o) {
    if (!device_cuda_available()) {
        fprintf(stderr, "vnmtune: error: bench infer needs a GPU\n");
        return 1;
    }
    ops_cuda_register();
    Err err = {0};
    ModelConfig c;
    VnmPattern pat;
    if (model_config(o, &c, &err) || vnm_pattern_parse(o->pattern, &pat, &err)) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    int64_t C = c.hidden_size, F = c.intermediate_size, V = c.vocab_size, T = o->seq;
    int64_t maxB = 1, sumB = 0;
    for (int i = 0; i < o->n_batches; i++) maxB = o->batches[i] > maxB ? o->batches[i] : maxB, sumB += o->batches[i];
    int64_t N = maxB * T > o->decode_batch * (int64_t)o->context ? maxB * T : o->decode_batch * (int64_t)o->context;
    double t_setup = now_seconds();
    Arena params, acts, layer_acts[2], inputs, kv;
    arena_init(&params, "params", DEV_CUDA, llama_param_bytes(&c, DT_BF16));
    arena_init(&acts, "activations", DEV_CUDA, (size_t)(N * (2 * C + V)) * 2 + ((size_t)64 << 20));
    for (int k = 0; k < 2; k++) {
        arena_init(&layer_acts[k], "layer activations", DEV_CUDA, (size_t)(N * (14 * C + 3 * F)) * 2 + ((size_t)64 << 20));
        layer_acts[k].no_zero = true;
    }
    acts.no_zero = true;
    int64_t max_len = o->context + o->steps + 1 + o->profile;
    arena_init(&inputs, "inputs", DEV_CUDA, (size_t)(sumB * T + (int64_t)o->decode_batch * (max_len + 1)) * 4 + (size_t)(o->steps + 8) * 256);
    arena_init(&kv, "kv cache", DEV_CUDA, (size_t)(2 * c.n_layers) * (size_t)(o->decode_batch * max_len * C) * 2 + 65536);
    Llama m;
    llama_alloc(&m, &c, &params);
    m.layer_arenas[0] = &layer_acts[0], m.layer_arenas[1] = &layer_acts[1];
    VnmLayer **sparse = init_weights(&m, pat, &err);
    if (!sparse) {
        fprintf(stderr, "vnmtune: error: %s\n", err.msg);
        return 1;
    }
    Tape t;
    tape_init(&t, &acts);
    t.record = t.training = false;
    Bench b = {.m = &m, .t = &t, .inputs = &inputs};
    rng_seed(&b.rng, 3);
    device_synchronize();
    printf("bench infer on %s: %s (%d layers, dim %lld, ffn %lld, %d heads, vocab %lld), bf16, %s random V:N:M\n"
           "  projections (V lowered where it does not divide the rows); the dense run uses their decompressed\n"
           "  (masked) weights; embedding, norms, lm_head and attention are the same in both. setup %.1f s, GPU free %.1f GB\n",
           device_cuda_name(), o->model, c.n_layers, (long long)C, (long long)F, c.n_heads, (long long)V, o->pattern,
           now_seconds() - t_setup, (double)ops_cuda_device_free_bytes() / 1e9);

    printf("  prefill (T = %lld from position 0, causal, full logits; mean of %d after a warm-up):\n", (long long)T, o->iters);
    printf("    %-9s %14s %10s %14s %10s %7s %12s\n", "batch", "dense tok/s", "ms", "sparse tok/s", "ms", "ratio",
           "max rel diff");
    for (int i = 0; i < o->n_batches; i++) {
        int64_t B = o->batches[i];
        Tensor *ids = random_ids(&b, B, T, "prompt");
        float *yd, *ys;
        set_sparse(&m, sparse, false);
        double td = time_prefill(&b, ids, o->iters, &yd);
        set_sparse(&m, sparse, true);
        double ts = time_prefill(&b, ids, o->iters, &ys);
        printf("    %-9lld %14.0f %10.2f %14.0f %10.2f %6.2fx %12.3g\n", (long long)B, B * T / td, 1e3 * td, B * T / ts,
               1e3 * ts, td / ts, max_rel_diff(yd, ys, B * T * V));
        free(yd), free(ys);
        fflush(stdout);
    }
    printf("    kernels at n = %lld: q_proj %s, gate_proj %s, down_proj %s\n", (long long)(o->batches[o->n_batches - 1] * T),
           m.layers[0].q.vnm ? m.layers[0].q.vnm->kernel : "-", m.layers[0].gate.vnm ? m.layers[0].gate.vnm->kernel : "-",
           m.layers[0].down.vnm ? m.layers[0].down.vnm->kernel : "-");

    if (o->steps > 0) {
        int64_t Bd = o->decode_batch;
        LlamaCache cache;
        llama_cache_init(&cache, &m, &kv, Bd, max_len);
        Tensor *prompt = random_ids(&b, Bd, o->context, "context");
        Tensor **step_ids = xcalloc((size_t)o->steps + 1, sizeof *step_ids);
        for (int s = 0; s <= o->steps; s++) step_ids[s] = random_ids(&b, Bd, 1, "step");
        float *yd, *ys;
        set_sparse(&m, sparse, false);
        double td = time_decode(&b, &cache, prompt, step_ids, o->steps, o->profile, &yd);
        set_sparse(&m, sparse, true);
        double ts = time_decode(&b, &cache, prompt, step_ids, o->steps, o->profile, &ys);
        printf("  decode (batch %lld, one new token per sequence per step over a KV cache of %d..%d positions,\n"
               "          given token ids, full logits; cache filled by an untimed prefill; mean of %d steps):\n",
               (long long)Bd, o->context + 1, o->context + o->steps, o->steps);
        printf("    dense  %10.0f tok/s (%.3f ms/step)\n    sparse %10.0f tok/s (%.3f ms/step)  ratio %.2fx  "
               "last-step logits max rel diff %.3g\n",
               Bd / td, 1e3 * td, Bd / ts, 1e3 * ts, td / ts, max_rel_diff(yd, ys, Bd * V));
        printf("    kernels at n = %lld: q_proj %s, down_proj %s\n", (long long)Bd, m.layers[0].q.vnm->kernel,
               m.layers[0].down.vnm->kernel);
        free(yd), free(ys), free(step_ids);
        llama_cache_free(&cache);
    }
    set_sparse(&m, sparse, false);
    for (int i = 0; i < m.n_linears - 1; i++) vnm_layer_free(sparse[i]), free(sparse[i]);
    free(sparse);
    llama_free(&m);
    tape_free(&t);
    arena_free(&params), arena_free(&acts), arena_free(&layer_acts[0]), arena_free(&layer_acts[1]);
    arena_free(&inputs), arena_free(&kv);
    return 0;
}
#endif
