// probe_ring: the SS kernel's main loop alone (no epilogue, no tile bookkeeping), to tell where its
// time goes. Session 13's probes put the parts of a 256-row × 128-token × 64-k stage (4096², n = 2048,
// H200) at ~690 clocks for the copies alone (probe_copy, the kernel's read pattern) and ~640 for the
// wgmmas alone (probe_rate, sparse SS m64n128 at 80 % of peak), while the kernel takes ~1100 per stage.
// This probe runs the same ring with both, and each alone, over the kernel's 256 tiles: ~700 clocks per
// stage, also with the kernel's x box, shared memory size and random data (Session 14), which led to
// the kernel's own producer (per-stage divisions; ~850 clocks per stage after the fix).
//
// Build: nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -o probe_ring \
//            experiments/kernels/probe_ring.cu -lcuda
// Run:   ./probe_ring [--n TOKENS] [--flush] [--random] [--random-meta] [--tensor] [--smem KB]
//        (default n = 2048, L2 warm, constant data, x by 1D bulk copies; --tensor: by the kernel's 2D
//        boxes out of token-major x; --smem: at least that much dynamic shared memory, as the kernel's)
//
// One CTA per SM, 384 threads: thread 0 of warpgroup 0 fills a ring of NST slots, one stage per slot:
// an 18 KB weight block (values + metadata, the SS layout's `vnm_ss_block` size) and a 16 KB x box
// (here a 1D bulk copy of the same size: probe_copy found the tensor copy no different in rate).
// Warpgroups 1 and 2 each run rows 128(w-1) .. +127 of the tile as the kernel does: per stage wait for
// the full barrier, one metadata word by ld.shared per row group, 2 k-steps × 2 row groups of sparse
// SS m64n128k32 wgmmas, commit, wait for the previous group, release the previous slot. The data are
// whatever the copies bring (timing only). Tiles: blockIdx.x, + gridDim.x, ... of 16 × n/128 tiles,
// row tiles fastest, 64 stages each (at n = 2048 the busiest CTA runs 2 tiles = 128 stages).
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/kernels/probe_check.cuh"
#include "kernels/sm90_ptx.cuh"

using namespace vnm90;

constexpr int ROW_TILES = 16, STAGES = 64;       // 4096 rows; stages per tile (4096 k)
constexpr int MAX_TOKEN_TILES = 64;               // n up to 8192
constexpr int A_BYTES = 18432, X_BYTES = 16384;  // per stage: weight block, x box
constexpr int SLOT = 35 * 1024;                  // x box at 0 (1 KB aligned for the swizzle), A at 16 KB
enum Mode { BOTH, COPIES_ONLY, MMA_ONLY };

