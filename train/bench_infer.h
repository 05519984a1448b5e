// `vnmtune bench infer`: DeiT forward img/s or Llama prefill/decode tok/s on the GPU, dense (cuBLASLt)
// vs the V:N:M sparse path (train/vnm_linear.h) on the same pruned weights, in one run; checks that
// the logits agree.
#pragma once

int bench_infer_main(int argc, char **argv);

// The Llama part (train/bench_infer_llama.c): prefill and decode tokens/s, dense vs sparse.
#define INFER_MAX_BATCHES 8
typedef struct LlamaInferOpts {
    const char *model, *pattern;   // llama_tiny | llama2_7b; V:N:M pattern of the random projections
    const char *export_path;       // or NULL: weights and sizes from this V:N:M export (vnmtune prune)
    const char *device;            // "cuda" (NULL) or "cpu" (the CPU reference ops: a check, not a benchmark)
    int layers;                    // > 0: use only this many decoder layers
    int seq, iters;                // prefill: tokens per sequence, timed repetitions
    int batches[INFER_MAX_BATCHES], n_batches;  // prefill batch sizes
    int decode_batch, context, steps;           // decode: sequences, cached positions, timed steps
    int profile;                   // > 0: per-op GPU time of this many extra decode steps (dense and sparse)
} LlamaInferOpts;
int bench_infer_llama(const LlamaInferOpts *o);
