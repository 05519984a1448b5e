// GPU tests of the V:N:M SpMM kernels against vnm_spmm_cpu over the same compressed data:
// every V in {16, 32, 64, 128} × M in 4..16, odd n (decode and prefill sizes), epilogues,
// row_perm and permuted input channels, for each kernel the device can run; the feature-major
// path (vnm_spmm_cuda_fm) on transposed copies of the same data. Skips without a GPU.
#include <criterion/criterion.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/vnm_spmm.h"
int vnm_wgmma_sp_available(void);  // kernels/vnm_spmm_sm90.cu: this build has sm_90a code for this device
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

// One problem: a random matrix on the device, token-major inputs and the CPU reference
// ref (n × out) = epilogue(x · Wᵀ) over the same compressed data.
typedef struct Problem {
    VnmMatrix m;
    VnmDeviceMatrix d;
    int64_t n, out, in;
    uint16_t *xh, *bh, *rh;  // x (n × in), bias (out), residual (n × out)
    float *ref;
    uint16_t *bd;  // bias on the device
} Problem;

static void problem_make(Problem *P, const Case *c, uint64_t seed) {
    VnmPattern p = {c->V, 2, c->M};
    vnm_random(p, c->out, c->in, seed, c->flags, &P->m);
    Err err;
    cr_assert_eq(vnm_upload(&P->m, &P->d, &err), 0, "%s", err.msg);
    Rng rng;
    rng_seed(&rng, seed ^ 0x5eed);
    int64_t n = P->n = c->n, out = P->out = c->out, in = P->in = c->in;
    P->xh = (uint16_t *)malloc((size_t)(n * in) * 2), P->bh = (uint16_t *)malloc((size_t)out * 2);
    P->rh = (uint16_t *)malloc((size_t)(n * out) * 2);
    float *xf = (float *)malloc((size_t)(n * in) * 4), *bf = (float *)malloc((size_t)out * 4);
    P->ref = (float *)malloc((size_t)(n * out) * 4);
    for (int64_t i = 0; i < n * in; i++) P->xh[i] = f32_to_bf16(rng_normal(&rng)), xf[i] = bf16_to_f32(P->xh[i]);
    for (int64_t i = 0; i < out; i++) P->bh[i] = f32_to_bf16(rng_normal(&rng)), bf[i] = bf16_to_f32(P->bh[i]);
    for (int64_t i = 0; i < n * out; i++) P->rh[i] = f32_to_bf16(rng_normal(&rng));
    vnm_spmm_cpu(&P->m, xf, n, c->bias ? bf : NULL, P->ref);
    for (int64_t i = 0; i < n * out; i++) {
        float v = P->ref[i];
        if (c->act == VNM_ACT_GELU) v = 0.5f * v * (1.0f + erff(v * 0.70710678f));
        if (c->residual) v += bf16_to_f32(P->rh[i]);
        P->ref[i] = v;
    }
    P->bd = (uint16_t *)dev_copy(P->bh, (size_t)out * 2);
    free(xf), free(bf);
}

static void problem_free(Problem *P) {
    cudaFree(P->bd);
    free(P->xh), free(P->bh), free(P->rh), free(P->ref);
    vnm_device_free(&P->d);
    vnm_free(&P->m);
}

