// probe_rate: is the Hopper sparse tensor-core rate limited by shared-memory bandwidth?
//
// Build: nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -o probe_rate experiments/kernels/probe_rate.cu
// Run:   ./probe_rate [--quick] [--iters N]     (--quick: 256 iterations, 2 reps; default 4096, 5 reps)
//
// Every CTA (1 per SM, grid = #SMs) runs a loop of wgmmas over B tiles already resident in shared
// memory (4 stages of 256 rows x 64 k bf16, K-major, 128-byte swizzle; no global loads in the loop).
// One loop iteration = 64 logical k = 4 dense m64n256k16 or 2 sparse m64n256k32 wgmmas = one
// wgmma group; wait_group 1 keeps up to two groups in flight. Each consumer warpgroup (1 or 2)
// has its own 64-row accumulator (128 fp32 regs/thread for n256), all read the same B.
//
// Hypothesis (smem = 128 B/clk/SM; dense tensor rate = 4096 FLOP/clk/SM, sparse 2x):
//   dense  m64n256k16: 8 KB of B per 128 clk            =  64 B/clk (+16 B/clk A in SS form)
//   sparse m64n256k32: 16 KB of B per 128 clk at 2x rate = 128 B/clk (+16 B/clk A in SS form)
// so if smem bandwidth is the limit:
//   dense RS/SS          ~100% of the clock peak (4096 FLOP/clk/SM)
//   sparse RS            <= 200%, and may fall short of it (B alone uses all of smem)
//   sparse SS            <= 200% * 128/144 = 178%
//   sparse RS + hog      wgmma B/clk + hog B/clk <= ~128 (sparse rate drops as the hog gains)
//   dense  RS + hog      control: ~100% with the hog getting ~64 B/clk
//   sparse RS n128       same B/clk per FLOP as n256 (8 KB per 64 clk): same bound, more issue.
// If instead sparse reaches ~200% everywhere and the hog keeps ~128 B/clk, the hypothesis is wrong.
//
// Output, one line per case: TFLOP/s (dense-equivalent: 2*64*N*K_logical per wgmma) from the best
// cudaEvent time; % of the clock peak (cudaDevAttrClockRate x #SMs x 4096); FLOP/clk/SM from
// clock64 over the loop (clock-independent: dense ideal 4096, sparse 8192); the SM clock the
// loop ran at (clock64 / globaltimer); smem bytes/clk read by the wgmmas (B, plus A in SS form);
// and the hog's st.shared bytes/clk where a hog warpgroup runs.
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/kernels/probe_check.cuh"
#include "kernels/sm90_ptx.cuh"


enum Op { DENSE_SS, DENSE_RS, SP_SS, SP_RS };
static const char *op_name[] = {"dense  SS", "dense  RS", "sparse SS", "sparse RS"};

// shared memory layout (offsets from a 1024-aligned base)
constexpr int NST = 4, STAGE_BYTES = 256 * 128;      // B: 4 stages of 256 rows x 128 bytes (64 k)
constexpr int A_OFF = NST * STAGE_BYTES;              // A (SS form): 64 rows x 128 bytes per warpgroup
constexpr int HOG_OFF = A_OFF + 2 * 64 * 128;         // hog buffer: the store hog loops over 32 KB,
constexpr int HOG_BYTES = 32 * 1024;                  // the copy hog over TMA_SLOTS slots of 16 KB
constexpr int TMA_SLOTS = 4, TMA_COPY = 16 * 1024;
constexpr int FLAG_OFF = HOG_OFF + TMA_SLOTS * TMA_COPY;  // consumers-done flag, then the copy hog's mbarriers
constexpr int SMEM = FLAG_OFF + 16 + 8 * TMA_SLOTS + 1024;  // > 114 KB: only one CTA fits per SM
constexpr size_t TMA_SRC_BYTES = 16u << 20;           // the copy hog's source (L2-resident after warm-up)
enum Hog { NO_HOG, STORE_HOG, COPY_HOG };

