// Llama on token files for the training loop (train/trainer_arch.h).
//   batches     B = train.batch_size windows of data.seq_len tokens of data.path, each at a uniform
//               random offset (TokenWindows, seeded by train.seed); the labels are the windows
//               shifted by one (llama_shift_labels: tokens 1..seq_len-1 are predicted). Random
//               offsets rather than a sequential pass: every step sees fresh contexts whatever the
//               file size, and the state is 4 Rng words, saved in checkpoints for exact resume.
//               An "epoch" is (tokens in the file) / (B · seq_len) steps.
//   evaluation  perplexity on data.test_path (llama_eval.h: sequential windows, eval.batch_size a
//               forward, data.test_limit windows).
//   calibration sparsity.calib_batches random windows of data.path (seed train.seed ^ 0xca11b).
#include <stdlib.h>
#include <string.h>

#include "train/llama_eval.h"
#include "train/model_io.h"
#include "train/trainer_arch.h"

#define TOKEN_STATE_TAG 0x746f6b656e77696eull  // "tokenwin"

static int check_job(const Config *c, Err *err) {
    if (strcmp(c->data.dataset, "tokens"))
        return err_set(err, "%s: data.dataset: '%s' with model.arch llama: a llama trains on token files "
                            "(data.dataset tokens, data.path = training tokens, data.test_path = test tokens)",
                       c->source, c->data.dataset);
    if (!c->data.test_path[0])
        return err_set(err, "%s: data.test_path: empty: the evaluation (perplexity) needs a test token file", c->source);
    if (llama_check_config(&c->model, err)) return err_set(err, "%s: %s", c->source, err->msg);
    return 0;
}

static int open_tokens(Trainer *tr, Err *err) {
    const Config *c = &tr->cfg;
    TokenWindows probe;
    if (token_file_open(&tr->train_tokens, c->data.path, c->model.vocab_size, err)) return err_set(err, "data.path: %s", err->msg);
    if (token_file_open(&tr->test_tokens, c->data.test_path, c->model.vocab_size, err))
        return err_set(err, "data.test_path: %s", err->msg);
    if (token_windows_init(&probe, &tr->test_tokens, c->data.seq_len, false, 0, err)) return err_set(err, "data.test_path: %s", err->msg);
    if (token_windows_init(&tr->windows, &tr->train_tokens, c->data.seq_len, true, c->train.seed, err))
        return err_set(err, "data.path: %s", err->msg);
    int64_t per_step = (int64_t)c->train.batch_size * c->data.seq_len;
    tr->steps_per_epoch = tr->train_tokens.n / per_step > 0 ? tr->train_tokens.n / per_step : 1;
    tr->batch_items = per_step;
    return 0;
}

// Bytes of LoRA factors (fp32 bound) if every linear had them.
static size_t lora_bytes(const Config *c) {
    if (!c->lora.enabled) return 0;
    const ModelConfig *m = &c->model;
    size_t C = (size_t)m->hidden_size, F = (size_t)m->intermediate_size, V = (size_t)m->vocab_size;
    size_t in_out = (size_t)m->n_layers * (8 * C + 3 * (C + F)) + V + C;  // Σ (in + out) over the linears
    return 4 * (size_t)c->lora.rank * in_out + (size_t)(7 * m->n_layers + 1) * 2 * 4096;  // + alignment
}

// Sized for what is there (a 7B model must fit one GPU): the base weights (bf16 on the GPU), masks
// (a byte a weight) and LoRA factors; gradients for the trainable parameters only.
static void allocate_arenas(Trainer *tr) {
    const Config *c = &tr->cfg;
    const ModelConfig *m = &c->model;
    int bmax = trainer_input_batch(c), fmax = trainer_activation_batch(c);
    bool recompute = !strcmp(c->train.recompute, "layers");
    size_t tokens = (size_t)bmax * (size_t)c->data.seq_len, slack = (size_t)16 << 20;
    size_t base = llama_param_bytes(m, tr->dev == DEV_CPU ? DT_F32 : DT_BF16);
    size_t masks = c->sparsity.enabled ? llama_param_bytes(m, DT_U8) : 0;
    size_t head = c->lora.train_head ? (size_t)m->vocab_size * (size_t)m->hidden_size * 4 : 0;
    size_t trainable = c->lora.enabled ? lora_bytes(c) + head : llama_param_bytes(m, DT_F32);
    trainer_arenas(tr, base + masks + lora_bytes(c) + slack, trainable + slack,
                   llama_activation_bytes(m, fmax, c->data.seq_len, recompute), tokens * 2 * sizeof(int32_t) + 4096);
    if (recompute) {
        arena_init(&tr->segments, "segments", tr->dev, llama_segment_bytes(m, fmax, c->data.seq_len));
        tr->segments.no_zero = tr->acts.no_zero;
    }
    tr->host_ids = xmalloc(tokens * sizeof *tr->host_ids);
    tr->host_labels = xmalloc(tokens * sizeof *tr->host_labels);
}