// Compares the GPU result with the reference: y is (n × out) when ld == 0, else yT (out × ld),
// whose padding columns n .. ld-1 must keep their 0xffff poison. Prints the case (always when
// `print`, else only when bad) with the norm-wise and the largest elementwise relative error
// (|y - ref| / max(|ref|, 1)). Returns the number of bad elements.
static int64_t check_output(const Problem *P, const Case *c, const char *kname, const uint16_t *yh, int64_t ld,
                            int print) {
    const int64_t n = P->n, out = P->out;
    double num = 0, den = 0, worst = 0, max_rel = 0;
    int64_t bad = 0, first_bad = -1, pad_written = 0;
    for (int64_t i = 0; i < n * out; i++) {
        const int64_t t = i / out, o = i % out;
        double y = bf16_to_f32(yh[ld ? o * ld + t : i]), r = P->ref[i], dlt = fabs(y - r);
        num += dlt * dlt, den += r * r;
        if (!(dlt <= 0.01 * fabs(r) + 0.05)) {
            if (first_bad < 0) first_bad = i;
            bad++;
        }
        if (!(dlt <= worst)) worst = dlt;
        if (!(dlt / fmax(fabs(r), 1.0) <= max_rel)) max_rel = dlt / fmax(fabs(r), 1.0);
    }
    for (int64_t o = 0; ld && o < out; o++)
        for (int64_t t = n; t < ld; t++) pad_written += yh[o * ld + t] != 0xffff;
    double rel = sqrt(num / (den > 0 ? den : 1));
    if (print || bad || pad_written)
        printf("%-18s V=%3d M=%2d out=%5lld in=%5lld n=%4lld ld=%4lld flags=%u b=%d r=%d act=%d: rel %.2e max_rel %.2e "
               "worst %.3g bad %lld\n",
               kname, c->V, c->M, (long long)out, (long long)P->in, (long long)n, (long long)ld, c->flags, c->bias,
               c->residual, c->act, rel, max_rel, worst, (long long)bad);
    cr_expect(bad == 0 && rel < 5e-3 && pad_written == 0,
              "%s V=%d M=%d n=%lld: %lld bad (first at t=%lld o=%lld: %g vs %g), rel %.3g, %lld padding writes", kname,
              c->V, c->M, (long long)n, (long long)bad, (long long)(first_bad >= 0 ? first_bad / out : -1),
              (long long)(first_bad >= 0 ? first_bad % out : -1),
              first_bad >= 0 ? bf16_to_f32(yh[ld ? (first_bad % out) * ld + first_bad / out : first_bad]) : 0.0,
              first_bad >= 0 ? P->ref[first_bad] : 0.0, rel, (long long)pad_written);
    return bad + pad_written;
}

// Runs one case with one kernel (token-major); returns 1 if the kernel ran, 0 if it is not
// available for it.
static int run_case(const Case *c, int kernel, uint64_t seed) {
    Problem P;
    problem_make(&P, c, seed);
    const int64_t n = P.n, out = P.out, in = P.in;
    uint16_t *yh = (uint16_t *)malloc((size_t)(n * out) * 2);
    uint16_t *xd = (uint16_t *)dev_copy(P.xh, (size_t)(n * in) * 2);
    uint16_t *rd = (uint16_t *)dev_copy(P.rh, (size_t)(n * out) * 2), *yd = NULL;
    cr_assert_eq(cudaMalloc((void **)&yd, (size_t)(n * out) * 2), cudaSuccess);
    uint16_t *first = (uint16_t *)malloc((size_t)(n * out) * 2);
    int ran = 0;
    Err err;
    for (int rep = 0; rep < 2; rep++) {  // twice: the decode workspace must be left clean
        cudaMemset(yd, 0xff, (size_t)(n * out) * 2);  // NaN poison: every element must be written
        int rc = vnm_spmm_cuda_ex(&P.d, xd, n, c->bias ? P.bd : NULL, c->residual ? rd : NULL, c->act, yd, 0, kernel, &err);
        if (rc) {
            cr_assert_neq(kernel, VNM_KERNEL_AUTO, "%s", err.msg);
            break;
        }
        ran = 1;
        cr_assert_eq(cudaDeviceSynchronize(), cudaSuccess, "%s", cudaGetErrorString(cudaGetLastError()));
        cudaMemcpy(yh, yd, (size_t)(n * out) * 2, cudaMemcpyDeviceToHost);
        const char *kname = vnm_spmm_kernel_name(&P.d, n, kernel);
        if (check_output(&P, c, kname, yh, 0, rep == 0)) break;
        // Every kernel but the sm_80 atomic decode one gives the same bits on every run.
        if (rep == 0) memcpy(first, yh, (size_t)(n * out) * 2);
        else if (strcmp(kname, "mma_sp/decode") != 0)
            cr_expect(memcmp(first, yh, (size_t)(n * out) * 2) == 0, "%s V=%d M=%d n=%lld: second run differs", kname,
                      c->V, c->M, (long long)n);
    }
    free(first);
    cudaFree(xd), cudaFree(rd), cudaFree(yd);
    free(yh);
    problem_free(&P);
    return ran;
}

