// GPU V:N:M mask search (kernels/vnm_mask_cuda.cu) against the CPU mask_compute: the masks must be
// identical (same sums in the same order, same tie rules). Also errors and a timing line.
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "autograd/rng.h"
#include "kernels/vnm_mask_cuda.h"
#include "train/vnm_mask.h"

static void compare(int64_t out, int64_t in, VnmPattern p, uint64_t seed, bool ties) {
    int64_t n = out * in;
    float *S = xmalloc(n * sizeof(float));
    uint8_t *cpu = xmalloc(n), *gpu = xmalloc(n);
    Rng r;
    rng_seed(&r, seed);
    for (int64_t k = 0; k < n; k++) S[k] = ties ? (float)rng_below(&r, 3) : fabsf(rng_normal(&r));
    MaskSpec spec = {.kind = MASK_VNM, .vnm = p};
    Err err = {{0}};
    double t0 = now_seconds();
    cr_assert_eq(mask_compute(S, out, in, &spec, "t", cpu, &err), 0, "%s", err.msg);
    double t_cpu = now_seconds() - t0;
    float *dS = device_malloc(n * sizeof(float));
    uint8_t *dM = device_malloc(n);
    device_copy_h2d(dS, S, n * sizeof(float));
    cr_assert_eq(vnm_mask_cuda(dS, out, in, p, "t", dM, &err), 0, "%s", err.msg);  // warm-up
    t0 = now_seconds();
    cr_assert_eq(vnm_mask_cuda(dS, out, in, p, "t", dM, &err), 0, "%s", err.msg);
    double t_gpu = now_seconds() - t0;
    device_copy_d2h(gpu, dM, n);
    int64_t diff = 0;
    for (int64_t k = 0; k < n; k++) diff += cpu[k] != gpu[k];
    cr_assert_eq(diff, 0, "%d:2:%d (%lld, %lld): %lld mask entries differ", p.V, p.M, (long long)out,
                 (long long)in, (long long)diff);
    cr_log_info("%d:2:%d %lldx%lld: CPU %.3f s, GPU %.3f ms", p.V, p.M, (long long)out, (long long)in, t_cpu,
                1e3 * t_gpu);
    device_free(dS);
    device_free(dM);
    free(S), free(cpu), free(gpu);
}

Test(vnm_mask_cuda, equals_cpu) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    compare(128, 240, (VnmPattern){64, 2, 5}, 1, false);
    compare(128, 240, (VnmPattern){64, 2, 8}, 2, false);
    compare(128, 240, (VnmPattern){16, 2, 16}, 3, false);
    compare(96, 112, (VnmPattern){3, 2, 7}, 4, false);   // V not a multiple of 8 (lane tail)
    compare(64, 64, (VnmPattern){16, 2, 4}, 5, false);
    compare(128, 96, (VnmPattern){32, 2, 6}, 6, true);   // many exact ties
    compare(768, 3072, (VnmPattern){64, 2, 8}, 7, false);
}

Test(vnm_mask_cuda, large_layer_timing) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    compare(4096, 11008, (VnmPattern){64, 2, 8}, 8, false);
    compare(4096, 11000, (VnmPattern){64, 2, 5}, 9, false);
}

Test(vnm_mask_cuda, errors) {
    if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible");
    float *dS = device_malloc(64 * 40 * sizeof(float));
    uint8_t *dM = device_malloc(64 * 40);
    float S[64 * 40];
    for (int k = 0; k < 64 * 40; k++) S[k] = (float)k;
    S[77] = NAN;
    device_copy_h2d(dS, S, sizeof S);
    Err err = {{0}};
    cr_assert_eq(vnm_mask_cuda(dS, 64, 40, (VnmPattern){16, 2, 5}, "nan_layer", dM, &err), -1);
    cr_assert(strstr(err.msg, "nan_layer") && strstr(err.msg, "non-finite"), "%s", err.msg);
    cr_assert_eq(vnm_mask_cuda(dS, 64, 40, (VnmPattern){16, 2, 6}, "odd_layer", dM, &err), -1);
    cr_assert(strstr(err.msg, "odd_layer"), "%s", err.msg);
    device_free(dS);
    device_free(dM);
}
