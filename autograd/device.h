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
// *p += v for one int32 on the GPU, queued like a kernel (e.g. a KV cache's device position).
void device_i32_add(void *p, int v);

// Recording: the work queued on the GPU between device_graph_begin and device_graph_end is not run
// but recorded (a CUDA graph); device_graph_launch queues all of it again with one call, without the
// host work that produced it. Only code with no synchronization inside may run in between (a decode
// step: see bench_infer_llama.c); its buffers are the ones it used when recorded.
typedef struct DeviceGraph DeviceGraph;
void device_graph_begin(void);
DeviceGraph *device_graph_end(void);  // aborts when the recording failed (names the CUDA error)
void device_graph_launch(DeviceGraph *g);
void device_graph_free(DeviceGraph *g);
// True while device_graph_begin is recording.
bool device_graph_recording(void);