// Transposes a (rows × cols) into (cols × ld), padding columns rows .. ld-1 set to `pad`.
static uint16_t *transpose_padded(const uint16_t *a, int64_t rows, int64_t cols, int64_t ld, uint16_t pad) {
    uint16_t *t = (uint16_t *)malloc((size_t)(cols * ld) * 2);
    for (int64_t c = 0; c < cols; c++)
        for (int64_t r = 0; r < ld; r++) t[c * ld + r] = r < rows ? a[r * cols + c] : pad;
    return t;
}

// Feature-major run of one case (vnm_spmm_cuda_fm, token stride ld = n rounded up to 8 plus
// extra_ld); returns 1 if it ran, 0 if the matrix or device cannot run it.
static int run_case_fm(const Case *c, uint64_t seed, int64_t extra_ld) {
    Problem P;
    problem_make(&P, c, seed);
    const int64_t n = P.n, out = P.out, in = P.in, ld = (n + 7) / 8 * 8 + extra_ld;
    uint16_t *xT = transpose_padded(P.xh, n, in, ld, 0x7fc0), *rT = transpose_padded(P.rh, n, out, ld, 0x7fc0);
    uint16_t *yh = (uint16_t *)malloc((size_t)(out * ld) * 2);
    uint16_t *xd = (uint16_t *)dev_copy(xT, (size_t)(in * ld) * 2), *rd = (uint16_t *)dev_copy(rT, (size_t)(out * ld) * 2);
    uint16_t *yd = NULL;
    cr_assert_eq(cudaMalloc((void **)&yd, (size_t)(out * ld) * 2), cudaSuccess);
    cudaMemset(yd, 0xff, (size_t)(out * ld) * 2);
    Err err;
    int ran = vnm_spmm_cuda_fm(&P.d, xd, n, ld, c->bias ? P.bd : NULL, c->residual ? rd : NULL, c->act, yd, 0, &err) == 0;
    const char *kname = vnm_spmm_kernel_name(&P.d, n, VNM_KERNEL_FEATURE_MAJOR);
    cr_assert_eq(ran, strcmp(kname, "unavailable") != 0, "%s: %s", kname, ran ? "ran" : err.msg);
    if (ran) {
        cr_assert_eq(cudaDeviceSynchronize(), cudaSuccess, "%s", cudaGetErrorString(cudaGetLastError()));
        cudaMemcpy(yh, yd, (size_t)(out * ld) * 2, cudaMemcpyDeviceToHost);
        check_output(&P, c, kname, yh, ld, 1);
    }
    cudaFree(xd), cudaFree(rd), cudaFree(yd);
    free(xT), free(rT), free(yh);
    problem_free(&P);
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

// Token-major products through transposes + the feature-major kernel (what AUTO does for large layers).
Test(vnm_spmm_gpu, patterns_via_feature_major) {
    SKIP_WITHOUT_GPU();
    sweep_patterns(VNM_KERNEL_VIA_FM);
}

// Sizes, epilogues, permutations and the three B fillers of the wgmma kernel.
Test(vnm_spmm_gpu, shapes_and_epilogues) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {64, 8, 320, 8 * 52, 129, 0, 1, 1, VNM_ACT_GELU},                        // out_pad > out, partial stage
        {64, 8, 320, 8 * 52, 129, 0, 1, 0, VNM_ACT_GELU},  // the same without residual: bf16 staging
        {16, 4, 208, 4 * 64, 77, 0, 1, 0, VNM_ACT_GELU},   // plain 2:4, out % 64 != 0, bf16 staging
        {16, 4, 208, 4 * 64, 77, 0, 0, 1, VNM_ACT_NONE},   // the same with a residual (bulk loads), no bias
        {64, 8, 512, 8 * 64, 300, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU},  // row_perm epilogue
        {64, 8, 512, 8 * 64, 131, VNM_RANDOM_PERMUTE_COLS, 0, 0, VNM_ACT_NONE},  // generic filler
        {64, 5, 768, 5 * 96, 513, 0, 1, 0, VNM_ACT_NONE},                        // window filler, odd window starts
        {16, 4, 512, 4 * 200, 257, 0, 1, 1, VNM_ACT_GELU},                       // plain 2:4 -> TMA filler
        {16, 4, 256, 4 * 64, 5, VNM_RANDOM_PERMUTE_COLS, 0, 1, VNM_ACT_NONE},   // decode, permuted 2:4
        {128, 12, 256, 12 * 24, 16, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU},  // decode, row_perm
        {64, 8, 256, 8 * 8 * 8 * 10, 16, 0, 1, 1, VNM_ACT_NONE},                // decode, 2 chunks of k-steps
        {32, 6, 192, 6 * 8 * 8 * 9, 3, VNM_RANDOM_PERMUTE_COLS, 1, 0, VNM_ACT_GELU},  // decode, 4 column lists, 2 chunks
        {16, 4, 256, 4 * 1000, 7, 0, 0, 1, VNM_ACT_NONE},                       // decode, 2:4, long reduction
        {64, 5, 256, 5 * 83, 9, 0, 1, 1, VNM_ACT_GELU},     // decode, odd in: x staged by 2-byte loads
        {64, 5, 256, 5 * 8 * 84, 12, 0, 1, 0, VNM_ACT_NONE},  // decode, x by bulk copies, the last CTA's slice past `in`
        {64, 8, 256, 8 * 8 * 8 * 12, 8, 0, 0, 0, VNM_ACT_NONE},  // decode, a 12-CTA cluster (non-portable size)
        {64, 8, 640, 8 * 8 * 8 * 20 + 8 * 24, 16, 0, 1, 1, VNM_ACT_GELU},  // decode, KT = 163 > 16 × 8: wide form, 11 k-steps (VNM_DECODE_KC=8: atomic)
        {16, 4, 192, 4 * 1100, 5, 0, 0, 1, VNM_ACT_NONE},                  // decode, 2:4, KT = 138: wide form, 9 k-steps (VNM_DECODE_KC=8: atomic)
        {64, 8, 256, 8 * 8 * 8 * 25, 5, 0, 1, 0, VNM_ACT_NONE},            // decode, KT = 200 > 16 × 12: the atomic split-K kernel
        {64, 8, 1024, 8 * 128, 1000, 0, 1, 1, VNM_ACT_NONE},
        {64, 8, 512, 2048, 1000, 0, 1, 1, VNM_ACT_GELU},  // prefill in the wide SS tiles (128 × 256), last token tile partial
    };
    const int kernels[] = {VNM_KERNEL_AUTO, VNM_KERNEL_MMA_SP, VNM_KERNEL_WGMMA_SP, VNM_KERNEL_VIA_FM};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++)
        for (size_t k = 0; k < ARRAY_LEN(kernels); k++) run_case(&cases[i], kernels[k], 1000 + i);
}

