// OP_ATTENTION_CACHED on the GPU (inference only; ops.h documents the op, autograd/cpu_attention.c
// is the reference): append the new k, v to the caches, then one CTA per (new token i, head h,
// batch b) attends over the cached positions 0 .. pos + i.
//
// The CTA's NW warps split the keys round-robin in groups of KU consecutive keys (KU rows of K and
// of V in flight per warp: the loop is latency-bound otherwise). Lane l owns E = D/32 consecutive
// dims of the head (other head dims up to 128: E = 4 and the first ceil(D/4) lanes own dims):
// score = warp_sum(q·k) (q pre-scaled by 1/√D), then an online softmax per warp
// (running max m, sum l, unnormalised output acc, rescaled by exp(m_old − m_new) when the max
// grows), so the scores are never stored and any cache length works. At the end the warps' (m, l, acc) are merged through
// shared memory: out = Σ_w acc_w·exp(m_w − M) / Σ_w l_w·exp(m_w − M), M = max_w m_w.
// Decode (Tn = 1) reads each cached K/V row once per head: bandwidth-bound on the cache.
// Split over the keys (as flash-decoding): when (Tn, H, B) gives too few CTAs to fill the GPU
// (batch-1 decode: one per head, 32 for Llama-7B, reading at ~0.3 TB/s), S CTAs take consecutive
// key ranges of one (i, h, b) and write their merged (M, L, unnormalised o) to a workspace; a
// second kernel merges the S partials the same way. S depends on the cache size Tmax, not on the
// position, so a recorded CUDA graph of a step stays valid at later positions.
#include <math.h>

#include "kernels/cuda_common.cuh"

#define CACHED_NW 8
#define CACHED_KU 4

// pos_t (when not NULL) holds pos on the device (op_attention_cached); positions past the cache
// are dropped (the host checks them, but not against a replayed graph's device position).
__global__ void cache_append_kernel(const bf16 *x, bf16 *cache, int64_t B, int64_t Tn, int64_t C, int64_t Tmax,
                                    int64_t pos, const int32_t *pos_t) {
    pdl_trigger();  // see kernels/pdl.cuh
    if (pos_t) pos = *pos_t;
    int64_t total = B * Tn * C;
    for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = e / (Tn * C), rest = e % (Tn * C);
        if (pos + rest / C < Tmax) cache[(b * Tmax + pos) * C + rest] = x[e];
    }
}

// E consecutive bf16 -> f32 (E = 4: one 8-byte load)
template <int E> __device__ __forceinline__ void load_e(const bf16 *p, float v[E]) {
    if constexpr (E == 4) {
        uint2 u = *(const uint2 *)p;
        const bf16 *h = (const bf16 *)&u;
#pragma unroll
        for (int k = 0; k < 4; k++) v[k] = to_f(h[k]);
    } else {
#pragma unroll
        for (int k = 0; k < E; k++) v[k] = to_f(p[k]);
    }
}

// The `own` dims of a lane (the rest 0). FULL: D = 32·E, every lane owns E dims (a compile-time
// choice: a run-time branch here kept the KU rows' loads from being in flight together).
template <int E, bool FULL> __device__ __forceinline__ void load_own(const bf16 *p, float v[E], int own) {
    if constexpr (FULL) {
        load_e<E>(p, v);
    } else {
#pragma unroll
        for (int k = 0; k < E; k++) v[k] = k < own ? to_f(p[k]) : 0.0f;
    }
}

// Softmax merge of n parts with running max m, sum l and unnormalised value o (part k's at
// m[k·ms], l[k·ms], o[k·os]): M = max m, L = Σ l·exp(m − M), o = Σ o·exp(m − M). A part that saw no
// key has l = 0 and m = −inf and counts for nothing.
__device__ __forceinline__ void merge_partials(const float *m, const float *l, const float *o, int os, int n, float *M,
                                               float *L, float *O, int ms = 1) {
    float mx = -INFINITY, sum = 0.0f, val = 0.0f;
    for (int k = 0; k < n; k++) mx = fmaxf(mx, m[k * ms]);
    for (int k = 0; k < n; k++) {
        float f = l[k * ms] > 0.0f ? __expf(m[k * ms] - mx) : 0.0f;
        sum += l[k * ms] * f;
        val += o[k * os] * f;
    }
    *M = mx, *L = sum, *O = val;
}

