// GPU tests of the V:N:M SpMM kernels against vnm_spmm_cpu over the same compressed data:
// every V in {16, 32, 64, 128} × M in 4..16, odd n (decode and prefill sizes), epilogues,
// row_perm and permuted input channels, for each kernel the device can run.
// Skips without a GPU.
#include <criterion/criterion.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/vnm_spmm.h"
extern "C" {
#include "autograd/rng.h"
#include "autograd/tensor.h"
}

static int gpu_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) n = 0;
    cudaGetLastError();
    return n;
}

#define SKIP_WITHOUT_GPU() \
    if (gpu_count() == 0) cr_skip_test("no CUDA device")

typedef struct Case {
    int V, M;
    int64_t out, in, n;
    unsigned flags;  // VNM_RANDOM_*
    int bias, residual, act;
} Case;

static void *dev_copy(const void *src, size_t bytes) {
    void *p = NULL;
    cr_assert_eq(cudaMalloc(&p, bytes), cudaSuccess);
    cr_assert_eq(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice), cudaSuccess);
    return p;
}

// Runs one case with one kernel; returns 1 if the kernel ran, 0 if it is not available for it.
static int run_case(const Case *c, int kernel, uint64_t seed) {
    VnmPattern p = {c->V, 2, c->M};
    VnmMatrix m;
    vnm_random(p, c->out, c->in, seed, c->flags, &m);
    VnmDeviceMatrix d;
    Err err;
    cr_assert_eq(vnm_upload(&m, &d, &err), 0, "%s", err.msg);
    Rng rng;
    rng_seed(&rng, seed ^ 0x5eed);
    int64_t n = c->n, out = c->out, in = c->in;
    uint16_t *xh = (uint16_t *)malloc((size_t)(n * in) * 2), *bh = (uint16_t *)malloc((size_t)out * 2);
    uint16_t *rh = (uint16_t *)malloc((size_t)(n * out) * 2), *yh = (uint16_t *)malloc((size_t)(n * out) * 2);
    float *xf = (float *)malloc((size_t)(n * in) * 4), *bf = (float *)malloc((size_t)out * 4);
    float *ref = (float *)malloc((size_t)(n * out) * 4);
    for (int64_t i = 0; i < n * in; i++) xh[i] = f32_to_bf16(rng_normal(&rng)), xf[i] = bf16_to_f32(xh[i]);
    for (int64_t i = 0; i < out; i++) bh[i] = f32_to_bf16(rng_normal(&rng)), bf[i] = bf16_to_f32(bh[i]);
    for (int64_t i = 0; i < n * out; i++) rh[i] = f32_to_bf16(rng_normal(&rng));
    vnm_spmm_cpu(&m, xf, n, c->bias ? bf : NULL, ref);
    for (int64_t i = 0; i < n * out; i++) {
        float v = ref[i];
        if (c->act == VNM_ACT_GELU) v = 0.5f * v * (1.0f + erff(v * 0.70710678f));
        if (c->residual) v += bf16_to_f32(rh[i]);
        ref[i] = v;
    }
    uint16_t *xd = (uint16_t *)dev_copy(xh, (size_t)(n * in) * 2), *bd = (uint16_t *)dev_copy(bh, (size_t)out * 2);
    uint16_t *rd = (uint16_t *)dev_copy(rh, (size_t)(n * out) * 2), *yd = NULL;
    cr_assert_eq(cudaMalloc((void **)&yd, (size_t)(n * out) * 2), cudaSuccess);
    int ran = 0;
    for (int rep = 0; rep < 2; rep++) {  // twice: the decode workspace must be left clean
        cudaMemset(yd, 0xff, (size_t)(n * out) * 2);  // NaN poison: every element must be written
        int rc = vnm_spmm_cuda_ex(&d, xd, n, c->bias ? bd : NULL, c->residual ? rd : NULL, c->act, yd, 0, kernel, &err);
        if (rc) {
            cr_assert_neq(kernel, VNM_KERNEL_AUTO, "%s", err.msg);
            break;
        }
        ran = 1;
        cr_assert_eq(cudaDeviceSynchronize(), cudaSuccess, "%s", cudaGetErrorString(cudaGetLastError()));
        cudaMemcpy(yh, yd, (size_t)(n * out) * 2, cudaMemcpyDeviceToHost);
        double num = 0, den = 0, worst = 0;
        int64_t bad = 0, first_bad = -1;
        for (int64_t i = 0; i < n * out; i++) {
            double y = bf16_to_f32(yh[i]), r = ref[i], dlt = fabs(y - r);
            num += dlt * dlt, den += r * r;
            if (!(dlt <= 0.01 * fabs(r) + 0.05)) {
                if (first_bad < 0) first_bad = i;
                bad++;
            }
            if (!(dlt <= worst)) worst = dlt;
        }
        double rel = sqrt(num / (den > 0 ? den : 1));
        if (rep == 0 || bad)
            printf("%-18s V=%3d M=%2d out=%5lld in=%5lld n=%4lld flags=%u b=%d r=%d act=%d: rel %.2e worst %.3g bad %lld\n",
                   vnm_spmm_kernel_name(&d, n, kernel), c->V, c->M, (long long)out, (long long)in, (long long)n,
                   c->flags, c->bias, c->residual, c->act, rel, worst, (long long)bad);
        cr_expect(bad == 0 && rel < 5e-3, "%s V=%d M=%d n=%lld: %lld bad (first at t=%lld o=%lld: %g vs %g), rel %.3g",
                  vnm_spmm_kernel_name(&d, n, kernel), c->V, c->M, (long long)n, (long long)bad,
                  (long long)(first_bad >= 0 ? first_bad / out : -1), (long long)(first_bad >= 0 ? first_bad % out : -1),
                  first_bad >= 0 ? bf16_to_f32(yh[first_bad]) : 0.0, first_bad >= 0 ? ref[first_bad] : 0.0, rel);
        if (bad) break;
    }
    cudaFree(xd), cudaFree(bd), cudaFree(rd), cudaFree(yd);
    free(xh), free(bh), free(rh), free(yh), free(xf), free(bf), free(ref);
    vnm_device_free(&d);
    vnm_free(&m);
    return ran;
}

