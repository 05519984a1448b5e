// The device interface the engine needs from a backend. kernels/device.cu implements it with
// CUDA; autograd/device_none.c is the stand-in for builds without CUDA (VNMTUNE_CUDA=OFF).
#pragma once
#include <stdbool.h>
#include <stddef.h>

// True when the build has CUDA and a GPU is visible at run time.
bool device_cuda_available(void);
// Name of GPU 0 ("" without one), for logs and benchmark tables.
const char *device_cuda_name(void);
void *device_malloc(size_t bytes);           // aborts on failure
void device_free(void *p);
void device_memset0(void *p, size_t bytes);
void device_copy_h2d(void *dst, const void *src, size_t bytes);
void device_copy_d2h(void *dst, const void *src, size_t bytes);
void device_copy_d2d(void *dst, const void *src, size_t bytes);
void device_synchronize(void);
