// Elementwise and token ops: OP_GELU, OP_ADD, OP_SWIGLU, OP_ROPE, OP_CLS_POS, OP_SELECT_TOKEN,
// OP_MEAN_TOKENS, OP_EMBEDDING. Elementwise maps move 8 values (16 bytes) per thread access when
// every pointer is 16-byte aligned.
#include <math.h>

#include "kernels/cuda_common.cuh"

static bool aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }
static unsigned grid8(int64_t n) {
    int64_t b = (n + 8 * 256 - 1) / (8 * 256);
    return (unsigned)(b < 1 ? 1 : (b > 16384 ? 16384 : b));
}

// ---- maps of one or two inputs: y = F::fwd(a, b); da += F::da(a, b)·dy; db += F::db(a, b)·dy ----
struct GeluF {
    __device__ static float fwd(float x, float) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
    __device__ static float da(float x, float) {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.39894228040143268f * __expf(-0.5f * x * x);
        return cdf + x * pdf;
    }
    __device__ static float db(float, float) { return 0.0f; }
};
struct AddF {
    __device__ static float fwd(float a, float b) { return a + b; }
    __device__ static float da(float, float) { return 1.0f; }
    __device__ static float db(float, float) { return 1.0f; }
};
// silu(g)·u: d/dg = u·σ(g)(1 + g(1 − σ(g))), d/du = silu(g)
struct SwigluF {
    __device__ static float sig(float g) { return 1.0f / (1.0f + __expf(-g)); }
    __device__ static float fwd(float g, float u) { return g * sig(g) * u; }
    __device__ static float da(float g, float u) {
        float s = sig(g);
        return u * s * (1.0f + g * (1.0f - s));
    }
    __device__ static float db(float g, float) { return g * sig(g); }
};

template <typename F, bool VEC> __global__ void map_fwd_kernel(const bf16 *a, const bf16 *b, bf16 *y, int64_t n) {
    pdl_trigger();  // see kernels/pdl.cuh
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n; i += (int64_t)gridDim.x * blockDim.x * 8) {
        if (i + 8 <= n) {
            float va[8], vb[8] = {0, 0, 0, 0, 0, 0, 0, 0}, vy[8];
            load8<VEC>(a + i, va);
            if (b) load8<VEC>(b + i, vb);
#pragma unroll
            for (int k = 0; k < 8; k++) vy[k] = F::fwd(va[k], vb[k]);
            store8<VEC>(y + i, vy);
        } else {
            for (int64_t j = i; j < n; j++) y[j] = __float2bfloat16(F::fwd(to_f(a[j]), b ? to_f(b[j]) : 0.0f));
        }
    }
}

template <typename F, typename GA, typename GB, bool VEC>
__global__ void map_bwd_kernel(const bf16 *a, const bf16 *b, const bf16 *dy, GA *ga, GB *gb, int64_t n, bool add_a,
                               bool add_b) {
    for (int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 8; i < n; i += (int64_t)gridDim.x * blockDim.x * 8) {
        if (i + 8 <= n) {
            float va[8], vb[8] = {0, 0, 0, 0, 0, 0, 0, 0}, d[8], t[8];
            load8<VEC>(a + i, va);
            if (b) load8<VEC>(b + i, vb);
            load8<VEC>(dy + i, d);
            if (ga) {
#pragma unroll
                for (int k = 0; k < 8; k++) t[k] = F::da(va[k], vb[k]) * d[k];
                acc8<VEC>(ga + i, t, add_a);
            }
            if (gb) {
#pragma unroll
                for (int k = 0; k < 8; k++) t[k] = F::db(va[k], vb[k]) * d[k];
                acc8<VEC>(gb + i, t, add_b);
            }
        } else {
            for (int64_t j = i; j < n; j++) {
                float va = to_f(a[j]), vb = b ? to_f(b[j]) : 0.0f, d = to_f(dy[j]);
                if (ga) acc(ga, j, F::da(va, vb) * d, add_a);
                if (gb) acc(gb, j, F::db(va, vb) * d, add_b);
            }
        }
    }
}

