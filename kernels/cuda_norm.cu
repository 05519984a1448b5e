// OP_LAYERNORM and OP_RMSNORM: one warp per row, 8 bf16 (16 bytes) per lane access when the row
// length allows, fp32 statistics. saved: layernorm mean, rstd (rows, f32); rmsnorm rstd.
// Weight gradients are column sums (deterministic, colsum_into).
#include "kernels/cuda_common.cuh"

#define ROWS_PER_BLOCK 8

// Rows of length C (C % 8 == 0), streamed three times (any C). RMS: no mean, no beta.
template <bool RMS>
__global__ void norm_fwd_kernel(const bf16 *x, const bf16 *gamma, const bf16 *beta, bf16 *y, float *mean_out,
                                float *rstd_out, int64_t rows, int C, float eps) {
    pdl_trigger();  // the next kernel (a decode SpMM) may start loading its weights
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= rows) return;
    const bf16 *xr = x + row * C;
    float v[8];
    float mean = 0.0f;
    if (!RMS) {
        float s = 0.0f;
        for (int c = lane * 8; c < C; c += 256) {
            load8<true>(xr + c, v);
#pragma unroll
            for (int k = 0; k < 8; k++) s += v[k];
        }
        mean = warp_sum(s) / C;
    }
    float ss = 0.0f;
    for (int c = lane * 8; c < C; c += 256) {
        load8<true>(xr + c, v);
#pragma unroll
        for (int k = 0; k < 8; k++) ss += (v[k] - mean) * (v[k] - mean);
    }
    float rstd = rsqrtf(warp_sum(ss) / C + eps);
    for (int c = lane * 8; c < C; c += 256) {
        float g[8] = {1, 1, 1, 1, 1, 1, 1, 1}, b[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        load8<true>(xr + c, v);
        if (gamma) load8<true>(gamma + c, g);
        if (beta) load8<true>(beta + c, b);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = (v[k] - mean) * rstd * g[k] + b[k];
        store8<true>(y + row * C + c, v);
    }
    if (lane == 0) {
        if (!RMS) mean_out[row] = mean;
        rstd_out[row] = rstd;
    }
}

__device__ __forceinline__ void bf16x8_to_f(const uint4 &u, float v[8]) {
    const bf16 *h = (const bf16 *)&u;
#pragma unroll
    for (int k = 0; k < 8; k++) v[k] = to_f(h[k]);
}

// The same for C <= 256·NV: a lane loads its NV 16-byte pieces of x, γ and β up front (every load
// in flight at once, x read once) and keeps them in registers. A decode step's few rows are all
// latency: loads issued one after another cost ~10 µs for 16 rows of 4096 (ncu, H200).
template <bool RMS, int NV>
__global__ void norm_fwd_regs_kernel(const bf16 *x, const bf16 *gamma, const bf16 *beta, bf16 *y, float *mean_out,
                                     float *rstd_out, int64_t rows, int C, float eps) {
    pdl_trigger();
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= rows) return;
    const uint4 zero = make_uint4(0, 0, 0, 0);
    uint4 xq[NV], gq[NV], bq[NV];
#pragma unroll
    for (int j = 0; j < NV; j++) {  // clamped, not branched: a branch per load would serialize them
        const int c = min(lane * 8 + 256 * j, C - 8);
        xq[j] = *(const uint4 *)(x + row * C + c);
        gq[j] = gamma ? *(const uint4 *)(gamma + c) : zero;
        bq[j] = beta ? *(const uint4 *)(beta + c) : zero;
    }
    float v[8], mean = 0.0f, ss = 0.0f;
    if (!RMS) {
        float s = 0.0f;
#pragma unroll
        for (int j = 0; j < NV; j++)
            if (lane * 8 + 256 * j < C) {
                bf16x8_to_f(xq[j], v);
#pragma unroll
                for (int k = 0; k < 8; k++) s += v[k];
            }
        mean = warp_sum(s) / C;
    }
#pragma unroll
    for (int j = 0; j < NV; j++)
        if (lane * 8 + 256 * j < C) {
            bf16x8_to_f(xq[j], v);
#pragma unroll
            for (int k = 0; k < 8; k++) ss += (v[k] - mean) * (v[k] - mean);
        }
    float rstd = rsqrtf(warp_sum(ss) / C + eps);
#pragma unroll
    for (int j = 0; j < NV; j++)
        if (lane * 8 + 256 * j < C) {
            float g[8], b[8];
            bf16x8_to_f(xq[j], v);
            bf16x8_to_f(gq[j], g);
            bf16x8_to_f(bq[j], b);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] = (v[k] - mean) * rstd * (gamma ? g[k] : 1.0f) + b[k];
            store8<true>(y + row * C + lane * 8 + 256 * j, v);
        }
    if (lane == 0) {
        if (!RMS) mean_out[row] = mean;
        rstd_out[row] = rstd;
    }
}