struct Stats { long long cyc, ns, hog_cyc, hog_bytes; };

// ---------------- wgmma wrappers (sm_90a) ----------------
#define ACC64                                                                                   \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
    "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
    "%56, %57, %58, %59, %60, %61, %62, %63}"
#define ACC128                                                                                  \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
    "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, "  \
    "%38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, "  \
    "%56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, "  \
    "%74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, "  \
    "%92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, "    \
    "%108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, "  \
    "%123, %124, %125, %126, %127}"
#define F8(i) "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), "+f"(d[i + 7])
#define F64 F8(0), F8(8), F8(16), F8(24), F8(32), F8(40), F8(48), F8(56)
#define F128 F64, F8(64), F8(72), F8(80), F8(88), F8(96), F8(104), F8(112), F8(120)
// scale-d is a predicate (true: D += A*B); imm-scale-a/b = 1; imm-trans = 0 (K-major); sp-sel = 0.
#define PRED(n) "{\n.reg .pred p;\nsetp.ne.b32 p, %" #n ", 0;\n"

// D += A*B, m64n256k16 dense, A and B from shared memory (descriptors)
__device__ __forceinline__ void mma_dense_ss(float (&d)[128], const uint32_t (&a)[4], uint64_t da, uint64_t db, uint32_t) {
    asm volatile(PRED(130) "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " ACC128 ", %128, %129, p, 1, 1, 0, 0;\n}\n"
                 : F128 : "l"(da), "l"(db), "r"(1));
}
// D += A*B, m64n256k16 dense, A from registers (4 x bf16x2)
__device__ __forceinline__ void mma_dense_rs(float (&d)[128], const uint32_t (&a)[4], uint64_t, uint64_t db, uint32_t) {
    asm volatile(PRED(133) "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 " ACC128
                           ", {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
                 : F128 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}
// D += A*B, m64n256k32 sparse, compressed A (64 x 16) and B from shared memory, metadata e
__device__ __forceinline__ void mma_sp_ss(float (&d)[128], const uint32_t (&a)[4], uint64_t da, uint64_t db, uint32_t e) {
    asm volatile(PRED(131) "wgmma.mma_async.sp.sync.aligned.m64n256k32.f32.bf16.bf16 " ACC128 ", %128, %129, %130, 0, p, 1, 1, 0, 0;\n}\n"
                 : F128 : "l"(da), "l"(db), "r"(e), "r"(1));
}
// D += A*B, m64n128k32 sparse, compressed A (64 x 16) and B from shared memory, metadata e
__device__ __forceinline__ void mma_sp_ss(float (&d)[64], const uint32_t (&a)[4], uint64_t da, uint64_t db, uint32_t e) {
    asm volatile(PRED(67) "wgmma.mma_async.sp.sync.aligned.m64n128k32.f32.bf16.bf16 " ACC64 ", %64, %65, %66, 0, p, 1, 1, 0, 0;\n}\n"
                 : F64 : "l"(da), "l"(db), "r"(e), "r"(1));
}
// D += A*B, m64n256k32 sparse, compressed A from registers
__device__ __forceinline__ void mma_sp_rs(float (&d)[128], const uint32_t (&a)[4], uint64_t, uint64_t db, uint32_t e) {
    asm volatile(PRED(134) "wgmma.mma_async.sp.sync.aligned.m64n256k32.f32.bf16.bf16 " ACC128
                           ", {%128, %129, %130, %131}, %132, %133, 0, p, 1, 1, 0;\n}\n"
                 : F128 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(e), "r"(1));
}
// D += A*B, m64n128k32 sparse, compressed A from registers
__device__ __forceinline__ void mma_sp_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t, uint64_t db, uint32_t e) {
    asm volatile(PRED(70) "wgmma.mma_async.sp.sync.aligned.m64n128k32.f32.bf16.bf16 " ACC64
                          ", {%64, %65, %66, %67}, %68, %69, 0, p, 1, 1, 0;\n}\n"
                 : F64 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(e), "r"(1));
}
__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N> __device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }

