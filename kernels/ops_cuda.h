// The CUDA backend of the op registry (autograd/tape.h).
//
// ops_cuda_register() adds the CUDA forward/backward kernels of every op (OP_LINEAR ... OP_EMBEDDING)
// to g_ops under DEV_CUDA. Idempotent; call it once before running a model whose activation arena
// is on DEV_CUDA (model setup does, when train.device=cuda). It fails (fatal) when no GPU is
// visible. Only in CUDA builds (guard calls with #ifdef VNMTUNE_HAVE_CUDA).
//
// Conventions (kernels/cuda_common.cuh): activations and parameters bf16 on the GPU, fp32
// accumulation; gradients f32 or bf16 as tensor_ensure_grad made them (trainable parameters get f32
// when Tensor.grad_f32 is set), always accumulated (+=). Everything runs on one CUDA stream; results
// are repeatable on the same GPU (no atomics in reductions).
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

void ops_cuda_register(void);
// Profiling: with `on`, every CUDA op call (and every GEMM) is timed with CUDA events, and its host
// call with the clock; the report prints the GPU and host time per op and direction, divided by
// `steps`, and resets the counters. The profiled calls are bracketed by cudaProfilerStart/Stop
// (for `ncu --profile-from-start off`).
void ops_cuda_profile(bool on);
void ops_cuda_profile_report(FILE *f, int steps, double step_ms);
// Bytes the backend holds outside the arenas: scratch buffers and the cuBLASLt workspace.
size_t ops_cuda_scratch_bytes(void);
// Bytes in use on GPU 0 (cudaMemGetInfo: total - free; includes the CUDA context).
size_t ops_cuda_device_used_bytes(void);
size_t ops_cuda_device_free_bytes(void);
// A check that an earlier kernel could only report later (today: out-of-range embedding ids),
// waited for and cleared: true with its message in msg when it failed. device_synchronize() and
// copies to the host call it and stop the program (fatal) on a failure.
bool ops_cuda_deferred_error(char *msg, size_t size);

#ifdef __cplusplus
}
#endif