static void sweep_patterns(int kernel) {
    static const int Vs[] = {16, 32, 64, 128};
    static const int64_t ns[] = {1, 13, 77, 200};
    uint64_t seed = 100;
    int ran = 0, total = 0;
    for (size_t vi = 0; vi < ARRAY_LEN(Vs); vi++)
        for (int M = 4; M <= 16; M++) {
            Case c = {Vs[vi], M, 256, (int64_t)M * 40, ns[(vi * 13 + M) % ARRAY_LEN(ns)], 0, 1, 0, VNM_ACT_NONE};
            ran += run_case(&c, kernel, seed++);
            total++;
        }
    printf("kernel %d: %d of %d pattern cases ran\n", kernel, ran, total);
}

Test(vnm_spmm_gpu, patterns_auto) {
    SKIP_WITHOUT_GPU();
    sweep_patterns(VNM_KERNEL_AUTO);
}

Test(vnm_spmm_gpu, patterns_mma_sp) {
    SKIP_WITHOUT_GPU();
    sweep_patterns(VNM_KERNEL_MMA_SP);
}

Test(vnm_spmm_gpu, patterns_wgmma_sp) {
    SKIP_WITHOUT_GPU();
    sweep_patterns(VNM_KERNEL_WGMMA_SP);
}

// Sizes, epilogues, permutations and the three B fillers of the wgmma kernel.
Test(vnm_spmm_gpu, shapes_and_epilogues) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {64, 8, 320, 8 * 52, 129, 0, 1, 1, VNM_ACT_GELU},                        // out_pad > out, partial stage
        {64, 8, 512, 8 * 64, 300, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU},  // row_perm epilogue
        {64, 8, 512, 8 * 64, 131, VNM_RANDOM_PERMUTE_COLS, 0, 0, VNM_ACT_NONE},  // generic filler
        {64, 5, 768, 5 * 96, 513, 0, 1, 0, VNM_ACT_NONE},                        // window filler, odd window starts
        {16, 4, 512, 4 * 200, 257, 0, 1, 1, VNM_ACT_GELU},                       // plain 2:4 -> TMA filler
        {16, 4, 256, 4 * 64, 5, VNM_RANDOM_PERMUTE_COLS, 0, 1, VNM_ACT_NONE},   // decode, permuted 2:4
        {128, 12, 256, 12 * 24, 16, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU},  // decode, row_perm
        {64, 8, 1024, 8 * 128, 1000, 0, 1, 1, VNM_ACT_NONE},
    };
    const int kernels[] = {VNM_KERNEL_AUTO, VNM_KERNEL_MMA_SP, VNM_KERNEL_WGMMA_SP};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        for (size_t k = 0; k < ARRAY_LEN(kernels); k++) run_case(&cases[i], kernels[k], 1000 + i);
}
