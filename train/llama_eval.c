#include "llama_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/llama_export.h"
#include "train/model_io.h"
#include "train/select_vm.h"
#include "train/trainer.h"
#include "train/vnm_export.h"
#include "train/vnm_linear.h"

// ---- the model and its arenas ----

void llama_run_init(LlamaRun *r, const ModelConfig *mc, Device dev, int batch, int64_t seq_len) {
    memset(r, 0, sizeof *r);
    r->dev = dev, r->batch = batch, r->seq_len = seq_len;
    arena_init(&r->params, "params", dev, llama_param_bytes(mc, dev == DEV_CPU ? DT_F32 : DT_BF16));
    llama_alloc(&r->m, mc, &r->params);
    if (batch <= 0) return;
    int64_t C = mc->hidden_size, F = mc->intermediate_size, V = mc->vocab_size, N = batch * seq_len;
    int64_t attention = 2 * (int64_t)batch * mc->n_heads * seq_len * seq_len;  // scores and probabilities
    // fp32 sizes (twice what bf16 needs): embedding, final norm, logits, softmax of the loss; per layer
    // norms, q, k, v, ropes, qkv, attention, residuals, gate, up, swiglu
    arena_init(&r->acts, "activations", dev, (size_t)(N * (2 * C + 2 * V)) * 4 + ((size_t)1 << 20));
    for (int k = 0; k < 2; k++) arena_init(&r->layers[k], "layer activations", dev, (size_t)(N * (16 * C + 3 * F) + attention) * 4 + ((size_t)1 << 20));
    arena_init(&r->inputs, "token ids", dev, (size_t)N * 8 + 4096);
    Arena *all[] = {&r->acts, &r->layers[0], &r->layers[1]};
    for (int k = 0; k < 3; k++) all[k]->no_zero = dev != DEV_CPU;  // GPU kernels write every output fully
    r->m.layer_arenas[0] = &r->layers[0], r->m.layer_arenas[1] = &r->layers[1];
    tape_init(&r->tape, &r->acts);
    r->tape.record = r->tape.training = false;
}

void llama_run_free(LlamaRun *r) {
    llama_free(&r->m);
    if (r->batch > 0) tape_free(&r->tape);
    Arena *all[] = {&r->params, &r->acts, &r->layers[0], &r->layers[1], &r->inputs};
    for (int k = 0; k < 5; k++) arena_free(all[k]);
    memset(r, 0, sizeof *r);
}

int llama_run_load(LlamaRun *r, const char *path, Err *err) {
    if (vnm_export_is_export(path)) return llama_load_export(&r->m, path, true, err);
    return model_load_safetensors(&r->m.params, path, false, err);
}

LlamaPass llama_run_pass(LlamaRun *r) {
    return (LlamaPass){.m = &r->m, .tape = &r->tape, .inputs = &r->inputs, .batch = r->batch, .seq_len = r->seq_len};
}

// Logits of `count` windows (count, seq_len) of ids; with `labels`, the mean loss of their shifted
// labels into *loss.
static void forward_windows(const LlamaPass *r, const int32_t *ids, int count, const int32_t *labels, float *loss) {
    arena_reset(r->inputs);
    tape_reset(r->tape);
    Tensor *x = tensor_new2(r->inputs, DT_I32, count, r->seq_len, "ids");
    tensor_write_host(x, ids);
    Tensor *logits = llama_forward(r->m, r->tape, x);
    if (!labels) return;
    Tensor *y = tensor_new2(r->inputs, DT_I32, count, r->seq_len, "labels");
    tensor_write_host(y, labels);
    float *l = tensor_to_host_f32(op_cross_entropy(r->tape, logits, y, 0.0f, "loss"));
    *loss = l[0];
    free(l);
}

// ---- perplexity ----

static void print_progress(FILE *f, const Perplexity *p, int64_t total, int64_t seq_len) {
    fprintf(f, "  %lld/%lld windows | loss %.4f | perplexity %.4f | %.0f tok/s\n", (long long)p->windows, (long long)total,
            p->loss / (double)p->tokens, exp(p->loss / (double)p->tokens), (double)(p->windows * seq_len) / p->seconds);
    fflush(f);
}

int llama_perplexity(LlamaRun *r, const TokenFile *f, int64_t limit, FILE *progress, Perplexity *out, Err *err) {
    LlamaPass p = llama_run_pass(r);
    return llama_pass_perplexity(&p, f, limit, progress, out, err);
}

int llama_pass_perplexity(const LlamaPass *r, const TokenFile *f, int64_t limit, FILE *progress, Perplexity *out, Err *err) {
    memset(out, 0, sizeof *out);
    TokenWindows w;
    if (token_windows_init(&w, f, r->seq_len, false, 0, err)) return -1;
    int64_t total = limit > 0 && limit < w.count ? limit : w.count, T = r->seq_len;
    int32_t *ids = xmalloc((size_t)(r->batch * T) * sizeof *ids), *labels = xmalloc((size_t)(r->batch * T) * sizeof *labels);
    double t0 = now_seconds(), shown = t0;
    while (out->windows < total) {
        int want = total - out->windows < r->batch ? (int)(total - out->windows) : r->batch;
        int count = token_windows_next(&w, want, ids);
        float loss = 0;
        llama_shift_labels(ids, count, T, labels);
        forward_windows(r, ids, count, labels, &loss);
        out->windows += count;
        out->tokens += count * (T - 1);
        out->loss += (double)loss * (double)(count * (T - 1));  // a sum until the end
        out->seconds = now_seconds() - t0;
        if (progress && now_seconds() - shown > 5 && out->windows < total) print_progress(progress, out, total, T), shown = now_seconds();
    }
    out->loss /= (double)out->tokens;
    out->ppl = exp(out->loss);
    free(ids), free(labels);
    return 0;
}

