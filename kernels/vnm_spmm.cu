// V:N:M SpMM: device upload, the mma.sp.sync kernel (sm_80+, also the decode path) and dispatch.
// The wgmma.sp kernel (sm_90a) lives in vnm_spmm_sm90.cu.
//
// ---- device layout (vnm_upload) ----
// Rows are padded to out_pad (multiple of 256) and the logical reduction to KT k-steps of 32
// (8 column blocks each, KT even); padding has zero values and metadata code 0b0100.
//   vals, meta: the fragment layout, or for the 2:4 form of prefill (d->ss) the SS layout of the
//       sm_90a TMA kernel (vals only): train/vnm_device_layout.h.
//   cols[(g*KT*8 + cb)*4 + k] : kept input channels of block cb for gather group g (rows
//       g*group_rows ...), 0 for padding blocks.
//   sel[(g*KT*8 + cb)*2 + {0,1}] : window-filler byte-permute selectors (window_selectors below).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/vnm_spmm.h"
#include "kernels/vnm_spmm_common.cuh"

// From vnm_spmm_sm90.cu.
int vnm_wgmma_sp_available(void);
int vnm_launch_wgmma_sp(const VnmDeviceMatrix *d, const VnmDev &dev, const uint16_t *x, const VnmEpi &epi,
                        cudaStream_t stream);
// From vnm_spmm_decode.cu (sm_90 cluster split-K for n <= 16).
int vnm_decode_cluster_ok(const VnmDeviceMatrix *d, int64_t n);
int vnm_launch_decode_cluster(const VnmDeviceMatrix *d, const VnmDev &dev, const uint16_t *x, const VnmEpi &e,
                              cudaStream_t stream);

#define DECODE_MAX_N 16

// ---------------------------------------------------------------------------------------------
// mma.sp.sync kernel: CTA = 4 warps = 64 rows × BN tokens; warp w owns rows 16w..16w+15.
// Per k-step the CTA gathers B = the kept x channels of 8 column blocks into shared memory
// (one tile per gather group; 4 per-warp tiles when groups are smaller than 64 rows), then each
// warp issues BN/8 mma.sp m16n8k32.
// ---------------------------------------------------------------------------------------------
template <int BN>
__global__ void __launch_bounds__(128) vnm_mma_sp_kernel(VnmDev d, const uint16_t *__restrict__ x, VnmEpi e) {
    constexpr int UNITS = BN / 16;  // gather units (token, block) per thread per tile
    __shared__ __align__(16) uint16_t Bs[2][4][BN][B_PITCH];
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t row0 = (int64_t)blockIdx.x * 64, t0 = (int64_t)blockIdx.y * BN;
    const int64_t ks0 = 0, ks1 = d.KT;
    const int ntiles = (d.group_rows % 64 == 0) ? 1 : 4;
    const int j = tid & 7, tq = tid >> 3;  // gather: block j of the k-step, tokens tq + 16*i

    uint2 st[4][UNITS];
    int64_t group[4];  // gather group of tile k (16 rows each when ntiles = 4)
    vnm_tile_groups(d, row0, ntiles, 16, group);
    auto load_units = [&](int64_t ks) {
        int64_t cb = ks * 8 + j;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            if (k >= ntiles) break;
            const int64_t g = group[k];
#pragma unroll
            for (int i = 0; i < UNITS; i++) {
                int64_t t = t0 + tq + 16 * i;
                // (branch-free, as in vnm_decode_kernel, this ran 1-18 % slower at n = 2048 on an
                // H200: Session 23, experiments/kernels/NOTES.md)
                st[k][i] = (t < e.n && cb < d.C) ? vnm_gather_generic(d, x + t * d.in, g, cb) : make_uint2(0, 0);
            }
        }
    };
    auto store_units = [&](int buf) {
        for (int k = 0; k < 4; k++) {
            if (k >= ntiles) break;
#pragma unroll
            for (int i = 0; i < UNITS; i++) *(uint2 *)&Bs[buf][k][tq + 16 * i][4 * j] = st[k][i];
        }
    };
    const int64_t q = row0 / 16 + warp;
    auto load_a = [&](int64_t ks, uint4 &a, uint32_t &m) {
        a = __ldg(d.vals + vnm_frag_index(q, ks, d.KT, lane));
        m = __ldg(d.meta + vnm_frag_index(q, ks, d.KT, lane));
    };

    float acc[BN / 8][4];
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;

    uint4 a, a_next;
    uint32_t m, m_next;
    load_units(ks0);
    store_units(0);
    load_a(ks0, a, m);
    __syncthreads();
    const int tile = ntiles == 1 ? 0 : warp;
    int buf = 0;
    for (int64_t ks = ks0; ks < ks1; ks++) {
        bool more = ks + 1 < ks1;
        if (more) {
            load_units(ks + 1);
            load_a(ks + 1, a_next, m_next);
        }
#pragma unroll
        for (int nt = 0; nt < BN / 8; nt++) {
            uint32_t b[4];
            ldmatrix_x4(b, &Bs[buf][tile][nt * 8 + (lane & 7)][(lane >> 3) * 8]);
            mma_sp_16832(acc[nt], a, b, m);
        }
        if (more) store_units(buf ^ 1);
        __syncthreads();
        buf ^= 1;
        a = a_next, m = m_next;
    }

    const int g = lane >> 2, tig = lane & 3;
    const int64_t r = row0 + 16 * warp + g;
#pragma unroll
    for (int nt = 0; nt < BN / 8; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int64_t rr = r + (c >= 2 ? 8 : 0), t = t0 + nt * 8 + 2 * tig + (c & 1);
            vnm_epi_store(e, acc[nt][c], rr, t);
        }
}

