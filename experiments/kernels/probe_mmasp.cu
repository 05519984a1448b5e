// probe_mmasp: can mma.sp.sync (m16n8k32 bf16) feed the Hopper sparse tensor cores from a gather?
//
// Build: nvcc -std=c++17 -O3 -gencode=arch=compute_90a,code=sm_90a -I. -o probe_mmasp experiments/kernels/probe_mmasp.cu
// Run:   ./probe_mmasp [--iters N]
//
// Why: Session 6 bounds the wgmma.sp gather kernels at 50 % of the sparse peak, because wgmma takes
// B only from shared memory, so every row group's gathered B is written there and read back
// (2 passes over 128 B/clk). mma.sp.sync takes B from registers: ldmatrix.trans with one row
// address per lane can gather the kept channels of a channel-major x tile straight into B
// fragments, one pass. A warp that owns a whole 64-row group (4 m16 tiles) reuses each B fragment
// 4 times, the same smem bytes per FLOP as wgmma m64 (1/64 B per FLOP). So the bound would be the
// mma.sp.sync rate itself, and bank conflicts of the gathered rows.
//
// Every CTA (1 per SM) has W warps; warp w holds 4 m16 × 8 n8 accumulators (a 64-row × 64-token
// tile, 128 fp32 registers). One loop step = one k32 step of the kernel: 8 ldmatrix.x4.trans (B of
// 8 n8 tiles) + 32 mma.sp, optionally the 4 A fragments + metadata from global memory (L2-resident,
// one step ahead). Cases:
//   dense mma.sync m16n8k16 registers only (32 per step, k16)   : dense rate, ideal 4096 FLOP/clk/SM
//   sparse regs only                                          : ideal 8192
//   sparse + B by ldmatrix, contiguous channels (no conflicts): the 2:4 feed
//   sparse + B by ldmatrix, 64:2:8 gather (random 4 of 8, chunk swizzled by channel & 7)
//   sparse + B by ldmatrix, 64:2:8 gather, blocks paired so each matrix's 8 rows hit distinct banks
//   the same with A from global memory
// Output: FLOP/clk/SM from clock64 over the loop (dense-equivalent FLOPs), % of the sparse ideal.
#include <cuda_runtime.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "experiments/kernels/probe_check.cuh"
#include "kernels/sm90_ptx.cuh"  // ldmatrix_x4_trans

// The same mma.sp / mma.sync as kernels/vnm_spmm_common.cuh and kernels/mma_sync.cuh (those headers
// bring autograd/util.h, whose CHECK is not the probes' one).
__device__ __forceinline__ void mma_sp(float *c, uint4 a, const uint32_t *b, uint32_t e) {
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, 0x0;"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
}
__device__ __forceinline__ void mma_dense(float *c, uint4 a, const uint32_t *b) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "r"(b[0]), "r"(b[1]));
}

constexpr int TOK = 64;                      // tokens per tile: 8 chunks of 16 bytes per channel row
constexpr int CH = 1024;                     // channels of the resident x tile (16 k32 steps of 64:2:8)
constexpr int KSTEPS = CH / 64;              // k32 steps per pass over the tile (64 channels each)
constexpr int XBYTES = CH * TOK * 2;         // 128 KB: one CTA per SM
enum Mode { DENSE_REGS, SP_REGS, SP_LDM_CONTIG, SP_LDM_GATHER, SP_LDM_PAIRED };
static const char *mode_name[] = {"dense mma.sync regs only", "sparse mma.sp regs only", "sparse + ldmatrix contiguous",
                                  "sparse + ldmatrix 64:2:8 gather", "sparse + ldmatrix gather, paired"};

// x tile: channel c's row holds 64 tokens = 8 chunks of 16 bytes; chunk j sits at j ^ (c & 7).
__device__ __forceinline__ uint32_t row_chunk(uint32_t base, int c, int j) { return base + c * (TOK * 2) + ((j ^ (c & 7)) << 4); }