template <int NST, int MODE>
__global__ void __launch_bounds__(384, 1) ring(const char *w, const char *x, const __grid_constant__ CUtensorMap xmap,
                                                int tensor, int token_tiles, long long *cycles, float *out) {
    extern __shared__ uint8_t raw[];
    const uint32_t base = ((uint32_t)__cvta_generic_to_shared(raw) + 1023) & ~1023u;
    const uint32_t full = base + NST * SLOT, empty = full + 8 * NST;
    const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31;
    const int tiles = ROW_TILES * token_tiles, my_tiles = blockIdx.x < tiles ? (tiles - 1 - blockIdx.x) / gridDim.x + 1 : 0;
    const int stages = my_tiles * STAGES;
    if (tid == 0) {
        for (int b = 0; b < NST; b++) mbar_init(full + 8 * b, 1), mbar_init(empty + 8 * b, 8);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
    }
    __syncthreads();
    if (wg == 0) {
        setmaxnreg_dec<40>();
        if (tid != 0 || MODE == MMA_ONLY) return;
        int b = 0, u = 0;
        for (int s = 0; s < stages; s++) {
            const int t = blockIdx.x + (s / STAGES) * gridDim.x, ks = s % STAGES;
            const int row_tile = t % ROW_TILES, token_tile = t / ROW_TILES;
            if (u > 0) mbar_wait(empty + 8 * b, (uint32_t)((u - 1) & 1));
            mbar_arrive_expect_tx(full + 8 * b, A_BYTES + X_BYTES);
            if (tensor)  // the kernel's x box: 64 k × 128 tokens of token-major x (n × 4096), 128-byte swizzle
                tma_load_2d(base + b * SLOT, &xmap, full + 8 * b, 64 * ks, 128 * token_tile);
            else
                bulk_load(base + b * SLOT, x + ((size_t)token_tile * STAGES + ks) * X_BYTES, X_BYTES, full + 8 * b);
            bulk_load(base + b * SLOT + X_BYTES, w + ((size_t)row_tile * STAGES + ks) * A_BYTES, A_BYTES, full + 8 * b);
            if (++b == NST) b = 0, u++;
        }
        return;
    }
    setmaxnreg_inc<232>();
    const int cw = wg - 1, wl = (tid >> 5) & 3;
    float acc[2][64];
#pragma unroll
    for (int r = 0; r < 2; r++)
#pragma unroll
        for (int i = 0; i < 64; i++) acc[r][i] = 0.0f, fence_operand(acc[r][i]);
    const long long c0 = clock64();
    int b = 0, u = 0, prev = -1;
    for (int s = 0; s < stages; s++) {
        const uint32_t slot = base + b * SLOT;
        if (MODE != MMA_ONLY) mbar_wait(full + 8 * b, (uint32_t)(u & 1));
        if (MODE != COPIES_ONLY) {
            uint32_t m[2];
#pragma unroll
            for (int r = 0; r < 2; r++) m[r] = lds_u32(slot + X_BYTES + 16384 + 4 * (((2 * cw + r) * 4 + wl) * 32 + lane));
            wgmma_fence();
#pragma unroll
            for (int kk = 0; kk < 2; kk++)
#pragma unroll
                for (int r = 0; r < 2; r++) {
                    const uint64_t da = smem_desc(slot + X_BYTES + kk * 8192 + (2 * cw + r) * 2048, 128, 256, false);
                    const uint64_t db = smem_desc(slot + kk * 64, 16, 1024);
                    if (kk == 0) wgmma_sp_ss<0>(acc[r], da, db, m[r]);
                    else wgmma_sp_ss<1>(acc[r], da, db, m[r]);
                }
            wgmma_commit();
            wgmma_wait_1();
            keep_word(m[0]), keep_word(m[1]);
        }
        if (MODE != MMA_ONLY && prev >= 0 && lane == 0) mbar_arrive(empty + 8 * prev);
        prev = b;
        if (++b == NST) b = 0, u++;
    }
    wgmma_wait_all();
#pragma unroll
    for (int r = 0; r < 2; r++)
#pragma unroll
        for (int i = 0; i < 64; i++) fence_operand(acc[r][i]);
    if (tid == 128) cycles[blockIdx.x] = clock64() - c0;
    float sum = 0.0f;
#pragma unroll
    for (int r = 0; r < 2; r++)
#pragma unroll
        for (int i = 0; i < 64; i++) sum += acc[r][i];
    if (sum == 12345.0f) out[blockIdx.x] = sum;  // keeps the accumulators observable
}

static int sms, token_tiles = 16, flush, random_data, random_meta, tensor, smem_kb;
static CUtensorMap xmap;
static char *w, *x, *flush_buf;
static long long *cyc;
static float *out;

