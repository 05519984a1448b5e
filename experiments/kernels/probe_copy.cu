// probe_copy: what does a bulk copy cost the SM that issues it, beyond its bytes? Session 11 found
// the SS kernel faster with fewer copies per ring stage whatever their size, and slower by 23-72 %
// with more, and found the same binary 30-40 % slower on some H200s than on others
// (experiments/kernels/NOTES.md). This probe moves the SS kernel's ring traffic with no math, so
// that copy engines can be compared across copy counts, sizes, ring depths and machines.
//
// Build: nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -o probe_copy \
//            experiments/kernels/probe_copy.cu -lcuda
// Run:   ./probe_copy [--stages N] [--src-mb MB] [--only TEXT] [--no-x]
//        (default 4096 ring stages per CTA, a 32 MB source window, all cases; best of 3 runs)
//
// One CTA per SM (at least 116 KB of shared memory each). Thread 0 fills a ring of `depth` slots; a stage is `count` bulk copies
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

#include "experiments/kernels/probe_check.cuh"
#include "kernels/sm90_ptx.cuh"

using namespace vnm90;

constexpr int MAX_COPIES = 8, BOX_BYTES = 64 * 128 * 2;  // the tensor box: 64 k × 128 tokens, bf16
constexpr size_t SRC_BYTES = 128u << 20;  // allocated; --src-mb picks the window the copies read (default 32 MB)
constexpr int X_ROWS = 2048, X_COLS = 4096;

struct Case {
    const char *name;
    int depth, hold, tensor, count;
    int bytes[MAX_COPIES];
    int lag;  // CTA b reads the source b·lag stages behind CTA 0 (0: 131, i.e. far apart). probe_rate.cu's
              // copy hog (CTAs 8 copies apart) moves ~137 GB/s per SM, its copy here ~76 (not explained).
    int waiters;  // who waits for the full barriers: 0 the consumer warp (all 32 lanes poll, as the kernel's
                  // consumer warps do), 1 its lane 0 alone, 2 nobody but the producer before it reuses a
                  // slot (as the copy hog does: no consumer, no empty barriers)
    int order;    // 0: the source walk above; 1, 2: the SS kernel's reads at 4096 x 4096, n = 2048 (16 x 16
                  // tiles of 256 rows x 128 tokens, 64 stages each, tile blockIdx.x + i * gridDim.x), an 18K
                  // weight block of the row tile and the x box of the token tile per stage; 1: row tiles
                  // fastest (the kernel's order), 2: token tiles fastest
};
constexpr int PATTERN_TILES = 16, PATTERN_STAGES = 64;  // per dimension; per tile

// Bytes of one stage and of one ring slot (1 KB aligned: the tensor box needs it for the swizzle).
__host__ __device__ int stage_bytes(const Case &c) {
    int b = c.tensor ? BOX_BYTES : 0;
    for (int k = 0; k < c.count; k++) b += c.bytes[k];
    return b;
}
__host__ __device__ int slot_bytes(const Case &c) { return (stage_bytes(c) + 1023) / 1024 * 1024; }

