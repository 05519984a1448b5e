// V:N:M SpMM for decode (n <= 16 tokens) on sm_90: split-K inside a thread-block cluster.
//
// At n <= 16 the product is memory-bound: the time is reading the A fragments (values + metadata,
// 40 bytes per row per 32-wide k-step), and a kernel this short is won by having every load in
// flight at once, with no chain of dependent memory latencies. The grid is (S <= 16 splits) ×
// (groups of R 64-row tiles); the S CTAs of a group form one cluster and each takes a slice of at
// most DC_KC k-steps of every row tile of the group. R is the smallest count that lets every
// cluster be resident at once (one wave: 1 for 4096 rows, 3 for 11008). Per CTA, in this order:
//   1. the loads of all A fragments and metadata words of the first row tile's slice go out, into
//      registers (one 16-byte and one 4-byte load per thread and k-step, coalesced, read once:
//      evict-first);
//   2. the kept channels of the slice in each row tile -> shared memory; up to here only weights
//      are read, so with programmatic dependent launch (kernels/pdl.cuh) all this overlaps the
//      kernel before;
//   3. the x channels the slice can touch ([c0, c0 + xw), n tokens) are copied into shared memory
//      by the widest aligned cp.async, independent of the column lists; with permuted input
//      channels (cols_local = 0) x is gathered from global memory instead (step 4);
//   then for each row tile of the group:
//   4. the B tiles (kept channels of the n tokens, one 16 × 32 tile per k-step) are built from the
//      staged copy;
//   5. mma.sp m16n8k32 over the slice (the A loads were in flight during 2-4), after which the next
//      row tile's A loads go out into the same registers (in flight during 6);
//   6. the 64 × 16 fp32 partial sums go to shared memory (two buffers, row tiles alternating); after
//      a cluster barrier CTA s reduces its 1/S share of the tile over the S CTAs' shared memory
//      (DSMEM) in rank order and applies the epilogue. The next row tile writes the other buffer, and
//      the one after it this one again only after its own cluster barrier, which every CTA reaches
//      once done reading: one barrier per row tile. No global workspace, no atomics: the result is
//      the same on every run.
// 5 CTAs per SM (90 registers): with 4, a 4096-row matrix had 64 clusters of 8 and only 62 could
// be resident, and the last two ran as a second wave. Reductions longer than DC_MAX_SPLIT × DC_KC
// k-steps use the atomic split-K kernel of vnm_spmm.cu (which also serves sm_80).
// Measurements: experiments/kernels/NOTES.md, "Session 6".
#include <cooperative_groups.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mma_sync.cuh"
#include "kernels/sm90_ptx.cuh"
#include "kernels/vnm_spmm_common.cuh"

#define DC_KC 8                   // k-steps of A per register load (the register kernel's whole slice)
#define DC_KC_RING 16             // k-steps per CTA at most with the shared-memory ring (chunks of DC_KC)
#define DC_MAX_SPLIT 16           // CTAs per cluster (above 8: a non-portable size, allowed on H100/H200)
#define DC_STAGE_MAX (64 * 1024)  // bytes of staged x per CTA at most
#define DC_KSTEP_BYTES (4 * 32 * (16 + 4))  // A of one 64-row tile and k-step: 4 warps × 32 lanes × (fragment + metadata)

// Shared memory of one CTA (bytes), laid out in this order.
struct DecodeSmem {
    size_t ring, red, cols, b, xs, bars, total;
};

// ntiles B tiles per k-step, kc k-steps, staged x of n tokens × xw channels, R row tiles, D ring slots
// (0: the register kernel).
static __host__ __device__ DecodeSmem decode_smem(int ntiles, int kc, int n, int xw, int R, int D) {
    DecodeSmem s;
    s.ring = (size_t)D * kc * DC_KSTEP_BYTES;                         // [slot][k-step][2 KB values], then [k-step][512 B meta]
    s.red = 2 * 16 * 64 * sizeof(float);                              // 2 × [16 tokens][64 rows] partials
    s.cols = (size_t)R * ntiles * kc * 8 * sizeof(uint2);             // [row tile][tile][k-step][block] channels
    s.b = (size_t)ntiles * kc * 16 * B_PITCH * sizeof(uint16_t);  // [tile][k-step][token][B_PITCH]
    s.xs = (size_t)n * xw * sizeof(uint16_t);                     // [token][channel - c0] (xw: a multiple of 8)
    s.bars = (size_t)D * sizeof(uint64_t);                        // one mbarrier per ring slot
    s.total = s.ring + s.red + s.cols + s.b + s.xs + s.bars;
    return s;
}