template <typename F> static void map_fwd(TapeNode *n, const char *op, bool two) {
    Tensor *a = n->in[0], *b = two ? n->in[1] : NULL, *y = n->out[0];
    cuda_expect(a, DT_BF16, op, "input");
    if (two) {
        cuda_expect(b, DT_BF16, op, "second input");
        if (!tensor_same_shape(a, b)) fatal("CUDA %s '%s': inputs differ in shape", op, y->name);
    }
    cuda_expect(y, DT_BF16, op, "output");
    bool vec = aligned16(a->data) && (!b || aligned16(b->data)) && aligned16(y->data);
    const bf16 *bp = b ? cbf(b) : NULL;
    if (vec) map_fwd_kernel<F, true><<<grid8(a->numel), 256, 0, cuda_stream()>>>(cbf(a), bp, mbf(y), a->numel);
    else map_fwd_kernel<F, false><<<grid8(a->numel), 256, 0, cuda_stream()>>>(cbf(a), bp, mbf(y), a->numel);
    CUDA_LAUNCH_CHECK();
}

// The gradients ga, gb (either may be NULL) of a map node.
template <typename F> static void map_bwd_into(TapeNode *n, const char *op, bool two, Tensor *ga, Tensor *gb) {
    Tensor *a = n->in[0], *b = two ? n->in[1] : NULL, *y = n->out[0];
    if (!ga && !gb) return;
    cuda_expect(y->grad, DT_BF16, op, "output gradient");
    const bf16 *bp = b ? cbf(b) : NULL, *dy = cbf(y->grad);
    bool vec = aligned16(a->data) && (!b || aligned16(b->data)) && aligned16(dy) && (!ga || aligned16(ga->data)) &&
               (!gb || aligned16(gb->data));
    unsigned grid = grid8(a->numel);
    // add(a, a): ga == gb; the first flag read may overwrite, the second then adds (same thread, in order)
    bool add_a = ga ? grad_accumulate(ga) : true, add_b = gb ? grad_accumulate(gb) : true;
    DISPATCH_GRAD(ga ? ga->dtype : DT_BF16, GA, DISPATCH_GRAD(gb ? gb->dtype : DT_BF16, GB, {
        GA *pa = ga ? (GA *)ga->data : NULL;
        GB *pb = gb ? (GB *)gb->data : NULL;
        if (vec) map_bwd_kernel<F, GA, GB, true><<<grid, 256, 0, cuda_stream()>>>(cbf(a), bp, dy, pa, pb, a->numel, add_a, add_b);
        else map_bwd_kernel<F, GA, GB, false><<<grid, 256, 0, cuda_stream()>>>(cbf(a), bp, dy, pa, pb, a->numel, add_a, add_b);
    }));
    CUDA_LAUNCH_CHECK();
}
template <typename F> static void map_bwd(TapeNode *n, const char *op, bool two) {
    map_bwd_into<F>(n, op, two, grad_of(n->in[0]), two ? grad_of(n->in[1]) : NULL);
}

void cuda_gelu_fwd(TapeNode *n) { map_fwd<GeluF>(n, "gelu", false); }
void cuda_gelu_bwd(TapeNode *n) { map_bwd<GeluF>(n, "gelu", false); }
void cuda_add_fwd(TapeNode *n) { map_fwd<AddF>(n, "add", true); }
// One input's gradient takes the output gradient's buffer over where it can (cuda_grad_take: the
// residual stream passes through the adds without a copy); the other gets a copy.
void cuda_add_bwd(TapeNode *n) {
    Tensor *ga = grad_of(n->in[0]), *gb = grad_of(n->in[1]), *gy = n->out[0]->grad;
    if (ga == gb || !cuda_grad_can_take(gb, gy)) {  // add(a, a), or gb cannot take the buffer: one kernel
        map_bwd<AddF>(n, "add", true);
        return;
    }
    map_bwd_into<AddF>(n, "add", true, ga, NULL);  // ga first: the take below moves gy's buffer
    cuda_grad_take(gb, gy);
}
void cuda_swiglu_fwd(TapeNode *n) { map_fwd<SwigluF>(n, "swiglu", true); }
void cuda_swiglu_bwd(TapeNode *n) { map_bwd<SwigluF>(n, "swiglu", true); }

