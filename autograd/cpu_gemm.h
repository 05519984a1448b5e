// The one matmul of the CPU kernels. Row-major single precision:
//   C (M, N) = alpha · op(A) · op(B) + beta · C,   op(A) (M, K), op(B) (K, N)
// where op(X) = Xᵀ when the matching trans flag is set (then A is stored (K, M), B (N, K)).
// lda/ldb/ldc are row strides. beta == 0 overwrites C without reading it.
// Uses cblas_sgemm when the build found a CBLAS (VNMTUNE_HAVE_CBLAS), else cpu_gemm_loops().
#pragma once
#include <stdbool.h>

void cpu_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

// The portable blocked-loop fallback (same contract), exposed so tests can check it on any build.
void cpu_gemm_loops(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                    const float *B, int ldb, float beta, float *C, int ldc);