// ---------------------------------------------------------------------------------------------
// Decode kernel (n <= 16) without clusters (sm_80; sm_90 uses vnm_spmm_decode.cu): memory-bound, so each CTA (4 warps, 64 rows) takes a slice of at most
// DECODE_KC k-steps (split-K), issues the loads of all its A fragments at once, gathers the B
// tiles of all its k-steps into shared memory in one pass (independent loads, no per-step
// latency chain), then runs the mma.sp. Partial sums go to the fp32 workspace with atomics; the
// last CTA of each row tile (a counter per tile) applies the epilogue and clears the workspace.
// ---------------------------------------------------------------------------------------------
#define DECODE_KC 4

__global__ void __launch_bounds__(128) vnm_decode_kernel(VnmDev d, const uint16_t *__restrict__ x, VnmEpi e,
                                                         int *counters) {
    extern __shared__ __align__(16) uint16_t dsm[];  // [ntiles][kc][16 tokens][B_PITCH]
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int64_t row0 = (int64_t)blockIdx.x * 64;
    const int64_t ks0 = (int64_t)blockIdx.y * DECODE_KC, ks1 = min(d.KT, ks0 + DECODE_KC);
    const int kc = (int)(ks1 - ks0);
    const int ntiles = (d.group_rows % 64 == 0) ? 1 : 4;
    const int64_t q = row0 / 16 + warp;
    pdl_trigger();

    uint4 a[DECODE_KC];
    uint32_t m[DECODE_KC];
    vnm_load_a_slice<DECODE_KC>(d, q, ks0, kc, lane, a, m);
    // Kept channels of this slice -> shared memory, then the gather with 16 units in flight per
    // thread. unit = (tile, k-step, token, block j); 16 tokens × 8 blocks = 128 units per (tile, step).
    __shared__ uint2 scols[4 * DECODE_KC * 8];
    for (int i = tid; i < ntiles * kc * 8; i += 128) {
        const int j = i & 7, kk = (i >> 3) % kc, tile = (i >> 3) / kc;
        const int64_t cb = (ks0 + kk) * 8 + j, g = (row0 + (ntiles == 1 ? 0 : 16 * tile)) / d.group_rows;
        scols[i] = __ldg((const uint2 *)(d.cols + (g * d.KT * 8 + cb) * 4));
    }
    pdl_wait();  // weights only above (kernels/pdl.cuh); x, the workspace and y below
    __syncthreads();
    const int units = ntiles * kc * 128;
    for (int base = 0; base < units; base += 128 * 4) {
        uint2 v[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int u = base + tid + 128 * k, j = u & 7, t = (u >> 3) & 15, tk = u >> 7;
            const bool ok = u < units && t < e.n && (ks0 + tk % kc) * 8 + j < d.C;
            // out-of-range units read token 0's channels of scols[0] and are zeroed after: no branch
            // around the loads (with one, each unit waited for its own loads; Session 23: 2-7 % faster
            // through this kernel on an H200 at most shapes and n)
            const uint2 c = vnm_gather_cols(x + (ok ? t : 0) * d.in, scols[ok ? tk * 8 + j : 0]);
            v[k] = ok ? c : make_uint2(0, 0);
        }
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int u = base + tid + 128 * k;
            if (u < units) *(uint2 *)&dsm[((u >> 7) * 16 + ((u >> 3) & 15)) * B_PITCH + 4 * (u & 7)] = v[k];
        }
    }
    __syncthreads();

    float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    const int tile = ntiles == 1 ? 0 : warp;
#pragma unroll
    for (int k = 0; k < DECODE_KC; k++)
        if (k < kc) {
#pragma unroll
            for (int nt = 0; nt < 2; nt++) {
                uint32_t b[4];
                ldmatrix_x4(b, &dsm[(((tile * kc + k) * 16) + nt * 8 + (lane & 7)) * B_PITCH + (lane >> 3) * 8]);
                mma_sp_16832(acc[nt], a[k], b, m[k]);
            }
        }
    const int g = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            const int64_t r = row0 + 16 * warp + g + (c >= 2 ? 8 : 0), t = nt * 8 + 2 * tig + (c & 1);
            if (r < e.out && t < e.n) atomicAdd(e.ws + t * e.out_pad + r, acc[nt][c]);
        }
    // Last CTA of this row tile: epilogue.
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (tid == 0) last = atomicAdd(counters + blockIdx.x, 1) == (int)gridDim.y - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int i = tid; i < e.n * 64; i += 128) {
        const int64_t t = i / 64, r = row0 + i % 64;
        if (r >= e.out) continue;
        float *w = e.ws + t * e.out_pad + r;
        const float v = __ldcg(w);
        *w = 0.0f;
        vnm_epi_store(e, v, r, t);
    }
    if (tid == 0) counters[blockIdx.x] = 0;
}

// ---------------------------------------------------------------------------------------------
// Upload
// ---------------------------------------------------------------------------------------------