// Descriptor of a K-major tile with 128-byte swizzle: start, LBO (unused, 1), SBO = 1024 bytes
// (8 rows of 128 bytes), in 16-byte units; layout 1 = 128B swizzle in bits 62-63; base offset 0
// (tiles 1024-aligned; the k-step advances the start address by 32 or 64 bytes inside the row).
__device__ __forceinline__ uint64_t desc_sw128(uint32_t addr) {
    return (uint64_t)((addr & 0x3FFFF) >> 4) | (1ull << 16) | ((uint64_t)(1024 >> 4) << 32) | (1ull << 62);
}
__device__ __forceinline__ uint32_t hash(uint32_t x) {
    x ^= x >> 16, x *= 0x7feb352d, x ^= x >> 15, x *= 0x846ca68b, x ^= x >> 16;
    return x;
}
// two random bf16 in +-[0.5, 1): random sign and mantissa, exponent 126
__device__ __forceinline__ uint32_t rand_bf16x2(uint32_t i) { return (hash(i) & 0x807F807Fu) | 0x3F003F00u; }
__device__ __forceinline__ long long globaltimer() {
    long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

// NC consumer warpgroups run `iters` iterations of OP with N columns; with HOG a further warpgroup
// writes shared memory until the consumers are done (or hog_max rounds when NC = 0): STORE_HOG
// stores 16 bytes per thread into a 32 KB buffer; COPY_HOG (one thread) keeps TMA_SLOTS bulk
// copies of 16 KB from global memory (L2) in flight, as a TMA producer fills a ring.
template <int OP, int N, int NC, int HOG>
__global__ void __launch_bounds__(384, 1) probe(int iters, long long hog_max, Stats *st, float *out, const char *src) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    extern __shared__ uint8_t smem_raw[];
    const uint32_t base = ((uint32_t)__cvta_generic_to_shared(smem_raw) + 1023) & ~1023u;
    const int tid = threadIdx.x, wg = tid >> 7;
    // fill B, A and the hog buffer with random bf16 (power, hence clock, depends on the data)
    for (uint32_t i = tid; i < FLAG_OFF / 4; i += blockDim.x)
        asm volatile("st.shared.u32 [%0], %1;" ::"r"(base + 4 * i), "r"(rand_bf16x2(i + 7919u * blockIdx.x)));
    if (tid == 0) asm volatile("st.volatile.shared.u32 [%0], 0;" ::"r"(base + FLAG_OFF));
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");  // generic writes -> wgmma (async proxy) reads
    __syncthreads();

    if (NC > 0 && wg < NC) {
        constexpr bool SP = OP == SP_SS || OP == SP_RS;
        constexpr int KSTEPS = SP ? 2 : 4;        // wgmmas per iteration (64 logical k)
        constexpr int B_STEP = SP ? 64 : 32;      // bytes per k-step in a B row (32 or 16 k)
        constexpr int A_STEP = 32;                // bytes per k-step in an A row (16 k, or 32 k compressed)
        float d[N / 2];
#pragma unroll
        for (int i = 0; i < N / 2; i++) d[i] = 0.0f;
        uint32_t a[4];  // RS form: the fragment never changes, so it stays valid for every in-flight wgmma
#pragma unroll
        for (int i = 0; i < 4; i++) a[i] = rand_bf16x2(tid * 4 + i + 1);
        const uint32_t meta = 0x44444444u;  // every 4-wide chunk keeps positions {0,1} (ordered, valid)
        const uint64_t db0 = desc_sw128(base), da0 = desc_sw128(base + A_OFF + wg * 64 * 128);
        long long c0 = 0, t0 = 0;
        asm volatile("bar.sync 1, %0;" ::"r"(NC * 128));
        if (tid == 0) c0 = clock64(), t0 = globaltimer();
        for (int it = 0; it < iters; it++) {
            const uint64_t db = db0 + (uint64_t)((it % NST) * (STAGE_BYTES >> 4));
            wgmma_fence();
#pragma unroll
            for (int k = 0; k < KSTEPS; k++) {
                const uint64_t dbk = db + k * (B_STEP >> 4), dak = da0 + k * (A_STEP >> 4);
                if constexpr (OP == DENSE_SS) mma_dense_ss(d, a, dak, dbk, meta);
                if constexpr (OP == DENSE_RS) mma_dense_rs(d, a, dak, dbk, meta);
                if constexpr (OP == SP_SS) mma_sp_ss(d, a, dak, dbk, meta);
                if constexpr (OP == SP_RS) mma_sp_rs(d, a, dak, dbk, meta);
            }
            wgmma_commit();
            wgmma_wait<1>();
        }
        wgmma_wait<0>();
        asm volatile("" : "+r"(a[0]), "+r"(a[1]), "+r"(a[2]), "+r"(a[3])::"memory");  // A live until here
        asm volatile("bar.sync 1, %0;" ::"r"(NC * 128));
        if (tid == 0) {
            st[blockIdx.x].cyc = clock64() - c0, st[blockIdx.x].ns = globaltimer() - t0;
            asm volatile("st.volatile.shared.u32 [%0], 1;" ::"r"(base + FLAG_OFF) : "memory");
        }
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < N / 2; i++) s += d[i];
        if (s == 12345.0f) out[blockIdx.x] = s;  // keeps the accumulators observable
    } else if (HOG == COPY_HOG) {
        if ((tid & 127) != 0) return;
        const uint32_t bar = base + FLAG_OFF + 16, buf = base + HOG_OFF;
        for (int b = 0; b < TMA_SLOTS; b++) vnm90::mbar_init(bar + 8 * b, 1);
        asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
        long long c0 = clock64(), t0 = globaltimer(), n = 0;
        uint32_t flag = 0;
        for (; n < hog_max && !flag; n++) {
            const int b = (int)(n % TMA_SLOTS);
            if (n >= TMA_SLOTS) vnm90::mbar_wait(bar + 8 * b, (uint32_t)((n / TMA_SLOTS - 1) & 1));
            asm volatile("ld.volatile.shared.u32 %0, [%1];" : "=r"(flag) : "r"(base + FLAG_OFF));
            const size_t at = ((size_t)blockIdx.x * 8 + (size_t)n) * TMA_COPY % TMA_SRC_BYTES;
            vnm90::mbar_arrive_expect_tx(bar + 8 * b, TMA_COPY);
            vnm90::bulk_load(buf + b * TMA_COPY, src + at, TMA_COPY, bar + 8 * b);
        }
        for (long long m = n > TMA_SLOTS ? n - TMA_SLOTS : 0; m < n; m++)  // the copies still in flight
            vnm90::mbar_wait(bar + 8 * (int)(m % TMA_SLOTS), (uint32_t)((m / TMA_SLOTS) & 1));
        st[blockIdx.x].hog_cyc = clock64() - c0, st[blockIdx.x].hog_bytes = n * TMA_COPY;
        if (NC == 0) st[blockIdx.x].cyc = st[blockIdx.x].hog_cyc, st[blockIdx.x].ns = globaltimer() - t0;
    } else if (HOG == STORE_HOG) {
        // each iteration: 16 x st.shared.v4 per thread = the whole 32 KB buffer, conflict-free
        const uint32_t p = base + HOG_OFF + 16 * (tid & 127);
        const uint32_t v = rand_bf16x2(tid);
        long long c0 = clock64(), t0 = globaltimer(), n = 0;
        for (uint32_t flag = 0; n < hog_max && !flag; n++) {  // the flag load's latency hides behind the stores
            asm volatile("ld.volatile.shared.u32 %0, [%1];" : "=r"(flag) : "r"(base + FLAG_OFF));
#pragma unroll
            for (int j = 0; j < 16; j++)
                asm volatile("st.shared.v4.u32 [%0], {%1, %2, %3, %4};" ::"r"(p + j * 2048), "r"(v), "r"(v ^ 1), "r"(v ^ 2), "r"(v ^ 3)
                             : "memory");
        }
        if ((tid & 127) == 0) {
            st[blockIdx.x].hog_cyc = clock64() - c0, st[blockIdx.x].hog_bytes = n * HOG_BYTES;
            if (NC == 0) st[blockIdx.x].cyc = st[blockIdx.x].hog_cyc, st[blockIdx.x].ns = globaltimer() - t0;
        }
    }