// chan[w][s*32 + k]: channel of logical k (of 32) in step s for warp w (its row group)
template <int MODE, bool GLOBAL_A, int W>
__global__ void __launch_bounds__(W * 32, 1) probe(const int *__restrict__ chan, const uint4 *__restrict__ aglob, int iters,
                                                   long long *cycles, float *sink) {
    extern __shared__ __align__(1024) uint8_t smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    for (int i = threadIdx.x; i < XBYTES / 4; i += blockDim.x) ((uint32_t *)smem)[i] = 0x3f803f80u * ((i & 3) == 0);
    __syncthreads();
    const uint32_t base = (uint32_t)__cvta_generic_to_shared(smem);
    // this lane's row of each step: matrix lane/8 (k 8m..8m+7), row lane%8
    const int *my_chan = chan + warp * KSTEPS * 32 + lane;
    float acc[4][8][4];
#pragma unroll
    for (int m = 0; m < 4; m++)
#pragma unroll
        for (int n = 0; n < 8; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.f;
    uint4 a[4];  // A fragment (4 value registers) per m16 tile
#pragma unroll
    for (int m = 0; m < 4; m++) {
        uint4 v = aglob[(m * 32 + lane) * 2];
        a[m] = aglob[(m * 32 + lane) * 2];
    }
    uint32_t breg[8][4];
#pragma unroll
    for (int n = 0; n < 8; n++) breg[n][0] = breg[n][1] = breg[n][2] = breg[n][3] = 0x3f803f80u + lane + n;
    __syncwarp();
    long long t0 = clock64();
    for (int it = 0; it < iters; it++) {
#pragma unroll 1
        for (int s = 0; s < KSTEPS; s++) {
            uint4 an[4];
            if (GLOBAL_A) {
#pragma unroll
                for (int m = 0; m < 4; m++) an[m] = aglob[((size_t)((it * KSTEPS + s + 1) & 1023) * 4 + m) * 32 + lane];
            }
            if (MODE >= SP_LDM_CONTIG) {
                const int c = __ldg(my_chan + s * 32);
#pragma unroll
                for (int n = 0; n < 8; n++) vnm90::ldmatrix_x4_trans(row_chunk(base, c, n), breg[n]);
            }
#pragma unroll
            for (int m = 0; m < 4; m++)
#pragma unroll
                for (int n = 0; n < 8; n++) {
                    if (MODE == DENSE_REGS) {
                        mma_dense(acc[m][n], a[m], breg[n]);
                    } else {
                        mma_sp(acc[m][n], a[m], breg[n], 0x44444444u);
                    }
                }
            if (GLOBAL_A) {
#pragma unroll
                for (int m = 0; m < 4; m++) a[m] = an[m];
            }
        }
    }
    long long t1 = clock64();
    float sum = 0.f;
#pragma unroll
    for (int m = 0; m < 4; m++)
#pragma unroll
        for (int n = 0; n < 8; n++) sum += acc[m][n][0] + acc[m][n][1] + acc[m][n][2] + acc[m][n][3];
    sink[blockIdx.x * blockDim.x + threadIdx.x] = sum;
    if (lane == 0) cycles[blockIdx.x * W + warp] = t1 - t0;
}

// Channel lists for W warps (row groups): mode CONTIG: k -> channel k (8 consecutive rows per
// matrix, distinct chunks). GATHER: 4 random kept of each 8-channel block, blocks in order (matrix
// m = blocks 2m, 2m+1 of the step). PAIRED: the same kept sets, blocks re-paired greedily so the
// two blocks of a matrix keep disjoint residues (c & 7) where possible.
static void make_channels(int mode, int W, int *chan, double *conflict) {
    srand(7);
    int nblk = CH / 8;
    int total_extra = 0, nmat = 0;
    for (int w = 0; w < W; w++) {
        int kept[CH / 8][4];
        for (int b = 0; b < nblk; b++) {
            int pick[8] = {0, 1, 2, 3, 4, 5, 6, 7};
            for (int i = 7; i > 0; i--) {
                int j = rand() % (i + 1), t = pick[i];
                pick[i] = pick[j], pick[j] = t;
            }
            int mask = 0;
            for (int i = 0; i < 4; i++) mask |= 1 << pick[i];
            for (int i = 0, q = 0; i < 8; i++)
                if (mask >> i & 1) kept[b][q++] = b * 8 + i;
        }
        int order[CH / 8];
        for (int b = 0; b < nblk; b++) order[b] = b;
        if (mode == SP_LDM_PAIRED) {  // greedy: for each unpaired block, the next with disjoint residues
            int used[CH / 8] = {0}, q = 0;
            for (int b = 0; b < nblk; b++) {
                if (used[b]) continue;
                int mb = 0, best = -1, best_ov = 9;
                for (int i = 0; i < 4; i++) mb |= 1 << (kept[b][i] & 7);
                for (int c = b + 1; c < nblk && best_ov > 0; c++) {
                    if (used[c]) continue;
                    int mc = 0;
                    for (int i = 0; i < 4; i++) mc |= 1 << (kept[c][i] & 7);
                    int ov = __builtin_popcount(mb & mc);
                    if (ov < best_ov) best_ov = ov, best = c;
                }
                used[b] = used[best] = 1;
                order[q++] = b, order[q++] = best;
            }
        }
        for (int s = 0; s < KSTEPS; s++)
            for (int k = 0; k < 32; k++) {
                int c;
                if (mode == SP_LDM_CONTIG) c = s * 32 + k;  // 512 distinct channels, rows in order
                else c = kept[order[s * 8 + k / 4]][k % 4];
                chan[(w * KSTEPS + s) * 32 + k] = c;
            }
        for (int s = 0; s < KSTEPS; s++)
            for (int m = 0; m < 4; m++) {  // extra wavefronts of this matrix: max multiplicity - 1
                int cnt[8] = {0}, mx = 0;
                for (int r = 0; r < 8; r++) {
                    int c = chan[(w * KSTEPS + s) * 32 + 8 * m + r];
                    if (++cnt[c & 7] > mx) mx = cnt[c & 7];
                }
                total_extra += mx - 1, nmat++;
            }
    }
    *conflict = 1.0 + (double)total_extra / nmat;
}

template <int MODE, bool GA, int W>
static void run_case(int iters, int sms, const uint4 *aglob) {
    int *chan, *hchan = (int *)malloc(sizeof(int) * W * KSTEPS * 32);
    double conflict = 1.0;
    make_channels(MODE, W, hchan, &conflict);
    long long *cyc;
    float *sink;
    CHECK(cudaMalloc(&chan, sizeof(int) * W * KSTEPS * 32));
    CHECK(cudaMemcpy(chan, hchan, sizeof(int) * W * KSTEPS * 32, cudaMemcpyHostToDevice));
    CHECK(cudaMalloc(&cyc, sizeof(long long) * sms * W));
    CHECK(cudaMalloc(&sink, sizeof(float) * sms * W * 32));
    auto k = probe<MODE, GA, W>;
    CHECK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, XBYTES));
    k<<<sms, W * 32, XBYTES>>>(chan, aglob, 2, cyc, sink);  // warm-up
    CHECK(cudaDeviceSynchronize());
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    CHECK(cudaEventRecord(e0));
    k<<<sms, W * 32, XBYTES>>>(chan, aglob, iters, cyc, sink);
    CHECK(cudaEventRecord(e1));
    CHECK(cudaDeviceSynchronize());
    float ms;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    long long *h = (long long *)malloc(sizeof(long long) * sms * W), mx = 0;
    CHECK(cudaMemcpy(h, cyc, sizeof(long long) * sms * W, cudaMemcpyDeviceToHost));
    for (int i = 0; i < sms * W; i++) mx = h[i] > mx ? h[i] : mx;
    // dense-equivalent FLOP per SM: W warps x iters x KSTEPS x 32 mma x (2*16*8*32 sparse | 2*16*8*16 dense)
    double per_mma = MODE == DENSE_REGS ? 2.0 * 16 * 8 * 16 : 2.0 * 16 * 8 * 32;
    double flop_sm = (double)W * iters * KSTEPS * 32 * per_mma;
    double fpc = flop_sm / mx;
    double tflops = flop_sm * sms / (ms * 1e-3) / 1e12;
    printf("%-34s W=%2d A=%s | %7.0f FLOP/clk/SM (%5.1f%% of sparse 8192) | %7.1f TFLOP/s | %6.0f MHz | conflict x%.2f\n",
           mode_name[MODE], W, GA ? "global" : "regs  ", fpc, 100.0 * fpc / 8192, tflops, mx / (ms * 1e3), conflict);
    CHECK(cudaFree(chan));
    CHECK(cudaFree(cyc));
    CHECK(cudaFree(sink));
    free(hchan);
    free(h);
}