// Selectors for the window filler. w0..w3 hold channels e0..e0+7 (2 per word, low half first);
// p0 < p1 < p2 < p3 are the kept channels relative to e0, so p0 <= 4, p1 <= 5 (word lo comes
// from w0..w2) and p2 >= 2, p3 >= 3 (word hi from w1..w3):
//   t0 = prmt(w0, w1, s1): ch p0 / ch p1 when < 4      lo = prmt(t0, w2, s2)
//   t1 = prmt(w2, w3, s3): ch p2 / ch p3 when >= 4     hi = prmt(w1, t1, s4)
// sel[0] = s1 | s2 << 16, sel[1] = s3 | s4 << 16 (prmt nibble k = source byte of result byte k).
static void window_selectors(const int p[4], uint32_t sel[2]) {
    // Byte pair (b, b+1) into result half h (0 = low, 1 = high).
    auto half = [](int b, int h) { return (uint32_t)(b | ((b + 1) << 4)) << (8 * h); };
    uint32_t s1 = (p[0] < 4 ? half(2 * p[0], 0) : 0) | (p[1] < 4 ? half(2 * p[1], 1) : 0);
    uint32_t s2 = (p[0] < 4 ? half(0, 0) : half(4, 0)) | (p[1] < 4 ? half(2, 1) : half(4 + 2 * (p[1] - 4), 1));
    uint32_t s3 = (p[2] >= 4 ? half(2 * (p[2] - 4), 0) : 0) | (p[3] >= 4 ? half(2 * (p[3] - 4), 1) : 0);
    uint32_t s4 = (p[2] < 4 ? half(2 * (p[2] - 2), 0) : half(4, 0)) | (p[3] < 4 ? half(2, 1) : half(6, 1));
    sel[0] = s1 | (s2 << 16);
    sel[1] = s3 | (s4 << 16);
}

static int cuda_fail(Err *err, cudaError_t e, const char *what) {
    return err_set(err, "vnm: %s: %s", what, cudaGetErrorString(e));
}

#define CUDA_TRY(call, what)                               \
    do {                                                   \
        cudaError_t e_ = (call);                           \
        if (e_ != cudaSuccess) {                           \
            vnm_device_free(d);                            \
            return cuda_fail(err, e_, what);               \
        }                                                  \
    } while (0)

template <typename T>
static int upload_array(T **dst, const T *src, size_t count, Err *err) {
    cudaError_t e = cudaMalloc((void **)dst, count * sizeof(T));
    if (e == cudaSuccess) e = cudaMemcpy(*dst, src, count * sizeof(T), cudaMemcpyHostToDevice);
    return e == cudaSuccess ? 0 : cuda_fail(err, e, "upload");
}

static bool columns_uniform(const VnmMatrix *m) {
    size_t row_block = (size_t)m->C * 4;
    for (int64_t rb = 1; rb < m->R; rb++)
        if (memcmp(m->columns, m->columns + rb * row_block, row_block * sizeof(uint16_t))) return false;
    return true;
}

static bool wgmma_matrix_ok(const VnmDeviceMatrix *d);

static int upload_matrix(const VnmMatrix *m, VnmDeviceMatrix *d, bool ss, Err *err);

constexpr int64_t GATHER_MAX_IN = 32768;  // gather_columns_kernel's row in shared memory: 64 KB

// The 2:4 form for prefill (vnm_spmm.h), where it exists and the wgmma kernel can run it.
static int upload_as24(const VnmMatrix *m, VnmDeviceMatrix *d, Err *err) {
    const int env = env_int("VNM_PREFILL_24", -1, 0, 1);
    const bool never = env == 0, always = env == 1;
    const bool plain24 = m->p.M == 4 && d->cols_local;  // already this form
    const bool ss = env_int("VNM_SS", 1, 0, 1);  // VNM_SS=0: the register-A TMA kernel
    if (d->cc_major != 9 || !vnm_wgmma_sp_available() || never) return 0;
    // A plain 2:4 matrix the TMA kernel runs gets a copy in the SS layout; other plain 2:4 ones none.
    if ((d->fill == VNM_FILL_TMA && !ss) || (plain24 && d->fill != VNM_FILL_TMA)) return 0;
    if (!always) {
        // Unset: only while a quarter of the GPU's memory stays free after it (activations, KV
        // cache), so that a model that fits without the 2:4 form still fits; =1 builds it regardless.
        const int64_t slots = m->C * ((m->p.M + 3) / 4 * 4);  // at most, over gathered inputs
        const int64_t kt = ((slots / 4 + 7) / 8 + 1) / 2 * 2;  // its k-steps (vnm_upload with M = 4)
        const size_t need = vnm_layout_bytes(d->out_pad, kt, ss);
        size_t free_b = 0, total_b = 0;
        if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess || free_b < need + total_b / 4) {
            cudaGetLastError();
            return 0;
        }
    }
    VnmMatrix m24;
    memset(&m24, 0, sizeof m24);
    int32_t *src = NULL;
    int64_t n_src = 0;
    // A plain 2:4 matrix the TMA kernel runs is copied as it is, unless its rows are permuted:
    // vnm_to_24 puts them in output order, so that y is written by the bulk-store epilogue.
    const bool as_is = d->fill == VNM_FILL_TMA && !m->row_perm;
    if (!as_is && vnm_to_24(m, &m24) != 0) {
        // Not 2:4 over the original channels: over gathered inputs (the gather stages a row of x in
        // shared memory).
        if (m->in > GATHER_MAX_IN || vnm_to_24_gathered(m, &m24, &src, &n_src) != 0) return 0;
    }
    VnmDeviceMatrix *d24 = (VnmDeviceMatrix *)xcalloc(1, sizeof *d24);
    Err why;
    int rc = upload_matrix(as_is ? m : &m24, d24, ss, &why);
    vnm_free(&m24);
    if (!rc && src && upload_array(&d->as24_src, src, (size_t)n_src, &why)) {
        vnm_device_free(d24);
        rc = -1;
    }
    free(src);
    d->as24_in = n_src;
    if (rc) {
        free(d24);
        vnm_device_free(d);
        return err_set(err, "vnm_upload: (%lld, %lld) %d:%d:%d, 2:4 form for prefill (VNM_PREFILL_24=0 skips it): %s",
                       (long long)m->out, (long long)m->in, m->p.V, m->p.N, m->p.M, why.msg);
    }
    if (!wgmma_matrix_ok(d24) || d24->fill != VNM_FILL_TMA || (d->fill == VNM_FILL_TMA && !d24->ss)) {  // no faster
        vnm_device_free(d24);
        free(d24);
        cudaFree(d->as24_src);
        d->as24_src = NULL, d->as24_in = 0;
        return 0;
    }
    d->as24 = d24;
    return 0;
}

