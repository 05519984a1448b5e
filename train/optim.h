// AdamW (decoupled weight decay, as torch.optim.AdamW), linear warmup + cosine decay, and
// global-norm gradient clipping, over the trainable parameters of a ParamList.
// CPU: fp32 params, grads and moments. (The CUDA backend adds a fused multi-tensor step.)
#pragma once
#include "train/config.h"
#include "train/params.h"

typedef struct AdamW {
    int n;
    Param **params;  // the trainable params, in ParamList order
    float **m, **v;  // first / second moments, parallel to params
    int64_t step;    // number of updates done
} AdamW;

// dev DEV_CUDA: only the moments' host arrays (checkpoint staging) are made; the GPU step is
// kernels/adamw.h.
void adamw_init(AdamW *o, ParamList *pl, Device dev);
void adamw_free(AdamW *o);
// Zero the gradients of the trainable params (allocating them from `grads` on first use).
void adamw_zero_grad(AdamW *o, Arena *grads);
// Global L2 norm of all gradients; if clip > 0 and the norm exceeds it, scales them to `clip`.
// Returns the norm before clipping.
float adamw_clip_grad_norm(AdamW *o, float clip);
void adamw_step(AdamW *o, const OptimConfig *c, float lr);

// Learning rate at `step` (0-based) of `total`: linear warmup from 0 to lr over the warmup steps
// (c->warmup < 1: a fraction of total), then cosine decay to min_lr.
float lr_schedule(const OptimConfig *c, int64_t step, int64_t total);