// ---- rotary embedding (HF "rotate_half") ----
// x viewed as (B, T, H, D); pair (i, i + D/2) at position p = pos0 + t rotates by p·theta^(−2i/D).
// dir = +1 forward, −1 backward (the transpose rotation).
template <typename OT>
__global__ void rope_kernel(const bf16 *x, OT *y, int64_t B, int T, int H, int D, int64_t pos0, const int32_t *pos_t,
                            float theta, float dir, bool grad, bool add) {
    pdl_trigger();
    if (pos_t) pos0 = *pos_t;
    int half = D / 2;
    int64_t total = B * T * H * (int64_t)half;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += (int64_t)gridDim.x * blockDim.x) {
        int i = (int)(idx % half);
        int64_t head = idx / half;  // (b, t, h) flattened
        int t = (int)((head / H) % T);
        float inv_freq = 1.0f / powf(theta, (float)(2 * i) / (float)D);
        float s, c;
        sincosf((float)(pos0 + t) * inv_freq, &s, &c);
        s *= dir;
        int64_t base = head * D;
        float x1 = to_f(x[base + i]), x2 = to_f(x[base + i + half]);
        float y1 = x1 * c - x2 * s, y2 = x2 * c + x1 * s;
        if (grad) {
            acc(y, base + i, y1, add);
            acc(y, base + i + half, y2, add);
        } else {
            y[base + i] = from_f<OT>(y1);
            y[base + i + half] = from_f<OT>(y2);
        }
    }
}

static void rope_dims(TapeNode *n, int64_t *B, int *T, int *H, int *D) {
    Tensor *x = n->in[0];
    cuda_expect(x, DT_BF16, "rope", "x");
    *B = x->shape[0];
    *T = (int)x->shape[1];
    if (x->ndim == 4) {
        *H = (int)x->shape[2];
        *D = (int)x->shape[3];
    } else if (x->ndim == 3 && n->i[0] > 0 && x->shape[2] % n->i[0] == 0) {
        *H = (int)n->i[0];
        *D = (int)(x->shape[2] / n->i[0]);
    } else {
        fatal("CUDA rope '%s': x must be (B, T, H, D) or (B, T, H·D) with i[0] = heads", n->out[0]->name);
    }
    if (*D % 2) fatal("CUDA rope '%s': head dim %d is odd", n->out[0]->name, *D);
}

void cuda_rope_fwd(TapeNode *n) {
    int64_t B;
    int T, H, D;
    rope_dims(n, &B, &T, &H, &D);
    cuda_expect(n->out[0], DT_BF16, "rope", "output");
    int64_t total = B * T * H * (D / 2);
    rope_kernel<bf16><<<cdiv(total, 256) > 65536 ? 65536 : cdiv(total, 256), 256, 0, cuda_stream()>>>(
        cbf(n->in[0]), mbf(n->out[0]), B, T, H, D, n->i[1], position_of(n, 1), n->f[0], 1.0f, false, false);
    CUDA_LAUNCH_CHECK();
}

void cuda_rope_bwd(TapeNode *n) {
    int64_t B;
    int T, H, D;
    rope_dims(n, &B, &T, &H, &D);
    Tensor *gx = grad_of(n->in[0]);
    if (!gx) return;
    cuda_expect(n->out[0]->grad, DT_BF16, "rope", "output gradient");
    int64_t total = B * T * H * (D / 2);
    unsigned grid = cdiv(total, 256) > 65536 ? 65536 : cdiv(total, 256);
    bool add = grad_accumulate(gx);
    DISPATCH_GRAD(gx->dtype, G, {
        rope_kernel<G><<<grid, 256, 0, cuda_stream()>>>(cbf(n->out[0]->grad), (G *)gx->data, B, T, H, D, n->i[1],
                                                         position_of(n, 1), n->f[0], -1.0f, true, add);
    });
    CUDA_LAUNCH_CHECK();
}

// ---- class token + position embeddings ----
__global__ void cls_pos_kernel(const bf16 *x, const bf16 *cls, const bf16 *pos, bf16 *y, int64_t B, int64_t N, int64_t D) {
    int64_t total = B * (N + 1) * D;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % D, t = (i / D) % (N + 1), b = i / (D * (N + 1));
        float v = t == 0 ? to_f(cls[d]) : to_f(x[(b * N + t - 1) * D + d]);
        y[i] = __float2bfloat16(v + to_f(pos[t * D + d]));
    }
}

