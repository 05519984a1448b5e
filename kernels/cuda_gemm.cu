// cuBLASLt GEMMs in row-major terms, plus the small shared pieces of the CUDA backend: scratch
// buffers, node checks, column-sum finish, gradient accumulation.
//
// Row-major C = op(A)·op(B) is column-major Cᵀ = op(B)ᵀ·op(A)ᵀ, and a row-major matrix is its own
// transpose read column-major: so each call hands cuBLASLt (B, A) with the same transpose flags
// and swapped m, n. A bias per row-major column is cuBLASLt's bias per column-major row.
//
// Matmul descriptors, layouts and the chosen algorithm are cached per shape/type/alignment, so a
// training step asks the heuristic only once per distinct GEMM (and picks the same algorithm every
// time: results are repeatable).
#include <string.h>

#include "kernels/cuda_common.cuh"
#include "kernels/ops_cuda.h"

#define CUBLAS_CHECK(call)                                                                   \
    do {                                                                                     \
        cublasStatus_t st_ = (call);                                                         \
        if (st_ != CUBLAS_STATUS_SUCCESS) fatal("cuBLASLt error %d at %s:%d: %s", (int)st_, __FILE__, __LINE__, #call); \
    } while (0)

static cublasLtHandle_t g_lt;
static void *g_workspace;
static const size_t WORKSPACE_BYTES = 64u << 20;

typedef struct GemmKey {
    bool ta, tb, gelu, has_bias;
    int64_t m, n, k, lda, ldb, ldc, sa, sb, sc;
    int batch;
    cudaDataType_t ab_type, c_type, bias_type;
    int align_a, align_b, align_c;
} GemmKey;

typedef struct GemmPlan {
    GemmKey key;
    bool used;
    cublasLtMatmulDesc_t desc;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasLtMatmulAlgo_t algo;
} GemmPlan;

#define PLAN_SLOTS 1024
static GemmPlan g_plans[PLAN_SLOTS];

static int alignment(const void *p) {
    uintptr_t v = (uintptr_t)p;
    int a = 256;
    while (a > 1 && v % (uintptr_t)a) a >>= 1;
    return a;
}

static uint64_t key_hash(const GemmKey *k) {
    const unsigned char *p = (const unsigned char *)k;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < sizeof *k; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static cublasLtMatrixLayout_t make_layout(cudaDataType_t t, int64_t rows, int64_t cols, int64_t ld, int batch,
                                          int64_t stride) {
    cublasLtMatrixLayout_t l;
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&l, t, (uint64_t)rows, (uint64_t)cols, ld));
    if (batch > 1) {
        int32_t b = batch;
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &b, sizeof b));
        CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride,
                                                      sizeof stride));
    }
    return l;
}

static void plan_init(GemmPlan *p, const GemmKey *k) {
    p->key = *k;
    p->used = true;
    // column-major problem: D (n × m) = op(B') (n × k) · op(A') (k × m)
    cublasOperation_t opa = k->tb ? CUBLAS_OP_T : CUBLAS_OP_N;  // on B' (cuBLAS "A")
    cublasOperation_t opb = k->ta ? CUBLAS_OP_T : CUBLAS_OP_N;  // on A' (cuBLAS "B")
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    cublasLtEpilogue_t epi = k->has_bias ? (k->gelu ? CUBLASLT_EPILOGUE_GELU_BIAS : CUBLASLT_EPILOGUE_BIAS)
                                         : (k->gelu ? CUBLASLT_EPILOGUE_GELU : CUBLASLT_EPILOGUE_DEFAULT);
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (k->has_bias) {
        cudaDataType_t bt = k->bias_type;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
    }
    // stored shapes (column-major view of the row-major buffers)
    p->la = k->tb ? make_layout(k->ab_type, k->k, k->n, k->ldb, k->batch, k->sb)
                  : make_layout(k->ab_type, k->n, k->k, k->ldb, k->batch, k->sb);
    p->lb = k->ta ? make_layout(k->ab_type, k->m, k->k, k->lda, k->batch, k->sa)
                  : make_layout(k->ab_type, k->k, k->m, k->lda, k->batch, k->sa);
    p->lc = make_layout(k->c_type, k->n, k->m, k->ldc, k->batch, k->sc);

    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    uint64_t ws = WORKSPACE_BYTES;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    uint32_t al = (uint32_t)k->align_b, bl = (uint32_t)k->align_a, cl = (uint32_t)k->align_c;
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al, sizeof al));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &bl, sizeof bl));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &cl, sizeof cl));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &cl, sizeof cl));
    cublasLtMatmulHeuristicResult_t res;
    int found = 0;
    CUBLAS_CHECK(cublasLtMatmulAlgoGetHeuristic(g_lt, p->desc, p->la, p->lb, p->lc, p->lc, pref, 1, &res, &found));
    cublasLtMatmulPreferenceDestroy(pref);
    if (found < 1)
        fatal("cuBLASLt found no algorithm for GEMM m=%lld n=%lld k=%lld ta=%d tb=%d batch=%d", (long long)k->m,
              (long long)k->n, (long long)k->k, k->ta, k->tb, k->batch);
    p->algo = res.algo;
}