// SPLIT (a compile-time choice: run-time split arithmetic in the key loop kept the KU rows' loads
// from being in flight together, 72 instead of 41 µs a layer at batch 16, ncu on the H200). The
// split variant itself still guards each row's load with a branch (SASS); indexing the keys from
// lo and clamping the row instead of branching groups them (seen in SASS, not yet run).
template <int E, bool FULL, bool SPLIT>
__global__ void __launch_bounds__(32 * CACHED_NW)
    attention_cached_kernel(const bf16 *q, const bf16 *kc, const bf16 *vc, bf16 *out, int64_t Tn, int64_t Tmax, int64_t C,
                            int64_t pos, const int32_t *pos_t, float scale, int D, int S, int64_t kps, float *part) {
    pdl_trigger();
    if (pos_t) pos = min(*pos_t, (int32_t)(Tmax - Tn));
    const int64_t i = SPLIT ? blockIdx.x / S : blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int split = SPLIT ? blockIdx.x % S : 0;
    int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int own = max(0, min(E, D - lane * E));
    const int64_t lo = SPLIT ? split * kps : 0, len = SPLIT ? min(pos + i + 1, lo + kps) : pos + i + 1;  // keys [lo, len)
    const int64_t col = h * D + lane * E;
    float qr[E], acc[E];
    load_own<E, FULL>(q + (b * Tn + i) * C + col, qr, own);
#pragma unroll
    for (int e = 0; e < E; e++) qr[e] *= scale, acc[e] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const bf16 *kb = kc + b * Tmax * C + col, *vb = vc + b * Tmax * C + col;
    for (int64_t j0 = lo + (int64_t)warp * CACHED_KU; j0 < len; j0 += CACHED_NW * CACHED_KU) {
        float sc[CACHED_KU], kr[CACHED_KU][E];
#pragma unroll
        for (int u = 0; u < CACHED_KU; u++)
            if (j0 + u < len) load_own<E, FULL>(kb + (j0 + u) * C, kr[u], own);
        float m_new = m;
#pragma unroll
        for (int u = 0; u < CACHED_KU; u++) {
            float s = 0.0f;
#pragma unroll
            for (int e = 0; e < E; e++) s += qr[e] * kr[u][e];
            s = warp_sum(s);
            sc[u] = j0 + u < len ? s : -INFINITY;  // j0 < len: at least sc[0] is finite
            m_new = fmaxf(m_new, sc[u]);
        }
#pragma unroll
        for (int u = 0; u < CACHED_KU; u++) {  // the V rows, into the K registers (0 past the end: p = 0 there)
            if (j0 + u < len) load_own<E, FULL>(vb + (j0 + u) * C, kr[u], own);
            else
#pragma unroll
                for (int e = 0; e < E; e++) kr[u][e] = 0.0f;
        }
        float corr = __expf(m - m_new);
        l *= corr;
#pragma unroll
        for (int e = 0; e < E; e++) acc[e] *= corr;
#pragma unroll
        for (int u = 0; u < CACHED_KU; u++) {
            float p = j0 + u < len ? __expf(sc[u] - m_new) : 0.0f;
            l += p;
#pragma unroll
            for (int e = 0; e < E; e++) acc[e] += p * kr[u][e];
        }
        m = m_new;
    }
    __shared__ float s_m[CACHED_NW], s_l[CACHED_NW], s_acc[CACHED_NW][32 * E];
    if (lane == 0) s_m[warp] = m, s_l[warp] = l;
#pragma unroll
    for (int e = 0; e < E; e++) s_acc[warp][lane * E + e] = acc[e];
    __syncthreads();
    // S > 1: part[((b·Tn + i)·H + h)·S + split] = (o[D], M, L) unnormalised
    float *my = SPLIT ? part + (((b * Tn + i) * gridDim.y + h) * S + split) * (D + 2) : NULL;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float M, L, o;
        merge_partials(s_m, s_l, &s_acc[0][d], 32 * E, CACHED_NW, &M, &L, &o);
        if (SPLIT) {
            my[d] = o;
            if (d == 0) my[D] = M, my[D + 1] = L;
        } else {
            out[(b * Tn + i) * C + h * D + d] = __float2bfloat16(o / L);
        }
    }
}

