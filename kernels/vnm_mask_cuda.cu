// V:N:M mask search on the GPU (see vnm_mask_cuda.h). Mirrors train/vnm_mask.c exactly:
// top2_of_4 with the same comparisons, kept sums in the same 8-lane order, ties to the lowest
// subset index and, within a row, to the lowest position.
#include <cuda_runtime.h>

#ifndef _Noreturn
#define _Noreturn [[noreturn]]
#endif
extern "C" {
#include "kernels/vnm_mask_cuda.h"
#include "train/vnm_mask.h"
}

#define MASK_THREADS 128
#define MAX_SUBSETS 1820  // C(16, 4)
#define MAX_TILE 8192     // V*M floats of shared memory (32 KiB)

__constant__ uchar4 c_subsets[MAX_SUBSETS];

static void check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) fatal("vnm_mask_cuda: %s: %s", what, cudaGetErrorString(e));
}

__device__ __forceinline__ float maxf(float a, float b) { return a > b ? a : b; }
__device__ __forceinline__ float minf(float a, float b) { return a < b ? a : b; }

__device__ __forceinline__ float top2_of_4(float a, float b, float c, float d) {
    float hi1 = maxf(a, b), lo1 = minf(a, b), hi2 = maxf(c, d), lo2 = minf(c, d);
    return __fadd_rn(maxf(hi1, hi2), maxf(minf(hi1, hi2), maxf(lo1, lo2)));
}

// Σ_r top2 in 8 lanes, combined as the CPU's kept_sum does (explicit _rn adds: no contraction).
__device__ float kept_sum(const float *a, const float *b, const float *c, const float *d, int V) {
    float lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int r = 0;
    for (; r + 8 <= V; r += 8)
#pragma unroll
        for (int l = 0; l < 8; l++) lane[l] = __fadd_rn(lane[l], top2_of_4(a[r + l], b[r + l], c[r + l], d[r + l]));
    for (; r < V; r++) lane[0] = __fadd_rn(lane[0], top2_of_4(a[r], b[r], c[r], d[r]));
    return __fadd_rn(__fadd_rn(__fadd_rn(lane[0], lane[1]), __fadd_rn(lane[2], lane[3])),
                     __fadd_rn(__fadd_rn(lane[4], lane[5]), __fadd_rn(lane[6], lane[7])));
}

// (value, subset) with the larger value, ties to the lower subset index.
__device__ __forceinline__ bool better(float v, int k, float bv, int bk) { return v > bv || (v == bv && k < bk); }

__global__ void vnm_mask_kernel(const float *S, int64_t in, int V, int M, int n_subsets, int64_t C,
                                uint8_t *mask, int *bad) {
    extern __shared__ float tile[];  // (M, V) column-major
    __shared__ float red_v[MASK_THREADS / 32];
    __shared__ int red_k[MASK_THREADS / 32];
    const int64_t rb = blockIdx.x / C, cb = blockIdx.x % C;
    const float *blk = S + rb * V * in + cb * M;
    for (int i = threadIdx.x; i < V * M; i += blockDim.x) {
        int r = i / M, c = i % M;
        float v = blk[r * in + c];
        if (!isfinite(v)) *bad = 1;
        tile[c * V + r] = v;
    }
    __syncthreads();
    float best = -INFINITY;
    int best_k = n_subsets;
    for (int k = threadIdx.x; k < n_subsets; k += blockDim.x) {
        uchar4 q = c_subsets[k];
        float v = kept_sum(tile + q.x * V, tile + q.y * V, tile + q.z * V, tile + q.w * V, V);
        if (better(v, k, best, best_k)) best = v, best_k = k;
    }
    for (int off = 16; off > 0; off >>= 1) {  // warp argmax, then across warps
        float v = __shfl_down_sync(0xffffffffu, best, off);
        int k = __shfl_down_sync(0xffffffffu, best_k, off);
        if (better(v, k, best, best_k)) best = v, best_k = k;
    }
    if ((threadIdx.x & 31) == 0) red_v[threadIdx.x >> 5] = best, red_k[threadIdx.x >> 5] = best_k;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < MASK_THREADS / 32; w++)
            if (better(red_v[w], red_k[w], best, best_k)) best = red_v[w], best_k = red_k[w];
        red_k[0] = best_k;
    }
    __syncthreads();
    uchar4 q = c_subsets[red_k[0]];
    const int cols[4] = {q.x, q.y, q.z, q.w};
    for (int r = threadIdx.x; r < V; r += blockDim.x) {
        float x[4];
        for (int i = 0; i < 4; i++) x[i] = tile[cols[i] * V + r];
        int k1 = 0, k2 = -1;  // the two largest, ties to the lowest position
        for (int i = 1; i < 4; i++)
            if (x[i] > x[k1]) k1 = i;
        for (int i = 0; i < 4; i++)
            if (i != k1 && (k2 < 0 || x[i] > x[k2])) k2 = i;
        uint8_t *row = mask + (rb * V + r) * in + cb * M;
        for (int c = 0; c < M; c++) row[c] = 0;
        row[cols[k1]] = 1, row[cols[k2]] = 1;
    }
}

// Uploads the lexicographic list of 4-subsets of 0..M-1 (once per M).
static int upload_subsets(int M) {
    static int uploaded_M = -1;
    static uchar4 host[MAX_SUBSETS];
    int n = 0;
    for (int a = 0; a < M; a++)
        for (int b = a + 1; b < M; b++)
            for (int c = b + 1; c < M; c++)
                for (int d = c + 1; d < M; d++) host[n++] = make_uchar4(a, b, c, d);
    if (uploaded_M != M) {
        check(cudaMemcpyToSymbol(c_subsets, host, n * sizeof(uchar4)), "subset table");
        uploaded_M = M;
    }
    return n;
}

extern "C" int vnm_mask_cuda(const float *d_scores, int64_t out, int64_t in, VnmPattern p,
                             const char *layer, uint8_t *d_mask, Err *err) {
    const char *name = layer ? layer : "?";
    if (p.N != 2 || p.M < 4 || p.M > VNM_MAX_M || p.V < 1 || (int64_t)p.V * p.M > MAX_TILE)
        return err_set(err, "layer '%s': pattern %d:%d:%d not supported on the GPU (N = 2, M in 4..%d, "
                       "V*M <= %d)", name, p.V, p.N, p.M, VNM_MAX_M, MAX_TILE);
    if (vnm_pattern_fits(p, out, in, name, err)) return -1;
    int n_subsets = upload_subsets(p.M);
    static int *d_bad = NULL;
    if (!d_bad) check(cudaMalloc(&d_bad, sizeof(int)), "cudaMalloc");
    check(cudaDeviceSynchronize(), "waiting for the scores");
    check(cudaMemset(d_bad, 0, sizeof(int)), "cudaMemset");
    int64_t R = out / p.V, C = in / p.M;
    if (R * C > 0x7fffffff) return err_set(err, "layer '%s': too many blocks for one launch", name);
    size_t shared = (size_t)p.V * p.M * sizeof(float);
    vnm_mask_kernel<<<(unsigned)(R * C), MASK_THREADS, shared>>>(d_scores, in, p.V, p.M, n_subsets, C, d_mask, d_bad);
    check(cudaGetLastError(), "kernel launch");
    int bad = 0;
    check(cudaMemcpy(&bad, d_bad, sizeof(int), cudaMemcpyDeviceToHost), "reading the non-finite flag");
    if (bad) return err_set(err, "layer '%s': non-finite scores (GPU mask search)", name);
    return 0;
}