static GemmPlan *plan_get(const GemmKey *k) {
    uint64_t h = key_hash(k);
    for (int probe = 0; probe < PLAN_SLOTS; probe++) {
        GemmPlan *p = &g_plans[(h + (uint64_t)probe) % PLAN_SLOTS];
        if (!p->used) {
            plan_init(p, k);
            return p;
        }
        if (memcmp(&p->key, k, sizeof *k) == 0) return p;
    }
    fatal("gemm: more than %d distinct GEMM shapes", PLAN_SLOTS);
}

void gemm(const Gemm *g) {
    if (!g_lt) {
        CUBLAS_CHECK(cublasLtCreate(&g_lt));
        CUDA_CHECK(cudaMalloc(&g_workspace, WORKSPACE_BYTES));
    }
    if (g->m <= 0 || g->n <= 0) return;
    GemmKey k;
    memset(&k, 0, sizeof k);  // padding bytes take part in the hash and compare
    k.ta = g->ta;
    k.tb = g->tb;
    k.gelu = g->gelu;
    k.has_bias = g->bias != NULL;
    k.m = g->m;
    k.n = g->n;
    k.k = g->k;
    k.lda = g->lda;
    k.ldb = g->ldb;
    k.ldc = g->ldc;
    k.batch = g->batch > 1 ? g->batch : 1;
    if (k.batch > 1) {
        k.sa = g->sa;
        k.sb = g->sb;
        k.sc = g->sc;
    }
    k.ab_type = g->ab_type;
    k.c_type = g->c_type;
    k.bias_type = g->c_type;
    k.align_a = alignment(g->a);
    k.align_b = alignment(g->b);
    k.align_c = alignment(g->c);
    if (g->c_in && alignment(g->c_in) < k.align_c) k.align_c = alignment(g->c_in);
    if (g->k <= 0) fatal("gemm: k = %lld", (long long)g->k);
    GemmPlan *p = plan_get(&k);
    if (g->bias)
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias));
    int prof = g_cuda_profiling ? cuda_prof_gemm_begin((int)(p - g_plans)) : -1;
    const void *c_in = g->c_in ? g->c_in : g->c;
    CUBLAS_CHECK(cublasLtMatmul(g_lt, p->desc, &g->alpha, g->b, p->la, g->a, p->lb, &g->beta, c_in, p->lc, g->c, p->lc,
                                &p->algo, g_workspace, WORKSPACE_BYTES, cuda_stream()));
    cuda_prof_end(prof);
}

double gemm_plan_describe(int plan, char *buf, size_t size) {
    const GemmKey *k = &g_plans[plan].key;
    snprintf(buf, size, "%lldx%lldx%lld%s%s%s", (long long)k->m, (long long)k->n, (long long)k->k, k->ta ? " ta" : "",
             k->tb ? " tb" : "", k->batch > 1 ? " batched" : "");
    return 2.0 * (double)k->m * (double)k->n * (double)k->k * (double)k->batch;
}

// ---- scratch ----
static void *g_scratch[SCRATCH_SLOTS];
static size_t g_scratch_size[SCRATCH_SLOTS];

void *cuda_scratch(int slot, size_t bytes) {
    if (bytes > g_scratch_size[slot]) {
        if (g_scratch[slot]) {
            CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));  // earlier kernels may still read it
            CUDA_CHECK(cudaFree(g_scratch[slot]));
        }
        size_t sz = bytes + bytes / 4 + 256;
        cudaError_t e = cudaMalloc(&g_scratch[slot], sz);
        if (e != cudaSuccess) fatal("CUDA scratch buffer of %zu bytes: %s", sz, cudaGetErrorString(e));
        g_scratch_size[slot] = sz;
    }
    return g_scratch[slot];
}