#endif
}

// ---------------- host ----------------
static int nsm, clk_khz, reps = 5;
static Stats *d_st;
static float *d_out;
static char *d_src;

template <int OP, int N, int NC, int HOG>
static void run(int iters, const char *note) {
    auto k = probe<OP, N, NC, HOG>;
    CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM));
    const int threads = 128 * (NC + (HOG ? 1 : 0));
    const long long hog_max = (NC ? 1024ll : 16ll) * iters * (HOG == COPY_HOG ? 2 : 1);  // with consumers: a safety cap only
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    Stats *h = new Stats[nsm], *best_st = new Stats[nsm];
    float best = 1e30f;
    for (int r = 0; r <= reps; r++) {  // r = 0 is a warm-up
        CHECK(cudaMemset(d_st, 0, nsm * sizeof(Stats)));
        CHECK(cudaEventRecord(e0));
        k<<<nsm, threads, SMEM>>>(iters, hog_max, d_st, d_out, d_src);
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
        CHECK(cudaGetLastError());
        float ms;
        CHECK(cudaEventElapsedTime(&ms, e0, e1));
        CHECK(cudaMemcpy(h, d_st, nsm * sizeof(Stats), cudaMemcpyDeviceToHost));
        if (r > 0 && ms < best) best = ms, memcpy(best_st, h, nsm * sizeof(Stats));
    }
    double cyc = 0, ns = 0, hc = 0, hb = 0;
    for (int i = 0; i < nsm; i++) cyc += best_st[i].cyc, ns += best_st[i].ns, hc += best_st[i].hog_cyc, hb += best_st[i].hog_bytes;
    cyc /= nsm, ns /= nsm, hc /= nsm, hb /= nsm;
    char hog[32] = "-";
    if (HOG) snprintf(hog, sizeof hog, "%.1f B/clk", hb / hc);
    const char *hog_name = HOG == COPY_HOG ? "+copies" : "+hog";
    if (NC == 0) {
        printf("%-28s | hog %s %s | %4.0f MHz | %.3f ms%s\n", HOG == COPY_HOG ? "copy hog alone" : "hog alone (1 warpgroup)",
               HOG == COPY_HOG ? "bulk copies 4 x 16 KB" : "st.shared.v4", hog, cyc / ns * 1e3, best, note);
    } else {
        const bool sp = OP == SP_SS || OP == SP_RS, ss = OP == DENSE_SS || OP == SP_SS;
        const double flop_cta = (double)NC * iters * 2.0 * 64 * N * 64;     // 64 logical k per iteration
        const double smem_cta = (double)NC * iters * (N * 128 + (ss ? (sp ? 4096 : 8192) : 0));  // B (+A) bytes
        const double tflops = flop_cta * nsm / (best * 1e-3) / 1e12;
        const double peak = (double)clk_khz * 1e3 * nsm * 4096 / 1e12;
        char name[64];
        snprintf(name, sizeof name, "%s m64n%dk%d wg=%d%s", op_name[OP], N, sp ? 32 : 16, NC, HOG ? hog_name : "");
        printf("%-28s | %7.1f TFLOP/s %6.1f%% of clk peak | %5.0f FLOP/clk/SM (%5.1f%% of %d) | %4.0f MHz | wgmma smem %5.1f B/clk | hog %s%s\n",
               name, tflops, 100 * tflops / peak, flop_cta / cyc, 100 * flop_cta / cyc / (sp ? 8192 : 4096), sp ? 8192 : 4096,
               cyc / ns * 1e3, smem_cta / cyc, hog, note);
    }
    delete[] h, delete[] best_st;
    CHECK(cudaEventDestroy(e0));
    CHECK(cudaEventDestroy(e1));
}

