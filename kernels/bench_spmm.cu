// `vnmtune bench spmm`: V:N:M SpMM vs cuBLASLt dense bf16 and cuSPARSELt 2:4, same problem, same run.
//
//   bench_spmm [--quick | --prefill] [--reps N] [--no-flush] [--table FILE | --no-table] [--no-check]
//              [--no-mmasp] [--fm-only]
//
// Times are CUDA-event medians of --reps runs after 3 warm-ups; by default a 128 MB buffer is
// written before every timed run so that L2 starts cold (--no-flush keeps it warm; --flush-read
// reads the buffer instead, leaving L2 full of clean lines, as after the previous layer's weights
// in a model: no dirty write-back competes with the timed reads). --decode: Llama shapes at
// n <= 16; the mma_sp column becomes floor_us, the time to stream the matrix's bytes once.
// --decode-layers: decode as a model runs it, one layer after another: per shape and n <= 16, L
// different matrices (L copies of the weights, so many that the sparse ones alone fill 4× the L2,
// so each is read from DRAM) run back to back in one CUDA graph, dense and ours, and the same
// graph of plain streaming reads of our bytes (floor); times are per layer, without L2 flush. Dense uses
// the fastest of cuBLASLt's top heuristic algorithms; cuSPARSELt (loaded with dlopen, 'n/a' when
// missing) uses its own algorithm search. Ours is vnm_spmm_cuda with no epilogue, random data.
// When `in` is not a multiple of 2M the sparse problem uses in rounded up to one (x gets the
// extra channels); the dense baseline keeps the true shape, so such speed-ups are slightly low.
// The table file (for `vnmtune select-vm`) holds rows `out in n V M speedup`, speedup =
// dense time / ours; --table-only FILE writes it without the main table.
// Feature-major columns: dense_fm = cuBLASLt on yT (out × n) = W · xT (in × n), both row-major
// (the same FLOPs), fm = vnm_spmm_cuda_fm on the same layout, fm/xfm = dense_fm / fm.
// --prefill: only Llama n = 2048, 8192 and the DeiT shapes; --no-mmasp skips the mma_sp column,
// --fm-only every sparse token-major column (for quick feature-major experiments); --shapes
// 4096x4096,768x3072 only those shapes (out x in) of the main table; --n 1024 each shape at that n
// only (1 .. 16384; e.g. one output tile per CTA, to time what a kernel spends per tile);
// --patterns 2:4,64:2:6,64:2:8p the main table's patterns (default 2:4,64:2:5,64:2:8; a trailing
// 'p': random input-channel permutation, which the 2:4 form of prefill runs over gathered inputs).
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/vnm_spmm.h"
extern "C" {
#include "autograd/rng.h"
#include "autograd/tensor.h"
}

namespace {

#define CK(call)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) fatal("bench_spmm: %s: %s (line %d)", #call, cudaGetErrorString(e_), __LINE__); \
    } while (0)

struct Opts {
    int reps = 20, flush = 1, quick = 0, check = 1, prefill = 0, decode = 0, mmasp = 1, fm_only = 0, table_only = 0;
    int decode_layers = 0;  // --decode-layers (see the top)
    int best_of = 4, splt_search = 1;  // cuBLASLt heuristic algorithms tried; cuSPARSELt's own search
    int ncu_search = 0;                // --ncu: let cuSPARSELt search its algorithms (to see which it picks)
    const char *table = "spmm_table.txt";
    const char *shapes = NULL;  // --shapes OUTxIN[,OUTxIN...]: only these shapes of the main table
    // --patterns P,...: the main table's patterns (at most 8); a trailing 'p' = permuted input channels
    int np = 0;
    char pat_names[8][16];
    VnmPattern pats[8];
    unsigned pat_flags[8];  // VNM_RANDOM_PERMUTE_COLS or 0
    int64_t n = 0;              // --n N: every shape of the main table at this n only (0: the table's n)
    const char *ncu = NULL;  // --ncu PATTERN[@N][/fm][=OUTxIN]: 3 launches of ours (default 4096x4096, n = 2048), then 4 of cuBLASLt and cuSPARSELt (token-major), for profilers
};

struct Shape {
    const char *model;
    int64_t out, in;
};

void *flush_buf = NULL;
const size_t FLUSH_BYTES = 128u << 20;
cudaEvent_t ev0, ev1;
float *sink = NULL;  // keeps the read kernels' sums alive

// Reads `words` 16-byte words of p, then `words2` of p2 (a grid-stride stream) and keeps a sum:
// the read flush (L2 left full of clean lines) and the memory floor of decode (the time to stream
// a matrix's bytes in one launch).
__global__ void read_stream_kernel(const uint4 *p, int64_t words, const uint4 *p2, int64_t words2, float *out) {
    uint32_t acc = 0;
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < words + words2; i += stride) {
        uint4 v = i < words ? __ldcs(p + i) : __ldcs(p2 + (i - words));
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) out[0] = 1.0f;  // practically never: the loads must not be dropped
}
void read_stream(const void *p, size_t bytes, const void *p2 = NULL, size_t bytes2 = 0, cudaStream_t stream = 0) {
    read_stream_kernel<<<132 * 8, 256, 0, stream>>>((const uint4 *)p, (int64_t)(bytes / 16), (const uint4 *)p2, (int64_t)(bytes2 / 16), sink);
}

