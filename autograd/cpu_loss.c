// Softmax cross-entropy with label smoothing on the CPU. Per row with label y >= 0:
//   target = (1 - eps)·onehot(y) + eps/K,  loss_row = lse(z) - Σ_k target_k z_k
// and the op returns the mean over those rows (0 when every row is ignored).
// Gradient: dz = (softmax(z) - target) · dloss / n_valid. saved[0] = softmax (rows, K).
#include <math.h>

#include "cpu_kernels.h"
#include "util.h"

static int32_t row_label(const TapeNode *n, int64_t r, int64_t K) {
    int32_t y = ((const int32_t *)n->in[1]->data)[r];
    if (y >= K) fatal("op cross_entropy '%s': label %d of row %lld is >= the %lld classes", n->out[0]->name, y, (long long)r, (long long)K);
    return y;
}

static int64_t count_valid(const TapeNode *n, int64_t rows, int64_t K) {
    int64_t valid = 0;
    for (int64_t r = 0; r < rows; r++) valid += row_label(n, r, K) >= 0;
    return valid;
}

void cpu_cross_entropy_forward(TapeNode *n) {
    const Tensor *lt = n->in[0];
    int64_t rows = cpu_rows(lt), K = cpu_last(lt);
    float eps = n->f[0];
    const float *logits = cpu_f32(n, lt);
    float *probs = cpu_recording(n) ? tensor_f32(cpu_save(n, 0, 2, (int64_t[]){rows, K}, "probs")) : NULL;
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *z = logits + r * K;
        float mx = z[0];
        for (int64_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
        double sum = 0.0, sum_z = 0.0;
        for (int64_t k = 0; k < K; k++) {
            sum += exp((double)(z[k] - mx));
            sum_z += z[k];
        }
        double lse = mx + log(sum);
        if (probs)
            for (int64_t k = 0; k < K; k++) probs[r * K + k] = (float)exp((double)z[k] - lse);
        int32_t y = row_label(n, r, K);
        if (y < 0) continue;
        total += lse - (1.0 - eps) * z[y] - eps / (double)K * sum_z;
    }
    int64_t valid = count_valid(n, rows, K);
    tensor_f32(n->out[0])[0] = valid ? (float)(total / (double)valid) : 0.0f;
}

void cpu_cross_entropy_backward(TapeNode *n) {
    float *dlogits = cpu_grad(n->in[0]);
    if (!dlogits) return;
    const Tensor *lt = n->in[0];
    int64_t rows = cpu_rows(lt), K = cpu_last(lt), valid = count_valid(n, rows, K);
    if (!valid) return;
    float eps = n->f[0], g = tensor_f32(n->out[0]->grad)[0] / (float)valid;
    const float *probs = tensor_f32(n->saved[0]);
    for (int64_t r = 0; r < rows; r++) {
        int32_t y = row_label(n, r, K);
        if (y < 0) continue;
        for (int64_t k = 0; k < K; k++) {
            float target = eps / (float)K + (k == y ? 1.0f - eps : 0.0f);
            dlogits[r * K + k] += g * (probs[r * K + k] - target);
        }
    }
}
