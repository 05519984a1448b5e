// V:N:M SpMM for decode (n <= 16 tokens) on sm_90: split-K inside a thread-block cluster.
//
// At n <= 16 the product is memory-bound: the time is reading the A fragments (values + metadata,
// ~40 bytes per row per 32-wide k-step). The grid is (S <= 8 splits) × (64-row tiles); the S CTAs
// of a row tile form one cluster and each takes a slice of at most DC_KC k-steps. Per CTA:
//   1. the kept channels of its slice -> shared memory;
//   2. all A fragments and metadata of the slice -> shared memory by cp.async (no registers, the
//      whole slice in flight), while the B tiles (kept x channels of the <= 16 tokens) are
//      gathered from global/L2 with 8 independent loads in flight per thread;
//   3. mma.sp m16n8k32 over the slice;
//   4. the 64 × 16 fp32 partial sums go to shared memory; after a cluster barrier CTA s reduces its
//      1/S share of the tile over the S CTAs' shared memory (DSMEM) in rank order and applies the
//      epilogue. No global workspace, no atomics: the result is the same on every run.
// Used for reductions of at most 8 × DC_KC k-steps (in <= 64·8·M) and n > 4, where it measured
// faster than the atomic split-K kernel of vnm_spmm.cu (which also serves sm_80). A version
// with a cp.async ring over longer slices measured slower than that kernel (see
// experiments/kernels/NOTES.md, "Decode").
#include <cooperative_groups.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/mma_sync.cuh"
#include "kernels/vnm_spmm_common.cuh"

#define DC_KC 8         // k-steps per CTA at most
#define DC_MAX_SPLIT 8  // CTAs per cluster (the portable cluster size)

// Shared memory of one CTA (bytes), laid out in this order.
struct DecodeSmem {
    size_t red, cols, a, meta, b, total;
};

static __host__ __device__ DecodeSmem decode_smem(int ntiles) {
    DecodeSmem s;
    s.red = 16 * 64 * sizeof(float);                                 // [16 tokens][64 rows] partials
    s.cols = (size_t)ntiles * DC_KC * 8 * sizeof(uint2);              // [tile][k-step][block] channels
    s.a = (size_t)DC_KC * 128 * sizeof(uint4);                        // [k-step][warp*32 + lane]
    s.meta = (size_t)DC_KC * 128 * sizeof(uint32_t);                  // same indexing
    s.b = (size_t)ntiles * DC_KC * 16 * B_PITCH * sizeof(uint16_t);   // [tile][k-step][token][B_PITCH]
    s.total = s.red + s.cols + s.a + s.meta + s.b;
    return s;
}

// NT: B tiles per k-step (1 when the 64 rows of a CTA share their kept columns, 4 for 16/32-row groups).
template <int NT>
__global__ void __launch_bounds__(128) vnm_decode_cluster_kernel(VnmDev d, const uint16_t *__restrict__ x, VnmEpi e,
                                                                 int kc_max) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    namespace cg = cooperative_groups;
    cg::cluster_group cluster = cg::this_cluster();
    extern __shared__ __align__(16) unsigned char smem[];
    const DecodeSmem L = decode_smem(NT);
    float *red = (float *)smem;
    uint2 *scols = (uint2 *)(smem + L.red);
    uint4 *As = (uint4 *)(smem + L.red + L.cols);
    uint32_t *Ms = (uint32_t *)(smem + L.red + L.cols + L.a);
    uint16_t *Bs = (uint16_t *)(smem + L.red + L.cols + L.a + L.meta);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int split = (int)cluster.block_rank(), S = (int)cluster.num_blocks();
    const int64_t row0 = (int64_t)blockIdx.y * 64, ks0 = (int64_t)split * kc_max;
    const int kc = (int)max((int64_t)0, min(d.KT, ks0 + kc_max) - ks0);

    for (int i = tid; i < NT * kc * 8; i += 128) {
        const int j = i & 7, kk = (i >> 3) % kc, tile = (i >> 3) / kc;
        const int64_t cb = (ks0 + kk) * 8 + j, g = (row0 + (NT == 1 ? 0 : 16 * tile)) / d.group_rows;
        scols[(tile * DC_KC + kk) * 8 + j] = __ldg((const uint2 *)(d.cols + (g * d.KT * 8 + cb) * 4));
    }
    __syncthreads();
    // A fragments: per k-step the 4 warps' fragments are 128 contiguous uint4 (vnm_frag_index).
    for (int kk = 0; kk < kc; kk++) {
        const int64_t base = vnm_frag_index(row0 / 16, ks0 + kk, d.KT, 0);
        cp_async16(&As[kk * 128 + tid], d.vals + base + tid, true);
        if (tid < 32) cp_async16(&Ms[kk * 128 + 4 * tid], d.meta + base + 4 * tid, true);
    }
    cp_async_commit();
    // B units of thread tid: token t = tid / 8, block j = tid % 8, unit i = (tile i / DC_KC, k-step i % DC_KC).
    const int j = tid & 7, t = tid >> 3;
    for (int i0 = 0; i0 < NT * DC_KC; i0 += 8) {
        uint2 v[8];
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int tile = (i0 + i) / DC_KC, kk = (i0 + i) % DC_KC;
            const bool ok = kk < kc && t < e.n && (ks0 + kk) * 8 + j < d.C;
            v[i] = ok ? vnm_gather_cols(x + t * d.in, scols[(tile * DC_KC + kk) * 8 + j]) : make_uint2(0, 0);
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const int tile = (i0 + i) / DC_KC, kk = (i0 + i) % DC_KC;
            *(uint2 *)(Bs + ((tile * DC_KC + kk) * 16 + t) * B_PITCH + 4 * j) = v[i];
        }
    }
    cp_async_wait<0>();
    __syncthreads();

    float acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    const uint16_t *my_b = Bs + (NT == 1 ? 0 : warp) * DC_KC * 16 * B_PITCH;
    for (int kk = 0; kk < kc; kk++) {
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            uint32_t b[4];
            ldmatrix_x4(b, my_b + (kk * 16 + nt * 8 + (lane & 7)) * B_PITCH + (lane >> 3) * 8);
            mma_sp_16832(acc[nt], As[kk * 128 + tid], b, Ms[kk * 128 + tid]);
        }
    }

    // Partials -> red[t][r]; reduce over the cluster in rank order.
    const int g = lane >> 2, tig = lane & 3;