int main(int argc, char **argv) {
    int iters = 2000;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
    cudaDeviceProp p;
    CHECK(cudaGetDeviceProperties(&p, 0));
    int sms = p.multiProcessorCount;
    printf("# probe_mmasp (experiments/kernels/probe_mmasp.cu): %s, %d SMs, iters %d x %d k32 steps\n", p.name, sms, iters,
           KSTEPS);
    uint4 *aglob;  // 1024 steps x 4 m16 tiles x 32 lanes of A fragments (2 MB, L2-resident)
    size_t abytes = sizeof(uint4) * 1024 * 4 * 32 * 2;
    CHECK(cudaMalloc(&aglob, abytes));
    CHECK(cudaMemset(aglob, 0x3c, abytes));
    run_case<DENSE_REGS, false, 4>(iters, sms, aglob);
    run_case<DENSE_REGS, false, 8>(iters, sms, aglob);
    run_case<SP_REGS, false, 4>(iters, sms, aglob);
    run_case<SP_REGS, false, 8>(iters, sms, aglob);
    run_case<SP_LDM_CONTIG, false, 4>(iters, sms, aglob);
    run_case<SP_LDM_CONTIG, false, 8>(iters, sms, aglob);
    run_case<SP_LDM_GATHER, false, 8>(iters, sms, aglob);
    run_case<SP_LDM_PAIRED, false, 8>(iters, sms, aglob);
    run_case<SP_LDM_CONTIG, true, 8>(iters, sms, aglob);
    run_case<SP_LDM_PAIRED, true, 8>(iters, sms, aglob);
    CHECK(cudaFree(aglob));
    return 0;
}