extern "C" int vnm_upload(const VnmMatrix *m, VnmDeviceMatrix *d, Err *err) {
    if (upload_matrix(m, d, false, err)) return -1;
    return upload_as24(m, d, err);
}

// m in the fragment layout, or (ss, where the TMA kernel runs it) in the SS layout.
static int upload_matrix(const VnmMatrix *m, VnmDeviceMatrix *d, bool ss, Err *err) {
    memset(d, 0, sizeof *d);
    const VnmPattern p = m->p;
    if (p.V % 16 != 0 || m->out % 16 != 0 || m->in > 65535 || !m->meta)
        return err_set(err, "vnm_upload: matrix (%lld, %lld) pattern %d:%d:%d: the GPU kernels need V %% 16 == 0, "
                       "in < 65536 and packed meta", (long long)m->out, (long long)m->in, p.V, p.N, p.M);
    d->p = p;
    d->out = m->out, d->in = m->in, d->R = m->R, d->C = m->C;
    d->out_pad = (m->out + 255) / 256 * 256;
    int64_t kt_host = vnm_meta_ksteps(m);
    d->KT = (kt_host + 1) / 2 * 2;
    bool uniform = columns_uniform(m);
    d->group_rows = uniform ? (int)d->out_pad : p.V;
    int64_t ngroups = (d->out_pad + d->group_rows - 1) / d->group_rows, KB = d->KT * 8;
    int dev;
    cudaDeviceProp prop;
    CUDA_TRY(cudaGetDevice(&dev), "cudaGetDevice");
    CUDA_TRY(cudaGetDeviceProperties(&prop, dev), "cudaGetDeviceProperties");
    d->cc_major = prop.major, d->num_sms = prop.multiProcessorCount;

    const int64_t C = m->C, Q = d->out_pad / 16;
    // Gather tables.
    uint16_t *cols = (uint16_t *)xcalloc((size_t)(ngroups * KB * 4), sizeof(uint16_t));
    uint32_t *sel = (uint32_t *)xcalloc((size_t)(ngroups * KB * 2), sizeof(uint32_t));
    bool window = p.M <= 8 && m->in % 2 == 0, identity = uniform && p.M == 4 && m->in % 8 == 0, local = true;
    for (int64_t g = 0; g < ngroups; g++) {
        int64_t rb = uniform ? 0 : (g * d->group_rows) / p.V;
        if (rb >= m->R) rb = m->R - 1;
        for (int64_t cb = 0; cb < C; cb++) {
            const uint16_t *c = m->columns + (rb * C + cb) * 4;
            int64_t e0 = (p.M * cb) & ~1LL;
            int pos[4];
            for (int k = 0; k < 4; k++) {
                cols[(g * KB + cb) * 4 + k] = c[k];
                pos[k] = (int)(c[k] - e0);
                if (pos[k] < 0 || pos[k] >= 8) window = false;
                if (c[k] != 4 * cb + k) identity = false;
                if (c[k] < p.M * cb || c[k] >= p.M * (cb + 1)) local = false;
            }
            if (window) window_selectors(pos, sel + (g * KB + cb) * 2);
        }
    }
    d->fill = identity ? VNM_FILL_TMA : window ? VNM_FILL_WINDOW : VNM_FILL_GENERIC;
    d->cols_local = local;
    d->ss = ss && d->fill == VNM_FILL_TMA;

    // A fragments and metadata (16-row groups in parallel: a 7B model packs 224 matrices at load).
    const size_t val_words = (size_t)(Q * d->KT * (d->ss ? 144 : 128)), meta_words = d->ss ? 0 : (size_t)(Q * d->KT * 32);
    VnmLayoutPack fp = {m, d->KT, kt_host, (uint32_t *)xcalloc(val_words, sizeof(uint32_t)),
                        d->ss ? NULL : (uint32_t *)xmalloc(meta_words * sizeof(uint32_t))};
    parallel_for(Q, 16, d->ss ? vnm_pack_ss : vnm_pack_fragments, &fp);
    uint32_t *vals = fp.vals, *meta = fp.meta;
    int rc = upload_array(&d->vals, vals, val_words, err);
    if (!rc && meta) rc = upload_array(&d->meta, meta, meta_words, err);
    if (!rc) rc = upload_array(&d->cols, cols, (size_t)(ngroups * KB * 4), err);
    if (!rc) rc = upload_array(&d->sel, sel, (size_t)(ngroups * KB * 2), err);
    if (!rc && m->row_perm) rc = upload_array(&d->row_perm, m->row_perm, (size_t)m->out, err);
    free(vals), free(meta), free(cols), free(sel);
    if (rc) {
        vnm_device_free(d);
        return -1;
    }
    // Decode workspace: 16 × out_pad fp32 partial sums, then one split counter per 64-row tile.
    size_t ws_bytes = (size_t)(DECODE_MAX_N * d->out_pad) * sizeof(float) + (size_t)(d->out_pad / 64) * sizeof(int);
    CUDA_TRY(cudaMalloc((void **)&d->ws, ws_bytes), "workspace");
    CUDA_TRY(cudaMemset(d->ws, 0, ws_bytes), "workspace");
    return 0;
}