template <int NST, int MODE>
static void run(const char *name) {
    auto k = ring<NST, MODE>;
    const int smem = max(NST * SLOT + 16 * NST + 1024, smem_kb * 1024);
    CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    float best = 1e30f;
    for (int r = 0; r < 6; r++) {  // r = 0: warm-up (sources into L2)
        if (flush) CHECK(cudaMemset(flush_buf, r, 128u << 20));  // as bench spmm: L2 holds other data
        CHECK(cudaEventRecord(e0));
        k<<<sms, 384, smem>>>(w, x, xmap, tensor, token_tiles, cyc, out);
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
        CHECK(cudaGetLastError());
        float ms;
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        if (r > 0 && ms < best) best = ms;
    }
    long long h[1024], most = 0;
    CHECK(cudaMemcpy(h, cyc, sms * sizeof(long long), cudaMemcpyDeviceToHost));
    for (int i = 0; i < sms; i++) most = h[i] > most ? h[i] : most;
    const int per_cta = (ROW_TILES * token_tiles + sms - 1) / sms * STAGES;
    printf("%-44s ring %d | %7.1f us | %6.1f ns %6.0f clk per stage (busiest SM) | %5.0f MHz\n", name, NST, best * 1e3,
           best * 1e6 / per_cta, (double)most / per_cta, (double)most / (best * 1e3));
    CHECK(cudaEventDestroy(e0));
    CHECK(cudaEventDestroy(e1));
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            char *end;
            const long n = strtol(argv[++i], &end, 10);
            token_tiles = *end || n % 128 ? 0 : (int)(n / 128);  // 0: rejected below
        }
        else if (!strcmp(argv[i], "--flush")) flush = 1;
        else if (!strcmp(argv[i], "--random")) random_data = 1;
        else if (!strcmp(argv[i], "--tensor")) tensor = 1;
        else if (!strcmp(argv[i], "--random-meta")) random_meta = 1;
        else if (!strcmp(argv[i], "--smem") && i + 1 < argc) smem_kb = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--n TOKENS (a multiple of 128, 128 .. 8192)] [--flush] [--random] [--random-meta] [--tensor] [--smem KB]\n", argv[0]); return 2; }
    if (token_tiles < 1 || token_tiles > MAX_TOKEN_TILES) { fprintf(stderr, "probe_ring: --n must be a multiple of 128 in 128 .. 8192\n"); return 2; }
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    if (prop.major != 9) { fprintf(stderr, "probe_ring: needs sm_90a (Hopper)\n"); return 1; }
    sms = prop.multiProcessorCount;
    CHECK(cudaMalloc(&w, (size_t)ROW_TILES * STAGES * A_BYTES));
    CHECK(cudaMalloc(&x, (size_t)MAX_TOKEN_TILES * STAGES * X_BYTES));
    if (flush) CHECK(cudaMalloc(&flush_buf, 128u << 20));
    CHECK(cudaMalloc(&cyc, sms * sizeof(long long)));
    CHECK(cudaMalloc(&out, sms * sizeof(float)));
    // values 0x4444 / 0x3F3F, or with --random random bf16 in +-[0.5, 1) (the clock under wgmma load
    // depends on the data; written in Session 13, not run yet); metadata words 0x44444444 (every
    // 4-chunk keeps positions 0, 1)
    const size_t wn = (size_t)ROW_TILES * STAGES * A_BYTES / 2, xn = (size_t)MAX_TOKEN_TILES * STAGES * X_BYTES / 2;
    uint16_t *h = (uint16_t *)malloc(xn * 2);
    uint32_t seed = 12345;
    for (size_t i = 0; i < xn; i++) {
        seed = seed * 1664525u + 1013904223u;
        h[i] = random_data ? (uint16_t)(((seed >> 16) & 0x807F) | 0x3F00) : 0x3F3F;
    }
    CHECK(cudaMemcpy(x, h, xn * 2, cudaMemcpyHostToDevice));
    // --random-meta: each 4-bit code a random one of the 6 valid 2:4 pairs (i0 | i1 << 2, i0 < i1)
    static const uint16_t pair_codes[6] = {0x4, 0x8, 0xC, 0x9, 0xD, 0xE};
    for (size_t i = 0; i < wn; i++)  // the last 2 KB of each 18 KB block: metadata
        if (i % (A_BYTES / 2) >= 16384 / 2) {
            h[i] = 0x4444;
            if (random_meta)
                for (int q = 0; q < 4; q++) {
                    seed = seed * 1664525u + 1013904223u;
                    h[i] = (uint16_t)((h[i] & ~(0xF << (4 * q))) | (pair_codes[(seed >> 16) % 6] << (4 * q)));
                }
        } else if (!random_data) h[i] = 0x4444;
    CHECK(cudaMemcpy(w, h, wn * 2, cudaMemcpyHostToDevice));
    free(h);
    // --tensor: x read as the kernel reads it, a 2D box of 64 k × 128 tokens out of token-major x (n × 4096)
    const cuuint64_t dims[2] = {4096, (cuuint64_t)token_tiles * 128}, strides[1] = {4096 * 2};
    const cuuint32_t box[2] = {64, 128}, one[2] = {1, 1};
    if (cuTensorMapEncodeTiled(&xmap, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, x, dims, strides, box, one, CU_TENSOR_MAP_INTERLEAVE_NONE,
                               CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) != CUDA_SUCCESS) {
        fprintf(stderr, "probe_ring: cuTensorMapEncodeTiled failed\n");
        return 1;
    }
    printf("# probe_ring: %s, %d SMs; the SS kernel's main loop over 4096 x 4096, n = %d (%d tiles of 256 x 128, "
           "64 stages); best of 5%s, %s data, %s metadata, x by %s; MHz from clock64 over the event time\n", prop.name, sms, 128 * token_tiles,
           ROW_TILES * token_tiles, flush ? ", L2 flushed (128 MB memset) before each run" : ", L2 warm",
           random_data ? "random" : "constant", random_meta ? "random" : "constant", tensor ? "2D tensor boxes (as the kernel)" : "1D bulk copies");
    if (smem_kb) printf("# dynamic shared memory at least %d KB\n", smem_kb);
    run<4, BOTH>("copies + wgmmas (the kernel's main loop)");
    run<4, COPIES_ONLY>("copies alone (consumers wait and release)");
    run<4, MMA_ONLY>("wgmmas alone (no waits)");
    run<5, BOTH>("copies + wgmmas");
    run<6, BOTH>("copies + wgmmas");
    run<6, COPIES_ONLY>("copies alone");
    return 0;
}