// dx[b, n] += dy[b, n + 1]
template <typename G> __global__ void cls_pos_dx_kernel(const bf16 *dy, G *gx, int64_t B, int64_t N, int64_t D, bool add) {
    int64_t total = B * N * D;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % D, t = (i / D) % N, b = i / (D * N);
        acc(gx, i, to_f(dy[(b * (N + 1) + t + 1) * D + d]), add);
    }
}

static unsigned grid1(int64_t n) {
    int64_t b = (n + 255) / 256;
    return (unsigned)(b > 16384 ? 16384 : (b < 1 ? 1 : b));
}

void cuda_cls_pos_fwd(TapeNode *n) {
    Tensor *x = n->in[0], *cls = n->in[1], *pos = n->in[2];
    cuda_expect(x, DT_BF16, "cls_pos", "x");
    cuda_expect(cls, DT_BF16, "cls_pos", "cls");
    cuda_expect(pos, DT_BF16, "cls_pos", "pos");
    int64_t B = x->shape[0], N = x->shape[1], D = x->shape[2];
    if (cls->numel != D || pos->numel != (N + 1) * D) fatal("CUDA cls_pos '%s': cls/pos shapes do not match x", n->out[0]->name);
    cls_pos_kernel<<<grid1(B * (N + 1) * D), 256, 0, cuda_stream()>>>(cbf(x), cbf(cls), cbf(pos), mbf(n->out[0]), B, N, D);
    CUDA_LAUNCH_CHECK();
}

void cuda_cls_pos_bwd(TapeNode *n) {
    Tensor *x = n->in[0];
    int64_t B = x->shape[0], N = x->shape[1], D = x->shape[2];
    cuda_expect(n->out[0]->grad, DT_BF16, "cls_pos", "output gradient");
    const bf16 *dy = cbf(n->out[0]->grad);
    Tensor *gx = grad_of(x), *gc = grad_of(n->in[1]), *gp = grad_of(n->in[2]);
    if (gx) {
        bool add = grad_accumulate(gx);
        DISPATCH_GRAD(gx->dtype, G, {
            cls_pos_dx_kernel<G><<<grid1(B * N * D), 256, 0, cuda_stream()>>>(dy, (G *)gx->data, B, N, D, add);
        });
        CUDA_LAUNCH_CHECK();
    }
    // d cls = Σ_b dy[b, 0]; d pos = Σ_b dy[b] (rows b of length (N+1)·D)
    if (gc) colsum_into(ColOf{dy, (N + 1) * D}, B, D, gc, 1.0f);
    if (gp) colsum_into(ColOf{dy, (N + 1) * D}, B, (N + 1) * D, gp, 1.0f);
}

// ---- select one token / mean over tokens ----
// y[b, d] = scale · Σ_{t in [t0, t1)} x[b, t, d]
__global__ void token_sum_kernel(const bf16 *x, bf16 *y, int64_t B, int64_t T, int64_t D, int64_t t0, int64_t t1, float scale) {
    int64_t total = B * D;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % D, b = i / D;
        float s = 0.0f;
        for (int64_t t = t0; t < t1; t++) s += to_f(x[(b * T + t) * D + d]);
        y[i] = __float2bfloat16(s * scale);
    }
}

// gx[b, t, d] += scale · dy[b, d] for t in [t0, t1)
template <typename G>
__global__ void token_spread_kernel(const bf16 *dy, G *gx, int64_t B, int64_t T, int64_t D, int64_t t0, int64_t t1, float scale) {
    int64_t nt = t1 - t0, total = B * nt * D;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t d = i % D, t = t0 + (i / D) % nt, b = i / (D * nt);
        acc(gx, (b * T + t) * D + d, scale * to_f(dy[b * D + d]));
    }
}

static void token_range(TapeNode *n, bool mean, int64_t *t0, int64_t *t1) {
    Tensor *x = n->in[0];
    const char *op = mean ? "mean_tokens" : "select_token";
    cuda_expect(x, DT_BF16, op, "x");
    if (x->ndim != 3) fatal("CUDA %s '%s': x must be (B, T, D)", op, n->out[0]->name);
    *t0 = n->i[0];
    *t1 = mean ? x->shape[1] : *t0 + 1;
    if (*t0 < 0 || *t0 >= x->shape[1]) fatal("CUDA %s '%s': token %lld out of range", op, n->out[0]->name, (long long)*t0);
}