extern "C" void vnm_device_free(VnmDeviceMatrix *d) {
    cudaFree(d->vals);
    cudaFree(d->meta);
    cudaFree(d->cols);
    cudaFree(d->sel);
    cudaFree(d->row_perm);
    cudaFree(d->ws);
    cudaFree(d->as24_src);
    free(d->tmap_cache);
    if (d->as24) {
        vnm_device_free(d->as24);
        free(d->as24);
    }
    memset(d, 0, sizeof *d);
}

extern "C" size_t vnm_device_bytes(const VnmDeviceMatrix *d, size_t *as24_bytes) {
    if (as24_bytes) *as24_bytes = d->as24 ? vnm_device_bytes(d->as24, NULL) + (size_t)d->as24_in * sizeof(int32_t) : 0;
    if (!d->vals) return 0;
    const int64_t ngroups = (d->out_pad + d->group_rows - 1) / d->group_rows, KB = d->KT * 8;
    return vnm_layout_bytes(d->out_pad, d->KT, d->ss)
           + (size_t)(ngroups * KB) * (4 * sizeof(uint16_t) + 2 * sizeof(uint32_t))  // cols + sel
           + (d->row_perm ? (size_t)d->out * sizeof(int32_t) : 0)
           + (size_t)(DECODE_MAX_N * d->out_pad) * sizeof(float) + (size_t)(d->out_pad / 64) * sizeof(int);  // ws
}

// ---------------------------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------------------------

// The wgmma kernel (any filler, feature-major too): sm_90a and 64-row groups sharing kept columns.
static bool wgmma_matrix_ok(const VnmDeviceMatrix *d) {
    return d->cc_major == 9 && vnm_wgmma_sp_available() && d->group_rows % 64 == 0;
}

static bool wgmma_ok(const VnmDeviceMatrix *d, int64_t n) { return wgmma_matrix_ok(d) && n > DECODE_MAX_N; }

// Token-major calls (AUTO) of V:N:M matrices with M > 4 go through the feature-major kernel with
// transposes around it, where that measured faster (H200, experiments/kernels/NOTES.md): its row
// gather is 2.2-2.7x faster than the token-major window and generic fillers, which pays for the
// transposes when both in and out are >= 1024 (Llama shapes: 1.4-1.8x at n = 128 .. 8192); on
// DeiT-sized layers the transposes cost more than that. 2:4 (TMA filler) stays token-major.
// VNM_TOKEN_MAJOR=1 / 0 in the environment forces the token-major kernel / the transposed route.
static bool via_feature_major(const VnmDeviceMatrix *d, int64_t n, int kernel) {
    static int force = -2;
    if (force == -2) force = env_int("VNM_TOKEN_MAJOR", -1, 0, 1);  // 1: token-major, 0: transposed, -1: by shape
    if (kernel == VNM_KERNEL_VIA_FM) return true;  // checked by pick_kernel
    if (kernel != VNM_KERNEL_AUTO || !wgmma_ok(d, n) || d->fill == VNM_FILL_TMA) return false;
    return force >= 0 ? force == 0 : d->in >= 1024 && d->out >= 1024;
}

static int pick_kernel(const VnmDeviceMatrix *d, int64_t n, int kernel) {
    if (kernel == VNM_KERNEL_AUTO) return wgmma_ok(d, n) ? VNM_KERNEL_WGMMA_SP : VNM_KERNEL_MMA_SP;
    if (kernel == VNM_KERNEL_WGMMA_SP && !wgmma_ok(d, n)) return -1;
    if ((kernel == VNM_KERNEL_FEATURE_MAJOR || kernel == VNM_KERNEL_VIA_FM) && !wgmma_matrix_ok(d)) return -1;
    return kernel;
}

// Token-major AUTO calls at prefill sizes run the 2:4 form where there is one (vnm_spmm.h).
static bool use_as24(const VnmDeviceMatrix *d, int64_t n, int kernel) {
    return kernel == VNM_KERNEL_AUTO && n > DECODE_MAX_N && d->as24;
}

extern "C" const char *vnm_spmm_kernel_name(const VnmDeviceMatrix *d, int64_t n, int kernel) {
    static const char *fills[] = {"wgmma_sp/tma", "wgmma_sp/window", "wgmma_sp/generic"};
    if (use_as24(d, n, kernel)) {
        if (d->as24->ss) return d->as24_src ? "wgmma_sp/ss as 2:4+gather" : "wgmma_sp/ss as 2:4";
        return d->as24_src ? "wgmma_sp/tma as 2:4+gather" : "wgmma_sp/tma as 2:4";
    }
    int k = pick_kernel(d, n, kernel);
    if (k == VNM_KERNEL_FEATURE_MAJOR) return "wgmma_sp/rows";
    if (k >= 0 && via_feature_major(d, n, kernel)) return "wgmma_sp/rows+T";
    if (k == VNM_KERNEL_WGMMA_SP) return fills[d->fill];
    if (k == VNM_KERNEL_MMA_SP && n <= DECODE_MAX_N) return vnm_decode_cluster_ok(d, n) ? "mma_sp/cluster" : "mma_sp/decode";
    if (k == VNM_KERNEL_MMA_SP) return "mma_sp";
    return "unavailable";
}

