// autograd/device.h on the CUDA runtime. Everything runs on one stream (cuda_stream()), so the
// engine's order of calls is the order of work on the GPU; copies to and from the host wait for it.
#include <cuda_runtime.h>

#include "kernels/cuda_common.cuh"

extern "C" {
#include "autograd/device.h"
}

static cudaStream_t g_stream;
static int g_available = -1;  // -1 unknown, 0 no, 1 yes
static char g_name[256];

void cuda_check(cudaError_t e, const char *what, const char *file, int line) {
    if (e != cudaSuccess) fatal("CUDA error %s (%s) at %s:%d: %s", cudaGetErrorName(e), what, file, line,
                                cudaGetErrorString(e));
}

cudaStream_t cuda_stream(void) {
    if (!g_stream) CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamNonBlocking));
    return g_stream;
}

int cuda_sm_count(void) {
    static int sms = 0;
    if (!sms) {
        int dev = 0;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
    }
    return sms;
}

extern "C" bool device_cuda_available(void) {
    if (g_available < 0) {
        int n = 0;
        g_available = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
        if (g_available) {
            cudaDeviceProp prop;
            if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) snprintf(g_name, sizeof g_name, "%s", prop.name);
        } else {
            cudaGetLastError();  // clear the sticky "no device" error
        }
    }
    return g_available == 1;
}

extern "C" const char *device_cuda_name(void) {
    device_cuda_available();
    return g_name;
}

extern "C" void *device_malloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t free_b = 0, total_b = 0;
        cudaGetLastError();
        cudaMemGetInfo(&free_b, &total_b);
        fatal("cudaMalloc of %zu bytes failed (%s); GPU has %zu of %zu bytes free", bytes, cudaGetErrorString(e),
              free_b, total_b);
    }
    return p;
}

extern "C" void device_free(void *p) {
    if (!p) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    CUDA_CHECK(cudaFree(p));
}

extern "C" void device_memset0(void *p, size_t bytes) { CUDA_CHECK(cudaMemsetAsync(p, 0, bytes, cuda_stream())); }

extern "C" void device_copy_h2d(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));  // the caller may reuse `src` at once
}

extern "C" void device_copy_d2h(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    cuda_check_deferred();
}

extern "C" void device_copy_d2d(void *dst, const void *src, size_t bytes) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, cuda_stream()));
}

__global__ void i32_add_kernel(int *p, int v) { *p += v; }

extern "C" void device_i32_add(void *p, int v) {
    i32_add_kernel<<<1, 1, 0, cuda_stream()>>>((int *)p, v);
    CUDA_LAUNCH_CHECK();
}

struct DeviceGraph {
    cudaGraph_t graph;
    cudaGraphExec_t exec;
};
static bool g_recording;

extern "C" void device_graph_begin(void) {
    device_synchronize();  // also reports any deferred check: nothing may wait on the GPU while recording
    CUDA_CHECK(cudaStreamBeginCapture(cuda_stream(), cudaStreamCaptureModeThreadLocal));
    g_recording = true;
}

extern "C" DeviceGraph *device_graph_end(void) {
    DeviceGraph *g = (DeviceGraph *)xcalloc(1, sizeof *g);
    g_recording = false;
    cudaError_t e = cudaStreamEndCapture(cuda_stream(), &g->graph);
    if (e == cudaSuccess) e = cudaGraphInstantiate(&g->exec, g->graph, 0);
    if (e != cudaSuccess)
        fatal("recording the GPU work as a CUDA graph failed: %s (a synchronization or an allocation while recording?)",
              cudaGetErrorString(e));
    return g;
}

extern "C" void device_graph_launch(DeviceGraph *g) { CUDA_CHECK(cudaGraphLaunch(g->exec, cuda_stream())); }

extern "C" void device_graph_free(DeviceGraph *g) {
    if (!g) return;
    cudaGraphExecDestroy(g->exec);
    cudaGraphDestroy(g->graph);
    free(g);
}

extern "C" bool device_graph_recording(void) { return g_recording; }

extern "C" void device_synchronize(void) {
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    cuda_check_deferred();
}