// Median time in microseconds of fn(), run reps times after 3 warm-ups.
template <typename F>
double time_us(const Opts &o, F fn) {
    for (int i = 0; i < 3; i++) fn();
    CK(cudaDeviceSynchronize());
    double ts[256];
    int reps = o.reps < 256 ? o.reps : 256;
    for (int r = 0; r < reps; r++) {
        if (o.flush == 1) CK(cudaMemsetAsync(flush_buf, r & 0xff, FLUSH_BYTES, 0));
        if (o.flush == 2) read_stream(flush_buf, FLUSH_BYTES);
        CK(cudaEventRecord(ev0, 0));
        fn();
        CK(cudaEventRecord(ev1, 0));
        CK(cudaEventSynchronize(ev1));
        float ms;
        CK(cudaEventElapsedTime(&ms, ev0, ev1));
        ts[r] = ms * 1000.0;
    }
    for (int i = 1; i < reps; i++)  // insertion sort
        for (int k = i; k > 0 && ts[k - 1] > ts[k]; k--) {
            double t = ts[k];
            ts[k] = ts[k - 1], ts[k - 1] = t;
        }
    static const bool spread = getenv("VNM_BENCH_SPREAD") != NULL;  // how the runs spread (stderr)
    if (spread)
        fprintf(stderr, "spread: min %.1f p10 %.1f p50 %.1f p90 %.1f max %.1f us (%d runs)\n", ts[0], ts[reps / 10],
                ts[reps / 2], ts[reps - 1 - reps / 10], ts[reps - 1], reps);
    return reps % 2 ? ts[reps / 2] : 0.5 * (ts[reps / 2 - 1] + ts[reps / 2]);
}

// Per-launch time (µs) of fn(0, st) .. fn(layers - 1, st) captured as one CUDA graph (a decode
// step's layers run so), median over o.reps graph launches; the launches run once before the capture
// (first-call setup such as kernel attributes must not be captured).
template <typename F>
double graph_time_us(const Opts &o, int layers, F fn) {
    cudaStream_t st;
    CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
    for (int l = 0; l < layers; l++) fn(l, st);
    CK(cudaStreamSynchronize(st));
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
    for (int l = 0; l < layers; l++) fn(l, st);
    CK(cudaStreamEndCapture(st, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    const double t = time_us(o, [&] { CK(cudaGraphLaunch(exec, 0)); }) / layers;
    cudaGraphExecDestroy(exec), cudaGraphDestroy(graph), cudaStreamDestroy(st);
    return t;
}

uint16_t *random_bf16_device(int64_t count, uint64_t seed) {
    uint16_t *h = (uint16_t *)xmalloc((size_t)count * 2), *d;
    uint64_t s = seed;
    for (int64_t i = 0; i < count; i++) {
        uint64_t z = splitmix64(&s);
        h[i] = f32_to_bf16(((float)(z >> 40) * (1.0f / 16777216.0f)) * 2.0f - 1.0f);
    }
    CK(cudaMalloc((void **)&d, (size_t)count * 2));
    CK(cudaMemcpy(d, h, (size_t)count * 2, cudaMemcpyHostToDevice));
    free(h);
    return d;
}

// ---- cuBLASLt dense: y (n, out) = x (n, in) · Wᵀ, i.e. column-major D (out, n) = Wᵀᵀ... (TN GEMM) ----
struct Dense {
    cublasLtHandle_t lt = NULL;
    void *ws = NULL;
    size_t ws_bytes = 64u << 20;
};
Dense dense;

// Column-major D (m × n, ld m) = op(A) · op(B), k the reduction: the fastest of the top heuristic
// algorithms. A is (k × m) when transposed (lda k), else (m × k) (lda m); B is (k × n), ld k.
// layers > 1: A holds that many copies one after another, run in turn as one CUDA graph (per-launch time).
double lt_time(const Opts &o, int64_t m, int64_t n, int64_t k, bool trans_a, const uint16_t *A, const uint16_t *B,
               uint16_t *D, int layers = 1) {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t la, lb, lc;
    cublasOperation_t tA = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, tB = CUBLAS_OP_N;
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &tA, sizeof tA);
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tB, sizeof tB);
    if (trans_a) cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, k, m, k);
    else cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, m, k, m);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, k, n, k);
    cublasLtMatrixLayoutCreate(&lc, CUDA_R_16BF, m, n, m);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &dense.ws_bytes,
                                         sizeof dense.ws_bytes);
    cublasLtMatmulHeuristicResult_t res[4];
    int found = 0;
    cublasLtMatmulAlgoGetHeuristic(dense.lt, op, la, lb, lc, lc, pref, o.best_of < 4 ? o.best_of : 4, res, &found);
    float alpha = 1.0f, beta = 0.0f;
    double best = INFINITY;
    for (int i = 0; i < found; i++) {
        if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
        auto run = [&](int l, cudaStream_t st) {
            cublasLtMatmul(dense.lt, op, &alpha, A + (size_t)l * (size_t)(m * k), la, B, lb, &beta, D, lc, D, lc, &res[i].algo,
                           dense.ws, dense.ws_bytes, st);
        };
        double t = layers > 1 ? graph_time_us(o, layers, run) : time_us(o, [&] { run(0, 0); });
        if (t < best) best = t;
    }
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la), cublasLtMatrixLayoutDestroy(lb), cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatmulDescDestroy(op);
    return best;
}

// y (n, out) = x (n, in) · Wᵀ: column-major y (out × n) = Wᵀ (W row-major = column-major (in × out)) · x.
double dense_time(const Opts &o, int64_t out, int64_t in, int64_t n, const uint16_t *W, const uint16_t *x, uint16_t *y,
                  int layers = 1) {
    return lt_time(o, out, n, in, true, W, x, y, layers);
}
// Feature-major yT (out × n) = W · xT, all row-major: column-major y (n × out) = xT' (n × in) · W' (in × out).
double dense_fm_time(const Opts &o, int64_t out, int64_t in, int64_t n, const uint16_t *W, const uint16_t *xT,
                     uint16_t *yT) {
    return lt_time(o, n, out, in, false, xT, W, yT);
}

