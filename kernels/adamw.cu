// Fused multi-tensor AdamW (see adamw.h). Parameters are cut into chunks of CHUNK elements; a
// chunk table on the device lets one launch cover every parameter.
#include <math.h>

#include "kernels/adamw.h"
#include "kernels/cuda_common.cuh"

#define CHUNK 65536
#define THREADS 512

typedef struct ParamDev {  // per parameter, on the device
    float *master, *m, *v;
    void *model, *grad;
    int64_t numel;
    int model_f32, grad_f32, decay;
} ParamDev;

typedef struct ChunkDev {
    int param;
    int64_t offset, len;
} ChunkDev;

struct AdamwCudaGroup {
    int n, nchunks;
    Tensor **values;
    ParamDev *host_params;  // host mirror (device pointers inside)
    ParamDev *params;       // device
    ChunkDev *chunks;       // device
    float *state;           // one allocation: masters, m, v
    float *partial;         // nchunks
    float *scalars;         // [0] = norm², [1] = clip coefficient
    float *pinned_norm;     // host, pinned
};

__device__ __forceinline__ float load_any(const void *p, int is_f32, int64_t i) {
    return is_f32 ? ((const float *)p)[i] : to_f(((const bf16 *)p)[i]);
}

__global__ void sumsq_kernel(const ParamDev *params, const ChunkDev *chunks, float *partial) {
    ChunkDev c = chunks[blockIdx.x];
    ParamDev p = params[c.param];
    float s = 0.0f;
    for (int64_t i = c.offset + threadIdx.x; i < c.offset + c.len; i += blockDim.x) {
        float g = load_any(p.grad, p.grad_f32, i);
        s += g * g;
    }
    s = block_sum(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

__global__ void clip_coef_kernel(const float *partial, int nchunks, float clip, float *scalars) {
    float s = 0.0f;
    for (int k = threadIdx.x; k < nchunks; k += blockDim.x) s += partial[k];
    s = block_sum(s);
    if (threadIdx.x == 0) {
        float norm = sqrtf(s);
        scalars[0] = norm;
        scalars[1] = clip > 0.0f ? fminf(1.0f, clip / (norm + 1e-6f)) : 1.0f;
    }
}

__global__ void adamw_kernel(const ParamDev *params, const ChunkDev *chunks, const float *scalars, float lr, float beta1,
                             float beta2, float eps, float wd, float bc1, float bc2_sqrt) {
    ChunkDev c = chunks[blockIdx.x];
    ParamDev p = params[c.param];
    float coef = scalars[1];
    float decay = p.decay ? 1.0f - lr * wd : 1.0f;
    float step_size = lr / bc1;
    for (int64_t i = c.offset + threadIdx.x; i < c.offset + c.len; i += blockDim.x) {
        float g = load_any(p.grad, p.grad_f32, i) * coef;
        float m = beta1 * p.m[i] + (1.0f - beta1) * g;
        float v = beta2 * p.v[i] + (1.0f - beta2) * g * g;
        float w = p.master[i] * decay;
        w -= step_size * m / (sqrtf(v) / bc2_sqrt + eps);
        p.m[i] = m;
        p.v[i] = v;
        p.master[i] = w;
        if (p.model_f32) ((float *)p.model)[i] = w;
        else ((bf16 *)p.model)[i] = __float2bfloat16(w);
        if (p.grad_f32) ((float *)p.grad)[i] = 0.0f;
        else ((bf16 *)p.grad)[i] = __float2bfloat16(0.0f);
    }
}

// master[i] = value (either dtype)
__global__ void to_master_kernel(const void *value, int is_f32, float *master, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        master[i] = load_any(value, is_f32, i);
}
__global__ void from_master_kernel(const float *master, void *value, int is_f32, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        if (is_f32) ((float *)value)[i] = master[i];
        else ((bf16 *)value)[i] = __float2bfloat16(master[i]);
    }
}

static unsigned blocks_for(int64_t n) { return cdiv(n, 256) > 4096 ? 4096 : cdiv(n, 256); }

extern "C" AdamwCudaGroup *adamw_cuda_create(int n, Tensor *const *values, const bool *decay) {
    AdamwCudaGroup *g = (AdamwCudaGroup *)xcalloc(1, sizeof *g);
    g->n = n;
    g->values = (Tensor **)xcalloc((size_t)(n ? n : 1), sizeof(Tensor *));
    g->host_params = (ParamDev *)xcalloc((size_t)(n ? n : 1), sizeof(ParamDev));
    int64_t total = 0;
    int nchunks = 0;
    for (int i = 0; i < n; i++) {
        Tensor *t = values[i];
        if (t->device != DEV_CUDA || (t->dtype != DT_BF16 && t->dtype != DT_F32))
            fatal("adamw_cuda: parameter '%s' must be bf16 or f32 on the GPU", t->name);
        if (!t->grad || t->grad->device != DEV_CUDA || (t->grad->dtype != DT_BF16 && t->grad->dtype != DT_F32))
            fatal("adamw_cuda: parameter '%s' has no GPU gradient (allocate it before creating the optimizer)", t->name);
        g->values[i] = t;
        total += t->numel;
        nchunks += (int)((t->numel + CHUNK - 1) / CHUNK);
    }
    g->nchunks = nchunks;
    CUDA_CHECK(cudaMalloc(&g->state, (size_t)(3 * total > 0 ? 3 * total : 1) * sizeof(float)));
    CUDA_CHECK(cudaMemsetAsync(g->state, 0, (size_t)(3 * total) * sizeof(float), cuda_stream()));
    ChunkDev *hchunks = (ChunkDev *)xcalloc((size_t)(nchunks ? nchunks : 1), sizeof(ChunkDev));
    int64_t off = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        Tensor *t = values[i];
        ParamDev *p = &g->host_params[i];
        p->master = g->state + off;
        p->m = g->state + total + off;
        p->v = g->state + 2 * total + off;
        p->model = t->data;
        p->grad = t->grad->data;
        p->numel = t->numel;
        p->model_f32 = t->dtype == DT_F32;
        p->grad_f32 = t->grad->dtype == DT_F32;
        p->decay = decay ? decay[i] : 1;
        off += t->numel;
        for (int64_t o = 0; o < t->numel; o += CHUNK)
            hchunks[k++] = (ChunkDev){i, o, t->numel - o < CHUNK ? t->numel - o : CHUNK};
        to_master_kernel<<<blocks_for(t->numel), 256, 0, cuda_stream()>>>(p->model, p->model_f32, p->master, t->numel);
        CUDA_LAUNCH_CHECK();
    }
    CUDA_CHECK(cudaMalloc(&g->params, (size_t)(n ? n : 1) * sizeof(ParamDev)));
    CUDA_CHECK(cudaMalloc(&g->chunks, (size_t)(nchunks ? nchunks : 1) * sizeof(ChunkDev)));
    CUDA_CHECK(cudaMalloc(&g->partial, (size_t)(nchunks ? nchunks : 1) * sizeof(float)));
    CUDA_CHECK(cudaMalloc(&g->scalars, 2 * sizeof(float)));
    CUDA_CHECK(cudaMallocHost(&g->pinned_norm, sizeof(float)));
    CUDA_CHECK(cudaMemcpyAsync(g->params, g->host_params, (size_t)n * sizeof(ParamDev), cudaMemcpyHostToDevice, cuda_stream()));
    CUDA_CHECK(cudaMemcpyAsync(g->chunks, hchunks, (size_t)nchunks * sizeof(ChunkDev), cudaMemcpyHostToDevice, cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    free(hchunks);
    return g;
}

extern "C" void adamw_cuda_free(AdamwCudaGroup *g) {
    if (!g) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    cudaFree(g->state);
    cudaFree(g->params);
    cudaFree(g->chunks);
    cudaFree(g->partial);
    cudaFree(g->scalars);
    cudaFreeHost(g->pinned_norm);
    free(g->values);
    free(g->host_params);
    free(g);
}

extern "C" int adamw_cuda_count(const AdamwCudaGroup *g) { return g->n; }

extern "C" void adamw_cuda_step(AdamwCudaGroup *g, float lr, float beta1, float beta2, float eps, float wd, float clip,
                                int64_t step, float *grad_norm_out) {
    if (step < 1) fatal("adamw_cuda_step: step %lld (1-based)", (long long)step);
    if (g->nchunks == 0) {
        if (grad_norm_out) *grad_norm_out = 0.0f;
        return;
    }
    cudaStream_t s = cuda_stream();
    sumsq_kernel<<<g->nchunks, THREADS, 0, s>>>(g->params, g->chunks, g->partial);
    CUDA_LAUNCH_CHECK();
    clip_coef_kernel<<<1, 1024, 0, s>>>(g->partial, g->nchunks, clip, g->scalars);
    CUDA_LAUNCH_CHECK();
    float bc1 = (float)(1.0 - pow((double)beta1, (double)step));
    float bc2 = (float)(1.0 - pow((double)beta2, (double)step));
    adamw_kernel<<<g->nchunks, THREADS, 0, s>>>(g->params, g->chunks, g->scalars, lr, beta1, beta2, eps, wd, bc1,
                                                 sqrtf(bc2));
    CUDA_LAUNCH_CHECK();
    if (grad_norm_out) {
        CUDA_CHECK(cudaMemcpyAsync(g->pinned_norm, g->scalars, sizeof(float), cudaMemcpyDeviceToHost, s));
        CUDA_CHECK(cudaStreamSynchronize(s));
        *grad_norm_out = *g->pinned_norm;
    }
}

static const ParamDev *param_at(const AdamwCudaGroup *g, int i) {
    if (i < 0 || i >= g->n) fatal("adamw_cuda: parameter index %d of %d", i, g->n);
    return &g->host_params[i];
}

extern "C" void adamw_cuda_set_master(AdamwCudaGroup *g, int i, const float *host) {
    adamw_cuda_set_state(g, i, host, NULL, NULL);
}

extern "C" void adamw_cuda_get_state(const AdamwCudaGroup *g, int i, float *master, float *m, float *v) {
    const ParamDev *p = param_at(g, i);
    size_t bytes = (size_t)p->numel * sizeof(float);
    cudaStream_t s = cuda_stream();
    if (master) CUDA_CHECK(cudaMemcpyAsync(master, p->master, bytes, cudaMemcpyDeviceToHost, s));
    if (m) CUDA_CHECK(cudaMemcpyAsync(m, p->m, bytes, cudaMemcpyDeviceToHost, s));
    if (v) CUDA_CHECK(cudaMemcpyAsync(v, p->v, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
}

extern "C" void adamw_cuda_set_state(AdamwCudaGroup *g, int i, const float *master, const float *m, const float *v) {
    const ParamDev *p = param_at(g, i);
    size_t bytes = (size_t)p->numel * sizeof(float);
    cudaStream_t s = cuda_stream();
    if (master) {
        CUDA_CHECK(cudaMemcpyAsync(p->master, master, bytes, cudaMemcpyHostToDevice, s));
        from_master_kernel<<<blocks_for(p->numel), 256, 0, s>>>(p->master, p->model, p->model_f32, p->numel);
        CUDA_LAUNCH_CHECK();
    }
    if (m) CUDA_CHECK(cudaMemcpyAsync(p->m, m, bytes, cudaMemcpyHostToDevice, s));
    if (v) CUDA_CHECK(cudaMemcpyAsync(p->v, v, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
}