__global__ void __launch_bounds__(64, 1)
    probe(const char *src, size_t window, const __grid_constant__ CUtensorMap x, Case c, int stages, long long *cycles) {
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
    if (c.order) {  // this CTA's tiles
        const int tiles = PATTERN_TILES * PATTERN_TILES;
        stages = blockIdx.x < tiles ? ((tiles - 1 - (int)blockIdx.x) / (int)gridDim.x + 1) * PATTERN_STAGES : 0;
    }
    if (threadIdx.x == 0) {  // producer
        const long long t0 = clock64();
        // CTAs start at different places of the source and walk through it, 1 KB aligned. No division
        // in the loops (slot b and its use count u instead of s % depth, s / depth): a 64-bit modulo per
        // stage (before Session 13) put a 726-clock floor under every stage of this one-thread producer.
        const size_t wrap = (window - (size_t)bytes) / 1024 * 1024;
        size_t at = (size_t)blockIdx.x * (c.lag ? c.lag : 131) * (size_t)bytes % wrap / 1024 * 1024;
        int b = 0, u = 0, xc = 0, xr = (int)(blockIdx.x % (X_ROWS / 128));
        for (int s = 0; s < stages; s++) {
            if (c.order) {  // the kernel's tiles: weight block and x box of (tile, stage)
                const int t = blockIdx.x + (s / PATTERN_STAGES) * gridDim.x, ks = s % PATTERN_STAGES;
                const int rt = c.order == 1 ? t % PATTERN_TILES : t / PATTERN_TILES;
                xc = ks, xr = c.order == 1 ? t / PATTERN_TILES : t % PATTERN_TILES;
                at = ((size_t)rt * PATTERN_STAGES + ks) * (size_t)(bytes - BOX_BYTES);
            }
            if (u > 0) mbar_wait((c.waiters == 2 ? full : empty) + 8 * b, (uint32_t)((u - 1) & 1));
            mbar_arrive_expect_tx(full + 8 * b, (uint32_t)bytes);
            uint32_t dst = base + b * slot;
            if (c.tensor) {  // the x box walks along k, then to the next 128 tokens
                tma_load_2d(dst, &x, full + 8 * b, 64 * xc, 128 * xr);
                dst += BOX_BYTES;
                if (++xc == X_COLS / 64 && !c.order) xc = 0, xr = xr + 1 == X_ROWS / 128 ? 0 : xr + 1;
            }
            for (int k = 0, o = 0; k < c.count; o += c.bytes[k], k++)
                bulk_load(dst + o, src + at + o, (uint32_t)c.bytes[k], full + 8 * b);
            at = at + 2 * (size_t)bytes > wrap ? 0 : (at + bytes + 1023) / 1024 * 1024;
            if (++b == c.depth) b = 0, u++;
        }
        if (c.waiters == 2) {  // no consumer: the producer waits for its last copies and keeps the time
            for (int s = max(0, stages - c.depth); s < stages; s++)
                mbar_wait(full + 8 * (s % c.depth), (uint32_t)((s / c.depth) & 1));
            cycles[blockIdx.x] = clock64() - t0;
        }
    } else if (threadIdx.x >= 32 && c.waiters != 2 && (c.waiters == 0 || threadIdx.x == 32)) {  // consumer warp
        const long long t0 = clock64();
        int b = 0, u = 0, r = c.depth - c.hold + 1;  // r: the slot this stage lets go (the stage hold - 1 back)
        if (r >= c.depth) r -= c.depth;
        for (int s = 0; s < stages; s++) {
            mbar_wait(full + 8 * b, (uint32_t)(u & 1));
            if (s >= c.hold - 1 && threadIdx.x == 32) mbar_arrive(empty + 8 * r);
            if (++b == c.depth) b = 0, u++;
            if (++r == c.depth) r = 0;
        }
        if (threadIdx.x == 32) cycles[blockIdx.x] = clock64() - t0;
    }
}