extern "C" size_t ops_cuda_scratch_bytes(void) {
    size_t s = g_workspace ? WORKSPACE_BYTES : 0;
    for (int i = 0; i < SCRATCH_SLOTS; i++) s += g_scratch_size[i];
    return s;
}

extern "C" size_t ops_cuda_device_used_bytes(void) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return total_b - free_b;
}

extern "C" size_t ops_cuda_device_free_bytes(void) {
    size_t free_b = 0, total_b = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
    return free_b;
}

// ---- node helpers ----
void cuda_expect(const Tensor *t, DType dt, const char *op, const char *what) {
    if (!t) fatal("CUDA %s: %s is missing", op, what);
    if (t->device != DEV_CUDA) fatal("CUDA %s: %s '%s' is not on the GPU", op, what, t->name);
    if (t->dtype != dt)
        fatal("CUDA %s: %s '%s' is %s, expected %s", op, what, t->name, dtype_name(t->dtype), dtype_name(dt));
}

Tensor *cuda_saved(TapeNode *node, DType dt, int ndim, const int64_t *shape, const char *suffix) {
    char nm[TENSOR_NAME_LEN];
    snprintf(nm, sizeof nm, "%.80s.%s", node->out[0]->name, suffix);
    return tensor_new(node->tape->act, dt, ndim, shape, nm);
}

void *cuda_keep(TapeNode *n, int slot, int scratch_slot, DType dt, int ndim, const int64_t *shape, const char *suffix) {
    if (cuda_recording(n)) {
        n->saved[slot] = cuda_saved(n, dt, ndim, shape, suffix);
        return n->saved[slot]->data;
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    return cuda_scratch(scratch_slot, (size_t)numel * dtype_size(dt));
}

template <typename G>
__global__ void colsum_finish_kernel(const float *partial, int chunks, int64_t cols, G *g, float scale, bool add) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    float s = 0.0f;
    for (int k = 0; k < chunks; k++) s += partial[(int64_t)k * cols + c];
    acc(g, c, scale * s, add);
}

void colsum_finish(const float *partial, int chunks, int64_t cols, Tensor *grad, float scale) {
    bool add = grad_accumulate(grad);
    DISPATCH_GRAD(grad->dtype, G, {
        colsum_finish_kernel<G><<<cdiv(cols, 256), 256, 0, cuda_stream()>>>(partial, chunks, cols, (G *)grad->data, scale, add);
    });
    CUDA_LAUNCH_CHECK();
}

// 8 elements per thread and step (VEC: 16-byte accesses, g and x 16-byte aligned).
template <typename G, bool VEC>
__global__ void acc_into_kernel(G *g, const bf16 *x, int64_t n, float scale, bool add) {
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n; i += (int64_t)gridDim.x * blockDim.x * 8) {
        if (i + 8 <= n) {
            float v[8];
            load8<VEC>(x + i, v);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] *= scale;
            acc8<VEC>(g + i, v, add);
        } else {
            for (int64_t j = i; j < n; j++) acc(g, j, scale * to_f(x[j]), add);
        }
    }
}

void cuda_acc_into(Tensor *g, const bf16 *x, int64_t n, float scale) {
    unsigned blocks = cdiv(n, 256 * 8);
    if (blocks > 65536) blocks = 65536;
    bool add = grad_accumulate(g);
    bool vec = ((uintptr_t)g->data & 15u) == 0 && ((uintptr_t)x & 15u) == 0;
    DISPATCH_GRAD(g->dtype, G, {
        if (vec) acc_into_kernel<G, true><<<blocks, 256, 0, cuda_stream()>>>((G *)g->data, x, n, scale, add);
        else acc_into_kernel<G, false><<<blocks, 256, 0, cuda_stream()>>>((G *)g->data, x, n, scale, add);
    });
    CUDA_LAUNCH_CHECK();
}

bool cuda_grad_can_take(const Tensor *g, const Tensor *gy) {
    return g && g->unwritten && g->dtype == gy->dtype && g->numel == gy->numel;
}

bool cuda_grad_take(Tensor *g, Tensor *gy) {
    if (!cuda_grad_can_take(g, gy)) return false;
    void *buf = g->data;
    g->data = gy->data;
    gy->data = buf;
    g->unwritten = false;
    return true;
}

void cuda_grad_pass(Tensor *g, Tensor *gy) {
    if (!cuda_grad_take(g, gy)) cuda_acc_into(g, cbf(gy), gy->numel, 1.0f);
}