static void token_fwd(TapeNode *n, bool mean) {
    int64_t t0, t1;
    token_range(n, mean, &t0, &t1);
    Tensor *x = n->in[0];
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2];
    token_sum_kernel<<<grid1(B * D), 256, 0, cuda_stream()>>>(cbf(x), mbf(n->out[0]), B, T, D, t0, t1,
                                                              1.0f / (float)(t1 - t0));
    CUDA_LAUNCH_CHECK();
}

static void token_bwd(TapeNode *n, bool mean) {
    int64_t t0, t1;
    token_range(n, mean, &t0, &t1);
    Tensor *x = n->in[0], *gx = grad_of(x);
    if (!gx) return;
    cuda_expect(n->out[0]->grad, DT_BF16, mean ? "mean_tokens" : "select_token", "output gradient");
    int64_t B = x->shape[0], T = x->shape[1], D = x->shape[2];
    grad_prepare_partial(gx);
    DISPATCH_GRAD(gx->dtype, G, {
        token_spread_kernel<G><<<grid1(B * (t1 - t0) * D), 256, 0, cuda_stream()>>>(
            cbf(n->out[0]->grad), (G *)gx->data, B, T, D, t0, t1, 1.0f / (float)(t1 - t0));
    });
    CUDA_LAUNCH_CHECK();
}

void cuda_select_token_fwd(TapeNode *n) { token_fwd(n, false); }
void cuda_select_token_bwd(TapeNode *n) { token_bwd(n, false); }
void cuda_mean_tokens_fwd(TapeNode *n) { token_fwd(n, true); }
void cuda_mean_tokens_bwd(TapeNode *n) { token_bwd(n, true); }

// ---- embedding ----
__global__ void embedding_kernel(const int32_t *ids, const bf16 *table, bf16 *y, int64_t ntok, int64_t D, int64_t V,
                                 int *bad) {
    int64_t total = ntok * D;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t t = i / D, d = i % D;
        int32_t id = ids[t];
        if (id < 0 || id >= V) {
            *bad = 1;
            y[i] = __float2bfloat16(0.0f);
        } else {
            y[i] = table[(int64_t)id * D + d];
        }
    }
}

// Deterministic scatter-add: thread d walks the tokens in order, so every table row's sum has a
// fixed order (no atomics). Parallel over D only; the table is usually frozen (LoRA).
template <typename G> __global__ void embedding_bwd_kernel(const int32_t *ids, const bf16 *dy, G *gt, int64_t ntok, int64_t D, int64_t V) {
    int64_t d = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (d >= D) return;
    for (int64_t t = 0; t < ntok; t++) {
        int32_t id = ids[t];
        if (id >= 0 && id < V) acc(gt, (int64_t)id * D + d, to_f(dy[t * D + d]));
    }
}

// Out-of-range ids (the kernel writes zeros for them) are reported one call late: the flag is
// copied to pinned memory behind the kernel and read at the next embedding call or at
// cuda_check_deferred() (device_synchronize), so a decode step does not wait for the GPU here.
static struct {
    int *dev, *host;  // flag on the GPU; its pinned host copy
    cudaEvent_t copied;
    bool pending;
    char name[96];  // output tensor of the pending call
    int64_t vocab;
} g_embed_check;

extern "C" bool ops_cuda_deferred_error(char *msg, size_t size) {
    if (!g_embed_check.pending) return false;
    CUDA_CHECK(cudaEventSynchronize(g_embed_check.copied));
    g_embed_check.pending = false;
    if (!*g_embed_check.host) return false;
    snprintf(msg, size, "CUDA embedding '%s': a token id is outside [0, %lld)", g_embed_check.name,
             (long long)g_embed_check.vocab);
    return true;
}

void cuda_check_deferred(void) {
    char msg[192];
    if (ops_cuda_deferred_error(msg, sizeof msg)) fatal("%s", msg);
}