// ---- cuSPARSELt 2:4 through dlopen: the few types and entry points used here ----
struct SpLtOpaque {
    alignas(16) unsigned char data[4096];  // the library's opaque structs are 1024 bytes
};
typedef int (*FnInit)(SpLtOpaque *);
typedef int (*FnDestroy)(const SpLtOpaque *);
typedef int (*FnGetVersion)(const SpLtOpaque *, int *);
typedef int (*FnStructInit)(const SpLtOpaque *, SpLtOpaque *, int64_t, int64_t, int64_t, uint32_t, int, int, int);
typedef int (*FnDenseInit)(const SpLtOpaque *, SpLtOpaque *, int64_t, int64_t, int64_t, uint32_t, int, int);
typedef int (*FnMatmulInit)(const SpLtOpaque *, SpLtOpaque *, int, int, const SpLtOpaque *, const SpLtOpaque *,
                            const SpLtOpaque *, const SpLtOpaque *, int);
typedef int (*FnAlgInit)(const SpLtOpaque *, SpLtOpaque *, const SpLtOpaque *, int);
typedef int (*FnPlanInit)(const SpLtOpaque *, SpLtOpaque *, const SpLtOpaque *, const SpLtOpaque *);
typedef int (*FnGetWs)(const SpLtOpaque *, const SpLtOpaque *, size_t *);
typedef int (*FnCompSize)(const SpLtOpaque *, const SpLtOpaque *, size_t *, size_t *);
typedef int (*FnCompress)(const SpLtOpaque *, const SpLtOpaque *, const void *, void *, void *, cudaStream_t);
typedef int (*FnPrune)(const SpLtOpaque *, const SpLtOpaque *, const void *, void *, int, cudaStream_t);
typedef int (*FnMatmul)(const SpLtOpaque *, const SpLtOpaque *, const void *, const void *, const void *, const void *,
                        const void *, void *, void *, cudaStream_t *, int32_t);
typedef int (*FnObjDestroy)(const SpLtOpaque *);

struct SpLt {
    void *lib = NULL;
    SpLtOpaque handle;
    int version = 0;
    FnInit init;
    FnDestroy destroy;
    FnGetVersion get_version;
    FnStructInit struct_init;
    FnDenseInit dense_init;
    FnMatmulInit matmul_init;
    FnAlgInit alg_init;
    FnPlanInit plan_init;
    FnGetWs get_ws;
    FnCompSize comp_size;
    FnCompress compress;
    FnPrune prune;
    FnMatmul matmul, search;
    FnObjDestroy mat_destroy, plan_destroy, alg_destroy;
};
SpLt splt;
enum { ORDER_COL = 1, ORDER_ROW = 2, OP_N = 0, CUDA_BF16 = 14, COMPUTE_32F_V07 = 2, COMPUTE_16F_OLD = 0 };

bool splt_load(void) {
    const char *names[] = {"libcusparseLt.so.0",
                           "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cusparselt/lib/libcusparseLt.so.0",
                           "/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib/libcusparseLt.so.0"};
    for (size_t i = 0; i < ARRAY_LEN(names) && !splt.lib; i++) splt.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!splt.lib) return false;
#define SYM(field, name) (*(void **)&splt.field = dlsym(splt.lib, name)) != NULL
    bool ok = SYM(init, "cusparseLtInit") && SYM(destroy, "cusparseLtDestroy") &&
              SYM(struct_init, "cusparseLtStructuredDescriptorInit") && SYM(dense_init, "cusparseLtDenseDescriptorInit") &&
              SYM(matmul_init, "cusparseLtMatmulDescriptorInit") && SYM(alg_init, "cusparseLtMatmulAlgSelectionInit") &&
              SYM(plan_init, "cusparseLtMatmulPlanInit") && SYM(get_ws, "cusparseLtMatmulGetWorkspace") &&
              SYM(comp_size, "cusparseLtSpMMACompressedSize") && SYM(compress, "cusparseLtSpMMACompress") &&
              SYM(prune, "cusparseLtSpMMAPrune") && SYM(matmul, "cusparseLtMatmul") && SYM(search, "cusparseLtMatmulSearch") &&
              SYM(mat_destroy, "cusparseLtMatDescriptorDestroy") && SYM(plan_destroy, "cusparseLtMatmulPlanDestroy");
    SYM(alg_destroy, "cusparseLtMatmulAlgSelectionDestroy");
    SYM(get_version, "cusparseLtGetVersion");
#undef SYM
    if (!ok || splt.init(&splt.handle) != 0) {
        splt.lib = NULL;
        return false;
    }
    if (splt.get_version) splt.get_version(&splt.handle, &splt.version);
    return true;
}