int main(int argc, char **argv) {
    int iters = 4096;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) iters = 256, reps = 2;
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else { fprintf(stderr, "usage: %s [--quick] [--iters N]\n", argv[0]); return 1; }
    }
    cudaDeviceProp prop;
    CHECK(cudaGetDeviceProperties(&prop, 0));
    CHECK(cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, 0));
    nsm = prop.multiProcessorCount;
    printf("device %s, sm_%d%d, %d SMs, clock %.0f MHz (attr), dense peak at that clock %.1f TFLOP/s, smem/block optin %zu KB\n",
           prop.name, prop.major, prop.minor, nsm, clk_khz / 1e3, clk_khz * 1e3 * nsm * 4096 / 1e12, prop.sharedMemPerBlockOptin / 1024);
    printf("iters %d (64 logical k each), %d reps + warm-up, best time; 1 CTA/SM, grid %d\n", iters, reps, nsm);
    if (prop.major != 9) { fprintf(stderr, "needs sm_90a (Hopper)\n"); return 1; }
    CHECK(cudaMalloc(&d_st, nsm * sizeof(Stats)));
    CHECK(cudaMalloc(&d_out, nsm * sizeof(float)));
    CHECK(cudaMalloc(&d_src, TMA_SRC_BYTES));
    CHECK(cudaMemset(d_src, 3, TMA_SRC_BYTES));
    run<DENSE_SS, 256, 1, NO_HOG>(iters, "");                    // 1. dense, A and B from smem
    run<DENSE_SS, 256, 2, NO_HOG>(iters, "");
    run<DENSE_RS, 256, 1, NO_HOG>(iters, "");                    // 2. dense, A from registers
    run<DENSE_RS, 256, 2, NO_HOG>(iters, "");
    run<SP_RS, 256, 1, NO_HOG>(iters, "");                       // 3. sparse, A from registers
    run<SP_RS, 256, 2, NO_HOG>(iters, "");
    run<SP_SS, 256, 1, NO_HOG>(iters, "");                       // 4. sparse, A and B from smem
    run<SP_SS, 256, 2, NO_HOG>(iters, "");
    run<SP_RS, 256, 0, STORE_HOG>(iters, "");                        // 5. smem bandwidth hog alone,
    run<SP_RS, 256, 2, STORE_HOG>(iters, "");                        //    with 2 sparse warpgroups,
    run<DENSE_RS, 256, 2, STORE_HOG>(iters, "  (control)");          //    with 2 dense warpgroups
    run<SP_RS, 128, 1, NO_HOG>(iters, "");                       // 6. sparse n128
    run<SP_RS, 128, 2, NO_HOG>(iters, "");
    run<SP_RS, 128, 2, STORE_HOG>(iters, "");
    // 7. (Session 12) do TMA fills compete with the wgmma's shared-memory reads like stores do?
    run<SP_RS, 256, 0, COPY_HOG>(iters, "");                  //    bulk copies alone,
    run<SP_RS, 256, 2, COPY_HOG>(iters, "");                  //    with 2 sparse warpgroups (RS, SS),
    run<SP_SS, 256, 2, COPY_HOG>(iters, "");
    run<DENSE_RS, 256, 2, COPY_HOG>(iters, "  (control)");    //    with 2 dense warpgroups
    run<SP_SS, 128, 2, NO_HOG>(iters, "");                     // 8. sparse SS n128 (the SS kernel's 128-token tile)
    run<SP_SS, 128, 2, COPY_HOG>(iters, "");
    return 0;
}