// Feature-major path: V in {64, 128} × M in {4, 5, 6, 8, 12, 16} × n in {17, 128, 200, 2048};
// bias + GELU + residual except at n = 128, row_perm / permuted columns in turn.
Test(vnm_spmm_gpu, feature_major) {
    SKIP_WITHOUT_GPU();
    static const int Vs[] = {64, 128}, Ms[] = {4, 5, 6, 8, 12, 16};
    static const int64_t ns[] = {17, 128, 200, 2048};
    static const unsigned flags[] = {0, VNM_RANDOM_PERMUTE_ROWS, VNM_RANDOM_PERMUTE_COLS,
                                     VNM_RANDOM_PERMUTE_ROWS | VNM_RANDOM_PERMUTE_COLS};
    int ran = 0, total = 0;
    for (size_t vi = 0; vi < ARRAY_LEN(Vs); vi++)
        for (size_t mi = 0; mi < ARRAY_LEN(Ms); mi++)
            for (size_t ni = 0; ni < ARRAY_LEN(ns); ni++, total++) {
                const int epi = ns[ni] != 128;
                Case c = {Vs[vi], Ms[mi], 384, (int64_t)Ms[mi] * 96, ns[ni], flags[total % 4], epi, epi,
                          epi ? VNM_ACT_GELU : VNM_ACT_NONE};
                ran += run_case_fm(&c, 3000 + total, 0);
            }
    printf("feature-major: %d of %d cases ran\n", ran, total);
}

