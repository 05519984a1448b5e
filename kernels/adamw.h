// Fused multi-tensor AdamW on the GPU with fp32 master weights.
//
// A group holds, for each trainable parameter, an fp32 master copy and fp32 moments (m, v) in
// device memory. The parameter's own tensor (bf16, or f32) is the model's copy: every step rewrites
// it from the master. Gradients are read from value->grad (f32 or bf16, on the GPU) and ZEROED by
// the step (the engine accumulates into gradients, so the next step starts from zero).
//
// One step = two passes over all parameters, each a single launch over fixed 64k-element chunks:
//   1. global gradient L2 norm (per-chunk partial sums, then one block sums them in order:
//      deterministic), clip coefficient c = min(1, clip / (norm + 1e-6)) (clip <= 0: c = 1);
//   2. per element (PyTorch AdamW semantics): g = c·grad; m = β1·m + (1−β1)·g;
//      v = β2·v + (1−β2)·g²; p = p·(1 − lr·wd·decay); p −= (lr / (1−β1^t)) · m / (√v / √(1−β2^t) + eps);
//      model copy = p (rounded to the value's dtype); grad = 0.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct AdamwCudaGroup AdamwCudaGroup;

// values[i]: trainable parameters on the GPU (bf16 or f32) whose ->grad already exists;
// decay[i]: weight decay applies. Masters start as the values (see adamw_cuda_set_master).
AdamwCudaGroup *adamw_cuda_create(int n, Tensor *const *values, const bool *decay);
void adamw_cuda_free(AdamwCudaGroup *g);
int adamw_cuda_count(const AdamwCudaGroup *g);

// step: the 1-based step number (bias correction). grad_norm_out: if not NULL, receives the global
// gradient norm before clipping (this waits for the GPU); NULL keeps the step asynchronous.
void adamw_cuda_step(AdamwCudaGroup *g, float lr, float beta1, float beta2, float eps, float wd, float clip,
                     int64_t step, float *grad_norm_out);

// Exact fp32 master of parameter i from host memory (numel floats); also refreshes the model copy.
void adamw_cuda_set_master(AdamwCudaGroup *g, int i, const float *host);
// Checkpoint state of parameter i to / from host arrays of numel floats (any pointer may be NULL).
void adamw_cuda_get_state(const AdamwCudaGroup *g, int i, float *master, float *m, float *v);
void adamw_cuda_set_state(AdamwCudaGroup *g, int i, const float *master, const float *m, const float *v);

#ifdef __cplusplus
}
#endif
