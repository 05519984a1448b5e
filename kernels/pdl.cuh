// Programmatic dependent launch (sm_90): a kernel launched with the attribute below may start
// while the kernel before it in the stream is still running, once every CTA of that kernel has
// called pdl_trigger() (or exited). It must call pdl_wait() before it reads anything an earlier
// kernel wrote or writes anything an earlier kernel reads; before that it may only read constant
// data (weights). The decode SpMM uses this to have its weight loads in flight during the small
// kernels of a decode step (norms, RoPE, attention) that precede it. Both are no-ops before sm_90
// and when the kernel was launched without the attribute.
#pragma once
#include <cuda_runtime.h>

// util.h is C11; its _Noreturn is spelled [[noreturn]] in C++.
#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "autograd/util.h"  // env_int
}

__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

// Sets attr to allow an early start, unless VNM_PDL=0 in the environment (for comparisons).
// Returns the number of attributes written (0 or 1).
static inline int pdl_attr(cudaLaunchAttribute *attr) {
    static int on = -1;
    if (on < 0) on = env_int("VNM_PDL", 1, 0, 1);
    if (!on) return 0;
    attr->id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr->val.programmaticStreamSerializationAllowed = 1;
    return 1;
}