// Feature-major edge cases: uniform 2:4 (one gather group), out not a multiple of 256, a wider
// token stride, tiny n; V = 16 with M > 4 has no wgmma kernel and must report so.
Test(vnm_spmm_gpu, feature_major_edges) {
    SKIP_WITHOUT_GPU();
    const struct {
        Case c;
        int64_t extra_ld;
    } cases[] = {
        {{16, 4, 512, 4 * 200, 300, 0, 1, 1, VNM_ACT_GELU}, 0},                        // uniform 2:4
        {{64, 8, 320, 8 * 52, 129, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU}, 24},  // out_pad > out, ld > n
        {{128, 5, 640, 5 * 64, 1, VNM_RANDOM_PERMUTE_COLS, 1, 0, VNM_ACT_NONE}, 0},    // n = 1
        {{64, 7, 256, 7 * 40, 8, 0, 0, 1, VNM_ACT_NONE}, 8},
        {{16, 8, 256, 8 * 40, 64, 0, 1, 1, VNM_ACT_NONE}, 0},                          // unavailable
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) run_case_fm(&cases[i].c, 4000 + i, cases[i].extra_ld);
}

// The 2:4 form runs token-major AUTO calls with n > 16 on sm_90a: over the original channels
// (vnm_to_24) when M is a multiple of 4 and the inputs are not permuted, else over gathered inputs
// (vnm_to_24_gathered); decode sizes keep the V:N:M kernels.
Test(vnm_spmm_gpu, prefill_as_24) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {64, 8, 512, 8 * 64, 300, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU},
        {16, 8, 320, 8 * 52, 129, 0, 1, 0, VNM_ACT_NONE},  // V = 16: no wgmma kernel for the V:N:M form
        {128, 16, 256, 16 * 40, 77, 0, 0, 1, VNM_ACT_NONE},
        {64, 8, 256, 8 * 64, 16, 0, 1, 1, VNM_ACT_NONE},    // decode size: V:N:M kernels
        {64, 5, 256, 5 * 64, 200, 0, 1, 1, VNM_ACT_NONE},   // M = 5: over gathered inputs
        {64, 8, 256, 8 * 64, 200, VNM_RANDOM_PERMUTE_COLS, 1, 1, VNM_ACT_NONE},  // permuted inputs: gathered
        {16, 4, 512, 4 * 64, 200, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU},  // plain 2:4, rows reordered
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const Case *c = &cases[i];
        Problem P;
        problem_make(&P, c, 5000 + i);
        const bool want = P.d.cc_major == 9 && vnm_wgmma_sp_available();
        const bool gathered = c->M % 4 != 0 || (c->flags & VNM_RANDOM_PERMUTE_COLS);
        cr_expect_eq(P.d.as24 != NULL, want, "%d:2:%d flags %u: 2:4 form %s", c->V, c->M, c->flags,
                     P.d.as24 ? "present" : "missing");
        cr_expect_eq(P.d.as24_src != NULL, want && gathered, "%d:2:%d flags %u: gathered inputs", c->V, c->M, c->flags);
        cr_expect(!P.d.as24 || !P.d.as24->row_perm, "%d:2:%d flags %u: the 2:4 form's rows in output order", c->V, c->M,
                  c->flags);
        const char *kname = vnm_spmm_kernel_name(&P.d, c->n, VNM_KERNEL_AUTO);
        cr_expect_eq(strstr(kname, " as 2:4") && (strstr(kname, "+gather") != NULL) == gathered, want && c->n > 16,
                     "%d:2:%d n=%lld: %s", c->V, c->M, (long long)c->n, kname);
        problem_free(&P);
        run_case(c, VNM_KERNEL_AUTO, 5000 + i);
    }
}

