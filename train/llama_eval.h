// Llama on token data (data/tokens.h): a model set up for inference over windows of data.seq_len
// tokens, its perplexity, and calibration passes for wanda / ria / sparsegpt pruning.
//   perplexity = exp(mean next-token cross-entropy): each window of seq_len tokens is one sequence
//   from position 0, its tokens 1..seq_len-1 are predicted (llama_shift_labels, op_cross_entropy),
//   the mean is over all predicted tokens of the windows evaluated (sequential, non-overlapping:
//   the protocol of the SparseGPT / Wanda papers' WikiText-2 numbers).
// On CUDA (bf16) op_cross_entropy's loss of each batch is bf16: the mean loss carries that rounding
// (relative 2^-9 per batch, of either sign).
#pragma once
#include <stdio.h>

#include "data/tokens.h"
#include "train/config.h"
#include "train/llama.h"
#include "train/schedule.h"

typedef struct LlamaRun {
    Device dev;
    int batch;                  // windows per forward (0: no activation arenas, weights only)
    int64_t seq_len;            // tokens per window
    Arena params, acts, layers[2], inputs;
    Llama m;
    Tape tape;                  // not recording
} LlamaRun;

// What forward passes over windows need, borrowed from a LlamaRun or a trainer: the model, a tape
// (not recording), an arena for the ids and labels, windows per forward and tokens per window.
typedef struct LlamaPass {
    Llama *m;
    Tape *tape;
    Arena *inputs;
    int batch;
    int64_t seq_len;
} LlamaPass;

typedef struct Perplexity {
    int64_t windows, tokens;    // windows evaluated; tokens predicted (windows × (seq_len − 1))
    double loss, ppl;           // mean cross-entropy (nats) and exp(loss)
    double seconds;             // wall time of the forward passes
} Perplexity;

// A Llama of sizes mc on dev (fp32 on the CPU, bf16 on CUDA) with arenas for `batch` windows.
void llama_run_init(LlamaRun *r, const ModelConfig *mc, Device dev, int batch, int64_t seq_len);
void llama_run_free(LlamaRun *r);
// Weights from a V:N:M export (its projections as sparse linears) or HF safetensors (shards
// comma-separated). For an export, r must have the export's sizes (llama_export_config).
int llama_run_load(LlamaRun *r, const char *path, Err *err);
LlamaPass llama_run_pass(LlamaRun *r);
// Perplexity over the first `limit` windows of f (0 = all); with `progress`, a line there every few
// seconds.
int llama_perplexity(LlamaRun *r, const TokenFile *f, int64_t limit, FILE *progress, Perplexity *out, Err *err);
int llama_pass_perplexity(const LlamaPass *p, const TokenFile *f, int64_t limit, FILE *progress, Perplexity *out, Err *err);
// The schedule's calibration over `n_windows` random windows of the token file at `path` (seeded
// by `seed`: the same seed gives the same windows), in batches of r->batch; the pass form takes the
// file already open (the trainer's data.path).
int llama_calibrate(LlamaRun *r, Schedule *s, const char *path, int n_windows, uint64_t seed, Err *err);
int llama_pass_calibrate(const LlamaPass *p, Schedule *s, const TokenFile *f, int n_windows, uint64_t seed, Err *err);
// `vnmtune eval` of a llama job: perplexity on data.test_path of `model` (an export or safetensors;
// NULL: model.init). Returns the exit code.
int llama_eval_main(Config *c, const char *model);
