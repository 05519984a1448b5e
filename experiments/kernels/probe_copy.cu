// probe_copy: what does a bulk copy cost the SM that issues it, beyond its bytes? Session 11 found
// the SS kernel faster with fewer copies per ring stage whatever their size, and slower by 23-72 %
// with more, and found the same binary 30-40 % slower on some H200s than on others
// (experiments/kernels/NOTES.md). This probe moves the SS kernel's ring traffic with no math, so
// that copy engines can be compared across copy counts, sizes, ring depths and machines.
//
// Build: nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -o probe_copy \
//            experiments/kernels/probe_copy.cu -lcuda
// Run:   ./probe_copy [--stages N]      (default 4096 ring stages per CTA, best of 3 runs)
//
// One CTA per SM. Thread 0 fills a ring of `depth` slots; a stage is `count` bulk copies
// (cp.async.bulk, 1D, sizes below) from a 32 MB buffer, plus optionally one 2D tensor copy (TMA)
// of a 64 × 128 bf16 box of a 2048 × 4096 matrix with 128-byte swizzle (the SS kernel's x tile).
// Warp 1 waits for each stage and releases it `hold` stages later: the SS kernel's consumers hold
// 2, the stage in the tensor cores and the one before. Both sources fit in L2 after the warm-up,
// as x and the weights do in the kernel. Output per case: ns and SM clocks per stage (every CTA
// runs the same number of stages), GB/s per SM and TB/s in all.
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/sm90_ptx.cuh"

using namespace vnm90;

static void ck(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return;
    fprintf(stderr, "probe_copy: %s: %s\n", what, cudaGetErrorString(e));
    exit(1);
}
#define CHECK(x) ck((x), #x)

constexpr int MAX_COPIES = 8, BOX_BYTES = 64 * 128 * 2;  // the tensor box: 64 k × 128 tokens, bf16
constexpr size_t SRC_BYTES = 32u << 20;
constexpr int X_ROWS = 2048, X_COLS = 4096;

struct Case {
    const char *name;
    int depth, hold, tensor, count;
    int bytes[MAX_COPIES];
};

// Bytes of one stage and of one ring slot (1 KB aligned: the tensor box needs it for the swizzle).
__host__ __device__ int stage_bytes(const Case &c) {
    int b = c.tensor ? BOX_BYTES : 0;
    for (int k = 0; k < c.count; k++) b += c.bytes[k];
    return b;
}
__host__ __device__ int slot_bytes(const Case &c) { return (stage_bytes(c) + 1023) / 1024 * 1024; }

