// Internals shared by the CUDA kernel files (not a public header; C code uses ops_cuda.h).
//
// Conventions of the CUDA backend:
// - Activations and model parameters are bf16 on the device; every kernel accumulates in fp32.
// - Gradients are bf16 or f32 (tensor_ensure_grad: f32 where Tensor.grad_f32 is set, i.e. for
//   trainable parameters); every backward kernel takes the gradient dtype it finds and ACCUMULATES.
// - One stream (cuda_stream()); reductions are two-stage with a fixed order, no atomics, so a run
//   is bit-for-bit repeatable on the same GPU.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <stdint.h>

#include "kernels/pdl.cuh"  // (also defines _Noreturn for util.h in C++)
extern "C" {
#include "autograd/device.h"
#include "autograd/ops.h"
#include "autograd/rng.h"
#include "autograd/tape.h"
#include "autograd/tensor.h"
#include "autograd/util.h"
}

typedef __nv_bfloat16 bf16;

void cuda_check(cudaError_t e, const char *what, const char *file, int line);
#define CUDA_CHECK(call) cuda_check((call), #call, __FILE__, __LINE__)
#define CUDA_LAUNCH_CHECK() cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

cudaStream_t cuda_stream(void);
int cuda_sm_count(void);  // SMs of the current GPU (queried once)

// Profiler hooks (ops_cuda.cu): an id from begin (−1 when off) to pass to end.
extern bool g_cuda_profiling;
int cuda_prof_begin(int op, int dir);
int cuda_prof_gemm_begin(int plan);  // a GEMM, timed per plan (shape) as well
void cuda_prof_end(int id);
// "m×n×k ta tb" of a GEMM plan, for the profile report (cuda_gemm.cu); returns its FLOPs.
double gemm_plan_describe(int plan, char *buf, size_t size);

// Temporary device buffers that live for one kernel call (grown on demand, never shrunk).
// Slots let one call hold several at once. Contents are undefined.
enum { SCRATCH_A, SCRATCH_B, SCRATCH_C, SCRATCH_REDUCE, SCRATCH_SLOTS };
void *cuda_scratch(int slot, size_t bytes);
// Reports (fatal) a failed check that an earlier kernel left behind without a synchronization
// (today: out-of-range embedding ids). device_synchronize and copies to the host call it.
void cuda_check_deferred(void);
// The position tensor in[slot] of OP_ROPE / OP_ATTENTION_CACHED on the device, NULL when absent.
static inline const int32_t *position_of(const TapeNode *n, int slot) {
    return n->nin > slot && n->in[slot] ? (const int32_t *)n->in[slot]->data : NULL;
}

// ---- checks on node tensors (programming errors: fatal) ----
void cuda_expect(const Tensor *t, DType dt, const char *op, const char *what);
static inline const bf16 *cbf(const Tensor *t) { return (const bf16 *)t->data; }
static inline bf16 *mbf(Tensor *t) { return (bf16 *)t->data; }
static inline int64_t rows_of(const Tensor *t) { return t->numel / t->shape[t->ndim - 1]; }
static inline int64_t last_dim(const Tensor *t) { return t->shape[t->ndim - 1]; }
// The gradient a backward kernel must add into: NULL when the input needs none.
static inline Tensor *grad_of(const Tensor *t) { return t && t->requires_grad ? t->grad : NULL; }
// Gradients from a no_zero (GPU activation) arena start unwritten (Tensor.unwritten, logically zero,
// storage garbage). grad_accumulate() tells a backward kernel whether to add into g (true) or to
// overwrite it (false: the first writer), and clears the flag: after the call the kernel MUST write
// every element of g. Kernels that write only part of g call grad_prepare_partial() first (zeroes
// an unwritten g) and then accumulate.
static inline bool grad_accumulate(Tensor *g) {
    if (!g->unwritten) return true;
    g->unwritten = false;
    return false;
}
static inline void grad_prepare_partial(Tensor *g) {
    if (g->unwritten) tensor_zero(g);
}
// Allocates a node's saved tensor from the tape's activation arena.
Tensor *cuda_saved(TapeNode *node, DType dt, int ndim, const int64_t *shape, const char *suffix);
// True when the node will be kept for backward (its saved[] tensors are needed later).
static inline bool cuda_recording(const TapeNode *n) { return n->tape && n->tape->record && n->out[0]->requires_grad; }
// Storage for a forward intermediate that backward needs: saved[slot] when recording, else the
// scratch buffer `scratch_slot` (eval: nothing is kept).
void *cuda_keep(TapeNode *n, int slot, int scratch_slot, DType dt, int ndim, const int64_t *shape, const char *suffix);