// cuSPARSELt 2:4 time for D (out, n) column-major = A (out, in, row-major, 2:4) · B (in, n, column-major):
// the same memory layouts as y = x Wᵀ. Returns NAN when any step fails.
double splt_time(const Opts &o, int64_t out, int64_t in, int64_t n, const uint16_t *W, const uint16_t *x, uint16_t *y) {
    if (!splt.lib) return NAN;
    SpLtOpaque ma, mb, mc, mm, alg, plan;
    const SpLtOpaque *h = &splt.handle;
    if (splt.struct_init(h, &ma, out, in, in, 16, CUDA_BF16, ORDER_ROW, 0) ||
        splt.dense_init(h, &mb, in, n, in, 16, CUDA_BF16, ORDER_COL) ||
        splt.dense_init(h, &mc, out, n, out, 16, CUDA_BF16, ORDER_COL))
        return NAN;
    // fp32 accumulation is CUSPARSE_COMPUTE_32F (= 2) since v0.7, CUSPARSE_COMPUTE_16F (= 0) before.
    if (splt.matmul_init(h, &mm, OP_N, OP_N, &ma, &mb, &mc, &mc, COMPUTE_32F_V07) &&
        splt.matmul_init(h, &mm, OP_N, OP_N, &ma, &mb, &mc, &mc, COMPUTE_16F_OLD))
        return NAN;
    if (splt.alg_init(h, &alg, &mm, 0) || splt.plan_init(h, &plan, &mm, &alg)) return NAN;
    size_t ws_bytes = 0, csize = 0, cbuf = 0;
    void *ws = NULL, *dA = NULL, *dC = NULL, *dCbuf = NULL;
    double t = NAN;
    float alpha = 1.0f, beta = 0.0f;
    cudaStream_t stream = 0;
    if (splt.get_ws(h, &plan, &ws_bytes) || splt.comp_size(h, &plan, &csize, &cbuf)) goto done;
    CK(cudaMalloc(&ws, ws_bytes + 16));
    CK(cudaMalloc(&dA, (size_t)(out * in) * 2));
    CK(cudaMalloc(&dC, csize));
    CK(cudaMalloc(&dCbuf, cbuf + 16));
    if (splt.prune(h, &mm, W, dA, 0 /* TILE */, 0) || splt.compress(h, &plan, dA, dC, dCbuf, 0)) goto done;
    if (o.splt_search && splt.search(h, &plan, &alpha, dC, x, &beta, y, y, ws, &stream, 1)) goto done;
    {
        int bad = 0;
        auto run = [&] { bad |= splt.matmul(h, &plan, &alpha, dC, x, &beta, y, y, ws, &stream, 1); };
        t = time_us(o, run);
        if (bad) t = NAN;
    }
done:
    cudaFree(ws), cudaFree(dA), cudaFree(dC), cudaFree(dCbuf);
    splt.plan_destroy(&plan);
    if (splt.alg_destroy) splt.alg_destroy(&alg);
    splt.mat_destroy(&ma), splt.mat_destroy(&mb), splt.mat_destroy(&mc);
    return t;
}

// ---- ours ----
int64_t sparse_in(int64_t in, int M) { return (in + 2 * M - 1) / (2 * M) * (2 * M); }

struct Ours {
    VnmMatrix m;
    VnmDeviceMatrix d;
};

// flags: VNM_RANDOM_PERMUTE_COLS for permuted input channels (a pattern "64:2:8p" of --patterns).
void ours_make(Ours *o, VnmPattern p, int64_t out, int64_t in, uint64_t seed, unsigned flags = 0) {
    vnm_random(p, out, sparse_in(in, p.M), seed, flags, &o->m);
    Err err;
    if (vnm_upload(&o->m, &o->d, &err)) fatal("bench_spmm: %s", err.msg);
}

void ours_free(Ours *o) {
    vnm_device_free(&o->d);
    vnm_free(&o->m);
}

// What a decode call streams: the matrix's A fragments (16 bytes) and metadata words (4 bytes).
size_t fragment_words(const Ours *s) { return (size_t)(s->d.out_pad / 16 * s->d.KT * 32); }
size_t fragment_bytes(const Ours *s) { return fragment_words(s) * (16 + 4); }
void stream_fragments(const Ours *s, cudaStream_t st) {
    const size_t words = fragment_words(s);
    read_stream(s->d.vals, words * 16, s->d.meta, words * 4, st);
}

// Memory floor of decode: streaming those bytes once.
double floor_time(const Opts &o, const Ours *s) {
    return time_us(o, [&] { stream_fragments(s, 0); });
}

double ours_time(const Opts &o, const Ours *s, int64_t n, const uint16_t *x, uint16_t *y, int kernel) {
    Err err;
    if (kernel == VNM_KERNEL_MMA_SP && !o.mmasp) return NAN;
    if (vnm_spmm_cuda_ex(&s->d, x, n, NULL, NULL, VNM_ACT_NONE, y, 0, kernel, &err)) return NAN;
    return time_us(o, [&] { vnm_spmm_cuda_ex(&s->d, x, n, NULL, NULL, VNM_ACT_NONE, y, 0, kernel, &err); });
}

// Feature-major: xT (in × ld), yT (out × ld), ld = n rounded up to 8.
double ours_fm_time(const Opts &o, const Ours *s, int64_t n, const uint16_t *xT, uint16_t *yT) {
    Err err;
    const int64_t ld = (n + 7) / 8 * 8;
    if (vnm_spmm_cuda_fm(&s->d, xT, n, ld, NULL, NULL, VNM_ACT_NONE, yT, 0, &err)) return NAN;
    return time_us(o, [&] { vnm_spmm_cuda_fm(&s->d, xT, n, ld, NULL, NULL, VNM_ACT_NONE, yT, 0, &err); });
}

