// The training loop: a job (Config) -> model, data, optimizer -> steps with progress, metrics,
// evaluation, checkpoints and exact resume. The V:N:M schedule (stages, masks) hooks in through
// train/schedule.h. The loop, schedule, optimizer, checkpoints and export are the same for every
// model; what differs (data, batches, forward + loss, evaluation) is a TrainerArch
// (train/trainer_arch.h): DeiT on images (train/trainer_deit.c: accuracy), Llama on token files
// (train/trainer_llama.c: perplexity).
#pragma once
#include <stdio.h>

#include "autograd/tape.h"
#include "data/imageset.h"
#include "data/loader.h"
#include "data/tokens.h"
#include "train/config.h"
#include "train/deit.h"
#include "train/llama.h"
#include "train/optim.h"
#include "train/schedule.h"
#include "train/select_vm.h"

// The model being trained, whichever its architecture: its parameters and linear layers (LoRA,
// schedule, optimizer, checkpoints and export work on these) and its TrainerArch.
typedef struct TrainerModel {
    const struct TrainerArch *arch;
    ParamList *params;
    Linear **linears;
    int n_linears;
} TrainerModel;

typedef struct Trainer {
    Config cfg;                    // the resolved job (train.device auto -> cpu | cuda)
    Device dev;
    TrainerModel net;              // &model or &llama as the shared code sees it
    Deit model;                    // model.arch deit
    Llama llama;                   // model.arch llama
    Arena params, grads, acts, inputs;
    Arena segments;                // train.recompute layers: one recomputed layer's activations (llama)
    Tape tape;
    AdamW opt;
    bool opt_ready;
    ImageSet train_set, test_set;  // deit
    Loader loader;
    TokenFile train_tokens, test_tokens;  // llama: data.path, data.test_path
    TokenWindows windows;          // llama: the training windows (seeded random offsets)
    int32_t *host_ids;             // llama: a batch of windows (B, seq_len) and its shifted labels
    int32_t *host_labels;
    Tensor *x, *y;                 // current batch (inputs arena, on dev): images or token ids, labels
                                   // (during a step's forward: the current micro-batch of it)
    float *host_x;                 // GPU: host staging of the batch images (B, C, H, W)
                                   // host_y: the batch labels (both devices)
    int32_t *host_y;
    float *host_logits;            // eval: logits copied back
    struct AdamwCudaGroup *opt_cuda;  // dev == DEV_CUDA: fused AdamW (fp32 masters on the GPU)
    int64_t step, total_steps;     // optimizer steps done / planned
    int64_t steps_per_epoch;
    int64_t batch_items;           // what one step consumes: images, or tokens (llama), for img/s or tok/s
    Schedule sched;
    SpeedTable speed;              // export.speed_table, for the sparse layers' honest dispatch
    FILE *metrics;                 // <out_dir>/metrics.jsonl
    double t_start;                // wall clock at the start of this process's training
    int64_t step_at_start;
    int quiet;                     // no progress lines (tests; ranks > 0)
    int rank, ranks;               // data parallel (train/dist.h): this process of `ranks`; rank 0 logs,
                                   // evaluates and writes the outputs
    int local_batch;               // this rank's share of every train.batch_size batch
    int micro_batch;               // what one forward of a step takes: local_batch / train.grad_accum
    Tensor **trainable;            // the optimizer's parameter values (their gradients are all-reduced)
} Trainer;

// Reads the data, builds the model (random init or model.init safetensors), attaches LoRA,
// and resumes from checkpoint.resume when set. Errors name the file / key.
int trainer_setup(Trainer *tr, const Config *cfg, Err *err);
// train.device: auto -> cuda when this build has CUDA and a GPU is visible, else cpu (rewritten in
// c->train.device); cuda registers the CUDA ops. Errors when cuda is asked for but not available.
int trainer_resolve_device(Config *c, Device *dev, Err *err);
// Runs until total_steps (or `until` if > 0), evaluating / checkpointing as configured.
int trainer_run(Trainer *tr, int64_t until, Err *err);
// Mean loss of one training step on the next batch (forward, backward, clip, AdamW).
float trainer_step(Trainer *tr);
// The evaluation metric and the mean loss over the test set (or its first data.test_limit samples /
// windows): DeiT: accuracy (0..1); Llama: perplexity on data.test_path.
float trainer_evaluate(Trainer *tr, float *loss_out);
// "test accuracy 87.20%" or "test perplexity 12.3456" into buf.
const char *trainer_metric_str(const Trainer *tr, float metric, char *buf, size_t n);
int trainer_save(Trainer *tr, const char *path, Err *err);
// The job's checkpoint, <train.out_dir>/checkpoint.h5, into checkpoint.resume unless that is set.
int job_resume_default(Config *c, Err *err);
int trainer_load(Trainer *tr, const char *path, Err *err);
void trainer_free(Trainer *tr);