static inline unsigned cdiv(int64_t a, int64_t b) { return (unsigned)((a + b - 1) / b); }

// ---- device helpers ----
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_f(float v) { return v; }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float v) { return __float2bfloat16(v); }
// g[i] += v in the gradient's own type (one fp32 add, then rounded once for bf16); add = false
// overwrites (the gradient's first writer, see grad_accumulate).
template <typename G> __device__ __forceinline__ void acc(G *g, int64_t i, float v, bool add = true) {
    g[i] = from_f<G>(add ? to_f(g[i]) + v : v);
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
// Sum over a block of up to 1024 threads (fixed order); every thread gets the result.
__device__ __forceinline__ float block_sum(float v) {
    __shared__ float part[32];
    __shared__ float total;
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    v = warp_sum(v);
    __syncthreads();
    if (lane == 0) part[warp] = v;
    __syncthreads();
    if (warp == 0) {
        float s = lane < (int)((blockDim.x + 31) >> 5) ? part[lane] : 0.0f;
        s = warp_sum(s);
        if (lane == 0) total = s;
    }
    __syncthreads();
    return total;
}

// Loads/stores 8 consecutive values (VEC: one 16-byte access; else 8 scalar accesses).
template <bool VEC> __device__ __forceinline__ void load8(const bf16 *p, float v[8]) {
    if (VEC) {
        uint4 u = *(const uint4 *)p;
        const bf16 *h = (const bf16 *)&u;
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = to_f(h[k]);
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = to_f(p[k]);
    }
}
template <bool VEC> __device__ __forceinline__ void store8(bf16 *p, const float v[8]) {
    if (VEC) {
        uint4 u;
        bf16 *h = (bf16 *)&u;
#pragma unroll
        for (int k = 0; k < 8; k++) h[k] = __float2bfloat16(v[k]);
        *(uint4 *)p = u;
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) p[k] = __float2bfloat16(v[k]);
    }
}

// g[i..i+8) += v in the gradient's type (VEC: 16-byte accesses; needs 16-byte aligned g + i).
template <bool VEC> __device__ __forceinline__ void acc8(float *g, const float v[8], bool add = true) {
    if (!add) {
        if (VEC) {
            ((float4 *)g)[0] = make_float4(v[0], v[1], v[2], v[3]);
            ((float4 *)g)[1] = make_float4(v[4], v[5], v[6], v[7]);
        } else {
#pragma unroll
            for (int k = 0; k < 8; k++) g[k] = v[k];
        }
        return;
    }
    if (VEC) {
        float4 *q = (float4 *)g;
        float4 a = q[0], b = q[1];
        a.x += v[0], a.y += v[1], a.z += v[2], a.w += v[3];
        b.x += v[4], b.y += v[5], b.z += v[6], b.w += v[7];
        q[0] = a, q[1] = b;
    } else {
#pragma unroll
        for (int k = 0; k < 8; k++) g[k] += v[k];
    }
}
template <bool VEC> __device__ __forceinline__ void acc8(bf16 *g, const float v[8], bool add = true) {
    if (!add) {
        store8<VEC>(g, v);
        return;
    }
    float t[8];
    load8<VEC>(g, t);
#pragma unroll
    for (int k = 0; k < 8; k++) t[k] += v[k];
    store8<VEC>(g, t);
}

// The dropout hash of autograd/rng.h (hash_uniform, compiled for host and device): same bits as the CPU.
__device__ __forceinline__ float hash_uniform_dev(uint64_t seed, uint64_t stream, uint64_t index) {
    return hash_uniform(seed, stream, index);
}

// Runs `body` with G = the C++ type of gradient dtype `dt` (f32 or bf16).
#define DISPATCH_GRAD(dt, G, ...)                                                   \
    do {                                                                            \
        if ((dt) == DT_F32) {                                                       \
            typedef float G;                                                        \
            __VA_ARGS__;                                                            \
        } else if ((dt) == DT_BF16) {                                               \
            typedef bf16 G;                                                         \
            __VA_ARGS__;                                                            \
        } else {                                                                    \
            fatal("CUDA kernels: gradient dtype %s is not supported", dtype_name(dt)); \
        }                                                                           \
    } while (0)

// ---- column sums (bias, norm-weight and embedding gradients) ----
// grad[c] += scale · Σ_r f(r, c) for c < cols, deterministic: partial sums over fixed row chunks,
// then the chunks in order. F is a functor with `__device__ float operator()(int64_t r, int64_t c)`.
template <typename F>
__global__ void colsum_partial_kernel(F f, int64_t rows, int64_t cols, int64_t rows_per_chunk, float *partial) {
    int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    int64_t r0 = (int64_t)blockIdx.y * rows_per_chunk, r1 = min(rows, r0 + rows_per_chunk);
    float s = 0.0f;
    for (int64_t r = r0; r < r1; r++) s += f(r, c);
    partial[(int64_t)blockIdx.y * cols + c] = s;
}
void colsum_finish(const float *partial, int chunks, int64_t cols, Tensor *grad, float scale);