// Relative error of ours vs cuBLAS on the decompressed matrix (true in only, i.e. M | in), token-major
// or feature-major (fm: x is xT, n % 8 == 0 so that ld = n).
double check_vs_dense(const Ours *s, int64_t n, const uint16_t *x, uint16_t *y, uint16_t *y_ref, bool fm) {
    int64_t out = s->m.out, in = s->m.in;
    float *Wf = (float *)xmalloc((size_t)(out * in) * 4);
    vnm_decompress(&s->m, Wf);
    uint16_t *Wh = (uint16_t *)xmalloc((size_t)(out * in) * 2), *Wd;
    for (int64_t i = 0; i < out * in; i++) Wh[i] = f32_to_bf16(Wf[i]);
    CK(cudaMalloc((void **)&Wd, (size_t)(out * in) * 2));
    CK(cudaMemcpy(Wd, Wh, (size_t)(out * in) * 2, cudaMemcpyHostToDevice));
    free(Wf), free(Wh);
    Opts once;
    once.reps = 1, once.flush = 0;
    Err err;
    if (fm) {
        dense_fm_time(once, out, in, n, Wd, x, y_ref);
        vnm_spmm_cuda_fm(&s->d, x, n, n, NULL, NULL, VNM_ACT_NONE, y, 0, &err);
    } else {
        dense_time(once, out, in, n, Wd, x, y_ref);
        vnm_spmm_cuda(&s->d, x, n, NULL, NULL, VNM_ACT_NONE, y, 0, &err);
    }
    CK(cudaDeviceSynchronize());
    uint16_t *a = (uint16_t *)xmalloc((size_t)(n * out) * 2), *b = (uint16_t *)xmalloc((size_t)(n * out) * 2);
    CK(cudaMemcpy(a, y, (size_t)(n * out) * 2, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(b, y_ref, (size_t)(n * out) * 2, cudaMemcpyDeviceToHost));
    double num = 0, den = 0;
    for (int64_t i = 0; i < n * out; i++) {
        double dv = (double)bf16_to_f32(a[i]) - bf16_to_f32(b[i]);
        num += dv * dv, den += (double)bf16_to_f32(b[i]) * bf16_to_f32(b[i]);
    }
    free(a), free(b);
    cudaFree(Wd);
    return isfinite(num) ? sqrt(num / (den > 0 ? den : 1)) : INFINITY;
}

const Shape LLAMA[] = {{"llama2-7b", 4096, 4096}, {"llama2-7b", 11008, 4096}, {"llama2-7b", 4096, 11008}};
const Shape DEIT_B[] = {{"deit-base", 2304, 768}, {"deit-base", 768, 768}, {"deit-base", 3072, 768}, {"deit-base", 768, 3072}};
const Shape DEIT_S[] = {{"deit-small", 1152, 384}, {"deit-small", 384, 384}, {"deit-small", 1536, 384}, {"deit-small", 384, 1536}};
const int64_t DEIT_N = 197 * 64;
const int64_t MAX_N = 16384;  // the largest --n

struct Buffers {
    uint16_t *x, *y, *y_ref, *W;
    int64_t x_count, y_count, w_count;
};

void buffers_init(Buffers *b, int64_t max_n, int64_t max_in, int64_t max_out) {
    b->x_count = max_n * (max_in + 64), b->y_count = max_n * max_out, b->w_count = max_out * (max_in + 64);
    b->x = random_bf16_device(b->x_count, 11);
    b->W = random_bf16_device(b->w_count, 12);
    CK(cudaMalloc((void **)&b->y, (size_t)b->y_count * 2));
    CK(cudaMalloc((void **)&b->y_ref, (size_t)b->y_count * 2));
}

// Whether "OUTxIN" is an item of the comma-separated list.
bool shape_listed(const char *list, const Shape &sh) {
    char item[32];
    snprintf(item, sizeof item, "%lldx%lld", (long long)sh.out, (long long)sh.in);
    for (const char *p = strstr(list, item); p; p = strstr(p + 1, item)) {
        const char end = p[strlen(item)];
        if ((p == list || p[-1] == ',') && (end == 0 || end == ',')) return true;
    }
    return false;
}

// --patterns LIST into o (errors on stderr, naming the item): V:N:M patterns, a trailing 'p' for
// permuted input channels (e.g. 64:2:8p).
int parse_patterns(const char *list, Opts *o) {
    o->np = 0;
    for (const char *q = list;; q++) {
        const size_t len = strcspn(q, ",");
        if (o->np == 8 || len == 0 || len >= sizeof o->pat_names[0]) {
            fprintf(stderr, "bench spmm: --patterns: '%s': at most 8 comma-separated patterns such as 64:2:8 or 64:2:8p\n", list);
            return -1;
        }
        char *name = o->pat_names[o->np], spec[16];
        snprintf(name, sizeof o->pat_names[0], "%.*s", (int)len, q);
        snprintf(spec, sizeof spec, "%s", name);
        o->pat_flags[o->np] = spec[len - 1] == 'p' ? VNM_RANDOM_PERMUTE_COLS : 0u;
        if (o->pat_flags[o->np]) spec[len - 1] = 0;
        Err err;
        if (vnm_pattern_parse(spec, &o->pats[o->np], &err)) {
            fprintf(stderr, "bench spmm: --patterns: '%s': %s\n", name, err.msg);
            return -1;
        }
        o->np++, q += len;
        if (!*q) return 0;
    }
}

// Whether an item of --shapes is not a shape of the main table (said on stderr, naming the shapes).
bool shapes_unknown(const char *list) {
    const Shape *groups[] = {LLAMA, DEIT_B, DEIT_S};
    const size_t counts[] = {ARRAY_LEN(LLAMA), ARRAY_LEN(DEIT_B), ARRAY_LEN(DEIT_S)};
    char copy[256];
    snprintf(copy, sizeof copy, "%s", list);
    for (char *item = strtok(copy, ","); item; item = strtok(NULL, ",")) {
        bool known = false;
        for (size_t g = 0; g < ARRAY_LEN(groups); g++)
            for (size_t k = 0; k < counts[g]; k++) known = known || shape_listed(item, groups[g][k]);
        if (known) continue;
        fprintf(stderr, "bench spmm: --shapes: '%s' is not a shape of the table (out x in:", item);
        for (size_t g = 0; g < ARRAY_LEN(groups); g++)
            for (size_t k = 0; k < counts[g]; k++)
                fprintf(stderr, " %lldx%lld", (long long)groups[g][k].out, (long long)groups[g][k].in);
        fprintf(stderr, ")\n");
        return true;
    }
    return false;
}

void main_table(const Opts &o, const Buffers &b) {
    printf("%-11s %-13s %5s %-7s %-19s %9s %9s %9s %9s %7s %7s %8s %9s %9s %7s %7s %8s\n", "model", "out x in", "n",
           "pattern", "kernel", "dense_us", "splt24_us", "ours_us", o.decode ? "floor_us" : "mmasp_us", "ours/x", "splt/x", "check", "dnsfm_us",
           "fm_us", "fm/xfm", "fm/x", "check_fm");
    struct Group {
        const Shape *s;
        size_t count;
        int64_t ns[6];
        int nn;
    } groups[] = {{LLAMA, 3, {1, 4, 16, 128, 2048, 8192}, 6}, {DEIT_B, 4, {DEIT_N}, 1}, {DEIT_S, 4, {DEIT_N}, 1}};
    for (size_t gi = 0; gi < ARRAY_LEN(groups); gi++)
        for (size_t si = 0; si < groups[gi].count; si++) {
            const Shape sh = groups[gi].s[si];
            if (o.quick && !(sh.out == 4096 && sh.in == 4096) && !(sh.out == 768 && sh.in == 3072)) continue;
            if (o.shapes && !shape_listed(o.shapes, sh)) continue;
            if (o.decode && groups[gi].s != LLAMA) continue;
            Ours ours[8];
            for (int pi = 0; pi < o.np; pi++) ours_make(&ours[pi], o.pats[pi], sh.out, sh.in, 1000 + pi, o.pat_flags[pi]);
            const int64_t *ns = o.n ? &o.n : groups[gi].ns;  // --n replaces the group's list
            for (int ni = 0; ni < (o.n ? 1 : groups[gi].nn); ni++) {
                const int64_t n = ns[ni];
                if (!o.n) {  // the mode's subset of the list
                    if (o.quick && n != 2048 && n != 16 && n != DEIT_N) continue;
                    if (o.prefill && n < 2048) continue;
                    if (o.decode ? n > 16 : n == 4) continue;  // n = 4 only in the decode table
                }
                double td = dense_time(o, sh.out, sh.in, n, b.W, b.x, b.y_ref);
                double ts = o.fm_only ? NAN : splt_time(o, sh.out, sh.in, n, b.W, b.x, b.y_ref);
                double tdf = dense_fm_time(o, sh.out, sh.in, n, b.W, b.x, b.y_ref);
                for (int pi = 0; pi < o.np; pi++) {
                    double t = o.fm_only ? NAN : ours_time(o, &ours[pi], n, b.x, b.y, VNM_KERNEL_AUTO);
                    // --decode: that column is the memory floor instead of the mma_sp kernel
                    double tm = o.decode ? floor_time(o, &ours[pi]) : ours_time(o, &ours[pi], n, b.x, b.y, VNM_KERNEL_MMA_SP);
                    double tf = ours_fm_time(o, &ours[pi], n, b.x, b.y);
                    double err = NAN, err_fm = NAN;
                    if (o.check && ours[pi].m.in == sh.in && (o.decode || n == 16 || n == 128 || n == 2048 || n == DEIT_N || n == o.n)) {
                        if (!o.fm_only) err = check_vs_dense(&ours[pi], n, b.x, b.y, b.y_ref, false);
                        err_fm = check_vs_dense(&ours[pi], n, b.x, b.y, b.y_ref, true);
                    }
                    char shape[32], splt_s[16], splt_r[16];
                    snprintf(shape, sizeof shape, "%lldx%lld", (long long)sh.out, (long long)sh.in);
                    snprintf(splt_s, sizeof splt_s, isnan(ts) ? "n/a" : "%.1f", ts);
                    snprintf(splt_r, sizeof splt_r, isnan(ts) ? "n/a" : "%.2f", td / ts);
                    printf("%-11s %-13s %5lld %-7s %-19s %9.1f %9s %9.1f %9.1f %7.2f %7s %8.1e %9.1f %9.1f %7.2f %7.2f %8.1e\n",
                           sh.model, shape, (long long)n, o.pat_names[pi], vnm_spmm_kernel_name(&ours[pi].d, n, VNM_KERNEL_AUTO),
                           td, splt_s, t, tm, td / t, splt_r, err, tdf, tf, tdf / tf, td / tf, err_fm);
                    fflush(stdout);
                }
            }
            for (int pi = 0; pi < o.np; pi++) ours_free(&ours[pi]);
        }
}

// --decode-layers (see the top): each Llama shape, n = 1, 4, 16 (or --n), each pattern. Copies per
// kind: enough that they fill 4× the L2 (l2_bytes), 2 .. 64.
int layer_copies(size_t bytes, size_t l2_bytes) {
    const size_t c = (4 * l2_bytes + bytes - 1) / bytes;
    return c < 2 ? 2 : c > 64 ? 64 : (int)c;
}

void decode_layers_table(const Opts &o, const Buffers &b, size_t l2_bytes) {
    printf("%-11s %-13s %5s %-7s %3s %3s %-19s %9s %9s %9s %7s %7s %9s %9s\n", "model", "out x in", "n", "pattern", "Ld",
           "Ls", "kernel", "dense_us", "ours_us", "floor_us", "ours/x", "floor/x", "dense_GBs", "ours_GBs");
    Opts lo = o;
    lo.flush = 0;  // the copies rotate: each layer's weights come from DRAM
    Err err;
    for (const Shape &sh : LLAMA) {
        if (o.shapes && !shape_listed(o.shapes, sh)) continue;
        const size_t wcount = (size_t)(sh.out * sh.in);
        const int Ld = layer_copies(wcount * 2, l2_bytes);
        uint16_t *W;
        CK(cudaMalloc((void **)&W, wcount * 2 * Ld));
        for (int l = 0; l < Ld; l++) CK(cudaMemcpy(W + l * wcount, b.W, wcount * 2, cudaMemcpyDeviceToDevice));
        Ours *ours[8];
        int Ls[8];
        double floor_us[8];
        for (int pi = 0; pi < o.np; pi++) {
            Ours first;
            ours_make(&first, o.pats[pi], sh.out, sh.in, 2000, o.pat_flags[pi]);
            Ls[pi] = layer_copies(fragment_bytes(&first), l2_bytes);
            ours[pi] = (Ours *)xmalloc(sizeof(Ours) * (size_t)Ls[pi]);
            ours[pi][0] = first;
            for (int l = 1; l < Ls[pi]; l++) ours_make(&ours[pi][l], o.pats[pi], sh.out, sh.in, 2000 + l, o.pat_flags[pi]);
            floor_us[pi] = graph_time_us(lo, Ls[pi], [&](int l, cudaStream_t st) { stream_fragments(&ours[pi][l], st); });
        }
        const int64_t ns[] = {1, 4, 16};
        for (int ni = 0; ni < (o.n ? 1 : 3); ni++) {
            const int64_t n = o.n ? o.n : ns[ni];
            const double td = dense_time(lo, sh.out, sh.in, n, W, b.x, b.y_ref, Ld);
            for (int pi = 0; pi < o.np; pi++) {
                const Ours *L = ours[pi];
                const double t = graph_time_us(lo, Ls[pi], [&](int l, cudaStream_t st) {
                    if (vnm_spmm_cuda(&L[l].d, b.x, n, NULL, NULL, VNM_ACT_NONE, b.y, st, &err))
                        fatal("bench_spmm: --decode-layers: %s", err.msg);
                });
                char shape[32];
                snprintf(shape, sizeof shape, "%lldx%lld", (long long)sh.out, (long long)sh.in);
                printf("%-11s %-13s %5lld %-7s %3d %3d %-19s %9.2f %9.2f %9.2f %7.2f %7.2f %9.0f %9.0f\n", sh.model, shape,
                       (long long)n, o.pat_names[pi], Ld, Ls[pi], vnm_spmm_kernel_name(&L[0].d, n, VNM_KERNEL_AUTO), td, t,
                       floor_us[pi], td / t, td / floor_us[pi], wcount * 2 / td / 1e3, fragment_bytes(&L[0]) / t / 1e3);
                fflush(stdout);
            }
        }
        for (int pi = 0; pi < o.np; pi++) {
            for (int l = 0; l < Ls[pi]; l++) ours_free(&ours[pi][l]);
            free(ours[pi]);
        }
        cudaFree(W);
    }
}

void vm_table(const Opts &o, const Buffers &b, const char *path, const char *device) {
    FILE *f = fopen(path, "w");
    if (!f) fatal("bench_spmm: cannot write %s", path);
    fprintf(f, "# vnmtune spmm speed table (kernels/bench_spmm.cu)\n# device: %s\n", device);
    fprintf(f, "# speedup = cuBLASLt dense bf16 time / V:N:M SpMM time (auto kernel), median of %d runs, L2 %s\n", o.reps,
            o.flush ? "flushed" : "warm");
    fprintf(f, "# in not a multiple of 2M: the sparse side ran with in rounded up (slightly pessimistic)\n");
    fprintf(f, "# out in n V M speedup\n");
    struct Item {
        Shape s;
        int64_t n;
    } items[11];
    size_t count = 0;
    for (size_t i = 0; i < 3; i++) items[count++] = {LLAMA[i], 2048};
    for (size_t i = 0; i < 4; i++) items[count++] = {DEIT_B[i], DEIT_N};
    for (size_t i = 0; i < 4; i++) items[count++] = {DEIT_S[i], DEIT_N};
    const int Vs[] = {16, 32, 64, 128};
    for (size_t it = 0; it < count; it++) {
        const Shape sh = items[it].s;
        int64_t n = items[it].n;
        if (o.quick && it != 0) continue;
        double td = dense_time(o, sh.out, sh.in, n, b.W, b.x, b.y_ref);
        printf("table %s %lldx%lld n=%lld dense %.1f us:", sh.model, (long long)sh.out, (long long)sh.in, (long long)n, td);
        for (size_t vi = 0; vi < ARRAY_LEN(Vs); vi++)
            for (int M = 4; M <= 16; M++) {
                if (sh.out % Vs[vi]) continue;
                Ours s;
                ours_make(&s, (VnmPattern){Vs[vi], 2, M}, sh.out, sh.in, 77 + M);
                double t = ours_time(o, &s, n, b.x, b.y, VNM_KERNEL_AUTO);
                fprintf(f, "%lld %lld %lld %d %d %.3f\n", (long long)sh.out, (long long)sh.in, (long long)n, Vs[vi], M, td / t);
                printf(" %d:2:%d=%.2f", Vs[vi], M, td / t);
                ours_free(&s);
            }
        printf("\n");
        fflush(f);
        fflush(stdout);
    }
    fclose(f);
    printf("wrote %s\n", path);
}

}  // namespace

