// Fused LoRA backward over dy for rank 16: dh = s·dy·B and dB += s·dyᵀ·h in one pass over dy
// (M×N), the largest tensor a LoRA linear's backward reads. As two cuBLAS GEMMs (M×16×N and
// N×16×M) each read dy once, bandwidth-bound (H100, DeiT-base batch 256, fc1: ~120 µs each).
//
// Three CTAs per SM: CTA p owns rows [p·rows, p·rows + rows) (rows a multiple of 64) and walks the
// steps (64-column chunk c of dy) × (64-row block b of its rows), chunks outer:
//   dh[b]        += dy[b, c] · B[c]    warp w: rows 16w.. of the block; f32 sums in shared memory
//   dBpart[p][c] += dy[b, c]ᵀ · h[b]   warp w: chunk columns 16w..; registers, stored to global
//                                      memory when the chunk's last block is done
// Each step's dy tile and B chunk stream through a cp.async ring. A second kernel adds the
// per-CTA parts in a fixed order (no atomics: deterministic): dB (+)= s·Σ_p dBpart[p].
#include <stdlib.h>
#include <string.h>

#include "kernels/lora_bwd.cuh"
#include "kernels/mma_sync.cuh"

namespace lorabwd {
constexpr int R = 16;                        // the rank handled here
constexpr int TM = 64, TN = 64;              // dy tile: rows × columns
constexpr int LDT = TN + 8;                  // dy tile pitch (bf16): 144-byte rows, ldmatrix conflict-free
constexpr int LDR = R + 8;                   // B chunk / h pitch: 48-byte rows, conflict-free
constexpr int NST = 4;                       // ring stages
constexpr int CTAS_PER_SM = 3;               // a CTA's step is latency-bound: three interleave
constexpr int STAGE = TM * LDT + TN * LDR;   // bf16 per stage: the dy tile, then the B chunk
constexpr int MAX_ROWS = 1024;               // rows per CTA (shared memory: h and the dh sums)

static size_t smem_bytes(int rows) { return (size_t)NST * STAGE * 2 + (size_t)rows * (LDR * 2 + R * 4); }

__global__ void __launch_bounds__(128, CTAS_PER_SM) dy_kernel(const bf16 *__restrict__ dy, const bf16 *__restrict__ B,
                                                 const bf16 *__restrict__ h, bf16 *__restrict__ dh,
                                                 float *__restrict__ part, int M, int N, int rows, float s) {
    extern __shared__ __align__(128) unsigned char smem[];
    bf16 *ring = (bf16 *)smem, *sH = ring + NST * STAGE;
    float *sDh = (float *)(sH + rows * LDR);
    const int p = blockIdx.x, m0 = p * rows, mine = min(rows, M - m0);
    const int nrb = (mine + TM - 1) / TM, steps = nrb * ((N + TN - 1) / TN);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;

    for (int i = threadIdx.x; i < nrb * TM * 2; i += blockDim.x) {  // h rows (zero past M): group 0
        int r = i >> 1, c = (i & 1) * 8;
        cp_async16(sH + r * LDR + c, h + (int64_t)(m0 + min(r, mine - 1)) * R + c, r < mine);
    }
    for (int i = threadIdx.x; i < nrb * TM * R; i += blockDim.x) sDh[i] = 0.0f;
    auto load_step = [&](int i) {  // step i (chunk i / nrb, block i % nrb) into stage i % NST
        if (i >= steps) return;
        bf16 *st = ring + (i % NST) * STAGE;
        const int c0 = (i / nrb) * TN, r0 = (i % nrb) * TM;
        for (int k = threadIdx.x; k < TM * TN / 8; k += blockDim.x) {
            int r = k >> 3, c = (k & 7) * 8;
            bool ok = r0 + r < mine && c0 + c < N;
            cp_async16(st + r * LDT + c, dy + (ok ? (int64_t)(m0 + r0 + r) * N + c0 + c : 0), ok);
        }
        for (int k = threadIdx.x; k < TN * 2; k += blockDim.x) {
            int r = k >> 1, c = (k & 1) * 8;
            bool ok = c0 + r < N;
            cp_async16(st + TM * LDT + r * LDR + c, B + (ok ? (int64_t)(c0 + r) * R + c : 0), ok);
        }
    };
    for (int i = 0; i < NST - 1; i++) {
        load_step(i);
        cp_async_commit();
    }
    float db[2][4] = {};
    for (int i = 0; i < steps; i++) {
        load_step(i + NST - 1);
        cp_async_commit();
        cp_async_wait<NST - 1>();  // group i (step i) has landed
        __syncthreads();
        const bf16 *tile = ring + (i % NST) * STAGE, *bc = tile + TM * LDT;
        const int rb = i % nrb, c0 = (i / nrb) * TN;
        float acc[2][4] = {};
#pragma unroll
        for (int kk = 0; kk < TN / 16; kk++) {  // dh: A = dy rows, B = the B chunk (k = dy's columns)
            uint32_t a[4], b[4];
            ldsm4(a, tile + (16 * warp + (lane & 15)) * LDT + 16 * kk + (lane >> 4) * 8);
            ldsm4t(b, bc + (16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8) * LDR + (lane >> 4) * 8);
            mma16816(acc[0], a, b[0], b[1]);
            mma16816(acc[1], a, b[2], b[3]);
        }
        float *d = sDh + (rb * TM + 16 * warp) * R;
#pragma unroll
        for (int j = 0; j < 2; j++)
#pragma unroll
            for (int e = 0; e < 4; e++) d[(g + 8 * (e >> 1)) * R + 8 * j + 2 * t + (e & 1)] += acc[j][e];
#pragma unroll
        for (int kk = 0; kk < TM / 16; kk++) {  // dB: A = dy tileᵀ (ldmatrix.trans), B = h rows (k = dy's rows)
            uint32_t a[4], b[4];
            ldsm4t(a, tile + (16 * kk + (lane & 7) + ((lane >> 4) & 1) * 8) * LDT + 16 * warp + ((lane >> 3) & 1) * 8);
            ldsm4t(b, sH + (rb * TM + 16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8) * LDR + (lane >> 4) * 8);
            mma16816(db[0], a, b[0], b[1]);
            mma16816(db[1], a, b[2], b[3]);
        }
        if (rb == nrb - 1) {  // the chunk is done: store this CTA's part, start the next chunk's sums
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    int n = c0 + 16 * warp + g + 8 * (e >> 1);
                    if (n < N) part[((int64_t)p * N + n) * R + 8 * j + 2 * t + (e & 1)] = db[j][e];
                    db[j][e] = 0.0f;
                }
        }
        __syncthreads();  // stage i % NST is free for step i + NST; the dh sums are complete after the last
    }
    for (int i = threadIdx.x; i < mine * R; i += blockDim.x) dh[(int64_t)m0 * R + i] = __float2bfloat16(s * sDh[i]);
}

