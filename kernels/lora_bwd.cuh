// Fused LoRA backward pass over dy for rank 16 (lora_bwd.cu).
#pragma once
#include "kernels/cuda_common.cuh"

// True when lora_dy_fused handles this shape (rank 16, N a multiple of 8).
bool lora_dy_fused_ok(int64_t N, int64_t r);
// dh (M×16 bf16, overwritten) = s·dy·B and gB (N×16, the gradient of B: accumulates by its flag)
// += s·dyᵀ·h, reading dy (M×N) once. B (N×16) and h (M×16) bf16.
void lora_dy_fused(const bf16 *dy, const bf16 *B, const bf16 *h, bf16 *dh, Tensor *gB, int64_t M, int64_t N, float s);
