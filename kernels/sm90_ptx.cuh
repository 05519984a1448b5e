// PTX wrappers of the sm_90a SpMM kernel (vnm_spmm_sm90.cu): sparse wgmma (register-A and
// shared-memory-A forms), wgmma fences, mbarriers, TMA and bulk copies, cp.async, shared/global
// loads and stores, register reallocation, release/acquire flags. Bodies that need sm_90a compile
// to nothing elsewhere (VNM_SM90A).
#pragma once
#include <cuda.h>
#include <stdint.h>

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define VNM_SM90A 1
#define VNM_SM90A_ASM(...) asm volatile(__VA_ARGS__)
#else
#define VNM_SM90A_ASM(...)  // host pass and other architectures: the instruction does not exist
#endif

namespace vnm90 {

// Operands of the wgmma asm statements below: accumulators d[i .. i+7] and the D register lists.
#define VNM_ACC8(i)                                                                                             \
    "+f"(d[i]), "+f"(d[i + 1]), "+f"(d[i + 2]), "+f"(d[i + 3]), "+f"(d[i + 4]), "+f"(d[i + 5]), "+f"(d[i + 6]), \
        "+f"(d[i + 7])
#define VNM_ACC64 \
    VNM_ACC8(0), VNM_ACC8(8), VNM_ACC8(16), VNM_ACC8(24), VNM_ACC8(32), VNM_ACC8(40), VNM_ACC8(48), VNM_ACC8(56)
#define VNM_ACC96 VNM_ACC64, VNM_ACC8(64), VNM_ACC8(72), VNM_ACC8(80), VNM_ACC8(88)
#define VNM_ACC128                                                                                                   \
    VNM_ACC64, VNM_ACC8(64), VNM_ACC8(72), VNM_ACC8(80), VNM_ACC8(88), VNM_ACC8(96), VNM_ACC8(104), VNM_ACC8(112), \
        VNM_ACC8(120)
#define VNM_D64                                                                                                       \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "  \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}"
#define VNM_D96                                                                                                       \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "  \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, "  \
    "%68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, "  \
    "%90, %91, %92, %93, %94, %95}"
#define VNM_D128                                                                                                      \
    "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, " \
    "%24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, "  \
    "%46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, "  \
    "%68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, "  \
    "%90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, "  \
    "%110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}"

// wgmma.mma_async.sp m64n128k32 bf16 -> f32, A from registers, D += A·B (64 accumulators).
// TRANS_B = imm-trans-b: 0 = K-major B, 1 = N-major B.
template <int SEL, int TRANS_B>
__device__ __forceinline__ void wgmma_sp_m64n128k32(float (&d)[64], uint4 a, uint64_t desc_b, uint32_t meta) {
    VNM_SM90A_ASM(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %71, 0;\n"
        "wgmma.mma_async.sp.sync.aligned.m64n128k32.f32.bf16.bf16 " VNM_D64
        ", {%64, %65, %66, %67}, %68, %69, %70, p, 1, 1, %72;\n}\n"
        : VNM_ACC64
        : "r"(a.x), "r"(a.y), "r"(a.z), "r"(a.w), "l"(desc_b), "r"(meta), "n"(SEL), "r"(1), "n"(TRANS_B));
}

// wgmma.mma_async.sp m64nNk32 bf16 -> f32 with A (the compressed 64 × 16 values) and B in shared
// memory, both K-major; N = 128, 192 and 256 (N/2 accumulators). One overload per N, made by the
// macro from N, its accumulator count and the asm operand numbers after the accumulators.
#define VNM_WGMMA_SP_SS(NACC, N, DREGS, ACCS, OA, OB, OM, OS, OP)                                         \
    template <int SEL>                                                                                    \
    __device__ __forceinline__ void wgmma_sp_ss(float (&d)[NACC], uint64_t desc_a, uint64_t desc_b, uint32_t meta) { \
        VNM_SM90A_ASM("{\n.reg .pred p;\nsetp.ne.b32 p, %" #OP ", 0;\n"                                  \
                      "wgmma.mma_async.sp.sync.aligned.m64n" #N "k32.f32.bf16.bf16 " DREGS ", %" #OA ", %" #OB  \
                      ", %" #OM ", %" #OS ", p, 1, 1, 0, 0;\n}\n"                                           \
                      : ACCS                                                                              \
                      : "l"(desc_a), "l"(desc_b), "r"(meta), "n"(SEL), "r"(1));                           \
    }
VNM_WGMMA_SP_SS(64, 128, VNM_D64, VNM_ACC64, 64, 65, 66, 67, 68)
VNM_WGMMA_SP_SS(96, 192, VNM_D96, VNM_ACC96, 96, 97, 98, 99, 100)
VNM_WGMMA_SP_SS(128, 256, VNM_D128, VNM_ACC128, 128, 129, 130, 131, 132)
#undef VNM_WGMMA_SP_SS

__device__ __forceinline__ void wgmma_fence() { VNM_SM90A_ASM("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { VNM_SM90A_ASM("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_wait_all() { VNM_SM90A_ASM("wgmma.wait_group.sync.aligned 0;\n" ::: "memory"); }
__device__ __forceinline__ void fence_operand(float &r) { asm volatile("" : "+f"(r)::"memory"); }
__device__ __forceinline__ void keep_word(uint32_t &m) { asm volatile("" : "+r"(m)::"memory"); }
__device__ __forceinline__ void keep_operand(uint4 &a, uint32_t &m) {
    asm volatile("" : "+r"(a.x), "+r"(a.y), "+r"(a.z), "+r"(a.w), "+r"(m)::"memory");
}
__device__ __forceinline__ void fence_proxy_async() { VNM_SM90A_ASM("fence.proxy.async.shared::cta;\n" ::: "memory"); }

// Shared-memory matrix descriptor (PTX "matrix descriptor"): start, LBO, SBO in 16-byte units,
// 128-byte swizzle (mode 1 in bits 62-63) or none (0), base offset 0 (all tiles 1024-byte aligned).
__device__ __forceinline__ uint64_t smem_desc(uint32_t smem_addr, uint32_t lbo, uint32_t sbo, bool swizzle128 = true) {
    return (uint64_t)((smem_addr & 0x3FFFF) >> 4) | ((uint64_t)(lbo >> 4) << 16) | ((uint64_t)(sbo >> 4) << 32) |
           ((uint64_t)swizzle128 << 62);
}

__device__ __forceinline__ void st_shared_v2(uint32_t addr, uint2 v) {
    asm volatile("st.shared.v2.u32 [%0], {%1, %2};" ::"r"(addr), "r"(v.x), "r"(v.y) : "memory");
}

__device__ __forceinline__ uint4 ldg_nc_v4(const void *p) {
    uint4 v;
    asm volatile("ld.global.nc.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "l"(p));
    return v;
}
__device__ __forceinline__ uint32_t ldg_nc_u32(const void *p) {
    uint32_t v;
    asm volatile("ld.global.nc.u32 %0, [%1];" : "=r"(v) : "l"(p));
    return v;
}

__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
    VNM_SM90A_ASM("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(count) : "memory");
}
// Waits for the phase with the given parity; traps after 2^26 polls (about a second) so that a
// pipeline bug shows as a launch error instead of a hang. mbar_wait_cluster acquires at cluster
// scope: for data that other CTAs stored by st.async (whose complete_tx releases at cluster scope).
#define VNM_MBAR_WAIT_ASM(TRY_WAIT)                                             \
    "{\n.reg .pred P, Q;\n.reg .u32 n;\nmov.u32 n, 0;\n"                       \
    "WAIT_%=:\n" TRY_WAIT " P, [%0], %1;\n"                                     \
    "@P bra DONE_%=;\n"                                                        \
    "add.u32 n, n, 1;\n"                                                       \
    "setp.eq.u32 Q, n, 0x4000000;\n"                                           \
    "@Q trap;\n"                                                               \
    "bra WAIT_%=;\n"                                                           \
    "DONE_%=:\n}\n"
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t phase) {
    VNM_SM90A_ASM(VNM_MBAR_WAIT_ASM("mbarrier.try_wait.parity.shared::cta.b64") ::"r"(bar), "r"(phase) : "memory");
}
__device__ __forceinline__ void mbar_wait_cluster(uint32_t bar, uint32_t phase) {
    VNM_SM90A_ASM(VNM_MBAR_WAIT_ASM("mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64") ::"r"(bar), "r"(phase)
                  : "memory");
}

// 2D tensor copy of the box at (c0, c1) of map into shared memory, completing on bar.
__device__ __forceinline__ void tma_load_2d(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0, int c1) {
    VNM_SM90A_ASM(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
            dst),
        "l"(map), "r"(c0), "r"(c1), "r"(bar)
        : "memory");
}

// Bulk tensor store of the box at (c0, c1) of map from shared memory (bulk async group), its commit,
// and the wait until all committed stores have read their shared memory (not until y is written).
__device__ __forceinline__ void tma_store_2d(const CUtensorMap *map, uint32_t src, int c0, int c1) {
    VNM_SM90A_ASM("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];" ::"l"(map), "r"(c0),
                  "r"(c1), "r"(src)
                  : "memory");
}
__device__ __forceinline__ void bulk_commit() { VNM_SM90A_ASM("cp.async.bulk.commit_group;" ::: "memory"); }
__device__ __forceinline__ void bulk_wait_read_all() { VNM_SM90A_ASM("cp.async.bulk.wait_group.read 0;" ::: "memory"); }

// 2-CTA clusters (pairs of the 128-row SS kernel): this CTA's rank and the cluster's size, a barrier
// of all threads of the cluster, an arrive on the mbarrier at the same shared address in CTA
// `rank`, and a 2D tensor copy delivered to every CTA in cta_mask (same shared offset; each CTA's
// mbarrier at bar's offset completes its share of the bytes). The remote arrive keeps the default
// semantics (release at CTA scope, as CUTLASS's ClusterBarrier::arrive): it only says that our
// wgmmas have read the slot; `.release.cluster` made every arrive wait like a memory barrier
// (Session 10, experiments/kernels/NOTES.md).
__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r = 0;
    VNM_SM90A_ASM("mov.u32 %0, %%cluster_ctarank;" : "=r"(r));
    return r;
}
__device__ __forceinline__ uint32_t cluster_size() {
    uint32_t n = 1;
    VNM_SM90A_ASM("mov.u32 %0, %%cluster_nctarank;" : "=r"(n));
    return n;
}
__device__ __forceinline__ void cluster_sync_all() {
    VNM_SM90A_ASM("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;" ::: "memory");
}
__device__ __forceinline__ void mbar_arrive_remote(uint32_t bar, uint32_t rank) {
    VNM_SM90A_ASM(
        "{\n.reg .b32 r;\nmapa.shared::cluster.u32 r, %0, %1;\n"
        "mbarrier.arrive.shared::cluster.b64 _, [r];\n}" ::"r"(bar),
        "r"(rank)
        : "memory");
}
__device__ __forceinline__ void tma_load_2d_multicast(uint32_t dst, const CUtensorMap *map, uint32_t bar, int c0, int c1,
                                                      uint16_t cta_mask) {
    VNM_SM90A_ASM(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
        "%3}], [%4], %5;" ::"r"(dst),
        "l"(map), "r"(c0), "r"(c1), "r"(bar), "h"(cta_mask)
        : "memory");
}

// For the decode kernel (vnm_spmm_decode.cu): the halves of cluster_sync_all (.aligned: all threads
// of a warp execute them), DSMEM loads and bulk copies into another CTA's shared memory.
// fence_mbarrier_init makes a CTA's initialised mbarriers visible to the cluster; the relaxed arrive
// releases nothing else.
__device__ __forceinline__ void fence_mbarrier_init() { VNM_SM90A_ASM("fence.mbarrier_init.release.cluster;" ::: "memory"); }
__device__ __forceinline__ void cluster_arrive_relaxed() {
    VNM_SM90A_ASM("barrier.cluster.arrive.relaxed.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait() { VNM_SM90A_ASM("barrier.cluster.wait.aligned;" ::: "memory"); }
// The release of this arrive is a MEMBAR.ALL.GPU: it waits for every memory access of the thread in
// flight, loads included (issue loads after it, not before).
__device__ __forceinline__ void cluster_arrive_release() {
    VNM_SM90A_ASM("barrier.cluster.arrive.release.aligned;" ::: "memory");
}
__device__ __forceinline__ void cluster_wait_acquire() { VNM_SM90A_ASM("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }
// The float at shared address `addr` of CTA `rank` of the cluster (the same layout as ours).
__device__ __forceinline__ float ld_dsmem_f32(uint32_t addr, uint32_t rank) {
    float v = 0.0f;
    VNM_SM90A_ASM("{\n.reg .b32 ra;\nmapa.shared::cluster.u32 ra, %1, %2;\nld.shared::cluster.f32 %0, [ra];\n}"
                  : "=f"(v)
                  : "r"(addr), "r"(rank)
                  : "memory");
    return v;
}
// Bulk copy of `bytes` (a multiple of 16) from our shared memory at src to shared address dst of
// CTA `rank` (the same layout as ours), completing them on the mbarrier at `bar` in that CTA
// (bulk async group: bulk_commit, bulk_wait_read_all before src is written again).
__device__ __forceinline__ void bulk_copy_to_rank(uint32_t dst, uint32_t src, uint32_t bytes, uint32_t bar,
                                                  uint32_t rank) {
    VNM_SM90A_ASM(
        "{\n.reg .b32 rd, rb;\nmapa.shared::cluster.u32 rd, %0, %4;\nmapa.shared::cluster.u32 rb, %3, %4;\n"
        "cp.async.bulk.shared::cluster.shared::cta.mbarrier::complete_tx::bytes [rd], [%1], %2, [rb];\n}" ::"r"(dst),
        "r"(src), "r"(bytes), "r"(bar), "r"(rank)
        : "memory");
}

// 16 bytes (v) stored into shared address dst of CTA `rank` (the same layout as ours), completing
// them on the mbarrier at `bar` in that CTA; no proxy fence or staging buffer: the values go
// straight from registers (wait for them with mbar_wait_cluster).
__device__ __forceinline__ void st_async_to_rank(uint32_t dst, float4 v, uint32_t bar, uint32_t rank) {
    VNM_SM90A_ASM(
        "{\n.reg .b32 rd, rb;\nmapa.shared::cluster.u32 rd, %0, %5;\nmapa.shared::cluster.u32 rb, %6, %5;\n"
        "st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.b32 [rd], {%1, %2, %3, %4}, [rb];\n}" ::"r"(dst),
        "r"(__float_as_uint(v.x)), "r"(__float_as_uint(v.y)), "r"(__float_as_uint(v.z)), "r"(__float_as_uint(v.w)),
        "r"(rank), "r"(bar)
        : "memory");
}

__device__ __forceinline__ void wgmma_wait_1() { VNM_SM90A_ASM("wgmma.wait_group.sync.aligned 1;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
    VNM_SM90A_ASM("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
    VNM_SM90A_ASM("mbarrier.expect_tx.shared::cta.b64 [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
// Arrives on bar and adds bytes to the transaction count of its current phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint32_t bar, uint32_t bytes) {
    VNM_SM90A_ASM("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(bar), "r"(bytes) : "memory");
}
// 16-byte cp.async with zero fill beyond src_bytes, L1-allocating: the 4 gather groups of a CTA
// share channels (half the requests hit L1 at 64:2:8; .cg was not consistently faster on an H100).
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src, uint32_t src_bytes) {
    asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;" ::"r"(dst), "l"(src), "r"(src_bytes) : "memory");
}
__device__ __forceinline__ void cp_async_arrive(uint32_t bar) {
    VNM_SM90A_ASM("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void bulk_load(uint32_t dst, const void *src, uint32_t bytes, uint32_t bar) {
    VNM_SM90A_ASM("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];" ::"r"(dst),
                  "l"(src), "r"(bytes), "r"(bar)
                  : "memory");
}
__device__ __forceinline__ uint4 lds_v4(uint32_t addr) {
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0,%1,%2,%3}, [%4];" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
    return v;
}
__device__ __forceinline__ void sts_f32(uint32_t addr, float v) {
    asm volatile("st.shared.f32 [%0], %1;" ::"r"(addr), "f"(v) : "memory");
}
__device__ __forceinline__ void sts_v2_f32(uint32_t addr, float a, float b) {
    asm volatile("st.shared.v2.f32 [%0], {%1, %2};" ::"r"(addr), "f"(a), "f"(b) : "memory");
}
__device__ __forceinline__ float4 lds_v4_f32(uint32_t addr) {
    float4 v;
    asm volatile("ld.shared.v4.f32 {%0,%1,%2,%3}, [%4];"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(addr)
                 : "memory");
    return v;
}
__device__ __forceinline__ uint32_t lds_u32(uint32_t addr) {
    uint32_t v;
    asm volatile("ld.shared.u32 %0, [%1];" : "=r"(v) : "r"(addr));
    return v;
}
// stmatrix .x4 .trans: four 8×8 bf16 matrices, given as this lane's fragment word of each (row
// lane / 4, columns 2·(lane % 4) and + 1), stored transposed: memory row c of a matrix (16 bytes)
// is its column c. Lane l gives the address of memory row l % 8 of matrix l / 8.
__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, const uint32_t (&q)[4]) {
    VNM_SM90A_ASM("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};" ::"r"(addr), "r"(q[0]),
                  "r"(q[1]), "r"(q[2]), "r"(q[3])
                  : "memory");
}
// ldmatrix .x4 .trans: the inverse of stmatrix_x4_trans (same addresses, same fragment words).
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t addr, uint32_t (&q)[4]) {
    VNM_SM90A_ASM("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                  : "=r"(q[0]), "=r"(q[1]), "=r"(q[2]), "=r"(q[3])
                  : "r"(addr)
                  : "memory");
}
template <int N>
__device__ __forceinline__ void setmaxnreg_inc() {
    VNM_SM90A_ASM("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
}
template <int N>
__device__ __forceinline__ void setmaxnreg_dec() {
    VNM_SM90A_ASM("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
}

__device__ __forceinline__ void flag_set(int *f) {
    asm volatile("st.release.gpu.global.u32 [%0], %1;" ::"l"(f), "r"(1) : "memory");
}
// Waits for *f != 0; traps after 2^26 polls like mbar_wait.
__device__ __forceinline__ void flag_wait(const int *f) {
    for (uint32_t n = 0;; n++) {
        uint32_t v;
        asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(f) : "memory");
        if (v) return;
        if (n == 0x4000000u) __trap();
    }
}

}  // namespace vnm90