// dx += rstd·(g − mean(g) − x̂·mean(g·x̂)), g = dy·γ, x̂ = (x − mean)·rstd (RMS: no mean terms).
template <bool RMS, bool VEC, typename G>
__global__ void norm_bwd_kernel(const bf16 *x, const bf16 *gamma, const bf16 *dy, const float *mean_in,
                                const float *rstd_in, G *dx, int64_t rows, int C, bool add) {
    int lane = threadIdx.x & 31;
    int64_t row = (int64_t)blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (row >= rows) return;
    float mean = RMS ? 0.0f : mean_in[row], rstd = rstd_in[row];
    const bf16 *xr = x + row * C, *dyr = dy + row * C;
    float v[8], g[8] = {1, 1, 1, 1, 1, 1, 1, 1}, d[8];
    float sg = 0.0f, sgx = 0.0f;
    for (int c = lane * 8; c < C; c += 256) {
        load8<VEC>(xr + c, v);
        if (gamma) load8<VEC>(gamma + c, g);
        load8<VEC>(dyr + c, d);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            float gg = d[k] * g[k];
            sg += gg;
            sgx += gg * (v[k] - mean) * rstd;
        }
    }
    float mg = RMS ? 0.0f : warp_sum(sg) / C, mgx = warp_sum(sgx) / C;
    for (int c = lane * 8; c < C; c += 256) {
        load8<VEC>(xr + c, v);
        if (gamma) load8<VEC>(gamma + c, g);
        load8<VEC>(dyr + c, d);
        float t[8];
#pragma unroll
        for (int k = 0; k < 8; k++) t[k] = rstd * (d[k] * g[k] - mg - (v[k] - mean) * rstd * mgx);
        acc8<VEC>(dx + row * C + c, t, add);
    }
}

// f(r, c) = dy·x̂ (the γ gradient).
struct DyXhat {
    const bf16 *dy, *x;
    const float *mean, *rstd;
    int64_t C;
    __device__ float operator()(int64_t r, int64_t c) const {
        float m = mean ? mean[r] : 0.0f;
        return to_f(dy[r * C + c]) * (to_f(x[r * C + c]) - m) * rstd[r];
    }
};

template <bool RMS> static void norm_fwd(TapeNode *n) {
    const char *op = RMS ? "rmsnorm" : "layernorm";
    Tensor *x = n->in[0], *gamma = n->in[1], *beta = RMS ? NULL : n->in[2], *y = n->out[0];
    cuda_expect(x, DT_BF16, op, "x");
    if (gamma) cuda_expect(gamma, DT_BF16, op, "gamma");
    if (beta) cuda_expect(beta, DT_BF16, op, "beta");
    cuda_expect(y, DT_BF16, op, "output");
    int64_t rows = rows_of(x), C = last_dim(x);
    if (C % 8) fatal("CUDA %s '%s': last dim %lld is not a multiple of 8", op, y->name, (long long)C);
    float *mean = RMS ? NULL : (float *)cuda_keep(n, 0, SCRATCH_A, DT_F32, 1, &rows, "mean");
    float *rstd = (float *)cuda_keep(n, RMS ? 0 : 1, SCRATCH_B, DT_F32, 1, &rows, "rstd");
    dim3 grid(cdiv(rows, ROWS_PER_BLOCK));
    const bf16 *g = gamma ? cbf(gamma) : NULL, *b = beta ? cbf(beta) : NULL;
    const int threads = 32 * ROWS_PER_BLOCK;
#define NORM_FWD_REGS(NV) \
    norm_fwd_regs_kernel<RMS, NV><<<grid, threads, 0, cuda_stream()>>>(cbf(x), g, b, mbf(y), mean, rstd, rows, (int)C, n->f[0])
    if (C <= 256) NORM_FWD_REGS(1);
    else if (C <= 512) NORM_FWD_REGS(2);
    else if (C <= 1024) NORM_FWD_REGS(4);
    else if (C <= 2048) NORM_FWD_REGS(8);
    else if (C <= 4096) NORM_FWD_REGS(16);
    else norm_fwd_kernel<RMS><<<grid, threads, 0, cuda_stream()>>>(cbf(x), g, b, mbf(y), mean, rstd, rows, (int)C, n->f[0]);
#undef NORM_FWD_REGS
    CUDA_LAUNCH_CHECK();
}

template <bool RMS> static void norm_bwd(TapeNode *n) {
    const char *op = RMS ? "rmsnorm" : "layernorm";
    Tensor *x = n->in[0], *gamma = n->in[1], *beta = RMS ? NULL : n->in[2], *y = n->out[0];
    cuda_expect(y->grad, DT_BF16, op, "output gradient");
    int64_t rows = rows_of(x), C = last_dim(x);
    const float *mean = RMS ? NULL : (const float *)n->saved[0]->data;
    const float *rstd = (const float *)n->saved[RMS ? 0 : 1]->data;
    const bf16 *dy = cbf(y->grad);
    Tensor *gx = grad_of(x), *gg = grad_of(gamma), *gb = grad_of(beta);
    if (gx) {
        dim3 grid(cdiv(rows, ROWS_PER_BLOCK));
        bool add = grad_accumulate(gx);
        DISPATCH_GRAD(gx->dtype, G, {
            norm_bwd_kernel<RMS, true, G><<<grid, 32 * ROWS_PER_BLOCK, 0, cuda_stream()>>>(cbf(x), gamma ? cbf(gamma) : NULL, dy, mean, rstd,
                                                                                           (G *)gx->data, rows, (int)C, add);
        });
        CUDA_LAUNCH_CHECK();
    }
    if (gg) colsum_into(DyXhat{dy, cbf(x), mean, rstd, C}, rows, C, gg, 1.0f);
    if (gb) colsum_into(ColOf{dy, C}, rows, C, gb, 1.0f);
}

void cuda_layernorm_fwd(TapeNode *n) { norm_fwd<false>(n); }
void cuda_layernorm_bwd(TapeNode *n) { norm_bwd<false>(n); }
void cuda_rmsnorm_fwd(TapeNode *n) { norm_fwd<true>(n); }
void cuda_rmsnorm_bwd(TapeNode *n) { norm_bwd<true>(n); }
