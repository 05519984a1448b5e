// CHECK(call) for the probes: a failed CUDA runtime call ends the program with the probe's file,
// the call and the error.
#pragma once
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>

static inline void probe_check(cudaError_t e, const char *file, const char *what) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "%s: %s: %s\n", file, what, cudaGetErrorString(e));
    exit(1);
}
#define CHECK(x) probe_check((x), __FILE__, #x)
