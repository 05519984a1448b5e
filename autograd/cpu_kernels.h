// CPU reference kernels (fp32) of the ops in ops.h, and the small helpers they share.
// Registered by ops_cpu_register(); each reads its TapeNode as documented in ops.h.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#include "cpu_gemm.h"
#include "tape.h"

#define CPU_KERNEL_PAIR(op) \
    void cpu_##op##_forward(TapeNode *n); \
    void cpu_##op##_backward(TapeNode *n);
CPU_KERNEL_PAIR(linear)
CPU_KERNEL_PAIR(layernorm)
CPU_KERNEL_PAIR(rmsnorm)
CPU_KERNEL_PAIR(attention)
CPU_KERNEL_PAIR(gelu)
CPU_KERNEL_PAIR(add)
CPU_KERNEL_PAIR(swiglu)
CPU_KERNEL_PAIR(rope)
CPU_KERNEL_PAIR(patch_embed)
CPU_KERNEL_PAIR(cls_pos)
CPU_KERNEL_PAIR(select_token)
CPU_KERNEL_PAIR(mean_tokens)
CPU_KERNEL_PAIR(embedding)
CPU_KERNEL_PAIR(cross_entropy)
CPU_KERNEL_PAIR(concat)
#undef CPU_KERNEL_PAIR
void cpu_attention_cached_forward(TapeNode *n);  // inference only

// fp32 data of an op tensor; fatal() if it is not f32 (the CPU kernels are fp32 only).
float *cpu_f32(const TapeNode *n, const Tensor *t);
// First position of OP_ROPE / OP_ATTENTION_CACHED: the position tensor in[slot] when attached, else i[1].
int64_t cpu_position(const TapeNode *n, int slot);
// The gradient buffer to accumulate into, or NULL when `t` is absent or needs no gradient.
float *cpu_grad(const Tensor *t);
// Rows of a (..., last) tensor.
static inline int64_t cpu_rows(const Tensor *t) { return t->numel / t->shape[t->ndim - 1]; }
static inline int64_t cpu_last(const Tensor *t) { return t->shape[t->ndim - 1]; }
// True when the node will be kept for backward, i.e. its saved[] tensors are needed later.
bool cpu_recording(const TapeNode *n);

// Scratch memory from the activation arena, released by cpu_scratch_end() (a bump-pointer reset,
// so the scratch of one kernel call is reused by the next). Everything allocated from the arena
// after cpu_scratch_begin() is released, so allocate saved tensors before it.
typedef struct ScratchMark {
    size_t used;
    int headers_used;
} ScratchMark;
ScratchMark cpu_scratch_begin(const TapeNode *n);
float *cpu_scratch(const TapeNode *n, int64_t count);  // not zeroed
void cpu_scratch_end(const TapeNode *n, ScratchMark m);
// A saved f32 tensor (zeroed) in node->saved[slot].
Tensor *cpu_save(TapeNode *n, int slot, int ndim, const int64_t *shape, const char *what);

// y[i] += x[i]
void cpu_axpy1(float *restrict y, const float *restrict x, int64_t count);
// sums[c] += Σ_rows x[r, c]  (bias gradients)
void cpu_add_colsum(float *restrict sums, const float *restrict x, int64_t rows, int64_t cols);
