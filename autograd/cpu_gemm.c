#include "cpu_gemm.h"

#include <string.h>

#ifdef VNMTUNE_HAVE_CBLAS
#include <cblas.h>
#endif

void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef VNMTUNE_HAVE_CBLAS
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                alpha, A, lda, B, ldb, beta, C, ldc);
#else
    cpu_gemm_loops(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
#endif
}

// ---- fallback ----
// C is first scaled by beta, then alpha·op(A)op(B) is accumulated block by block. The loop order
// of each case keeps the innermost loop contiguous in memory (so the compiler vectorises it):
// NN and TN stream rows of B into rows of C; NT and TT are dot products over K.
#define BLOCK_M 64
#define BLOCK_N 256
#define BLOCK_K 128

static int min_int(int a, int b) { return a < b ? a : b; }

static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof *c);
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

// One (i0..i1) x (j0..j1) x (k0..k1) block.
static void gemm_block(bool ta, bool tb, int i0, int i1, int j0, int j1, int k0, int k1, float alpha,
                       const float *restrict A, int lda, const float *restrict B, int ldb, float *restrict C,
                       int ldc) {
    for (int i = i0; i < i1; i++) {
        float *restrict c = C + (size_t)i * ldc;
        if (!tb) {
            // c[j] += sum_k a(i,k) · B[k, j]
            for (int k = k0; k < k1; k++) {
                float a = alpha * (ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                const float *restrict b = B + (size_t)k * ldb;
                for (int j = j0; j < j1; j++) c[j] += a * b[j];
            }
        } else {
            // c[j] += sum_k a(i,k) · B[j, k]
            for (int j = j0; j < j1; j++) {
                const float *restrict b = B + (size_t)j * ldb;
                float acc = 0.0f;
                if (!ta) {
                    const float *restrict a = A + (size_t)i * lda;
                    for (int k = k0; k < k1; k++) acc += a[k] * b[k];
                } else {
                    for (int k = k0; k < k1; k++) acc += A[(size_t)k * lda + i] * b[k];
                }
                c[j] += alpha * acc;
            }
        }
    }
}

void cpu_gemm_loops(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    scale_c(M, N, beta, C, ldc);
    if (alpha == 0.0f || K <= 0) return;
    for (int k0 = 0; k0 < K; k0 += BLOCK_K)
        for (int i0 = 0; i0 < M; i0 += BLOCK_M)
            for (int j0 = 0; j0 < N; j0 += BLOCK_N)
                gemm_block(trans_a, trans_b, i0, min_int(i0 + BLOCK_M, M), j0, min_int(j0 + BLOCK_N, N), k0,
                           min_int(k0 + BLOCK_K, K), alpha, A, lda, B, ldb, C, ldc);
}
