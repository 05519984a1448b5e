// Register-resident FlashAttention-2 style kernels for head dim 64 and T <= 256 (cuda_flash.cu).
#pragma once
#include "kernels/cuda_common.cuh"

bool flash_ok(int64_t T, int64_t D, int64_t C);
// out (B, T, C) and lse (B, H, T) f32 from qkv (B, T, 3C).
void flash_fwd(const bf16 *qkv, bf16 *out, float *lse, int64_t B, int64_t T, int64_t H, int64_t C, bool causal);
// dqkv (+)= the gradient, given out, dout and lse of the forward; add = false overwrites.
void flash_bwd(const bf16 *qkv, const bf16 *out, const bf16 *dout, const float *lse, Tensor *dqkv, int64_t B, int64_t T,
               int64_t H, int64_t C, bool causal, bool add);