static int launch_mma_sp(const VnmDeviceMatrix *d, const VnmDev &dev, const uint16_t *x, VnmEpi e,
                         cudaStream_t stream) {
    const int64_t row_tiles = d->out_pad / 64;
    if (vnm_decode_cluster_ok(d, e.n) && vnm_launch_decode_cluster(d, dev, x, e, stream) == 0) return 0;
    if (e.n <= DECODE_MAX_N) {
        const int ntiles = (d->group_rows % 64 == 0) ? 1 : 4;
        const int64_t splits = (d->KT + DECODE_KC - 1) / DECODE_KC;
        const int kc = (int)(d->KT < DECODE_KC ? d->KT : DECODE_KC);
        const size_t smem = (size_t)ntiles * kc * 16 * B_PITCH * sizeof(uint16_t);
        static bool smem_set = false;
        if (!smem_set) {
            cudaFuncSetAttribute(vnm_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 4 * DECODE_KC * 16 * B_PITCH * (int)sizeof(uint16_t));
            smem_set = true;
        }
        e.ws = d->ws;
        int *counters = (int *)(d->ws + DECODE_MAX_N * d->out_pad);
        cudaLaunchConfig_t cfg = {};
        cudaLaunchAttribute pdl[1];
        cfg.gridDim = dim3((unsigned)row_tiles, (unsigned)splits, 1);
        cfg.blockDim = dim3(128, 1, 1);
        cfg.dynamicSmemBytes = smem;
        cfg.stream = stream;
        cfg.attrs = pdl, cfg.numAttrs = pdl_attr(&pdl[0]);
        if (cudaLaunchKernelEx(&cfg, vnm_decode_kernel, dev, x, e, counters) != cudaSuccess) return -1;
    } else {
        dim3 grid((unsigned)row_tiles, (unsigned)((e.n + 63) / 64), 1);
        vnm_mma_sp_kernel<64><<<grid, 128, 0, stream>>>(dev, x, e);
    }
    return 0;
}

// Argument checks shared by both layouts (0 = go on, 1 = nothing to do, -1 = error) and the epilogue.
static int check_call(const VnmDeviceMatrix *d, const void *x, int64_t n, const void *y, int kernel, const char *fn,
                      Err *err) {
    if (n < 0 || !x || !y || !d->vals) return err_set(err, "%s: bad arguments (n = %lld)", fn, (long long)n);
    if (n == 0) return 1;
    if (n > 65535LL * 128) return err_set(err, "%s: n = %lld is too large", fn, (long long)n);
    if (pick_kernel(d, n, kernel) < 0)
        return err_set(err, "%s: kernel %d cannot run pattern %d:%d:%d (n = %lld) on this device", fn, kernel, d->p.V,
                       d->p.N, d->p.M, (long long)n);
    return 0;
}

static VnmEpi make_epi(const VnmDeviceMatrix *d, int64_t n, int64_t ld, const uint16_t *bias, const uint16_t *residual,
                       int act, uint16_t *y) {
    VnmEpi e;
    e.bias = (const __nv_bfloat16 *)bias;
    e.residual = (const __nv_bfloat16 *)residual;
    e.perm = d->row_perm;
    e.y = (__nv_bfloat16 *)y;
    e.ws = NULL;
    e.flags = NULL;
    e.n = n, e.out = d->out, e.out_pad = d->out_pad, e.ld = ld;
    e.act = act;
    return e;
}

static int launch_result(int rc, const char *fn, Err *err) {
    cudaError_t ce = cudaGetLastError();
    if (ce != cudaSuccess) return err_set(err, "%s launch: %s", fn, cudaGetErrorString(ce));
    return rc ? err_set(err, "%s: launch failed", fn) : 0;
}

__device__ __forceinline__ uint32_t bf16_add(uint32_t a, uint32_t b) {
    const float f = __bfloat162float(__ushort_as_bfloat16((uint16_t)a)) + __bfloat162float(__ushort_as_bfloat16((uint16_t)b));
    return __bfloat16_as_ushort(__float2bfloat16(f));
}

// dst (cols × ld_dst) = srcᵀ, src (rows × cols, ld_src): dst[c][r] = src[r][c] (+ add[c][r], same
// layout as dst). 64 × 64 tiles through shared memory. PAIRS: 4-byte accesses on both sides (two
// columns per load, two rows per store; needs even strides and 4-byte aligned pointers), else
// 2-byte ones. Row tiles are grid-strided (n can exceed 65535 tiles).
template <bool PAIRS>
__global__ void __launch_bounds__(256) transpose_bf16_kernel(const uint16_t *__restrict__ src, int64_t rows, int64_t cols,
                                                             int64_t ld_src, uint16_t *__restrict__ dst, int64_t ld_dst,
                                                             const uint16_t *__restrict__ add) {
    __shared__ uint16_t tile[64][65];  // odd pitch: the column reads below are conflict-free
    const int tx = threadIdx.x, ty = threadIdx.y;  // 32 × 8
    const int64_t c0 = (int64_t)blockIdx.x * 64;
    for (int64_t r0 = (int64_t)blockIdx.y * 64; r0 < rows; r0 += (int64_t)gridDim.y * 64) {
        for (int i = ty; i < 64; i += 8) {  // thread tx: columns 2tx, 2tx+1 of tile rows i
            const int64_t r = r0 + i, c = c0 + 2 * tx;
            const uint16_t *p = src + r * ld_src + c;
            uint32_t w = 0;
            if (r < rows && c + 1 < cols) w = PAIRS ? *(const uint32_t *)p : (uint32_t)p[0] | (uint32_t)p[1] << 16;
            else if (r < rows && c < cols) w = p[0];
            tile[i][2 * tx] = (uint16_t)w, tile[i][2 * tx + 1] = (uint16_t)(w >> 16);
        }
        __syncthreads();
        for (int i = ty; i < 64; i += 8) {  // thread tx: tile rows 2tx, 2tx+1 of dst row c0 + i
            const int64_t c = c0 + i, r = r0 + 2 * tx;
            if (c >= cols || r >= rows) continue;
            uint16_t *p = dst + c * ld_dst + r;
            const bool two = r + 1 < rows;
            uint32_t lo = tile[2 * tx][i], hi = tile[2 * tx + 1][i];
            if (add) {
                const uint16_t *q = add + c * ld_dst + r;
                lo = bf16_add(lo, q[0]);
                if (two) hi = bf16_add(hi, q[1]);
            }
            if (PAIRS && two) *(uint32_t *)p = lo | hi << 16;
            else {
                p[0] = (uint16_t)lo;
                if (two) p[1] = (uint16_t)hi;
            }
        }
        __syncthreads();
    }
}

