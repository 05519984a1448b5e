// Layer norm and RMSNorm over the last dim (CPU). Row statistics are accumulated in double.
//   layernorm: y = (x - mean)·rstd·gamma + beta;  saved[0] = mean, saved[1] = rstd (rows)
//   rmsnorm:   y = x·rstd·gamma, rstd = 1/sqrt(mean(x²) + eps);  saved[0] = rstd (rows)
// With xhat the normalised row and g = dy·gamma, the input gradients are
//   layernorm: dx = rstd·(g - mean(g) - xhat·mean(g·xhat))
//   rmsnorm:   dx = rstd·(g - xhat·mean(g·xhat))
#include <math.h>

#include "cpu_kernels.h"

typedef struct NormArgs {
    const float *x, *gamma, *beta;
    float *y;
    int64_t rows, C;
    float eps;
} NormArgs;

static NormArgs norm_args(const TapeNode *n, bool has_beta) {
    NormArgs a = {.x = cpu_f32(n, n->in[0]), .y = cpu_f32(n, n->out[0]), .rows = cpu_rows(n->in[0]),
                  .C = cpu_last(n->in[0]), .eps = n->f[0]};
    a.gamma = n->in[1] ? cpu_f32(n, n->in[1]) : NULL;
    a.beta = has_beta && n->in[2] ? cpu_f32(n, n->in[2]) : NULL;
    return a;
}

// y = xhat·gamma + beta for one row, xhat = (x - mean)·rstd
static void norm_write_row(const NormArgs *a, const float *x, float *y, float mean, float rstd) {
    for (int64_t c = 0; c < a->C; c++) {
        float v = (x[c] - mean) * rstd;
        if (a->gamma) v *= a->gamma[c];
        if (a->beta) v += a->beta[c];
        y[c] = v;
    }
}

// Shared forward; `center` selects layernorm (subtract the mean) or rmsnorm.
static void norm_forward(TapeNode *n, bool center) {
    NormArgs a = norm_args(n, center);
    int64_t rows_shape[1] = {a.rows};
    bool keep = cpu_recording(n);
    float *mean_s = keep && center ? tensor_f32(cpu_save(n, 0, 1, rows_shape, "mean")) : NULL;
    float *rstd_s = keep ? tensor_f32(cpu_save(n, center ? 1 : 0, 1, rows_shape, "rstd")) : NULL;
    for (int64_t r = 0; r < a.rows; r++) {
        const float *x = a.x + r * a.C;
        double mean = 0.0, var = 0.0;
        if (center) {
            for (int64_t c = 0; c < a.C; c++) mean += x[c];
            mean /= (double)a.C;
        }
        for (int64_t c = 0; c < a.C; c++) var += (x[c] - mean) * (x[c] - mean);
        float rstd = (float)(1.0 / sqrt(var / (double)a.C + a.eps));
        norm_write_row(&a, x, a.y + r * a.C, (float)mean, rstd);
        if (mean_s) mean_s[r] = (float)mean;
        if (rstd_s) rstd_s[r] = rstd;
    }
}

static void norm_backward(TapeNode *n, bool center) {
    NormArgs a = norm_args(n, center);
    const float *dy_all = tensor_f32(n->out[0]->grad);
    const float *mean_s = center ? tensor_f32(n->saved[0]) : NULL;
    const float *rstd_s = tensor_f32(n->saved[center ? 1 : 0]);
    float *dx_all = cpu_grad(n->in[0]), *dgamma = cpu_grad(n->in[1]), *dbeta = center ? cpu_grad(n->in[2]) : NULL;
    for (int64_t r = 0; r < a.rows; r++) {
        const float *x = a.x + r * a.C, *dy = dy_all + r * a.C;
        float mean = mean_s ? mean_s[r] : 0.0f, rstd = rstd_s[r];
        double sum_g = 0.0, sum_gx = 0.0;
        for (int64_t c = 0; c < a.C; c++) {
            float xhat = (x[c] - mean) * rstd;
            float g = a.gamma ? dy[c] * a.gamma[c] : dy[c];
            sum_g += g;
            sum_gx += g * xhat;
            if (dgamma) dgamma[c] += dy[c] * xhat;
            if (dbeta) dbeta[c] += dy[c];
        }
        if (!dx_all) continue;
        float mean_g = center ? (float)(sum_g / (double)a.C) : 0.0f, mean_gx = (float)(sum_gx / (double)a.C);
        float *dx = dx_all + r * a.C;
        for (int64_t c = 0; c < a.C; c++) {
            float xhat = (x[c] - mean) * rstd;
            float g = a.gamma ? dy[c] * a.gamma[c] : dy[c];
            dx[c] += rstd * (g - mean_g - xhat * mean_gx);
        }
    }
}

void cpu_layernorm_forward(TapeNode *n) { norm_forward(n, true); }
void cpu_layernorm_backward(TapeNode *n) { norm_backward(n, true); }
void cpu_rmsnorm_forward(TapeNode *n) { norm_forward(n, false); }
void cpu_rmsnorm_backward(TapeNode *n) { norm_backward(n, false); }