// VNM_PREFILL_24=1 (the form regardless of free memory): matrices that are 2:4 only over gathered
// inputs (permuted inputs, M = 5, 6) get that form too; AUTO calls at n > 16 gather x first.
Test(vnm_spmm_gpu, prefill_as_24_gathered) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {64, 8, 512, 8 * 64, 300, VNM_RANDOM_PERMUTE_COLS | VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_GELU},
        {64, 5, 256, 5 * 64, 200, 0, 1, 0, VNM_ACT_NONE},
        {16, 6, 320, 6 * 52, 77, VNM_RANDOM_PERMUTE_COLS, 0, 1, VNM_ACT_NONE},
        {64, 5, 256, 5 * 64, 16, 0, 1, 1, VNM_ACT_NONE},  // decode size: V:N:M kernels
        {64, 5, 256, 5 * 61, 130, 0, 1, 1, VNM_ACT_GELU},  // in odd: x's rows not 16-byte aligned (the gather)
    };
    setenv("VNM_PREFILL_24", "1", 1);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        const Case *c = &cases[i];
        Problem P;
        problem_make(&P, c, 5500 + i);
        const bool want = P.d.cc_major == 9 && vnm_wgmma_sp_available();
        cr_expect_eq(P.d.as24 != NULL && P.d.as24_src != NULL, want, "%d:2:%d flags %u: gathered 2:4 form %s", c->V,
                     c->M, c->flags, P.d.as24 ? "present" : "missing");
        const char *kname = vnm_spmm_kernel_name(&P.d, c->n, VNM_KERNEL_AUTO);
        cr_expect_eq(strstr(kname, " as 2:4+gather") != NULL, want && c->n > 16, "%d:2:%d n=%lld: %s", c->V,
                     c->M, (long long)c->n, kname);
        problem_free(&P);
        run_case(c, VNM_KERNEL_AUTO, 5500 + i);
    }
    unsetenv("VNM_PREFILL_24");
}

// Persistent TMA kernel: more output tiles than SMs (each CTA loops), a stage count that is not a
// multiple of the ring, out % 256 = 128 (the second warpgroup idles on the last row tile), epilogues;
// at this n the SS kernel (2:4 forms) takes 192-token tiles.
Test(vnm_spmm_gpu, persistent_many_tiles) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {16, 4, 384, 4 * 100, 8500, 0, 1, 1, VNM_ACT_GELU},                       // plain 2:4: 2 x 67 tiles, 7 stages
        {64, 8, 384, 8 * 50, 8500, VNM_RANDOM_PERMUTE_ROWS, 1, 1, VNM_ACT_NONE},  // 2:4 form, row_perm epilogue
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) run_case(&cases[i], VNM_KERNEL_AUTO, 6000 + i);
}