void cuda_embedding_fwd(TapeNode *n) {
    Tensor *ids = n->in[0], *table = n->in[1];
    cuda_expect(ids, DT_I32, "embedding", "ids");
    cuda_expect(table, DT_BF16, "embedding", "table");
    int64_t D = table->shape[1], V = table->shape[0];
    cuda_check_deferred();  // nothing is pending while recording: device_graph_begin reported it
    if (!g_embed_check.dev) {
        CUDA_CHECK(cudaMalloc(&g_embed_check.dev, sizeof(int)));
        CUDA_CHECK(cudaMallocHost(&g_embed_check.host, sizeof(int)));
        CUDA_CHECK(cudaEventCreateWithFlags(&g_embed_check.copied, cudaEventDisableTiming));
    }
    CUDA_CHECK(cudaMemsetAsync(g_embed_check.dev, 0, sizeof(int), cuda_stream()));
    embedding_kernel<<<grid1(ids->numel * D), 256, 0, cuda_stream()>>>((const int32_t *)ids->data, cbf(table),
                                                                        mbf(n->out[0]), ids->numel, D, V, g_embed_check.dev);
    CUDA_LAUNCH_CHECK();
    if (device_graph_recording()) return;  // no check inside a CUDA graph (the kernel still writes zeros for bad ids)
    CUDA_CHECK(cudaMemcpyAsync(g_embed_check.host, g_embed_check.dev, sizeof(int), cudaMemcpyDeviceToHost, cuda_stream()));
    CUDA_CHECK(cudaEventRecord(g_embed_check.copied, cuda_stream()));
    g_embed_check.pending = true;
    g_embed_check.vocab = V;
    snprintf(g_embed_check.name, sizeof g_embed_check.name, "%s", n->out[0]->name);
}

void cuda_embedding_bwd(TapeNode *n) {
    Tensor *ids = n->in[0], *table = n->in[1], *gt = grad_of(table);
    if (!gt) return;
    cuda_expect(n->out[0]->grad, DT_BF16, "embedding", "output gradient");
    int64_t D = table->shape[1], V = table->shape[0];
    grad_prepare_partial(gt);
    DISPATCH_GRAD(gt->dtype, G, {
        embedding_bwd_kernel<G><<<cdiv(D, 128), 128, 0, cuda_stream()>>>((const int32_t *)ids->data, cbf(n->out[0]->grad),
                                                                          (G *)gt->data, ids->numel, D, V);
    });
    CUDA_LAUNCH_CHECK();
}

// ---- concat along the last dim: out[r, off_k + c] = x_k[r, c]; backward dx_k[r, c] += dy[r, off_k + c] ----
// One launch per input: a (rows × w) block from src (row stride src_ld) to dst (row stride dst_ld),
// both pointers already at the block's first column; add = false overwrites.
template <typename G>
__global__ void copy_block_kernel(const bf16 *src, int64_t src_ld, G *dst, int64_t dst_ld, int64_t rows, int64_t w,
                                  bool add) {
    int64_t total = rows * w;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int64_t r = i / w, c = i % w;
        acc(dst, r * dst_ld + c, to_f(src[r * src_ld + c]), add);
    }
}

void cuda_concat_fwd(TapeNode *n) {
    Tensor *y = n->out[0];
    cuda_expect(y, DT_BF16, "concat", "output");
    int64_t rows = rows_of(y), width = last_dim(y), off = 0;
    for (int k = 0; k < n->nin; k++) {
        cuda_expect(n->in[k], DT_BF16, "concat", "input");
        int64_t w = last_dim(n->in[k]);
        copy_block_kernel<bf16><<<grid1(rows * w), 256, 0, cuda_stream()>>>(cbf(n->in[k]), w, mbf(y) + off, width, rows,
                                                                           w, false);
        CUDA_LAUNCH_CHECK();
        off += w;
    }
}

void cuda_concat_bwd(TapeNode *n) {
    Tensor *gy = n->out[0]->grad;
    cuda_expect(gy, DT_BF16, "concat", "output gradient");
    int64_t rows = rows_of(gy), width = last_dim(gy), off = 0;
    for (int k = 0; k < n->nin; k++) {
        int64_t w = last_dim(n->in[k]);
        Tensor *gx = grad_of(n->in[k]);
        if (gx) {
            bool add = grad_accumulate(gx);
            DISPATCH_GRAD(gx->dtype, G, {
                copy_block_kernel<G><<<grid1(rows * w), 256, 0, cuda_stream()>>>(cbf(gy) + off, width, (G *)gx->data, w,
                                                                                rows, w, add);
            });
            CUDA_LAUNCH_CHECK();
        }
        off += w;
    }
}