// Second pass of the split: out row (b, i, h) from its S partials.
__global__ void attention_cached_merge_kernel(const float *part, bf16 *out, int64_t H, int64_t C, int D, int S) {
    pdl_trigger();
    const int64_t row = blockIdx.x, h = row % H, bi = row / H;  // bi = b·Tn + i
    const float *p = part + row * S * (D + 2);
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float M, L, o;
        merge_partials(p + D, p + D + 1, p + d, D + 2, S, &M, &L, &o, D + 2);
        out[bi * C + h * D + d] = __float2bfloat16(o / L);
    }
}

void cuda_attention_cached_fwd(TapeNode *n) {
    const char *op = "attention_cached";
    const char *roles[5] = {"q", "k", "v", "k_cache", "v_cache"};
    for (int j = 0; j < 5; j++) cuda_expect(n->in[j], DT_BF16, op, roles[j]);
    cuda_expect(n->out[0], DT_BF16, op, "output");
    const Tensor *q = n->in[0];
    int64_t B = q->shape[0], Tn = q->shape[1], C = q->shape[2], H = n->i[0], D = C / H, pos = n->i[1];
    int64_t Tmax = n->in[3]->shape[1];
    if (D < 1 || D > 128)
        fatal("CUDA attention_cached '%s': head dim %lld is not supported (at most 128)", n->out[0]->name, (long long)D);
    if (Tn > 65535 || H > 65535 || B > 65535)
        fatal("CUDA attention_cached '%s': grid too large (B %lld, Tn %lld, H %lld)", n->out[0]->name, (long long)B,
              (long long)Tn, (long long)H);
    int64_t total = B * Tn * C;
    unsigned grid = cdiv(total, 256) > 65536 ? 65536 : cdiv(total, 256);
    const int32_t *pos_t = position_of(n, 5);
    cache_append_kernel<<<grid, 256, 0, cuda_stream()>>>(cbf(n->in[1]), mbf(n->in[3]), B, Tn, C, Tmax, pos, pos_t);
    CUDA_LAUNCH_CHECK();
    cache_append_kernel<<<grid, 256, 0, cuda_stream()>>>(cbf(n->in[2]), mbf(n->in[4]), B, Tn, C, Tmax, pos, pos_t);
    CUDA_LAUNCH_CHECK();
    // Key splits: enough CTAs for two per SM, each with at least 64 keys of the cache (fixed by Tmax).
    const int64_t ctas = Tn * H * B, want = cdiv(2 * cuda_sm_count(), ctas), most = cdiv(Tmax, 64);
    const int S = (int)(want < most ? want : most), step = CACHED_NW * CACHED_KU;
    const int64_t kps = S > 1 ? cdiv(cdiv(Tmax, S), step) * step : Tmax;  // keys per split, whole warp rounds
    float *part = S > 1 ? (float *)cuda_scratch(SCRATCH_A, (size_t)(ctas * S * (D + 2)) * sizeof(float)) : NULL;
    dim3 blocks((unsigned)(Tn * S), (unsigned)H, (unsigned)B);
    float scale = 1.0f / sqrtf((float)D);
    const bf16 *kc = cbf(n->in[3]), *vc = cbf(n->in[4]);
    bf16 *o = mbf(n->out[0]);
    const int d = (int)D;
#define CACHED_LAUNCH(E, FULL)                                                                                         \
    (S > 1 ? attention_cached_kernel<E, FULL, true> : attention_cached_kernel<E, FULL, false>)<<<blocks, 32 * CACHED_NW, 0, \
                                                                                                cuda_stream()>>>(         \
        cbf(q), kc, vc, o, Tn, Tmax, C, pos, pos_t, scale, d, S, kps, part)
    switch (D % 32 ? 0 : D / 32) {  // head dims 32, 64, 96, 128: every lane owns D/32; others: 4 dims on the first lanes
        case 1: CACHED_LAUNCH(1, true); break;
        case 2: CACHED_LAUNCH(2, true); break;
        case 3: CACHED_LAUNCH(3, true); break;
        case 4: CACHED_LAUNCH(4, true); break;
        default: CACHED_LAUNCH(4, false);
    }
#undef CACHED_LAUNCH
    CUDA_LAUNCH_CHECK();
    if (S > 1) {
        attention_cached_merge_kernel<<<(unsigned)ctas, 128, 0, cuda_stream()>>>(part, o, H, C, d, S);
        CUDA_LAUNCH_CHECK();
    }
}