int main(int argc, char **argv) {
    int stages = 4096, src_mb = 32, no_x = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--stages") && i + 1 < argc) stages = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--src-mb") && i + 1 < argc) src_mb = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];  // cases whose name contains this
        else if (!strcmp(argv[i], "--no-x")) no_x = 1;  // leave out the cases with the tensor box
    if (src_mb < 1 || (size_t)src_mb << 20 > SRC_BYTES) {
        fprintf(stderr, "probe_copy: --src-mb must be 1..%zu\n", SRC_BYTES >> 20);
        return 2;
    }
    const size_t window = (size_t)src_mb << 20;
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
        {"one 16K bulk copy, ring of 8, hold 2", 8, 2, 0, 1, {16384}},
        {"one 34K bulk copy, ring of 6, hold 2", 6, 2, 0, 1, {34816}},
        {"one 16K bulk copy, ring of 8, hold 2, CTAs 8 stages apart", 8, 2, 0, 1, {16384}, 8},
        {"one 16K bulk copy, ring of 8, hold 2, CTAs 1 stage apart", 8, 2, 0, 1, {16384}, 1},
        {"one 34K bulk copy, CTAs 8 stages apart", 4, 2, 0, 1, {34816}, 8},
        {"one 34K bulk copy, CTAs 1 stage apart", 4, 2, 0, 1, {34816}, 1},
        {"SS stage, 2 copies, CTAs 8 stages apart", 4, 2, 1, 1, {18432}, 8},
        {"one 16K bulk copy, ring of 8, hold 2, lane 0 waits", 8, 2, 0, 1, {16384}, 0, 1},
        {"one 16K bulk copy, ring of 4, no consumer (the copy hog)", 4, 2, 0, 1, {16384}, 8, 2},
        {"one 16K bulk copy, ring of 4, no consumer, CTAs far apart", 4, 2, 0, 1, {16384}, 0, 2},
        {"one 34K bulk copy, ring of 4, lane 0 waits", 4, 2, 0, 1, {34816}, 0, 1},
        {"one 34K bulk copy, ring of 4, no consumer", 4, 2, 0, 1, {34816}, 0, 2},
        {"SS stage, 2 copies, lane 0 waits", 4, 2, 1, 1, {18432}, 0, 1},
        {"SS kernel's reads, 4096^2 n 2048, row tiles fastest", 4, 2, 1, 1, {18432}, 0, 0, 1},
        {"SS kernel's reads, 4096^2 n 2048, token tiles fastest", 4, 2, 1, 1, {18432}, 0, 0, 2},
    };
    printf("# probe_copy: %s, %d SMs, %d stages per CTA, bulk copies from a %d MB window, best of 3; ns and clk per stage (clk: the busiest SM), GB/s per SM, TB/s in all\n",
           prop.name, sms, stages, src_mb);
    printf("%-62s %7s %7s %8s %9s %8s\n", "case", "KB", "ns", "clk", "GB/s/SM", "TB/s");
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    for (const Case &c : cases) {
        if ((only && !strstr(c.name, only)) || (no_x && c.tensor)) continue;
        // at least 116 KB, so that one CTA runs per SM
        const int smem = max(c.depth * slot_bytes(c) + 16 * c.depth + 1024, 116 * 1024);
        CHECK(cudaFuncSetAttribute(probe, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        probe<<<sms, 64, smem>>>(src, window, x, c, 64, cyc);  // warm-up: sources into L2
        CHECK(cudaDeviceSynchronize());
        float best = 1e30f;
        for (int r = 0; r < 3; r++) {
            CHECK(cudaEventRecord(e0));
            probe<<<sms, 64, smem>>>(src, window, x, c, stages, cyc);
            CHECK(cudaEventRecord(e1));
            CHECK(cudaEventSynchronize(e1));
            float ms;
            CHECK(cudaEventElapsedTime(&ms, e0, e1));
            if (ms < best) best = ms;
        }
        // per stage of the busiest CTA (in the kernel's pattern: 2 tiles of 64 stages) and in all
        const int tiles = PATTERN_TILES * PATTERN_TILES, per_cta = c.order ? (tiles + sms - 1) / sms * PATTERN_STAGES : stages;
        const double total = c.order ? (double)tiles * PATTERN_STAGES * stage_bytes(c) : (double)sms * stages * stage_bytes(c);
        long long h[1024], most = 0;
        CHECK(cudaMemcpy(h, cyc, sms * sizeof(long long), cudaMemcpyDeviceToHost));
        for (int i = 0; i < sms; i++) most = max(most, h[i]);
        const double ns = best * 1e6 / per_cta, kb = stage_bytes(c) / 1024.0;
        printf("%-62s %7.1f %7.1f %8.0f %9.1f %8.2f\n", c.name, kb, ns, (double)most / per_cta, stage_bytes(c) / ns,
               total / (best * 1e-3) / 1e12);
        fflush(stdout);
    }
    return 0;
}