static void transpose_bf16(const uint16_t *src, int64_t rows, int64_t cols, int64_t ld_src, uint16_t *dst, int64_t ld_dst,
                           const uint16_t *add, cudaStream_t stream) {
    const int64_t rtiles = (rows + 63) / 64;
    dim3 grid((unsigned)((cols + 63) / 64), (unsigned)(rtiles < 65535 ? rtiles : 65535)), block(32, 8);
    const bool pairs = ld_src % 2 == 0 && ld_dst % 2 == 0 && ((uintptr_t)src | (uintptr_t)dst | (uintptr_t)add) % 4 == 0;
    if (pairs) transpose_bf16_kernel<true><<<grid, block, 0, stream>>>(src, rows, cols, ld_src, dst, ld_dst, add);
    else transpose_bf16_kernel<false><<<grid, block, 0, stream>>>(src, rows, cols, ld_src, dst, ld_dst, add);
}

// Temporary activation buffers come from the device's stream-ordered pool, kept (not returned to
// the system) so that after the first calls they cost no allocation.
void vnm_keep_pool(void) {
    static bool pool_kept = false;
    if (!pool_kept) {
        int dev = 0;
        cudaMemPool_t pool;
        uint64_t keep = UINT64_MAX;
        if (cudaGetDevice(&dev) == cudaSuccess && cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess)
            cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
        pool_kept = true;
    }
}

// y = epilogue(x · Wᵀ) as xT = xᵀ; yT = W·xT with bias and GELU; y = yTᵀ + residual. The two
// buffers come from the pool (vnm_keep_pool).
static int spmm_via_feature_major(const VnmDeviceMatrix *d, const uint16_t *x, int64_t n, const uint16_t *bias,
                                  const uint16_t *residual, int act, uint16_t *y, cudaStream_t stream, Err *err) {
    vnm_keep_pool();
    const int64_t ld = (n + 7) / 8 * 8;
    uint16_t *xT = NULL, *yT = NULL;
    cudaError_t ce = cudaMallocAsync((void **)&xT, (size_t)(d->in * ld) * sizeof(uint16_t), stream);
    if (ce == cudaSuccess) ce = cudaMallocAsync((void **)&yT, (size_t)(d->out * ld) * sizeof(uint16_t), stream);
    if (ce != cudaSuccess) {
        if (xT) cudaFreeAsync(xT, stream);
        cudaGetLastError();
        return err_set(err, "vnm_spmm_cuda: transposed buffers (%lld x %lld): %s", (long long)n, (long long)d->in,
                       cudaGetErrorString(ce));
    }
    transpose_bf16(x, n, d->in, d->in, xT, ld, NULL, stream);
    VnmEpi e = make_epi(d, n, ld, bias, NULL, act, yT);
    int rc = vnm_launch_wgmma_sp(d, vnm_dev_of(d), xT, e, stream);
    transpose_bf16(yT, d->out, n, ld, y, d->out, residual, stream);
    cudaFreeAsync(xT, stream);
    cudaFreeAsync(yT, stream);
    return launch_result(rc, "vnm_spmm_cuda", err);
}

// xg (n × n_src) = x[:, src] (0 where src < 0; n_src % 8 == 0). A CTA stages `rows` rows of x in
// shared memory by 16-byte loads of the aligned chunks that hold each row (a chunk with one byte
// of the row lies in a mapped page, so the bytes around the row are safe to read; several rows at
// once keep more loads in flight), then each thread writes 8 slots at a time by one 16-byte store;
// row groups blockIdx.x, + gridDim.x, ...
__global__ void __launch_bounds__(256) gather_columns_kernel(const uint16_t *__restrict__ x, int64_t n, int64_t in,
                                                             const int32_t *__restrict__ src, int64_t n_src,
                                                             int rows, uint16_t *__restrict__ xg) {
    extern __shared__ uint4 chunks_s[];
    const int64_t row_chunks = (in + 7) / 8 + 1;  // per staged row, with room for its misalignment
    for (int64_t t0 = (int64_t)blockIdx.x * rows; t0 < n; t0 += (int64_t)gridDim.x * rows) {
        const int nr = (int)(n - t0 < rows ? n - t0 : rows);
        for (int r = 0; r < nr; r++) {
            const uintptr_t row = (uintptr_t)(x + (t0 + r) * in);
            const uint4 *chunk = (const uint4 *)(row & ~(uintptr_t)15);
            const int64_t count = ((row & 15) / 2 + in + 7) / 8;
            for (int64_t c = threadIdx.x; c < count; c += blockDim.x) chunks_s[r * row_chunks + c] = chunk[c];
        }
        __syncthreads();
        for (int64_t j = 8 * threadIdx.x; j < n_src; j += 8 * blockDim.x) {
            const int4 s0 = *(const int4 *)(src + j), s1 = *(const int4 *)(src + j + 4);  // once for the rows
            const int32_t sl[8] = {s0.x, s0.y, s0.z, s0.w, s1.x, s1.y, s1.z, s1.w};
            for (int r = 0; r < nr; r++) {
                const uint16_t *row_s = (const uint16_t *)(chunks_s + r * row_chunks) + ((uintptr_t)(x + (t0 + r) * in) & 15) / 2;
                uint32_t w[4];
                for (int k = 0; k < 4; k++)
                    w[k] = (sl[2 * k] >= 0 ? row_s[sl[2 * k]] : 0u) | (sl[2 * k + 1] >= 0 ? row_s[sl[2 * k + 1]] : 0u) << 16;
                *(uint4 *)(xg + (t0 + r) * n_src + j) = make_uint4(w[0], w[1], w[2], w[3]);
            }
        }
        __syncthreads();
    }
}

