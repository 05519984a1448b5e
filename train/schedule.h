// The three-stage LoRA schedule for V:N:M sparsity (DESIGN.md §2) and its baselines.
//   stage 1 (dense LoRA)      steps [0, stage1_end)
//   stage 2 (mask search)     steps [stage1_end, stage2_end): every mask_update_every steps the
//                             V:N:M mask of W + s·BA is recomputed (flip rate logged); optional
//                             regulariser λ·½‖(W + s·BA) ⊙ (1 − mask)‖²
//   stage 3 (fixed-mask LoRA) steps [stage2_end, total)
// Modes: dense (stage 1 only), three_stage, fixed_mask_lora (prune W at step 0, then stage 3),
// one_shot (prune W, no training).
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "train/config.h"
#include "train/linear.h"
#include "train/vnm_mask.h"

typedef struct Schedule {
    ScheduleConfig cfg;
    bool sparse;                 // sparsity enabled and mode != dense
    MaskSpec spec;               // the requested pattern (V may be lowered per layer, see below)
    ScoreKind score;
    bool sparsegpt;              // sparsity.score sparsegpt: masks and weights from sparsegpt_prune
    double **gram;               // per layer XᵀX of the calibration inputs (sparsegpt), or NULL
    float ria_alpha;
    bool permute;
    VnmPattern *layer_pattern;   // per layer: the pattern actually used
    int64_t stage1_end, stage2_end, total;
    int stage;                   // 1, 2 or 3 for the current step
    Linear **layers;             // the sparse target layers
    int n_layers;
    uint8_t **host_mask;         // per layer, the current mask in host memory (l->mask is its copy on
                                 // the model's device)
    float **act_norm;            // per layer, ‖x_j‖₂ over calibration tokens (wanda, ria) or NULL
    int64_t mask_updates;
    float last_flip_rate;        // fraction of mask entries that changed at the last update
    double mask_seconds;         // time spent computing masks
    Tensor **perm_in, **perm_out;  // per layer, with sparsity.permute: the channel / row permutation
                                   // (DT_I32, perm[new position] = original index), NULL otherwise
    Arena host_arena;              // the permutations live here (host memory)
    bool perms_valid;              // searched (at the first mask computation) or loaded
    double permute_budget_s;       // time budget of one layer's permutation search
    double permute_gain;           // Σ over layers of kept-score gain (kept_perm / kept_identity − 1)
    bool masks_valid;            // layers carry a current mask (computed or loaded from a checkpoint)
} Schedule;

// Picks the sparse layers (sparsity.targets; never DeiT's head or Llama's lm_head) and the stage
// boundaries. A V:N:M pattern whose V does not divide a layer's rows is adapted per layer: V is
// halved (64 -> 32 -> 16) until it divides `out`; M must divide `in` (error naming the layer
// otherwise). Masks are allocated here.
int schedule_init(Schedule *s, const Config *c, Linear **linears, int n, int64_t total_steps, Arena *arena, Err *err);
void schedule_free(Schedule *s);
// Stage of `step`; computes / updates / freezes masks as the stage requires.
void schedule_before_step(Schedule *s, int64_t step);
// Adds the gradient of the regulariser λ·½‖(W + s·BA) ⊙ (1 − mask)‖² to dA, dB (stage 2, λ > 0).
void schedule_after_backward(Schedule *s);
// Recompute every layer's mask from the scores of W + s·BA now (returns the mean flip rate).
float schedule_update_masks(Schedule *s);
// Calibration for wanda / ria / sparsegpt, for any model: between begin and end the caller runs
// forward passes (tape not recording) while the sparse layers collect Σx² per input channel
// (l->act_sq) and, for sparsegpt, XᵀX (l->act_gram); end turns them into act_norm / gram and stops
// collecting. schedule_calibrate does all three with `forward(ctx, b)` running batch b.
void schedule_begin_calibration(Schedule *s);
void schedule_end_calibration(Schedule *s);
typedef void (*CalibrationForward)(void *ctx, int batch);
void schedule_calibrate(Schedule *s, int n_batches, CalibrationForward forward, void *ctx);
bool schedule_needs_calibration(const Schedule *s);
// After masks were loaded into the layers' mask tensors (checkpoint): refresh the host copies.
void schedule_masks_loaded(Schedule *s);