__global__ void __launch_bounds__(64, 1)
    probe(const char *src, const __grid_constant__ CUtensorMap x, Case c, int stages, long long *cycles) {
    extern __shared__ uint8_t raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)raw + 1023) & ~(uintptr_t)1023);
    const uint32_t base = (uint32_t)__cvta_generic_to_shared(smem), slot = (uint32_t)slot_bytes(c);
    const uint32_t full = base + c.depth * slot, empty = full + 8 * c.depth;
    if (threadIdx.x == 0) {
        for (int b = 0; b < c.depth; b++) mbar_init(full + 8 * b, 1), mbar_init(empty + 8 * b, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    const int bytes = stage_bytes(c);
    if (threadIdx.x == 0) {  // producer
        for (int s = 0; s < stages; s++) {
            const int b = s % c.depth;
            if (s >= c.depth) mbar_wait(empty + 8 * b, (uint32_t)((s / c.depth - 1) & 1));
            mbar_arrive_expect_tx(full + 8 * b, (uint32_t)bytes);
            // CTAs start at different places of the source and walk through it
            const size_t at = ((size_t)(blockIdx.x * 131 + s) * (size_t)bytes) % (SRC_BYTES - (size_t)bytes) / 16 * 16;
            uint32_t dst = base + b * slot;
            if (c.tensor) {
                tma_load_2d(dst, &x, full + 8 * b, 64 * (s % (X_COLS / 64)), 128 * ((blockIdx.x + s / 64) % (X_ROWS / 128)));
                dst += BOX_BYTES;
            }
            for (int k = 0, o = 0; k < c.count; o += c.bytes[k], k++)
                bulk_load(dst + o, src + at + o, (uint32_t)c.bytes[k], full + 8 * b);
        }
    } else if (threadIdx.x >= 32) {  // consumer warp
        const long long t0 = clock64();
        for (int s = 0; s < stages; s++) {
            mbar_wait(full + 8 * (s % c.depth), (uint32_t)((s / c.depth) & 1));
            const int r = s - c.hold + 1;  // the stage this one lets go
            if (r >= 0 && threadIdx.x == 32) mbar_arrive(empty + 8 * (r % c.depth));
        }
        if (threadIdx.x == 32) cycles[blockIdx.x] = clock64() - t0;
    }
}

int main(int argc, char **argv) {
    int stages = 4096;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--stages") && i + 1 < argc) stages = atoi(argv[++i]);
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    const int sms = prop.multiProcessorCount;
    char *src;
    uint16_t *xm;
    long long *cyc;
    CHECK(cudaMalloc(&src, SRC_BYTES));
    CHECK(cudaMalloc(&xm, (size_t)X_ROWS * X_COLS * 2));
    CHECK(cudaMalloc(&cyc, sms * sizeof(long long)));
    CHECK(cudaMemset(src, 1, SRC_BYTES));
    CHECK(cudaMemset(xm, 2, (size_t)X_ROWS * X_COLS * 2));
    CUtensorMap x;
    const cuuint64_t dims[2] = {X_COLS, X_ROWS}, strides[1] = {X_COLS * 2};
    const cuuint32_t box[2] = {64, 128}, one[2] = {1, 1};
    if (cuTensorMapEncodeTiled(&x, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, xm, dims, strides, box, one,
                               CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                               CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
        fprintf(stderr, "probe_copy: cuTensorMapEncodeTiled failed\n");
        return 1;
    }
    const Case cases[] = {
        {"SS stage, 3 copies: A 16K + meta 2K + x box (to Session 10)", 4, 2, 1, 2, {16384, 2048}},
        {"SS stage, 2 copies: A+meta 18K + x box (Session 11)", 4, 2, 1, 1, {18432}},
        {"A in 2 copies + meta + x box (4 copies)", 4, 2, 1, 3, {8192, 8192, 2048}},
        {"A in 4 copies + meta + x box (6 copies)", 4, 2, 1, 5, {4096, 4096, 4096, 4096, 2048}},
        {"2 copies, ring of 6", 6, 2, 1, 1, {18432}},
        {"2 copies, hold 1", 4, 1, 1, 1, {18432}},
        {"x box only (16K tensor)", 4, 2, 1, 0, {0}},
        {"one 18K bulk copy", 4, 2, 0, 1, {18432}},
        {"one 34K bulk copy (a stage in one copy)", 4, 2, 0, 1, {34816}},
        {"2 x 17K bulk copies", 4, 2, 0, 2, {17408, 17408}},
        {"one 4K bulk copy", 4, 2, 0, 1, {4096}},
        {"one 8K bulk copy", 4, 2, 0, 1, {8192}},
        {"one 16K bulk copy", 4, 2, 0, 1, {16384}},
        {"one 32K bulk copy", 4, 2, 0, 1, {32768}},
        {"one 48K bulk copy", 4, 2, 0, 1, {49152}},
    };
    printf("# probe_copy: %s, %d SMs, %d stages per CTA, best of 3; ns and clk per stage per SM\n", prop.name, sms,
           stages);
    printf("%-62s %7s %7s %8s %9s %8s\n", "case", "KB", "ns", "clk", "GB/s/SM", "TB/s");
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    for (const Case &c : cases) {
        const int smem = c.depth * slot_bytes(c) + 16 * c.depth + 1024;
        CHECK(cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        probe<<<sms, 64, smem>>>(src, x, c, 64, cyc);  // warm-up: sources into L2
        CHECK(cudaDeviceSynchronize());
        float best = 1e30f;
        for (int r = 0; r < 3; r++) {
            CHECK(cudaEventRecord(e0));
            probe<<<sms, 64, smem>>>(src, x, c, stages, cyc);
            CHECK(cudaEventRecord(e1));
            CHECK(cudaEventSynchronize(e1));
            float ms;
            CHECK(cudaEventElapsedTime(&ms, e0, e1));
            if (ms < best) best = ms;
        }
        long long h[1024], sum = 0;
        CHECK(cudaMemcpy(h, cyc, sms * sizeof(long long), cudaMemcpyDeviceToHost));
        for (int i = 0; i < sms; i++) sum += h[i];
        const double ns = best * 1e6 / stages, kb = stage_bytes(c) / 1024.0;
        printf("%-62s %7.1f %7.1f %8.0f %9.1f %8.2f\n", c.name, kb, ns, (double)sum / sms / stages,
               stage_bytes(c) / ns, stage_bytes(c) / ns * sms / 1000.0);
        fflush(stdout);
    }
    return 0;
}