// Ring kernel (sm_90): thread 0 requests row tile `tile`'s A (kc k-steps from ks0, 2 KB of fragments
// and 512 B of metadata each, both contiguous per k-step in the fragment layout) into `slot` by bulk
// copies completing on `bar`.
__device__ __forceinline__ void decode_request_tile(const VnmDev &d, unsigned char *slot, uint64_t *bar, int64_t tile,
                                                    int64_t ks0, int kc, int kc_max) {
    const uint32_t b = smem_u32(bar);
    vnm90::mbar_arrive_expect_tx(b, (uint32_t)kc * DC_KSTEP_BYTES);
    for (int k = 0; k < kc; k++) {
        const int64_t f = vnm_frag_index(tile * 4, ks0 + k, d.KT, 0);  // lane 0 of the tile's first warp
        vnm90::bulk_load(smem_u32(slot + k * 2048), d.vals + f, 2048, b);
        vnm90::bulk_load(smem_u32(slot + kc_max * 2048 + k * 512), d.meta + f, 512, b);
    }
}

// This lane's A fragments and metadata words of k-steps k0 .. k0 + DC_KC - 1 (< kc) from a ring slot.
__device__ __forceinline__ void decode_slot_a(const unsigned char *slot, int k0, int kc, int kc_max, int warp, int lane,
                                              uint4 (&a)[DC_KC], uint32_t (&m)[DC_KC]) {
    const uint32_t base = smem_u32(slot), me = warp * 32 + lane;
#pragma unroll
    for (int k = 0; k < DC_KC; k++)
        if (k0 + k < kc) {
            a[k] = vnm90::lds_v4(base + (k0 + k) * 2048 + me * 16);
            m[k] = vnm90::lds_u32(base + kc_max * 2048 + (k0 + k) * 512 + me * 4);
        }
}

// The two halves of cluster.sync(): arrive (releasing this thread's writes) and wait (acquiring the others').
__device__ __forceinline__ void cluster_arrive_release() {
    asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait_acquire() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }

// The float at shared address `addr` of this CTA's layout in CTA `rank` of the cluster (DSMEM).
__device__ __forceinline__ float ld_dsmem_f32(uint32_t addr, uint32_t rank) {
    uint32_t remote;
    float v;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(remote) : "r"(addr), "r"(rank));
    asm volatile("ld.shared::cluster.f32 %0, [%1];" : "=f"(v) : "r"(remote) : "memory");
    return v;
}

// The 4 kept channels c (absolute) of a staged token row that starts at channel c0.
__device__ __forceinline__ uint2 gather_staged(const uint16_t *row, uint2 c, int64_t c0) {
    const uint16_t *r = row - c0;
    return make_uint2(vnm_pack2(r[c.x & 0xffff], r[c.x >> 16]), vnm_pack2(r[c.y & 0xffff], r[c.y >> 16]));
}

// NT: B tiles per k-step (1 when the 64 rows of a CTA share their kept columns, 4 for 16/32-row
// groups). xw: staged channels per token (0: gather from global memory). RING: A goes through D
// shared-memory slots filled by bulk copies (sm_90a), D row tiles in flight per CTA, instead of
// registers (one row tile in flight, loaded after the previous one's mma).
template <int NT, bool RING>
__global__ void __launch_bounds__(128, 5) vnm_decode_cluster_kernel(VnmDev d, const uint16_t *__restrict__ x, VnmEpi e,
                                                                 int kc_max, int xw, int R, int D) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#if !defined(VNM_SM90A)
    if (RING) __trap();  // bulk copies and mbarriers are compiled for sm_90a only (see sm90_ptx.cuh)
