// OP_CROSS_ENTROPY: mean softmax cross-entropy with label smoothing ε over rows whose label >= 0.
//   loss_b = logsumexp(z) − (1−ε)·z_y − (ε/K)·Σ_k z_k;   d z_k = (p_k − (1−ε)[k=y] − ε/K) / n_valid.
// saved[0] = probabilities (B, K) f32; saved[1] = n_valid (1) f32. The mean is a fixed-order sum
// in one block (deterministic). A label >= K makes the loss NaN (loud, no host sync needed).
#include <math.h>

#include "kernels/cuda_common.cuh"

// One block per row.
__global__ void ce_rows_kernel(const bf16 *z, const int32_t *labels, float *probs, float *row_loss, int64_t K, float eps) {
    int64_t b = blockIdx.x;
    const bf16 *zr = z + b * K;
    float m = -INFINITY;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) m = fmaxf(m, to_f(zr[k]));
    // block max via the sum helper's layout: reduce in shared memory
    __shared__ float red[32];
    m = warp_max(m);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
    __syncthreads();
    if (threadIdx.x < 32) {
        float v = threadIdx.x < (blockDim.x + 31) / 32 ? red[threadIdx.x] : -INFINITY;
        v = warp_max(v);
        if (threadIdx.x == 0) red[0] = v;
    }
    __syncthreads();
    m = red[0];
    float se = 0.0f, sz = 0.0f;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
        float v = to_f(zr[k]);
        se += __expf(v - m);
        sz += v;
    }
    se = block_sum(se);
    sz = block_sum(sz);
    float inv = 1.0f / se;
    for (int64_t k = threadIdx.x; k < K; k += blockDim.x) probs[b * K + k] = __expf(to_f(zr[k]) - m) * inv;
    if (threadIdx.x == 0) {
        int32_t y = labels[b];
        float loss = 0.0f;
        if (y >= K) loss = NAN;
        else if (y >= 0) loss = m + logf(se) - (1.0f - eps) * to_f(zr[y]) - eps * sz / (float)K;
        row_loss[b] = loss;
    }
}

// loss = Σ row_loss / n_valid (one block, fixed order); n_valid kept for backward.
template <typename OT>
__global__ void ce_mean_kernel(const float *row_loss, const int32_t *labels, int64_t B, OT *loss, float *n_valid) {
    float s = 0.0f, c = 0.0f;
    for (int64_t b = threadIdx.x; b < B; b += blockDim.x) {
        s += row_loss[b];
        c += labels[b] >= 0 ? 1.0f : 0.0f;
    }
    s = block_sum(s);
    c = block_sum(c);
    if (threadIdx.x == 0) {
        loss[0] = from_f<OT>(c > 0.0f ? s / c : 0.0f);
        n_valid[0] = c;
    }
}

template <typename G, typename LT>
__global__ void ce_bwd_kernel(const float *probs, const int32_t *labels, const LT *dloss, const float *n_valid, G *gz,
                              int64_t B, int64_t K, float eps, bool add) {
    int64_t total = B * K;
    float scale = n_valid[0] > 0.0f ? to_f(dloss[0]) / n_valid[0] : 0.0f;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = i / K, k = i % K;
        int32_t y = labels[b];
        float g = y < 0 ? 0.0f : probs[i] - eps / (float)K - (k == y ? 1.0f - eps : 0.0f);
        acc(gz, i, g * scale, add);
    }
}

void cuda_cross_entropy_fwd(TapeNode *n) {
    Tensor *z = n->in[0], *labels = n->in[1], *loss = n->out[0];
    cuda_expect(z, DT_BF16, "cross_entropy", "logits");
    cuda_expect(labels, DT_I32, "cross_entropy", "labels");
    int64_t K = last_dim(z), B = rows_of(z);
    if (labels->numel != B) fatal("CUDA cross_entropy '%s': one label per row of logits expected", loss->name);
    int64_t one = 1, pshape[2] = {B, K};
    float *probs = (float *)cuda_keep(n, 0, SCRATCH_A, DT_F32, 2, pshape, "probs");
    float *nv = (float *)cuda_keep(n, 1, SCRATCH_B, DT_F32, 1, &one, "n_valid");
    float *row_loss = (float *)cuda_scratch(SCRATCH_REDUCE, (size_t)B * sizeof(float));
    ce_rows_kernel<<<(unsigned)B, 256, 0, cuda_stream()>>>(cbf(z), (const int32_t *)labels->data, probs,
                                                          row_loss, K, n->f[0]);
    CUDA_LAUNCH_CHECK();
    if (loss->dtype == DT_F32)
        ce_mean_kernel<float><<<1, 1024, 0, cuda_stream()>>>(row_loss, (const int32_t *)labels->data, B, (float *)loss->data, nv);
    else if (loss->dtype == DT_BF16)
        ce_mean_kernel<bf16><<<1, 1024, 0, cuda_stream()>>>(row_loss, (const int32_t *)labels->data, B, mbf(loss), nv);
    else
        fatal("CUDA cross_entropy '%s': loss dtype %s", loss->name, dtype_name(loss->dtype));
    CUDA_LAUNCH_CHECK();
}

void cuda_cross_entropy_bwd(TapeNode *n) {
    Tensor *z = n->in[0], *labels = n->in[1], *loss = n->out[0], *gz = grad_of(z);
    if (!gz) return;
    int64_t K = last_dim(z), B = rows_of(z);
    unsigned grid = cdiv(B * K, 256) > 16384 ? 16384 : cdiv(B * K, 256);
    const float *probs = (const float *)n->saved[0]->data, *nv = (const float *)n->saved[1]->data;
    const int32_t *lab = (const int32_t *)labels->data;
    bool add = grad_accumulate(gz);
    DISPATCH_GRAD(gz->dtype, G, {
        if (loss->grad->dtype == DT_F32)
            ce_bwd_kernel<G, float><<<grid, 256, 0, cuda_stream()>>>(probs, lab, (const float *)loss->grad->data, nv,
                                                                     (G *)gz->data, B, K, n->f[0], add);
        else
            ce_bwd_kernel<G, bf16><<<grid, 256, 0, cuda_stream()>>>(probs, lab, cbf(loss->grad), nv, (G *)gz->data, B, K,
                                                                    n->f[0], add);
    });
    CUDA_LAUNCH_CHECK();
}