template <typename F> void colsum_into(F f, int64_t rows, int64_t cols, Tensor *grad, float scale) {
    // enough chunks to fill the GPU (~256k threads), each at least 16 rows
    int64_t want = (262144 + cols - 1) / cols;
    int64_t chunks = want < 1 ? 1 : want;
    if (chunks > (rows + 15) / 16) chunks = (rows + 15) / 16;
    if (chunks < 1) chunks = 1;
    if (chunks > 65535) chunks = 65535;
    int64_t per = (rows + chunks - 1) / chunks;
    chunks = (rows + per - 1) / per;
    float *partial = (float *)cuda_scratch(SCRATCH_REDUCE, (size_t)(chunks * cols) * sizeof(float));
    dim3 grid(cdiv(cols, 256), (unsigned)chunks);
    colsum_partial_kernel<<<grid, 256, 0, cuda_stream()>>>(f, rows, cols, per, partial);
    CUDA_LAUNCH_CHECK();
    colsum_finish(partial, (int)chunks, cols, grad, scale);
}

// f(r, c) = x[r·ld + c] (bf16): column sums of a row-major matrix.
struct ColOf {
    const bf16 *x;
    int64_t ld;
    __device__ float operator()(int64_t r, int64_t c) const { return to_f(x[r * ld + c]); }
};

// ---- GEMM through cuBLASLt, in row-major terms ----
// C (m×n, ld ldc) = alpha · op(A) · op(B) + beta · C [+ bias[j] for every row]; op = transpose when
// ta/tb. A is (m×k) or, transposed, stored (k×m); B is (k×n) or stored (n×k). Strided batches
// with element strides sa/sb/sc. Types: A and B bf16 (or f32 for both), C bf16 or f32; fp32
// compute. bias (n) in C's type (bf16 C) or f32, NULL for none.
typedef struct Gemm {
    bool ta, tb;
    int64_t m, n, k;
    const void *a;
    int64_t lda;
    const void *b;
    int64_t ldb;
    void *c;            // D (the output); also C unless c_in is set
    const void *c_in;   // optional C read by beta (same type and ld as c): D = alpha·AB + beta·C_in
    int64_t ldc;
    cudaDataType_t ab_type, c_type;
    float alpha, beta;
    int batch;
    int64_t sa, sb, sc;
    const void *bias;
    bool gelu;  // epilogue GELU (tanh form, cuBLASLt's) after the bias
} Gemm;
void gemm(const Gemm *g);
static inline cudaDataType_t cuda_type(DType dt) {
    switch (dt) {
    case DT_F32: return CUDA_R_32F;
    case DT_BF16: return CUDA_R_16BF;
    default: fatal("gemm: dtype %s is not a GEMM operand type", dtype_name(dt));
    }
}

// Elementwise: out[i] (+)= ... helpers shared by several files.
// g[i] += scale · x[i] (x bf16, g in its dtype): the gradient of an identity-like path.
void cuda_acc_into(Tensor *g, const bf16 *x, int64_t n, float scale);
// An output gradient gy that nothing reads after the current node (only its producer reads it):
// an input gradient g that is still unwritten (same dtype and size) takes gy's buffer over, a
// pointer swap instead of a copy (cuda_grad_take returns false when it cannot). cuda_grad_pass:
// g += gy, by the swap where it can, else by a copy.
bool cuda_grad_can_take(const Tensor *g, const Tensor *gy);
bool cuda_grad_take(Tensor *g, Tensor *gy);
void cuda_grad_pass(Tensor *g, Tensor *gy);

// ---- the kernels registered in ops_cuda.cu ----
#define CUDA_OP(name) void cuda_##name##_fwd(TapeNode *n); void cuda_##name##_bwd(TapeNode *n)
CUDA_OP(linear);
CUDA_OP(layernorm);
CUDA_OP(attention);
CUDA_OP(gelu);
CUDA_OP(add);
CUDA_OP(patch_embed);
CUDA_OP(cls_pos);
CUDA_OP(select_token);
CUDA_OP(mean_tokens);
CUDA_OP(cross_entropy);
CUDA_OP(rmsnorm);
CUDA_OP(rope);
CUDA_OP(swiglu);
CUDA_OP(embedding);
CUDA_OP(concat);
#undef CUDA_OP
// inference only (no backward): cuda_attention_cached.cu
void cuda_attention_cached_fwd(TapeNode *n);