#pragma unroll
    for (int nt = 0; nt < 2; nt++)
#pragma unroll
        for (int q = 0; q < 4; q++) red[(nt * 8 + 2 * tig + (q & 1)) * 64 + 16 * warp + g + (q >= 2 ? 8 : 0)] = acc[nt][q];
    cluster.sync();
    const int E = (int)e.n * 64, lo = split * E / S, hi = (split + 1) * E / S;
    for (int i = lo + tid; i < hi; i += 128) {
        float s = 0.0f;
        for (int r = 0; r < S; r++) s += cluster.map_shared_rank(red, r)[i];
        vnm_epi_store(e, s, row0 + i % 64, i / 64);
    }
    cluster.sync();  // every CTA's partials stay in shared memory until all ranks have read them
#endif
}

template <int NT>
static int decode_smem_attr(size_t bytes) {
    static size_t set = 0;
    if (bytes <= 48 * 1024 || bytes <= set) return 0;
    if (cudaFuncSetAttribute(vnm_decode_cluster_kernel<NT>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) !=
        cudaSuccess)
        return -1;
    set = bytes;
    return 0;
}

// Split of the k-steps over the cluster: S CTAs of kc_max k-steps each (the last may have fewer).
static void decode_split(const VnmDeviceMatrix *d, int *S, int *kc_max) {
    const int s = (int)(d->KT < DC_MAX_SPLIT ? d->KT : DC_MAX_SPLIT);
    *kc_max = (int)((d->KT + s - 1) / s);
    *S = (int)((d->KT + *kc_max - 1) / *kc_max);  // no empty CTAs
}

// Whether the cluster kernel runs this matrix at n tokens: n in 5..16, at most 8 × DC_KC k-steps,
// an sm_90 device and binary (a PTX-only or sm_80 build has no cluster code), and VNM_DECODE=atomic
// not set (that selects the atomic split-K kernel everywhere, for comparison).
int vnm_decode_cluster_ok(const VnmDeviceMatrix *d, int64_t n) {
    static int avail = -1;
    if (avail < 0) {
        cudaFuncAttributes a;
        const char *env = getenv("VNM_DECODE");
        avail = !(env && !strcmp(env, "atomic")) && cudaFuncGetAttributes(&a, vnm_decode_cluster_kernel<1>) == cudaSuccess &&
                a.binaryVersion >= 90;
        cudaGetLastError();
    }
    return avail && d->cc_major >= 9 && n > 4 && n <= 16 && d->KT <= DC_MAX_SPLIT * DC_KC;
}

// Launches the cluster decode kernel (vnm_decode_cluster_ok(d, e.n)); -1 when the launch failed.
int vnm_launch_decode_cluster(const VnmDeviceMatrix *d, const VnmDev &dev, const uint16_t *x, const VnmEpi &e,
                              cudaStream_t stream) {
    int S, kc_max;
    decode_split(d, &S, &kc_max);
    const int ntiles = (d->group_rows % 64 == 0) ? 1 : 4;
    const size_t smem = decode_smem(ntiles).total;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((unsigned)S, (unsigned)(d->out_pad / 64), 1);
    cfg.blockDim = dim3(128, 1, 1);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)S, attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr, cfg.numAttrs = 1;
    cudaError_t rc;
    if (ntiles == 1)
        rc = decode_smem_attr<1>(smem) ? cudaErrorInvalidValue
                                        : cudaLaunchKernelEx(&cfg, vnm_decode_cluster_kernel<1>, dev, x, e, kc_max);
    else
        rc = decode_smem_attr<4>(smem) ? cudaErrorInvalidValue
                                        : cudaLaunchKernelEx(&cfg, vnm_decode_cluster_kernel<4>, dev, x, e, kc_max);
    return rc == cudaSuccess ? 0 : -1;
}
