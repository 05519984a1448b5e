// What the training loop (train/trainer.c) needs from a model family: its data, batches, forward +
// loss and evaluation. Everything else (LoRA, schedule, optimizer, checkpoints, export) works on
// tr->net's parameters and linear layers and is shared.
#pragma once
#include "train/trainer.h"

typedef struct TrainerArch {
    const char *name;       // model.arch
    const char *unit;       // what batch_items counts: "img" | "tok" (progress, metrics)
    const char *metric;     // the evaluation metric: "accuracy" (printed in %) | "perplexity"
    // Data, arenas, the model (random init, then model.init) into tr->net; steps_per_epoch and
    // batch_items. Errors name the file / key.
    int (*setup)(Trainer *tr, Err *err);
    // The next training batch into tr->x, tr->y.
    void (*next_batch)(Trainer *tr);
    // Forward of the current batch on tr->tape -> the mean loss (a scalar tensor).
    Tensor *(*loss)(Trainer *tr, float label_smoothing);
    // The metric and the mean loss over the test data (tape not recording).
    float (*evaluate)(Trainer *tr, float *loss);
    // The schedule's calibration passes over training data (tape not recording).
    void (*calibrate)(Trainer *tr);
    // The training data position, saved in checkpoints (/state/loader0..) for exact resume.
    void (*data_state)(const Trainer *tr, uint64_t out[LOADER_STATE_WORDS]);
    int (*set_data_state)(Trainer *tr, const uint64_t in[LOADER_STATE_WORDS], Err *err);
    void (*free)(Trainer *tr);
} TrainerArch;

extern const TrainerArch trainer_deit, trainer_llama;

// The largest batch of one training-data forward: a micro-batch of the whole train.batch_size
// (calibration runs these, on every rank).
static inline int trainer_forward_batch(const Config *c) { return c->train.batch_size / c->train.grad_accum; }
// What the arenas hold: the inputs of a whole step or an eval batch; the activations of one forward
// (a micro-batch) or an eval batch.
static inline int trainer_input_batch(const Config *c) {
    return c->train.batch_size > c->eval.batch_size ? c->train.batch_size : c->eval.batch_size;
}
static inline int trainer_activation_batch(const Config *c) {
    return trainer_forward_batch(c) > c->eval.batch_size ? trainer_forward_batch(c) : c->eval.batch_size;
}

// The arenas every model needs, of these sizes in bytes: parameters (with LoRA factors and masks),
// gradients (of the trainable parameters), activations, inputs.
void trainer_arenas(Trainer *tr, size_t param_bytes, size_t grad_bytes, size_t act_bytes, size_t input_bytes);