// gB[e] (+)= s·Σ_p part[p][e] in the order p = 0, 1, ...
template <typename G>
__global__ void reduce_kernel(const float *__restrict__ part, int P, int64_t NR, G *gB, float s, bool add) {
    int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= NR) return;
    float sum = 0.0f;
    for (int p = 0; p < P; p++) sum += part[(int64_t)p * NR + e];
    acc(gB, e, s * sum, add);
}
}  // namespace lorabwd
using namespace lorabwd;

// Opt-in (VNM_LORA_FUSED=1): on the H100 it is still slower than the two cuBLAS GEMMs (DeiT-base
// step 74.3 ms against 73.3 ms; the per-step work of a CTA is latency-bound and the per-CTA parts
// add traffic). Kept, tested, as the starting point for a TMA-fed, wider version.
bool lora_dy_fused_ok(int64_t N, int64_t r) {
    static int on = -1;
    if (on < 0) on = env_int("VNM_LORA_FUSED", 0, 0, 1);
    return on && r == R && N % 8 == 0 && N < (1 << 30);
}

void lora_dy_fused(const bf16 *dy, const bf16 *B, const bf16 *h, bf16 *dh, Tensor *gB, int64_t M, int64_t N, float s) {
    static size_t raised = 0;
    const int sms = cuda_sm_count();
    int64_t rows = (M + CTAS_PER_SM * sms - 1) / (CTAS_PER_SM * sms);  // rounded up to whole 64-row blocks
    rows = (rows + TM - 1) / TM * TM;
    if (rows > MAX_ROWS) rows = MAX_ROWS;
    int P = (int)((M + rows - 1) / rows);
    size_t sm = smem_bytes((int)rows);
    if (sm > raised) {
        CUDA_CHECK(cudaFuncSetAttribute(dy_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem_bytes(MAX_ROWS)));
        raised = smem_bytes(MAX_ROWS);
    }
    float *part = (float *)cuda_scratch(SCRATCH_REDUCE, (size_t)P * N * R * sizeof(float));
    dy_kernel<<<P, 128, sm, cuda_stream()>>>(dy, B, h, dh, part, (int)M, (int)N, (int)rows, s);
    CUDA_LAUNCH_CHECK();
    bool add = grad_accumulate(gB);
    DISPATCH_GRAD(gB->dtype, G, {
        reduce_kernel<G><<<cdiv(N * R, 256), 256, 0, cuda_stream()>>>(part, P, N * R, (G *)gB->data, s, add);
    });
    CUDA_LAUNCH_CHECK();
}