// ---- calibration ----

typedef struct Calibration {
    const LlamaPass *r;
    TokenWindows w;
    int left;       // windows still to run
    int32_t *ids;
} Calibration;

static void calibration_forward(void *ctx, int batch) {
    Calibration *cal = ctx;
    int count = token_windows_next(&cal->w, cal->left < cal->r->batch ? cal->left : cal->r->batch, cal->ids);
    forward_windows(cal->r, cal->ids, count, NULL, NULL);
    cal->left -= count;
}

int llama_calibrate(LlamaRun *r, Schedule *s, const char *path, int n_windows, uint64_t seed, Err *err) {
    TokenFile f;
    if (token_file_open(&f, path, r->m.cfg.vocab_size, err)) return -1;
    LlamaPass p = llama_run_pass(r);
    int rc = llama_pass_calibrate(&p, s, &f, n_windows, seed, err);
    token_file_close(&f);
    return rc;
}

int llama_pass_calibrate(const LlamaPass *r, Schedule *s, const TokenFile *f, int n_windows, uint64_t seed, Err *err) {
    Calibration cal = {.r = r, .left = n_windows};
    if (token_windows_init(&cal.w, f, r->seq_len, true, seed, err)) return -1;
    cal.ids = xmalloc((size_t)(r->batch * r->seq_len) * sizeof *cal.ids);
    schedule_calibrate(s, (n_windows + r->batch - 1) / r->batch, calibration_forward, &cal);
    tape_reset(r->tape);
    free(cal.ids);
    return 0;
}

// ---- vnmtune eval ----

static int check_eval_job(const Config *c, const char *model, Err *err) {
    if (!model[0]) return err_set(err, "%s: no model: --model=FILE (HF safetensors or a V:N:M export) or model.init", c->source);
    if (strcmp(c->data.dataset, "tokens") || !c->data.test_path[0])
        return err_set(err, "%s: a llama is evaluated on a token file: data.dataset tokens and data.test_path (now '%s', '%s')",
                       c->source, c->data.dataset, c->data.test_path);
    return 0;
}

static void print_result(const LlamaRun *r, const char *model, const char *test, const Perplexity *p) {
    printf("%s on %s: %lld windows of %lld tokens, %lld tokens predicted | mean loss %.4f | perplexity %.4f | "
           "%.0f tok/s (%.1f s)\n", model, test, (long long)p->windows, (long long)r->seq_len, (long long)p->tokens,
           p->loss, p->ppl, (double)(p->windows * r->seq_len) / p->seconds, p->seconds);
    linear_print_kernels(stdout, r->m.linears, r->m.n_linears);
}

static int eval_model(LlamaRun *r, const Config *c, const char *model, Err *err) {
    TokenFile f;
    if (token_file_open(&f, c->data.test_path, r->m.cfg.vocab_size, err)) return -1;
    printf("perplexity of %s (llama: %d layers, dim %d, vocab %d) on %s (%lld tokens), windows of %lld, batch %d, %s\n",
           model, r->m.cfg.n_layers, r->m.cfg.hidden_size, r->m.cfg.vocab_size, f.path, (long long)f.n,
           (long long)r->seq_len, r->batch, r->dev == DEV_CPU ? "cpu (fp32)" : "cuda (bf16)");
    Perplexity p;
    int rc = llama_run_load(r, model, err);
    if (rc == 0) rc = llama_perplexity(r, &f, c->data.test_limit, stdout, &p, err);
    if (rc == 0) print_result(r, model, f.path, &p);
    token_file_close(&f);
    return rc;
}

static int eval_job(Config *c, const char *model, Err *err) {
    ModelConfig mc = c->model;  // an export brings its own sizes
    Device dev;
    if (check_eval_job(c, model, err) || trainer_resolve_device(c, &dev, err)) return -1;
    if (vnm_export_is_export(model) && llama_export_config(model, &mc, err)) return -1;
    SpeedTable speed = {0};
    if (c->export.speed_table[0]) {
        if (speed_table_load(c->export.speed_table, &speed, err)) return err_set(err, "export.speed_table: %s", err->msg);
        vnm_dispatch_set_table(&speed);
    }
    LlamaRun r;
    llama_run_init(&r, &mc, dev, c->eval.batch_size, c->data.seq_len);
    int rc = eval_model(&r, c, model, err);
    llama_run_free(&r);
    if (speed.rows) vnm_dispatch_set_table(NULL);
    speed_table_free(&speed);
    return rc;
}

int llama_eval_main(Config *c, const char *model) {
    Err err = {0};
    int rc = eval_job(c, model ? model : c->model.init, &err);
    if (rc) fprintf(stderr, "vnmtune: error: %s\n", err.msg);
    return rc ? 1 : 0;
}