#endif
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    extern __shared__ __align__(16) unsigned char smem[];
    const DecodeSmem L = decode_smem(NT, kc_max, (int)e.n, xw, R, RING ? D : 0);
    unsigned char *ring = smem;
    float *red2 = (float *)(smem + L.ring);
    uint2 *scols = (uint2 *)(smem + L.ring + L.red);
    uint16_t *Bs = (uint16_t *)(smem + L.ring + L.red + L.cols);
    uint16_t *xs = (uint16_t *)(smem + L.ring + L.red + L.cols + L.b);
    uint64_t *bars = (uint64_t *)(smem + L.ring + L.red + L.cols + L.b + L.xs);
    const size_t slot_bytes = (size_t)kc_max * DC_KSTEP_BYTES;

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int split = (int)cluster.block_rank(), S = (int)cluster.num_blocks();
    const int64_t rt0 = (int64_t)blockIdx.y * R, ks0 = (int64_t)split * kc_max;
    const int nrt = (int)min((int64_t)R, d.out_pad / 64 - rt0);  // row tiles of this cluster
    const int kc = (int)max((int64_t)0, min(d.KT, ks0 + kc_max) - ks0);
    const int n = (int)e.n, ntok = n <= 8 ? 8 : 16;  // tokens in the B tiles (rows >= n are zero)
    pdl_trigger();

    // 1. A fragments and metadata of the first row tile -> registers, or of the first D -> the ring.
    uint4 a[DC_KC];
    uint32_t m[DC_KC];
    if (!RING) {
        vnm_load_a_slice<DC_KC>(d, rt0 * 4 + warp, ks0, kc, lane, a, m);
    } else if (tid == 0) {
        for (int s = 0; s < D; s++) vnm90::mbar_init(smem_u32(bars + s), 1);
        vnm90::fence_proxy_async();  // the initialised barriers -> the bulk copies (async proxy)
        for (int i = 0; i < min(D, nrt) && kc > 0; i++)
            decode_request_tile(d, ring + i * slot_bytes, bars + i, rt0 + i, ks0, kc, kc_max);
    }
    // 2. kept channels of the slice in each row tile -> shared memory.
    for (int i = tid; i < nrt * NT * kc * 8; i += 128) {
        const int j = i & 7, kk = (i >> 3) % kc, tile = (i >> 3) / kc % NT, rt = (i >> 3) / kc / NT;
        const int64_t cb = (ks0 + kk) * 8 + j, g = ((rt0 + rt) * 64 + (NT == 1 ? 0 : 16 * tile)) / d.group_rows;
        scols[((rt * NT + tile) * kc_max + kk) * 8 + j] = __ldg((const uint2 *)(d.cols + (g * d.KT * 8 + cb) * 4));
    }
    // Everything above reads weights only; x and y belong to the kernels around this one.
    pdl_wait();
    // 3. x channels [c0, c0 + xw) of the n tokens -> shared memory.
    const int64_t c0 = ks0 * 8 * d.M, cw = min((int64_t)xw, d.in - c0);
    if (xw) {
        // the widest copy (channels) that keeps every row aligned (c0 is a multiple of 8 channels)
        const uintptr_t xa = (uintptr_t)x;
        const int w = d.in % 8 == 0 && xa % 16 == 0 ? 8 : d.in % 4 == 0 && xa % 8 == 0 ? 4 : d.in % 2 == 0 && xa % 4 == 0 ? 2 : 1;
        for (int t = 0; t < n; t++)
            for (int c = w * tid; c < xw; c += w * 128) {
                uint16_t *dst = xs + t * xw + c;
                const uint16_t *src = x + t * d.in + c0 + c;
                if (c >= cw) {
                    for (int k = 0; k < w; k++) dst[k] = 0;
                } else if (w == 8) {
                    cp_async16(dst, src, true);
                } else if (w == 4) {
                    cp_async_ca<8>(dst, src);
                } else if (w == 2) {
                    cp_async_ca<4>(dst, src);
                } else {
                    dst[0] = vnm_ldg_u16(src);
                }
            }
        cp_async_commit();
    }
    cp_async_wait<0>();
    __syncthreads();  // also: the ring's barriers are initialised before anyone waits on them
    for (int rt = 0; rt < nrt; rt++) {
        const int64_t row0 = (rt0 + rt) * 64;
        const uint2 *tcols = scols + rt * NT * kc_max * 8;  // this row tile's kept channels
        // 4. B tiles: thread (token t, block j) fills its 4 channels of every (tile, k-step), 8 in
        // flight when gathering from global memory. (The last row tile's mma are done: cluster barrier.)
        const int t = tid >> 3, j = tid & 7;
        if (t < ntok) {
            const uint16_t *xrow = xw ? xs + t * xw : x + t * d.in;
            for (int tile = 0; tile < NT; tile++)
                for (int kk0 = 0; kk0 < kc; kk0 += 8) {
                    uint2 v[8];
#pragma unroll
                    for (int i = 0; i < 8; i++) {
                        const int kk = kk0 + i;
                        const bool ok = kk < kc && t < n && (ks0 + kk) * 8 + j < d.C;
                        const uint2 c = ok ? tcols[(tile * kc_max + kk) * 8 + j] : make_uint2(0, 0);
                        v[i] = !ok ? make_uint2(0, 0) : xw ? gather_staged(xrow, c, c0) : vnm_gather_cols(xrow, c);
                    }
#pragma unroll
                    for (int i = 0; i < 8; i++)
                        if (kk0 + i < kc) *(uint2 *)(Bs + ((tile * kc_max + kk0 + i) * 16 + t) * B_PITCH + 4 * j) = v[i];
                }
        }
        __syncthreads();

        // 5. mma.sp over the slice, in chunks of DC_KC k-steps (one chunk in the register kernel).
        float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
        const uint16_t *my_b = Bs + (NT == 1 ? 0 : warp) * kc_max * 16 * B_PITCH;
        unsigned char *slot = ring + (RING ? rt % D : 0) * slot_bytes;
        if (RING && kc > 0) vnm90::mbar_wait(smem_u32(bars + rt % D), (uint32_t)(rt / D) & 1);
        for (int k0 = 0; k0 < kc; k0 += DC_KC) {
            if (RING) decode_slot_a(slot, k0, kc, kc_max, warp, lane, a, m);
#pragma unroll
            for (int k = 0; k < DC_KC; k++)
                if (k0 + k < kc) {
#pragma unroll
                    for (int nt = 0; nt < 2; nt++)
                        if (nt * 8 < ntok) {
                            uint32_t b[4];
                            ldmatrix_x4(b, my_b + ((k0 + k) * 16 + nt * 8 + (lane & 7)) * B_PITCH + (lane >> 3) * 8);
                            mma_sp_16832(acc[nt], a[k], b, m[k]);
                        }
                }
        }
        // 6. Partials -> red[t][r]; reduce over the cluster in rank order.
        float *red = red2 + (rt & 1) * 16 * 64;
        const int g = lane >> 2, tig = lane & 3;
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) red[(nt * 8 + 2 * tig + (c & 1)) * 64 + 16 * warp + g + (c >= 2 ? 8 : 0)] = acc[nt][c];
        // The cluster barrier in two halves, with the next row tile's A loads between them: the
        // release of the arrive waits for every memory access of the thread still in flight (a
        // MEMBAR), so loads issued before it were waited for there (ncu, Session 17).
        cluster_arrive_release();
        if (!RING && rt + 1 < nrt) vnm_load_a_slice<DC_KC>(d, (row0 + 64) / 16 + warp, ks0, kc, lane, a, m);
        cluster_wait_acquire();
        // Every warp has read its A of this row tile from the slot: it takes row tile rt + D.
        if (RING && tid == 0 && rt + D < nrt && kc > 0) {
            vnm90::fence_proxy_async();  // our reads of the slot -> the bulk copies' writes
            decode_request_tile(d, slot, bars + rt % D, rt0 + rt + D, ks0, kc, kc_max);
        }
        const int E = n * 64, lo = split * E / S, hi = (split + 1) * E / S;
        for (int i = lo + tid; i < hi; i += 128) {
            // 8 remote loads in flight at a time (a rolled loop waited for each before the next),
            // summed in rank order
            float s = 0.0f;
            for (int r0 = 0; r0 < S; r0 += 8) {
                float v[8];
#pragma unroll
                for (int r = 0; r < 8; r++) v[r] = r0 + r < S ? ld_dsmem_f32(smem_u32(red + i), r0 + r) : 0.0f;
#pragma unroll
                for (int r = 0; r < 8; r++) s += v[r];
            }
            vnm_epi_store(e, s, row0 + i % 64, i / 64);
        }
    }
    cluster.sync();  // every CTA's partials stay in shared memory until all ranks have read them
