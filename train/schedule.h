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

typedef struct Schedule {
    bool sparse;                 // sparsity enabled and mode != dense
    int64_t stage1_end, stage2_end, total;
    int stage;                   // 1, 2 or 3 for the current step
    Linear **layers;             // the sparse target layers
    int n_layers;
    float **act_norm;            // per layer, ‖x_j‖₂ over calibration tokens (wanda, ria) or NULL
    int64_t mask_updates;
    float last_flip_rate;        // fraction of mask entries that changed at the last update
    double mask_seconds;         // time spent computing masks
} Schedule;