// Stream-K (the TMA kernels; by default only from 4 rounds of tiles on, forced here): tiles split
// between ~6 CTAs (24 tiles of 32 stages over ~132 SMs), ~8 (16 tiles) and ~8 with 192 tokens, the
// owners adding the others' partial sums in order; the SS kernel with 192-token tiles (2:4 forms,
// copies of plain 2:4), then the register-A TMA kernel (VNM_SS=0, 128 tokens, plain 2:4).
Test(vnm_spmm_gpu, stream_k_splits) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {16, 4, 768, 2048, 1024, 0, 1, 1, VNM_ACT_NONE},
        {64, 8, 512, 2048, 1000, 0, 1, 0, VNM_ACT_GELU},  // 2:4 form (SS only)
        {16, 4, 256, 2048, 3000, 0, 1, 1, VNM_ACT_NONE},
    };
    setenv("VNM_STREAMK", "1", 1);  // read once per process (Criterion runs each test in its own)
    setenv("VNM_SS_TN", "192", 1);
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) run_case(&cases[i], VNM_KERNEL_AUTO, 6100 + i);
    setenv("VNM_SS", "0", 1);  // read at each upload
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) run_case(&cases[i], VNM_KERNEL_AUTO, 6200 + i);
    unsetenv("VNM_SS"), unsetenv("VNM_SS_TN"), unsetenv("VNM_STREAMK");
}

// The tile order in bands of row tiles (tile_band in kernels/vnm_spmm_sm90.cu: Llama's 11008 × 4096
// runs so), forced to bands of 2 row tiles: out_pad 768 = 3 row tiles of 256 (bands of 2 and 1),
// 45 token tiles of 192, more tiles than SMs (the persistent CTAs loop across bands); then the
// wide form (128 × 256 tiles): 10 row tiles in bands of 2, a partial last token tile.
Test(vnm_spmm_gpu, banded_tile_order) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {16, 4, 640, 4 * 100, 8500, 0, 1, 1, VNM_ACT_GELU},
        {64, 8, 1280, 2048, 600, 0, 1, 0, VNM_ACT_GELU},
    };
    setenv("VNM_TILE_BAND", "2", 1);  // read once per process
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) run_case(&cases[i], VNM_KERNEL_AUTO, 6300 + i);
    unsetenv("VNM_TILE_BAND");
}

// Several row tiles per cluster in the cluster decode kernel (Llama's 11008 × 4096 gets 3 by
// occupancy; the small shapes above get 1), forced to 3: 10 row tiles in clusters of 3, 3, 3 and 1.
// The receive buffers alternate between row tiles and the next tile's weights load while a tile is
// reduced. 64:2:8 at n = 4 and 8 (partial sums by st.async) and 16 (bulk copies, x in two halves),
// the wide form (KT = 163) at n = 5 and 16, four column lists per k-step (32:2:6) at n = 3 (x
// gathered from global memory: permuted columns) and 16.
Test(vnm_spmm_gpu, decode_row_tiles_per_cluster) {
    SKIP_WITHOUT_GPU();
    const Case cases[] = {
        {64, 8, 640, 8 * 8 * 8 * 8, 4, 0, 1, 1, VNM_ACT_NONE},
        {64, 8, 640, 8 * 8 * 8 * 8, 8, 0, 0, 1, VNM_ACT_GELU},
        {64, 8, 640, 8 * 8 * 8 * 8, 16, 0, 1, 0, VNM_ACT_NONE},
        {64, 8, 640, 8 * 8 * 8 * 20 + 8 * 24, 5, 0, 1, 1, VNM_ACT_NONE},
        {64, 8, 640, 8 * 8 * 8 * 20 + 8 * 24, 16, 0, 1, 1, VNM_ACT_GELU},
        {32, 6, 640, 6 * 8 * 8 * 9, 3, VNM_RANDOM_PERMUTE_COLS, 1, 0, VNM_ACT_GELU},
        {32, 6, 640, 6 * 8 * 8 * 9, 16, 0, 1, 1, VNM_ACT_NONE},
    };
    setenv("VNM_DECODE_TILES", "3", 1);  // read once per process
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) run_case(&cases[i], VNM_KERNEL_AUTO, 6400 + i);
    unsetenv("VNM_DECODE_TILES");
}