// The 2:4 form over gathered inputs: xg = x[:, d->as24_src] in a pooled buffer, then d->as24.
static int spmm_via_gather(const VnmDeviceMatrix *d, const uint16_t *x, int64_t n, const uint16_t *bias,
                           const uint16_t *residual, int act, uint16_t *y, cudaStream_t stream, Err *err) {
    if (!x || !y) return err_set(err, "vnm_spmm_cuda: bad arguments (n = %lld)", (long long)n);
    vnm_keep_pool();
    uint16_t *xg = NULL;
    cudaError_t ce = cudaMallocAsync((void **)&xg, (size_t)(n * d->as24_in) * sizeof(uint16_t), stream);
    if (ce != cudaSuccess) {
        cudaGetLastError();
        return err_set(err, "vnm_spmm_cuda: gathered inputs (%lld x %lld): %s", (long long)n, (long long)d->as24_in,
                       cudaGetErrorString(ce));
    }
    static bool attr_set = false;
    if (!attr_set) {
        cudaFuncSetAttribute(gather_columns_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 2 * GATHER_MAX_IN + 32);
        attr_set = true;
    }
    const size_t row_bytes = (size_t)((d->in + 7) / 8 + 1) * 16;  // a row's aligned chunks
    const int rows = row_bytes * 4 <= 48 * 1024 ? 4 : row_bytes * 2 <= 48 * 1024 ? 2 : 1;
    const int64_t groups = (n + rows - 1) / rows, grid = groups < 8 * d->num_sms ? groups : 8 * d->num_sms;
    gather_columns_kernel<<<(unsigned)grid, 256, rows * row_bytes, stream>>>(x, n, d->in, d->as24_src, d->as24_in, rows, xg);
    int rc = vnm_spmm_cuda_ex(d->as24, xg, n, bias, residual, act, y, stream, VNM_KERNEL_AUTO, err);
    cudaFreeAsync(xg, stream);
    return rc;
}

extern "C" int vnm_spmm_cuda_ex(const VnmDeviceMatrix *d, const uint16_t *x, int64_t n, const uint16_t *bias,
                                const uint16_t *residual, int act, uint16_t *y, cudaStream_t stream, int kernel,
                                Err *err) {
    if (kernel == VNM_KERNEL_FEATURE_MAJOR) return err_set(err, "vnm_spmm_cuda: use vnm_spmm_cuda_fm");
    if (use_as24(d, n, kernel))
        return d->as24_src ? spmm_via_gather(d, x, n, bias, residual, act, y, stream, err)
                           : vnm_spmm_cuda_ex(d->as24, x, n, bias, residual, act, y, stream, kernel, err);
    int c = check_call(d, x, n, y, kernel, "vnm_spmm_cuda", err);
    if (c) return c < 0 ? -1 : 0;
    if (via_feature_major(d, n, kernel)) return spmm_via_feature_major(d, x, n, bias, residual, act, y, stream, err);
    VnmDev dev = vnm_dev_of(d);
    VnmEpi e = make_epi(d, n, 0, bias, residual, act, y);
    int rc = pick_kernel(d, n, kernel) == VNM_KERNEL_WGMMA_SP ? vnm_launch_wgmma_sp(d, dev, x, e, stream)
                                                              : launch_mma_sp(d, dev, x, e, stream);
    return launch_result(rc, "vnm_spmm_cuda", err);
}

extern "C" int vnm_spmm_cuda_fm(const VnmDeviceMatrix *d, const uint16_t *xT, int64_t n, int64_t ld,
                                const uint16_t *bias, const uint16_t *residualT, int act, uint16_t *yT,
                                cudaStream_t stream, Err *err) {
    int c = check_call(d, xT, n, yT, VNM_KERNEL_FEATURE_MAJOR, "vnm_spmm_cuda_fm", err);
    if (c) return c < 0 ? -1 : 0;
    const uintptr_t align = (uintptr_t)xT | (uintptr_t)yT | (uintptr_t)residualT;
    if (ld < n || ld % 8 || align % 16)
        return err_set(err, "vnm_spmm_cuda_fm: ld = %lld must be >= n = %lld and a multiple of 8, xT/yT/residualT "
                       "16-byte aligned", (long long)ld, (long long)n);
    VnmDev dev = vnm_dev_of(d);
    VnmEpi e = make_epi(d, n, ld, bias, residualT, act, yT);
    return launch_result(vnm_launch_wgmma_sp(d, dev, xT, e, stream), "vnm_spmm_cuda_fm", err);
}

extern "C" int vnm_spmm_cuda(const VnmDeviceMatrix *d, const uint16_t *x, int64_t n, const uint16_t *bias,
                             const uint16_t *residual, int act, uint16_t *y, cudaStream_t stream, Err *err) {
    return vnm_spmm_cuda_ex(d, x, n, bias, residual, act, y, stream, VNM_KERNEL_AUTO, err);
}