extern "C" int bench_spmm_main(int argc, char **argv) {
    Opts o;
    parse_patterns("2:4,64:2:5,64:2:8", &o);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) o.quick = 1, o.reps = 10;
        else if (!strcmp(argv[i], "--prefill")) o.prefill = 1, o.reps = 10;
        else if (!strcmp(argv[i], "--decode")) o.decode = 1, o.table = NULL;
        else if (!strcmp(argv[i], "--decode-layers")) o.decode_layers = 1, o.table = NULL;
        else if (!strcmp(argv[i], "--no-mmasp")) o.mmasp = 0;
        else if (!strcmp(argv[i], "--fm-only")) o.fm_only = 1, o.mmasp = 0;
        else if (!strcmp(argv[i], "--no-flush")) o.flush = 0;
        else if (!strcmp(argv[i], "--flush-read")) o.flush = 2;
        else if (!strcmp(argv[i], "--no-check")) o.check = 0;
        else if (!strcmp(argv[i], "--no-table")) o.table = NULL;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) o.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--table") && i + 1 < argc) o.table = argv[++i];
        else if (!strcmp(argv[i], "--patterns") && i + 1 < argc) {
            if (parse_patterns(argv[++i], &o)) return 2;
        }
        else if (!strcmp(argv[i], "--table-only") && i + 1 < argc) o.table = argv[++i], o.table_only = 1;
        else if (!strcmp(argv[i], "--ncu") && i + 1 < argc) o.ncu = argv[++i];
        else if (!strcmp(argv[i], "--ncu-search")) o.ncu_search = 1;
        else if (!strcmp(argv[i], "--shapes") && i + 1 < argc) {
            o.shapes = argv[++i];
            if (shapes_unknown(o.shapes)) return 2;
        } else if (!strcmp(argv[i], "--n") && i + 1 < argc) {
            char *end;
            o.n = strtoll(argv[++i], &end, 10);
            if (*end || o.n < 1 || o.n > MAX_N) {
                fprintf(stderr, "bench spmm: --n: '%s' is not a token count in 1 .. %lld\n", argv[i], (long long)MAX_N);
                return 2;
            }
        }
        else {
            fprintf(stderr, "usage: bench spmm [--quick | --prefill | --decode | --decode-layers] [--reps N] [--no-flush | --flush-read] [--no-check] [--no-mmasp] "
                            "[--fm-only] [--table FILE | --table-only FILE | --no-table] [--shapes OUTxIN,...] [--patterns P,...] [--n N] [--ncu PATTERN[@N][/fm][=OUTxIN] [--ncu-search]]\n");
            return 2;
        }
    }
    if (o.decode_layers && o.n > 16) {
        fprintf(stderr, "bench spmm: --decode-layers: --n %lld is not a decode size (1 .. 16)\n", (long long)o.n);
        return 2;
    }
    if (o.reps < 1) o.reps = 1;
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) {
        fprintf(stderr, "bench spmm: no CUDA device\n");
        return 1;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    CK(cudaMalloc(&flush_buf, FLUSH_BYTES));
    CK(cudaMemset(flush_buf, 0, FLUSH_BYTES));
    CK(cudaMalloc((void **)&sink, sizeof(float)));
    CK(cudaEventCreate(&ev0));
    CK(cudaEventCreate(&ev1));
    if (cublasLtCreate(&dense.lt) != CUBLAS_STATUS_SUCCESS) fatal("bench_spmm: cublasLtCreate failed");
    CK(cudaMalloc(&dense.ws, dense.ws_bytes));
    bool have_splt = splt_load();
    char device[256];
    snprintf(device, sizeof device, "%s, %d SMs, cc %d.%d; cuSPARSELt %s (%d)", prop.name, prop.multiProcessorCount,
             prop.major, prop.minor, have_splt ? "loaded" : "n/a", splt.version);
    printf("# bench spmm: %s\n# median of %d runs after 3 warm-ups, L2 %s before each run; ratios = dense time / time\n",
           device, o.reps, o.flush == 1 ? "flushed (128 MB write)" : o.flush == 2 ? "flushed (128 MB read, clean)" : "warm");
    Buffers b;
    if (o.ncu) {  // PATTERN[@N][/fm][=OUTxIN]: /fm runs the feature-major kernel (n a multiple of 8)
        VnmPattern p;
        Err err;
        char pat[64];
        snprintf(pat, sizeof pat, "%s", o.ncu);
        long long out = 4096, in = 4096;
        char *eq = strchr(pat, '=');
        if (eq && sscanf(eq + 1, "%lldx%lld", &out, &in) != 2) fatal("bench_spmm: --ncu %s: shape OUTxIN", o.ncu);
        if (eq) *eq = 0;
        char *fm = strstr(pat, "/fm");
        if (fm) *fm = 0;
        char *at = strchr(pat, '@');
        int64_t n = 2048;
        if (at) *at = 0, n = atoll(at + 1);
        if (vnm_pattern_parse(pat, &p, &err) || n < 1 || n > 16384 || out < 16 || in < 16 || out > 65536 || in > 65000)
            fatal("bench_spmm: --ncu %s: want PATTERN[@N][/fm][=OUTxIN] with 1 <= N <= 16384, 16 <= OUT <= 65536, "
                  "16 <= IN <= 65000",
                  o.ncu);
        buffers_init(&b, n, in + 32, out);
        Ours s;
        ours_make(&s, p, out, in, 5);
        for (int i = 0; i < 3; i++)
            if (fm) vnm_spmm_cuda_fm(&s.d, b.x, n, n, NULL, NULL, VNM_ACT_NONE, b.y, 0, &err);
            else vnm_spmm_cuda(&s.d, b.x, n, NULL, NULL, VNM_ACT_NONE, b.y, 0, &err);
        CK(cudaDeviceSynchronize());
        printf("ncu run: %s %lldx%lld n=%lld %s\n", pat, out, in, (long long)n,
               vnm_spmm_kernel_name(&s.d, n, fm ? VNM_KERNEL_FEATURE_MAJOR : VNM_KERNEL_AUTO));
        // Then the baselines of the same shape, 4 launches each: cuBLASLt's first heuristic algorithm
        // and cuSPARSELt 2:4 without its algorithm search (its default).
        Opts once;
        once.reps = 1, once.flush = 0, once.best_of = 1, once.splt_search = o.ncu_search;
        if (!fm) dense_time(once, out, in, n, b.W, b.x, b.y_ref), splt_time(once, out, in, n, b.W, b.x, b.y_ref);
        return 0;
    }
    buffers_init(&b, o.n > DEIT_N ? o.n : DEIT_N, 11008 + 32, 11008);
    if (o.decode_layers) {
        decode_layers_table(o, b, (size_t)prop.l2CacheSize);
    } else if (!o.table_only)
        main_table(o, b);
    if (o.table) vm_table(o, b, o.table, device);
    cudaFree(b.x), cudaFree(b.y), cudaFree(b.y_ref), cudaFree(b.W);
    return 0;
}