static int llama_setup(Trainer *tr, Err *err) {
    const Config *c = &tr->cfg;
    if (check_job(c, err) || open_tokens(tr, err)) return -1;
    allocate_arenas(tr);
    llama_init(&tr->llama, &c->model, &tr->params, c->train.seed);
    tr->net = (TrainerModel){&trainer_llama, &tr->llama.params, tr->llama.linears, tr->llama.n_linears};
    if (c->model.init[0] && model_load_safetensors(&tr->llama.params, c->model.init, false, err)) return -1;
    return 0;
}

// Every rank draws the whole batch's windows (the same Rng sequence as one process) and trains on
// its share: windows [rank·B, (rank+1)·B) of B = local_batch.
static void llama_next_batch(Trainer *tr) {
    int B = tr->local_batch;
    int64_t T = tr->cfg.data.seq_len;
    arena_reset(&tr->inputs);
    token_windows_next(&tr->windows, tr->cfg.train.batch_size, tr->host_ids);
    const int32_t *ids = tr->host_ids + (size_t)tr->rank * (size_t)B * (size_t)T;
    llama_shift_labels(ids, B, T, tr->host_labels);
    tr->x = tensor_new2(&tr->inputs, DT_I32, B, T, "ids");
    tr->y = tensor_new2(&tr->inputs, DT_I32, B, T, "labels");
    tensor_write_host(tr->x, ids);
    tensor_write_host(tr->y, tr->host_labels);
}

static Tensor *llama_loss(Trainer *tr, float smoothing) {
    Tensor *logits = llama_forward(&tr->llama, &tr->tape, tr->x);
    return op_cross_entropy(&tr->tape, logits, tr->y, smoothing, "loss");
}

static LlamaPass trainer_pass(Trainer *tr, int batch) {
    return (LlamaPass){.m = &tr->llama, .tape = &tr->tape, .inputs = &tr->inputs, .batch = batch, .seq_len = tr->cfg.data.seq_len};
}

static float llama_evaluate(Trainer *tr, float *loss) {
    LlamaPass p = trainer_pass(tr, tr->cfg.eval.batch_size);
    Perplexity ppl;
    Err err;
    if (llama_pass_perplexity(&p, &tr->test_tokens, tr->cfg.data.test_limit, NULL, &ppl, &err)) fatal("%s", err.msg);
    if (loss) *loss = (float)ppl.loss;
    return (float)ppl.ppl;
}

static void llama_calibrate_windows(Trainer *tr) {
    const Config *c = &tr->cfg;
    LlamaPass p = trainer_pass(tr, trainer_forward_batch(c));  // the same windows, in micro-batches
    Err err;
    if (llama_pass_calibrate(&p, &tr->sched, &tr->train_tokens, c->sparsity.calib_batches, c->train.seed ^ 0xca11b, &err))
        fatal("%s", err.msg);
}

// What the windows depend on besides the Rng: the seed, the file's size and the window length.
static uint64_t fingerprint(const Trainer *tr) {
    uint64_t h = tr->cfg.train.seed ^ 0x70c3;
    h = splitmix64(&h) ^ (uint64_t)tr->train_tokens.n;
    h = splitmix64(&h) ^ (uint64_t)tr->windows.len;
    return splitmix64(&h);
}

static void llama_data_state(const Trainer *tr, uint64_t out[LOADER_STATE_WORDS]) {
    memset(out, 0, LOADER_STATE_WORDS * sizeof *out);
    out[0] = TOKEN_STATE_TAG;
    out[1] = fingerprint(tr);
    memcpy(out + 2, tr->windows.rng.s, sizeof tr->windows.rng.s);
}

static int llama_set_data_state(Trainer *tr, const uint64_t in[LOADER_STATE_WORDS], Err *err) {
    if (in[0] != TOKEN_STATE_TAG) return err_set(err, "token windows state: bad tag (not a token data state)");
    if (in[1] != fingerprint(tr))
        return err_set(err, "token windows state: saved with another train.seed, data.path size or data.seq_len");
    memcpy(tr->windows.rng.s, in + 2, sizeof tr->windows.rng.s);
    return 0;
}

static void llama_release(Trainer *tr) {
    free(tr->host_ids), free(tr->host_labels);
    llama_free(&tr->llama);
    token_file_close(&tr->train_tokens);
    token_file_close(&tr->test_tokens);
}

const TrainerArch trainer_llama = {
    .name = "llama", .unit = "tok", .metric = "perplexity",
    .setup = llama_setup, .next_batch = llama_next_batch, .loss = llama_loss, .evaluate = llama_evaluate,
    .calibrate = llama_calibrate_windows, .data_state = llama_data_state, .set_data_state = llama_set_data_state,
    .free = llama_release,
};