#endif
}

template <int NT, bool RING>
static int decode_attrs(size_t bytes, int S) {
    static size_t set = 0;
    static bool big_clusters = false;
    if (S > 8 && !big_clusters) {
        if (cudaFuncSetAttribute(vnm_decode_cluster_kernel<NT, RING>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
            cudaSuccess)
            return -1;
        big_clusters = true;
    }
    if (bytes <= 48 * 1024 || bytes <= set) return 0;
    if (cudaFuncSetAttribute(vnm_decode_cluster_kernel<NT, RING>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) !=
        cudaSuccess)
        return -1;
    set = bytes;
    return 0;
}

static int env_int(const char *name, int fallback, int lo, int hi) {
    const char *env = getenv(name);
    const int v = env ? atoi(env) : fallback;
    return v < lo || v > hi ? fallback : v;
}

// Ring slots per CTA at most (VNM_DECODE_RING=D; 0 selects the register kernel, for comparison).
static int decode_ring(void) {
    static int ring = -1;
    if (ring < 0) ring = env_int("VNM_DECODE_RING", 0, 0, 8);
    return ring;
}

// Split of the k-steps over the cluster: S CTAs of kc_max k-steps each (the last may have fewer),
// about 8 k-steps per CTA; VNM_DECODE_SPLIT=S in the environment forces S (for measurements).
// Returns 0 when a CTA's kc_max k-steps fit the kernel: DC_KC with A in registers, DC_KC_RING
// through the ring.
static int decode_split(const VnmDeviceMatrix *d, int *S, int *kc_max) {
    static int forced = -1;
    if (forced < 0) forced = env_int("VNM_DECODE_SPLIT", 0, 0, DC_MAX_SPLIT);
    int64_t s = forced ? forced : (d->KT + 7) / 8;
    if (s > DC_MAX_SPLIT) s = DC_MAX_SPLIT;
    if (s > d->KT) s = d->KT;
    *kc_max = (int)((d->KT + s - 1) / s);
    *S = (int)((d->KT + *kc_max - 1) / *kc_max);  // no empty CTAs
    return *kc_max <= (decode_ring() ? DC_KC_RING : DC_KC) ? 0 : -1;
}

// Whether the cluster kernel runs this matrix at n tokens: n <= 16, at most DC_MAX_SPLIT × DC_KC
// (DC_KC_RING) k-steps, an sm_90 device and binary (a PTX-only or sm_80 build has no cluster code),
// and VNM_DECODE=atomic not set (that selects the atomic split-K kernel everywhere, for comparison).
static unsigned cluster_sizes_failed = 0;  // bit S: a launch with clusters of S CTAs failed (see below)

int vnm_decode_cluster_ok(const VnmDeviceMatrix *d, int64_t n) {
    static int avail = -1;
    if (avail < 0) {
        cudaFuncAttributes a;
        const char *env = getenv("VNM_DECODE");
        avail = !(env && !strcmp(env, "atomic")) &&
                cudaFuncGetAttributes(&a, vnm_decode_cluster_kernel<1, false>) == cudaSuccess && a.binaryVersion >= 90;
        cudaGetLastError();
    }
    int S, kc_max;
    return avail && d->cc_major >= 9 && n >= 1 && n <= 16 && decode_split(d, &S, &kc_max) == 0 &&
           !((cluster_sizes_failed >> S) & 1u);
}

// A cluster decode kernel (NT = 1 or 4, registers or ring) and its shared-memory / cluster-size attributes.
typedef void (*DecodeKernel)(VnmDev, const uint16_t *, VnmEpi, int, int, int, int);
typedef int (*DecodeAttrs)(size_t, int);

// Row tiles per cluster: the fewest that let all clusters be resident at once (the kernel loads a
// row tile's A while earlier ones compute; a second wave would start its loads only when the first
// has ended). Resident clusters of `kernel` launched as `cfg` (clusters of S CTAs, the shared memory
// of one row tile per cluster) come from the occupancy API: GPCs limit them below SMs × 5 / S.
// Cached per kernel, cluster size and shared-memory size. VNM_DECODE_TILES=R forces R.
static int decode_tiles_per_cluster(DecodeKernel kernel, DecodeAttrs attrs, cudaLaunchConfig_t cfg, int S,
                                    int64_t row_tiles) {
    static int forced = -1;
    if (forced < 0) forced = env_int("VNM_DECODE_TILES", 0, 0, 64);
    if (forced) return forced;
    static struct {
        DecodeKernel kernel;
        int S;
        size_t smem;
        int clusters;
    } cache[16];
    static int used = 0;
    int clusters = 0;
    for (int i = 0; i < used && !clusters; i++)
        if (cache[i].kernel == kernel && cache[i].S == S && cache[i].smem == cfg.dynamicSmemBytes) clusters = cache[i].clusters;
    if (!clusters) {
        cfg.gridDim = dim3((unsigned)S, (unsigned)row_tiles, 1);
        cfg.numAttrs = 1;  // the cluster dimension only (attr[0] of the caller), as measured in Session 16 (without the PDL one)
        if (attrs(cfg.dynamicSmemBytes, S) || cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess ||
            clusters < 1)
            clusters = (int)row_tiles;  // unknown: one tile per cluster
        cudaGetLastError();
        if (used < 16) cache[used].kernel = kernel, cache[used].S = S, cache[used].smem = cfg.dynamicSmemBytes, cache[used++].clusters = clusters;
    }
    return (int)((row_tiles + clusters - 1) / clusters);
}

// Launches the cluster decode kernel (vnm_decode_cluster_ok(d, e.n)); -1 when the launch failed
// (e.g. no GPC can hold a 16-CTA cluster): the caller falls back to the atomic kernel, and from
// then on vnm_decode_cluster_ok refuses that cluster size, so that vnm_spmm_kernel_name names
// the kernel that really runs.
int vnm_launch_decode_cluster(const VnmDeviceMatrix *d, const VnmDev &dev, const uint16_t *x, const VnmEpi &e,
                              cudaStream_t stream) {
    int S, kc_max;
    if (decode_split(d, &S, &kc_max)) return -1;
    const int ntiles = (d->group_rows % 64 == 0) ? 1 : 4;
    // Stage the slice's channels when they are local (measured faster than the direct gather at
    // every n on the H200); VNM_DECODE_STAGE=0 gathers from global memory instead (for comparison).
    static int stage = -1;
    if (stage < 0) stage = env_int("VNM_DECODE_STAGE", 1, 0, 1);
    int xw = (int)(kc_max * 8 * d->p.M);  // channels of a slice when they are local
    if (!stage || !d->cols_local || e.n * xw * sizeof(uint16_t) > DC_STAGE_MAX) xw = 0;
    const bool ring = decode_ring() > 0;
    static const DecodeKernel kernels[2][2] = {{vnm_decode_cluster_kernel<1, false>, vnm_decode_cluster_kernel<1, true>},
                                               {vnm_decode_cluster_kernel<4, false>, vnm_decode_cluster_kernel<4, true>}};
    static const DecodeAttrs attr_fns[2][2] = {{decode_attrs<1, false>, decode_attrs<1, true>},
                                               {decode_attrs<4, false>, decode_attrs<4, true>}};
    const DecodeKernel kernel = kernels[ntiles == 4][ring];
    const DecodeAttrs attrs = attr_fns[ntiles == 4][ring];
    cudaLaunchConfig_t cfg = {};
    cfg.blockDim = dim3(128, 1, 1);
    cfg.stream = stream;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)S, attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr, cfg.numAttrs = 1 + pdl_attr(&attr[1]);
    const int64_t row_tiles = d->out_pad / 64;
    // Ring slots: one while a cluster has one row tile; else up to decode_ring(), and no more than
    // the row tiles (the slots cost occupancy, hence R, which is chosen again with them).
    int D = ring ? 1 : 0;
    cfg.dynamicSmemBytes = decode_smem(ntiles, kc_max, (int)e.n, xw, 1, D).total;
    int R = decode_tiles_per_cluster(kernel, attrs, cfg, S, row_tiles);
    if (ring && R > 1 && decode_ring() > 1) {
        D = decode_ring();
        cfg.dynamicSmemBytes = decode_smem(ntiles, kc_max, (int)e.n, xw, 1, D).total;
        R = decode_tiles_per_cluster(kernel, attrs, cfg, S, row_tiles);
        if (D > R) D = R;
    }
    cfg.gridDim = dim3((unsigned)S, (unsigned)((row_tiles + R - 1) / R), 1);
    cfg.dynamicSmemBytes = decode_smem(ntiles, kc_max, (int)e.n, xw, R, D).total;
    const cudaError_t rc = attrs(cfg.dynamicSmemBytes, S) ? cudaErrorInvalidValue
                                                          : cudaLaunchKernelEx(&cfg, kernel, dev, x, e, kc_max, xw, R, D);
    if (rc == cudaSuccess) return 0;
    cudaGetLastError();
    cluster_sizes_failed |= 1u << S;
    return -1;
}
