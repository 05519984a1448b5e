// V:N:M SpMM on Hopper: wgmma.mma_async.sp (sm_90a). See vnm_spmm.h for the choice of kernel and
// train/vnm_device_layout.h for the device layouts of the A values and metadata.
//
// CTA = 3 warpgroups (384 threads), output tile 256 rows × 128 tokens. Warpgroup 0 produces B,
// warpgroups 1 and 2 consume: each owns 128 rows as two m64 row groups with 64 fp32 accumulators
// per thread (m64n128). The SS kernel also has 192-token tiles (m64n192), and a wide form of
// 128 rows × 256 tokens (RG = 1: one m64n256 row group per consumer warpgroup), run in 2-CTA
// clusters whose two adjacent row tiles share the x tile, each CTA loading half of it for both. The reduction runs in stages of 64 logical k (16 column blocks, 2 wgmma
// k-steps). Per stage B, the gathered x (128 tokens × 64 logical k, bf16, K-major, 128-byte
// swizzle: 16 KB), is built in shared memory once per gather group (1, 2 or 4 tiles: rows that
// share kept columns share a tile), in a ring of NST stages with full/empty mbarriers:
//   TMA filler    : B = x itself (plain 2:4); one thread issues bulk tensor copies;
//   window filler : 128 threads load 16-byte windows of x one stage ahead into registers and write
//                   the selected channels (4 byte permutes per block and tile);
//   generic filler: per-element loads (permuted inputs, M > 8);
//   rows filler   : feature-major xT (vnm_spmm_cuda_fm): B is N-major (tokens contiguous), each
//                   kept channel a 256-byte row of xT copied by 16-byte cp.async straight into
//                   the swizzled tile; stages of 1 k-step, 5 deep (see b_desc_mn for the layout).
// The producer also bulk-copies each stage's A (compressed weights) and metadata into the ring; the
// consumers read them from shared memory (into registers, or by the wgmma itself in the SS kernel),
// keep one wgmma group in flight and release a stage once its wgmmas completed.
// Epilogue: token-major y: bias/GELU (+ the residual, loaded by bulk copies into shared memory) in
// registers -> bf16 staging (stmatrix) -> bulk tensor stores (persistent kernels); else (a residual
// in the other kernels, yT): accumulators -> shared memory (fp32) -> bias/GELU/residual -> 16-byte
// stores along the output's contiguous dimension (rows of y, or tokens of yT); token-major y with
// row_perm uses scalar stores.
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "kernels/sm90_ptx.cuh"
#include "kernels/vnm_spmm.h"
#include "kernels/vnm_spmm_common.cuh"

namespace vnm90 {

constexpr int BM = 256, BN = 128;  // BN: tokens per tile of the register-A kernels (the SS kernel: 128 or 192)
constexpr int KSTEP_A_BYTES = 8192, KSTEP_META_BYTES = 2048;  // one k-step of one CTA (vnm_frag_index order)
// Epilogue staging, one m64 row group (64 rows × 128 tokens fp32) per consumer warpgroup at a time:
constexpr int EPI_PITCH = 64 + 4;     // token-major: floats per token (conflict-free scalar writes)
constexpr int EPI_PITCH_FM = BN + 8;  // feature-major: floats per row (conflict-free float2 writes)
constexpr int EPI_WG_BYTES = 64 * EPI_PITCH_FM * 4;  // = BN * EPI_PITCH * 4
static_assert(EPI_WG_BYTES == BN * EPI_PITCH * 4, "both stagings fill the same area");
[[maybe_unused]] constexpr int FM_PREFETCH = 4;  // rows filler: stages of kept-channel lists loaded ahead
// TMA filler over a matrix in the SS layout (d->ss: the 2:4 form for prefill): A is read by the
// wgmma from shared memory and the metadata comes once per 2 k-steps (train/vnm_device_layout.h), so
// no A registers are needed and a tile can be 192 tokens wide: shared memory then moves 0.051
// bytes per multiply-add instead of 0.059 (B read 1/32, B written 2/256, A written and read
// 2·1.125/192). Session 9 took that for the bound of these kernels; Session 10's ncu shows them
// below it (experiments/kernels/NOTES.md); ss_tile_tokens' choice was A/B-measured in Session 9.
constexpr int FILL_TMA_SS = 4;
constexpr int SS_KSTEP_META_BYTES = 1024;  // compact metadata of one k-step of one CTA

// RG: m64 row groups per consumer warpgroup (tiles of 128·RG rows); RG = 1 only for the SS kernel.
template <int FILL, int TN = BN, int RG = 2>
struct Cfg {
    static constexpr bool ROWS = FILL == VNM_FILL_ROWS;
    static constexpr bool SS = FILL == FILL_TMA_SS;
    static constexpr bool TMA = FILL == VNM_FILL_TMA || SS;
    static constexpr int BMT = 128 * RG;                          // rows per tile
    static constexpr int KS = ROWS ? 1 : 2;                       // wgmma k-steps per ring stage
    static constexpr int TILE_BYTES = TN * 64 * KS;               // one B tile: TN tokens × 32·KS logical k
    static constexpr int A_BYTES = KS * KSTEP_A_BYTES * RG / 2;
    static constexpr int META_BYTES = KS * (SS ? SS_KSTEP_META_BYTES : KSTEP_META_BYTES) * RG / 2;
    static constexpr int MAXT = TMA ? 1 : 4;     // B tiles per stage
    static constexpr int SLOT_BYTES = MAXT * TILE_BYTES + A_BYTES + META_BYTES;  // B tiles, A, metadata
    // Persistent CTAs (TMA filler): a CTA loops over output tiles and its producer fills the ring
    // for the next tile while the consumers run the epilogue, which then stages outside the ring.
    static constexpr bool PERSIST = TMA;
    static constexpr int NST = PERSIST ? 4 : ROWS ? 5 : 2;  // ring stages
    static constexpr int PIPE_BYTES = NST * SLOT_BYTES;
    // Epilogue staging per consumer warpgroup: one m64 row group × EPI_TOK tokens at a time (fp32),
    // its RG row groups × EPI_TOK tokens (bf16, epilogue_bf16). RG = 1 has only the bf16 epilogue.
    static constexpr int EPI_PASSES = TN > BN ? 2 : 1, EPI_TOK = TN / EPI_PASSES;
    static constexpr int EPI_BYTES = ROWS ? EPI_WG_BYTES
                                     : RG == 1 ? EPI_TOK * 128
                                               : (EPI_TOK * EPI_PITCH * 4 + 1023) / 1024 * 1024;  // 1 KB aligned
    static constexpr int EPI_OFFSET = PERSIST ? PIPE_BYTES : 0;
    static constexpr int EPI_END = EPI_OFFSET + 2 * EPI_BYTES;
    static constexpr int BAR_OFFSET = PIPE_BYTES > EPI_END ? PIPE_BYTES : EPI_END;  // barriers after both uses
    static constexpr int SMEM = BAR_OFFSET + 16 * NST + 16 + 1024;  // ring barriers, 2 residual barriers, alignment
    // Register split: the CTA is launched with 384 × 168 = 64512 registers (launch bounds 384, 1) and
    // 128 × PRODUCER_REGS + 256 × CONSUMER_REGS must fit in that, or setmaxnreg.inc waits forever.
    static constexpr int PRODUCER_REGS =
        TMA ? 40 : FILL == VNM_FILL_WINDOW ? 120 : FILL == VNM_FILL_GENERIC ? 104 : 96;
    static constexpr int CONSUMER_REGS =
        TMA ? 232 : FILL == VNM_FILL_WINDOW ? 192 : FILL == VNM_FILL_GENERIC ? 200 : 200;
    static_assert(128 * PRODUCER_REGS + 256 * CONSUMER_REGS <= 384 * 168, "register split");
    static_assert(SLOT_BYTES % 1024 == 0, "B tiles must stay 1024-byte aligned");
    static_assert(!SS || A_BYTES + META_BYTES == 4 * VNM_SS_HALF_WORDS * RG, "a stage of the SS kernel: RG SS half-blocks");
    static_assert((TN == BN && RG == 2) || SS, "only the SS kernel has other tiles");
    static_assert(SMEM <= 227 * 1024, "shared memory");
    static_assert(ROWS || (RG * EPI_TOK * 128 <= EPI_BYTES && EPI_TOK % 16 == 0), "bf16 staging (epilogue_bf16)");
};

// K-major B tile (tokens × 64 k, 128-byte rows), 128-byte swizzle: 8-row core groups 1024 bytes
// apart (SBO), LBO unused (1).
__device__ __forceinline__ uint64_t b_desc(uint32_t smem_addr) { return smem_desc(smem_addr, 16, 1024); }
// A of the SS kernel: 64 rows × 16 compressed values (32 bytes per row), K-major without swizzle:
// 8 × 2 core matrices of 8 rows × 16 bytes, 128 bytes each, the two of an 8-row group adjacent
// (LBO = 128, next k), 8-row groups 256 bytes apart (SBO).
__device__ __forceinline__ uint64_t a_desc_ss(uint32_t smem_addr) { return smem_desc(smem_addr, 128, 256, false); }

// N-major B tile of the rows filler (imm-trans-b = 1): 32 k × 128 tokens in 1024-byte swizzle
// atoms of 8 k-rows × 64 tokens (128 bytes per k-row, 16-byte chunk j of row r stored at chunk
// j ^ r); atom (k-group kg, token half h) at byte (2·kg + h)·1024. Descriptor fields, from CUTLASS
// cute/atom/mma_traits_sm90_gmma.hpp (make_gmma_desc<Major::MN>): the canonical MN-major
// SW128 layout is, in 16-byte units, ((8,n),(8,k)) : ((1,LBO),(8,SBO)), i.e. LBO = stride between
// 64-element groups along N, SBO = stride between 8-row groups along K (PTX ISA "Strides": for
// MN-major swizzled layouts LBO steps the MN repeats of the swizzle atom, SBO the next 8 k).
// Checked on an H100: these values pass the feature-major tests, LBO and SBO swapped fail them all.
constexpr uint32_t MN_LBO = 1024, MN_SBO = 2048;
__device__ __forceinline__ uint64_t b_desc_mn(uint32_t smem_addr) { return smem_desc(smem_addr, MN_LBO, MN_SBO); }
// Byte offset of the 16-byte chunk (k-row k, tokens 8c .. 8c+7) in that tile.
__device__ __forceinline__ uint32_t swz_mn(int k, int c) {
    return (uint32_t)((((k >> 3) * 2 + (c >> 3)) << 10) + (k & 7) * 128 + ((((c & 7) ^ (k & 7))) << 4));
}

// Byte offset of (token t, logical k = 4j .. 4j+3) in a swizzled B tile.
__device__ __forceinline__ uint32_t swz(int t, int j) {
    return (uint32_t)(t * 128 + ((((j >> 1) ^ (t & 7)) << 4) | ((j & 1) << 3)));
}

// Named barrier 1 of the two consumer warpgroups (256 threads).
__device__ __forceinline__ void consumer_bar() { asm volatile("bar.sync 1, 256;" ::: "memory"); }

// Epilogue of 8 consecutive elements of y in memory, starting at (output channel o, token t):
// along output channels (token-major y, bias per element) or along tokens (yT, one bias);
// cnt < 8 only at the end of yT rows.
__device__ __forceinline__ void epi_vec8(const VnmEpi &e, float (&v)[8], int64_t o, int64_t t, bool along_tokens,
                                         int cnt) {
    const int64_t off = vnm_epi_offset(e, o, t);
    if (e.bias) {
        if (along_tokens) {
            const float b = __bfloat162float(e.bias[o]);
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] += b;
        } else {
            uint4 b = *(const uint4 *)(e.bias + o);
            const __nv_bfloat16 *bb = (const __nv_bfloat16 *)&b;
#pragma unroll
            for (int k = 0; k < 8; k++) v[k] += __bfloat162float(bb[k]);
        }
    }
    if (e.act == VNM_ACT_GELU)
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = vnm_gelu(v[k]);
    if (cnt < 8) {
#pragma unroll
        for (int k = 0; k < 8; k++)
            if (k < cnt) e.y[off + k] = __float2bfloat16(v[k] + (e.residual ? __bfloat162float(e.residual[off + k]) : 0.0f));
        return;
    }
    if (e.residual) {
        uint4 rs = *(const uint4 *)(e.residual + off);
        const __nv_bfloat16 *rr = (const __nv_bfloat16 *)&rs;
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] += __bfloat162float(rr[k]);
    }
    uint4 out;
    __nv_bfloat16 *ob = (__nv_bfloat16 *)&out;
#pragma unroll
    for (int k = 0; k < 8; k++) ob[k] = __float2bfloat16(v[k]);
    *(uint4 *)(e.y + off) = out;
}

// Stream-K (TMA filler, when the tiles fill the last round of persistent CTAs badly): all but the
// last one or two rounds of tiles run as whole tiles, CTA b taking tiles b, b + G, ... (a round's
// tiles are adjacent, so the CTAs share x and W in L2); the last tiles (between G and 2G - 1, or all
// when fewer) are cut into U (tile, ring stage) units, CTA b running units [U·b/G, U·(b+1)/G) in
// order, so a tile can be split between consecutive CTAs. The CTA that runs a tile's stage 0 owns
// it: it runs those stages at the end of its range, after the CTAs that run the tile's later stages
// did so at the start of theirs, then adds their partial sums (e.ws, slot = their CTA) and runs
// the epilogue. (Stream-K over all tiles ran up to 40 % slower than without: every CTA on a
// different part of x and W at once, beyond L2.)
constexpr int SK_SLOT_FLOATS = BM * 192;  // one CTA's partial sums (tiles up to 192 tokens)
__device__ __forceinline__ int64_t sk_begin(int64_t units, int64_t b, int64_t G) { return units * b / G; }

// The first tile of the stream-K part (above).
__device__ __forceinline__ int64_t sk_first_tile(int64_t tiles, int64_t G) {
    return tiles >= 2 * G ? (tiles / G - 1) * G : 0;
}

// The segments a CTA runs: (tile, stages [s0, s1)), whole tiles blockIdx.x, + gridDim.x, ...,
// then with stream-K its range of units.
struct Segments {
    int64_t sk_tile0, u, u_end, tile;  // sk_tile0: the first stream-K tile (all tiles without stream-K)
    int nstages;
    __device__ Segments(int64_t tiles, int ns, bool sk) : tile(blockIdx.x), nstages(ns) {
        sk_tile0 = sk ? sk_first_tile(tiles, gridDim.x) : tiles;
        const int64_t units = sk ? (tiles - sk_tile0) * ns : 0;
        u = sk_begin(units, blockIdx.x, gridDim.x);
        u_end = sk_begin(units, blockIdx.x + 1, gridDim.x);
    }
    __device__ bool next(int64_t &t, int &s0, int &s1) {
        if (tile < sk_tile0) {
            t = tile, s0 = 0, s1 = nstages;
            tile += gridDim.x;
            return true;
        }
        if (u >= u_end) return false;
        t = sk_tile0 + u / nstages, s0 = (int)(u % nstages);
        s1 = (int)min((int64_t)nstages, s0 + (u_end - u));
        u += s1 - s0;
        return true;
    }
};

// Warp-specialized kernel: warpgroup 0 fills the ring (bulk copies of the stage's A fragments and
// metadata, plus B by TMA or by 128 gathering threads), warpgroups 1 and 2 issue the wgmmas (rows
// 128(w-1) .. +127 of the 256-row tile), reading A and the metadata from shared memory into
// registers right before. full/empty mbarriers per stage; one wgmma group stays in flight.
// x is xT (in × e.ld) for the rows filler.
// The TMA kernels' tensor maps: x (B tiles), y and the residual (epilogue, when y_store).
struct TmaMaps {
    CUtensorMap x, y, r;
    int y_store;    // the bf16 epilogue: y by bulk stores (and a residual, if any, by bulk loads)
    int64_t band;   // the tile order: row tiles per band (tile_band)
};

template <int FILL, int TN = BN, int RG = 2>
__global__ void __launch_bounds__(384, 1)
    vnm_wgmma_sp_kernel(VnmDev d, const uint16_t *__restrict__ x, VnmEpi e, const __grid_constant__ TmaMaps maps) {
#ifdef VNM_SM90A
    using CF = Cfg<FILL, TN, RG>;
    extern __shared__ uint8_t smem_raw[];
    uint8_t *smem = (uint8_t *)(((uintptr_t)smem_raw + 1023) & ~(uintptr_t)1023);
    const uint32_t smem_base = (uint32_t)__cvta_generic_to_shared(smem);
    const uint32_t full_bar = smem_base + CF::BAR_OFFSET, empty_bar = full_bar + 8 * CF::NST;

    const int tid = threadIdx.x, wg = tid >> 7, lane = tid & 31;
    // Output tiles in launch order: bands of maps.band row tiles, a band's tiles before the next
    // band's, row tiles fastest within it (consecutive tiles share their x tile; see tile_band). A CTA
    // takes tiles blockIdx.x, + gridDim.x, ... (one tile per CTA for the non-persistent fillers).
    const int64_t row_tiles = d.out_pad / CF::BMT, token_tiles = (e.n + TN - 1) / TN;
    const int64_t num_tiles = row_tiles * token_tiles, band_tiles = maps.band * token_tiles;
    auto band_rows = [&](int64_t tile) { return min(maps.band, row_tiles - tile / band_tiles * maps.band); };
    auto tile_row0 = [&](int64_t tile) {
        return (tile / band_tiles * maps.band + tile % band_tiles % band_rows(tile)) * CF::BMT;
    };
    auto tile_t0 = [&](int64_t tile) { return tile % band_tiles / band_rows(tile) * TN; };
    const int nstages = (int)(d.KT / CF::KS);
    const int ntiles = CF::TMA ? 1 : d.group_rows % 256 == 0 ? 1 : d.group_rows % 128 == 0 ? 2 : 4;
    auto slot_addr = [&](int slot) { return smem_base + (uint32_t)(slot * CF::SLOT_BYTES); };
    auto tile_addr = [&](int slot, int k) { return slot_addr(slot) + (uint32_t)(k * CF::TILE_BYTES); };
    auto a_addr = [&](int slot) { return slot_addr(slot) + (uint32_t)(CF::MAXT * CF::TILE_BYTES); };
    auto m_addr = [&](int slot) { return a_addr(slot) + (uint32_t)CF::A_BYTES; };

    // Pairs (RG = 1 launched in 2-CTA clusters): the two CTAs run tiles 2p and 2p + 1 (adjacent row
    // tiles of one token tile) in step; each loads half of the shared x tile and multicasts it to
    // both, so a ring slot is refilled only once the consumers of both CTAs have released it (their
    // warps arrive on both CTAs' empty barriers).
    const bool pair = RG == 1 && cluster_size() == 2;
    const uint32_t rank = pair ? cluster_rank() : 0;
    if (tid == 0) {
        for (int b = 0; b < CF::NST; b++) {
            mbar_init(full_bar + 8 * b, CF::TMA ? 1 : 128);
            mbar_init(empty_bar + 8 * b, pair ? 16 : 8);  // one arrival per consumer warp (of both CTAs)
        }
        mbar_init(empty_bar + 8 * CF::NST, 1), mbar_init(empty_bar + 8 * CF::NST + 8, 1);  // residual loads
        fence_mbarrier_init();
    }
    if (pair) cluster_sync_all();  // the peer's barriers exist before we multicast or arrive there
    else __syncthreads();
    // Releases ring slot `slot` (one thread per consumer warp): with pairs also on the peer.
    auto release = [&](int slot) {
        mbar_arrive(empty_bar + 8 * slot);
        if (pair) mbar_arrive_remote(empty_bar + 8 * slot, rank ^ 1);
    };

    if (wg == 0) {
        // ================= producer =================
        setmaxnreg_dec<CF::PRODUCER_REGS>();
        // The stage's A fragments and metadata: one contiguous block each (vnm_frag_index), or in the
        // SS layout one block with both (vnm_ss_block) and so one bulk copy (Session 11: 2 instead of
        // 3 copies per stage 0-5 % faster, 4 23 % slower; probe_copy alone: no cost per copy, Session 13).
        auto copy_a = [&](int64_t row0, int s, int slot, uint32_t extra_tx) {
            const uint32_t bar = full_bar + 8 * slot;
            if (CF::TMA) mbar_arrive_expect_tx(bar, CF::A_BYTES + CF::META_BYTES + extra_tx);
            else mbar_expect_tx(bar, CF::A_BYTES + CF::META_BYTES);
            if (CF::SS) {  // the tile's SS block (RG = 2) or its half (RG = 1)
                const uint32_t *src = (const uint32_t *)d.vals + vnm_ss_block(row0 / 256, s, d.KT) +
                                      (RG == 1 ? (row0 / 128 % 2) * VNM_SS_HALF_WORDS : 0);
                bulk_load(a_addr(slot), src, CF::A_BYTES + CF::META_BYTES, bar);
                return;
            }
            const int64_t base = vnm_frag_index(row0 / 16, (int64_t)CF::KS * s, d.KT, 0);
            bulk_load(a_addr(slot), d.vals + base, CF::A_BYTES, bar);
            bulk_load(m_addr(slot), d.meta + base, CF::META_BYTES, bar);
        };
        if (CF::TMA) {
            if (tid == 0) {
                int gs = 0;  // ring stages filled over all tiles of this CTA
                Segments seg(num_tiles, nstages, e.ws != NULL);
                int64_t tile;
                int s0, s1;
                while (seg.next(tile, s0, s1)) {
                    // Once per tile: a 64-bit division by a runtime value is a software loop, and this one
                    // thread issues every copy (Session 14: done per stage, they made the kernel 1.10-1.13×
                    // slower, 4096², n = 2048: 74.0 vs 66.5-67.2 µs on an H200).
                    const int64_t row0 = tile_row0(tile), t0 = tile_t0(tile);
                    for (int s = s0; s < s1; s++, gs++) {
                        const int slot = gs % CF::NST;
                        if (gs >= CF::NST) mbar_wait(empty_bar + 8 * slot, (uint32_t)((gs / CF::NST - 1) & 1));
                        copy_a(row0, s, slot, CF::TILE_BYTES);
                        if (pair)  // our half of the tokens, to both CTAs
                            tma_load_2d_multicast(tile_addr(slot, 0) + rank * (CF::TILE_BYTES / 2), &maps.x,
                                                  full_bar + 8 * slot, 64 * s, (int)(t0 + rank * (TN / 2)), 3);
                        else
                            tma_load_2d(tile_addr(slot, 0), &maps.x, full_bar + 8 * slot, 64 * s, (int)t0);
                    }
                }
                // Pairs: the peer's consumers arrive on our empty barriers until they release their
                // last stages; our shared memory must outlive those arrives.
                if (pair)
                    for (int g = max(0, gs - CF::NST); g < gs; g++)
                        mbar_wait(empty_bar + 8 * (g % CF::NST), (uint32_t)((g / CF::NST) & 1));
            }
            return;
        }
        const int64_t row0 = tile_row0(blockIdx.x), t0 = tile_t0(blockIdx.x);
        const int64_t KB = d.KT * 8;
        int64_t group[4];  // gather group of tile k
        vnm_tile_groups(d, row0, ntiles, BM / ntiles, group);
        auto begin_stage = [&](int s, int slot) {
            if (s >= CF::NST) mbar_wait(empty_bar + 8 * slot, (uint32_t)((s / CF::NST - 1) & 1));
            if (tid == 0) copy_a(row0, s, slot, 0);
        };
        if (FILL == VNM_FILL_ROWS) {
            // Thread = 16-byte chunk c (tokens 8c .. 8c+7) of the 4 kept channels of column block jb
            // (k-rows 4jb .. 4jb+3) of the k-step, in every tile: a warp copies 2 whole 256-byte rows
            // of xT per instruction. The channels, one 8-byte load per tile (cols[(g·KB + 8s + jb)·4
            // ..]), are loaded FM_PREFETCH stages ahead so that their latency does not serialize the
            // stages. Tokens >= n and padding blocks (>= C) are zero-filled.
            constexpr int PF = FM_PREFETCH;
            const int c = tid & 15, jb = tid >> 4;
            const int64_t t = t0 + 8 * c;
            const uint32_t bytes = t >= e.n ? 0u : (uint32_t)min((int64_t)16, 2 * (e.n - t));
            const uint16_t *xt = x + (bytes ? t : 0);
            const uint2 *cols[4];  // block jb of k-step 0 in each tile's channel list
#pragma unroll
            for (int k = 0; k < 4; k++) cols[k] = (const uint2 *)(d.cols + (group[k] * KB + jb) * 4);
            auto block_ok = [&](int s) { return bytes && s < nstages && 8 * (int64_t)s + jb < d.C; };
            auto load_cols = [&](int s, uint2 (&q)[4]) {
                const bool ok = block_ok(s);
#pragma unroll
                for (int k = 0; k < 4; k++) q[k] = ok && k < ntiles ? __ldg(cols[k] + 8 * s) : make_uint2(0, 0);
            };
            uint2 ch[PF][4];
#pragma unroll
            for (int u = 0; u < PF; u++) load_cols(u, ch[u]);
            for (int s0 = 0; s0 < nstages; s0 += PF)
#pragma unroll
                for (int u = 0; u < PF; u++) {
                    const int s = s0 + u, slot = s % CF::NST;
                    if (s >= nstages) break;
                    begin_stage(s, slot);
                    const uint32_t nb = block_ok(s) ? bytes : 0u;
#pragma unroll
                    for (int k = 0; k < 4; k++) {
                        if (k >= ntiles) break;
#pragma unroll
                        for (int i = 0; i < 4; i++) {
                            const uint32_t w = i < 2 ? ch[u][k].x : ch[u][k].y, chan = (w >> (16 * (i & 1))) & 0xffff;
                            cp_async16(tile_addr(slot, k) + swz_mn(4 * jb + i, c), xt + (int64_t)chan * e.ld, nb);
                        }
                    }
                    cp_async_arrive(full_bar + 8 * slot);
                    load_cols(s + PF, ch[u]);
                }
            return;
        }
        const int j = tid & 15, tq = tid >> 4;  // block j of the stage; tokens tq + 8*i, i < 16
        auto end_stage = [&](int slot) {
            fence_proxy_async();
            mbar_arrive(full_bar + 8 * slot);
        };
        if (FILL == VNM_FILL_GENERIC) {
            for (int s = 0; s < nstages; s++) {
                const int slot = s % CF::NST;
                begin_stage(s, slot);
                const int64_t cb = (int64_t)s * 16 + j;
                for (int k = 0; k < ntiles; k++) {
                    const int64_t g = group[k];
#pragma unroll 4
                    for (int i = 0; i < 16; i++) {
                        const int64_t t = t0 + tq + 8 * i;
                        uint2 v = (t < e.n && cb < d.C) ? vnm_gather_generic(d, x + t * d.in, g, cb) : make_uint2(0, 0);
                        st_shared_v2(tile_addr(slot, k) + swz(tq + 8 * i, j), v);
                    }
                }
                end_stage(slot);
            }
            return;
        }
        // Window filler: quarter-stages of 4 tokens per thread, loads one quarter ahead of the
        // stores (two register sets, unrolled by 2); the selectors of a stage are loaded with its
        // first quarter and taken over when its stores begin.
        uint4 win[2][4];
        uint2 sv_next[4], sv_cur[4];
        auto load_q = [&](int h, uint4 (&w)[4]) {
            const int s = h >> 2, quarter = h & 3;
            const int64_t cb = (int64_t)s * 16 + j;
            const int64_t e0 = (d.M * cb) & ~1LL;
            const bool ok = cb < d.C;
            const int64_t tb = t0 + tq + 32 * quarter;
            const uint16_t *p = x + tb * d.in + e0;
#pragma unroll
            for (int i = 0; i < 4; i++, p += 8 * d.in) {
                uint4 v = make_uint4(0, 0, 0, 0);
                if (ok && tb + 8 * i < e.n) {
                    if (d.M == 8) {
                        v = ldg_nc_v4(p);
                    } else {
                        v.x = ldg_nc_u32(p);
                        if (e0 + 2 < d.in) v.y = ldg_nc_u32(p + 2);
                        if (e0 + 4 < d.in) v.z = ldg_nc_u32(p + 4);
                        if (e0 + 6 < d.in) v.w = ldg_nc_u32(p + 6);
                    }
                }
                w[i] = v;
            }
            if (quarter == 0)
#pragma unroll
                for (int k = 0; k < 4; k++)
                    if (k < ntiles) sv_next[k] = ok ? *(const uint2 *)(d.sel + (group[k] * KB + cb) * 2) : make_uint2(0, 0);
        };
        // L1 prefetch of the x rows of stage s (thread = token): the quarter loads then hit L1.
        auto prefetch_stage = [&](int s) {
            const int64_t t = t0 + tid;
            if (s >= nstages || t >= e.n) return;
            const int64_t c0 = (int64_t)d.M * 16 * s, c1 = min(c0 + (int64_t)d.M * 16, d.in);
            const char *row = (const char *)(x + t * d.in);
            for (uintptr_t a = ((uintptr_t)(row + 2 * c0)) & ~(uintptr_t)127; a < (uintptr_t)(row + 2 * c1); a += 128)
                asm volatile("prefetch.global.L1 [%0];" ::"l"(a));
        };
        auto store_q = [&](int h, const uint4 (&w)[4]) {
            const int s = h >> 2, quarter = h & 3, slot = s % CF::NST;
            if (quarter == 0) {
                prefetch_stage(s + 1);
                begin_stage(s, slot);
#pragma unroll
                for (int k = 0; k < 4; k++) sv_cur[k] = sv_next[k];
            }
#pragma unroll
            for (int k = 0; k < 4; k++) {
                if (k >= ntiles) break;
#pragma unroll
                for (int i = 0; i < 4; i++)
                    st_shared_v2(tile_addr(slot, k) + swz(tq + 32 * quarter + 8 * i, j), vnm_select_window(w[i], sv_cur[k]));
            }
            if (quarter == 3) end_stage(slot);
        };
        const int nq = 4 * nstages;
        prefetch_stage(0);
        load_q(0, win[0]);
        for (int h = 0; h < nq; h += 2) {
            load_q(h + 1, win[1]);
            store_q(h, win[0]);
            if (h + 2 < nq) load_q(h + 2, win[0]);
            store_q(h + 1, win[1]);
        }
        return;
    }

    // ================= consumers =================
    setmaxnreg_inc<CF::CONSUMER_REGS>();
    constexpr int KS = CF::KS;
    const int cw = wg - 1, wl = (tid >> 5) & 3, wt = tid & 127;
    uint4 A[2][RG][KS];  // [register slot][row group][k-step] (not used by the SS kernel)
    uint32_t Mt[2][RG][KS];  // metadata words (SS: [slot][row group][0] covers both k-steps)
    constexpr int NACC = TN / 2;  // accumulators per thread and m64 row group
    float acc[RG][NACC];
    // SS layout (train/vnm_device_layout.h): this warpgroup's row group r is row group hr(r) of the
    // SS half-block at half_off in the stage (RG = 2: the stage holds the whole block, warpgroup
    // cw reads half cw; RG = 1: the stage holds the tile's half, warpgroup cw reads row group cw).
    const uint32_t half_off = RG == 2 ? (uint32_t)(cw * 4 * VNM_SS_HALF_WORDS) : 0u;
    auto hr = [&](int r) { return RG == 2 ? r : cw; };

    // Ring stage gs (counted over all tiles of the CTA).
    auto mma_stage = [&](int gs, uint4 (&a)[RG][KS], uint32_t (&m)[RG][KS]) {
        const int slot = gs % CF::NST;
        mbar_wait(full_bar + 8 * slot, (uint32_t)((gs / CF::NST) & 1));
        if (!CF::TMA) fence_proxy_async();  // acquired generic-proxy writes -> our async-proxy reads
#pragma unroll
        for (int r = 0; r < RG; r++)
#pragma unroll
            for (int kk = 0; kk < KS; kk++) {
                if (CF::SS) {  // one metadata word per row group and stage (vnm_ss_meta_word)
                    if (kk == 0) m[r][0] = lds_u32(a_addr(slot) + half_off + 4 * (2048 + (hr(r) * 4 + wl) * 32 + lane));
                    continue;
                }
                const uint32_t idx = (uint32_t)(((kk * 4 + 2 * cw + r) * 4 + wl) * 32 + lane);
                a[r][kk] = lds_v4(a_addr(slot) + 16 * idx);
                m[r][kk] = lds_u32(m_addr(slot) + 4 * idx);
            }
        wgmma_fence();
#pragma unroll
        for (int kk = 0; kk < KS; kk++)
#pragma unroll
            for (int r = 0; r < RG; r++) {
                const uint32_t tile = tile_addr(slot, (2 * cw + r) * ntiles / 4);
                if constexpr (CF::SS) {
                    // Our row group r of k-step kk: 2 KB of A; the word's selector-kk threads hold its metadata.
                    const uint64_t da = a_desc_ss(a_addr(slot) + half_off + kk * 4096 + hr(r) * 2048);
                    if (kk == 0) wgmma_sp_ss<0>(acc[r], da, b_desc(tile), m[r][0]);
                    else wgmma_sp_ss<1>(acc[r], da, b_desc(tile + 64), m[r][0]);
                } else if (CF::ROWS)
                    wgmma_sp_m64n128k32<0, 1>(acc[r], a[r][kk], b_desc_mn(tile + kk * 4 * MN_SBO), m[r][kk]);
                else
                    wgmma_sp_m64n128k32<0, 0>(acc[r], a[r][kk], b_desc(tile + kk * 64), m[r][kk]);
            }
        wgmma_commit();
    };
    // Waits for all but the last wgmma group, then releases the slot of the stage before it.
    auto retire = [&](int gs_prev, uint4 (&a_prev)[RG][KS], uint32_t (&m_prev)[RG][KS], bool all) {
        if (all) wgmma_wait_all();
        else wgmma_wait_1();
#pragma unroll
        for (int r = 0; r < RG; r++)
#pragma unroll
            for (int kk = 0; kk < KS; kk++) {
                if (CF::SS) keep_word(m_prev[r][0]);
                else keep_operand(a_prev[r][kk], m_prev[r][kk]);
            }
        if (gs_prev >= 0 && lane == 0) release(gs_prev % CF::NST);
    };
    // Whether this warpgroup has rows of the tile (e.g. out % 256 <= 128 leaves the last 256-row tile's second half empty).
    auto busy = [&](int64_t tile) { return tile_row0(tile) + 64 * RG * cw < e.out; };
    // Accumulator i of row group r: row acc_row(i) of the group, token acc_tok(i) (wgmma D fragment).
    const int g = lane >> 2, tig = lane & 3;
    auto acc_row = [&](int i) { return 16 * wl + g + ((i & 2) ? 8 : 0); };
    auto acc_tok = [&](int i) { return 8 * (i >> 2) + 2 * tig + (i & 1); };
    // Staging of one m64 row group at a time per warpgroup: [token][row] (EPI_PITCH) for token-major
    // y, [row][token] (EPI_PITCH_FM) for yT, so that 8 consecutive floats are 8 consecutive elements
    // of the output. In the ring for one-tile CTAs (after every consumer is done with it).
    const uint32_t stg = smem_base + (uint32_t)(CF::EPI_OFFSET + cw * CF::EPI_BYTES);  // shared address
    // Token-major y with row_perm is stored straight from the accumulators instead (scalar stores).
    const bool staged = CF::ROWS || !e.perm;
    auto wg_bar = [&]() { asm volatile("bar.sync %0, 128;" ::"r"(2 + cw) : "memory"); };

    // Token-major y without row permutation in the persistent kernels (maps.y_store): act(acc + bias)
    // (+ residual) rounded to bf16 in registers, both row groups of EPI_TOK tokens per pass staged
    // as [row group][token][64 rows] bf16 by stmatrix (the 16-byte chunks of a token XOR-swizzled
    // by token % 8, which is the 128-byte swizzle of the tensor maps: conflict-free), then written
    // to y by bulk tensor stores: the consumers go on with the next tile while the copy drains and
    // wait only until it has read the staging before they write it again.
    // The residual tile comes into the staging by bulk tensor loads (pass 0's when the tile's
    // reduction starts), is read back by ldmatrix in the accumulators' layout and added before the
    // rounding. GELU and the residual are template flags (GELU_, RES_ as integral constants) so that
    // each variant is straight-line code: per-group branches over the inlined erf made the epilogue
    // jump over cold code and cost more than the fp32 staging (H200, Session 10).
    const bool tma_store = CF::PERSIST && maps.y_store, res = tma_store && e.residual;
    const uint32_t res_bar = empty_bar + 8 * (CF::NST + cw);
    uint32_t res_phase = 0;
    auto load_residual = [&](int64_t row0, int64_t t0, int h) {  // one thread; the staging is free
        mbar_arrive_expect_tx(res_bar, RG * CF::EPI_TOK * 128);
#pragma unroll
        for (int r = 0; r < RG; r++)
            tma_load_2d(stg + (uint32_t)(r * CF::EPI_TOK * 128), &maps.r, res_bar, (int)(row0 + 64 * (RG * cw + r)),
                        (int)(t0 + CF::EPI_TOK * h));
    };
    auto epilogue_bf16 = [&](int64_t row0, int64_t t0, auto GELU_, auto RES_) {
        constexpr bool GELU = decltype(GELU_)::value, RES = decltype(RES_)::value;
        float bias[RG][2];  // rows g and g + 8 of this warp's 16 in each row group
#pragma unroll
        for (int r = 0; r < RG; r++)
#pragma unroll
            for (int hf = 0; hf < 2; hf++) {
                const int64_t row = row0 + 64 * (RG * cw + r) + 16 * wl + g + 8 * hf;
                bias[r][hf] = e.bias && row < e.out ? __bfloat162float(e.bias[row]) : 0.0f;
            }
        auto value = [&](int r, int i, int hf) {
            const float v = acc[r][i] + bias[r][hf];
            return GELU ? vnm_gelu(v) : v;
        };
        const int mi = lane >> 3, k = lane & 7;  // the stmatrix row this lane addresses
        auto chunk = [&](int r, int t, int c) { return stg + (uint32_t)((r * CF::EPI_TOK + t) * 128 + ((c ^ (t & 7)) << 4)); };
#pragma unroll
        for (int h = 0; h < CF::EPI_PASSES; h++) {
            // the last bulk store has read the staging (waited for before the reduction at pass 0)
            if (wt == 0 && h > 0) {
                bulk_wait_read_all();
                if (RES) load_residual(row0, t0, h);
            }
            wg_bar();
            if (RES) mbar_wait(res_bar, res_phase), res_phase ^= 1;
#pragma unroll
            for (int r = 0; r < RG; r++)
#pragma unroll
                for (int jj = 0; jj < CF::EPI_TOK / 16; jj++) {  // token blocks j, j + 1 × row halves
                    const int j = CF::EPI_TOK / 8 * h + 2 * jj;
                    const uint32_t addr = chunk(r, 16 * jj + 8 * (mi >> 1) + k, 2 * wl + (mi & 1));
                    uint32_t q[4];
                    if (RES) ldmatrix_x4_trans(addr, q);
#pragma unroll
                    for (int m = 0; m < 4; m++) {
                        const int i = 4 * (j + (m >> 1)) + 2 * (m & 1);
                        float lo = value(r, i, m & 1), hi = value(r, i + 1, m & 1);
                        if (RES) {
                            const float2 rv = __bfloat1622float2(*(__nv_bfloat162 *)&q[m]);
                            lo += rv.x, hi += rv.y;
                        }
                        __nv_bfloat162 p = __floats2bfloat162_rn(lo, hi);
                        q[m] = *(uint32_t *)&p;
                    }
                    stmatrix_x4_trans(addr, q);
                }
            fence_proxy_async();  // our writes -> the bulk copy's reads
            wg_bar();
            if (wt == 0) {
#pragma unroll
                for (int r = 0; r < RG; r++)
                    tma_store_2d(&maps.y, chunk(r, 0, 0), (int)(row0 + 64 * (RG * cw + r)), (int)(t0 + CF::EPI_TOK * h));
                bulk_commit();
            }
        }
    };

    const bool sk = e.ws != NULL;  // stream-K (TMA filler only)
    // Stream-K: the partial sums of this warpgroup's accumulators in CTA b's slot, one float per
    // thread and accumulator, coalesced.
    auto partial = [&](int64_t b, int r, int i) { return e.ws + b * SK_SLOT_FLOATS + ((cw * RG + r) * NACC + i) * 128 + wt; };
    Segments seg(num_tiles, nstages, sk);
    int64_t tile;
    int s0, s1;
    int gs_next = 0;  // ring stages consumed before this segment
    while (seg.next(tile, s0, s1)) {
        const int gs0 = gs_next, ns = s1 - s0;
        gs_next += ns;
        const int64_t row0 = tile_row0(tile), t0 = tile_t0(tile);
        const bool contributor = s0 > 0;  // stream-K: not the tile's owner (see Segments)
        if (!busy(tile)) {
            // Only padding rows (out % 256 <= 128 in the last row tile): no wgmmas, so that the
            // other warpgroup has the tensor cores to itself; the ring stages are still released.
            for (int s = 0; s < ns; s++) {
                mbar_wait(full_bar + 8 * ((gs0 + s) % CF::NST), (uint32_t)(((gs0 + s) / CF::NST) & 1));
                if (lane == 0) release((gs0 + s) % CF::NST);
            }
            if ((!CF::PERSIST && staged) || contributor) consumer_bar();  // the busy warpgroup waits for us
            continue;
        }
#pragma unroll
        for (int r = 0; r < RG; r++)
#pragma unroll
            for (int i = 0; i < NACC; i++) acc[r][i] = 0.0f;
        if (tma_store && !contributor && wt == 0) {  // the staging for pass 0 of this tile's epilogue
            bulk_wait_read_all();
            if (res) load_residual(row0, t0, 0);
        }
        for (int s = 0; s < ns; s += 2) {
            mma_stage(gs0 + s, A[0], Mt[0]);
            retire(s >= 1 ? gs0 + s - 1 : -1, A[1], Mt[1], false);
            if (s + 1 >= ns) break;
            mma_stage(gs0 + s + 1, A[1], Mt[1]);
            retire(gs0 + s, A[0], Mt[0], false);
        }
        // The segment's last stage (both slots kept live through the wait).
        retire(gs0 + ns - 1, A[0], Mt[0], true);
        retire(-1, A[1], Mt[1], true);
#pragma unroll
        for (int r = 0; r < RG; r++)
#pragma unroll
            for (int i = 0; i < NACC; i++) fence_operand(acc[r][i]);
        if (contributor) {  // partial sums for the owner; the slot is this CTA's (only its first segment can start mid-tile)
#pragma unroll
            for (int r = 0; r < RG; r++)
#pragma unroll
                for (int i = 0; i < NACC; i++) __stcg(partial(blockIdx.x, r, i), acc[r][i]);
            __threadfence();
            consumer_bar();
            if (tid == 128) flag_set(e.flags + blockIdx.x);
            continue;
        }
        if (s1 < nstages) {
            // Owner of a split tile: add the partial sums of the CTAs that ran its stages s1 ..
            const int64_t G = gridDim.x, tile0 = sk_first_tile(num_tiles, G), units = (num_tiles - tile0) * nstages;
            for (int64_t b = blockIdx.x + 1; b < G && sk_begin(units, b, G) < (tile - tile0 + 1) * nstages; b++) {
                if (wt == 0) flag_wait(e.flags + b);
                wg_bar();
#pragma unroll
                for (int r = 0; r < RG; r++)
#pragma unroll
                    for (int i = 0; i < NACC; i++) acc[r][i] += __ldcg(partial(b, r, i));
            }
        }

        // ---- epilogue ----
        if (!staged) {
#pragma unroll
            for (int r = 0; r < RG; r++)
#pragma unroll
                for (int i = 0; i < NACC; i++)
                    vnm_epi_store(e, acc[r][i], row0 + 64 * (RG * cw + r) + acc_row(i), t0 + acc_tok(i));
            continue;
        }
        if (!CF::PERSIST) consumer_bar();  // every consumer is done reading the B ring
        if (tma_store) {
            using yes = std::true_type;
            using no = std::false_type;
            if (e.act == VNM_ACT_GELU) res ? epilogue_bf16(row0, t0, yes(), yes()) : epilogue_bf16(row0, t0, yes(), no());
            else res ? epilogue_bf16(row0, t0, no(), yes()) : epilogue_bf16(row0, t0, no(), no());
            continue;
        }
        if constexpr (RG == 2) {  // (RG = 1 runs only with the bf16 epilogue: launch)
#pragma unroll
        for (int pass = 0; pass < 2 * CF::EPI_PASSES; pass++) {  // row group r, tokens EPI_TOK·h ..
            const int r = pass / CF::EPI_PASSES, h = pass % CF::EPI_PASSES;
            constexpr int PI = NACC / CF::EPI_PASSES;  // accumulators per pass
#pragma unroll
            for (int i = 0; i < NACC; i += 2) {
                if (i / PI != h) continue;
                const int row = acc_row(i), t = acc_tok(i) - CF::EPI_TOK * h;
                if (CF::ROWS) {
                    sts_v2_f32(stg + 4 * (row * EPI_PITCH_FM + t), acc[r][i], acc[r][i + 1]);
                } else {
                    sts_f32(stg + 4 * (t * EPI_PITCH + row), acc[r][i]);
                    sts_f32(stg + 4 * ((t + 1) * EPI_PITCH + row), acc[r][i + 1]);
                }
            }
            wg_bar();
            for (int c = wt; c < 64 * CF::EPI_TOK / 8; c += 128) {
                const int rl = CF::ROWS ? c / (BN / 8) : 8 * (c % 8);
                const int tl = CF::ROWS ? 8 * (c % (BN / 8)) : c / 8;
                const int64_t row = row0 + 64 * (2 * cw + r) + rl, t = t0 + CF::EPI_TOK * h + tl;
                if (t >= e.n || row >= e.out) continue;
                const uint32_t src = stg + 4 * (CF::ROWS ? rl * EPI_PITCH_FM + tl : tl * EPI_PITCH + rl);
                const float4 a0 = lds_v4_f32(src), a1 = lds_v4_f32(src + 16);
                float v[8] = {a0.x, a0.y, a0.z, a0.w, a1.x, a1.y, a1.z, a1.w};
                const int64_t o = CF::ROWS && e.perm ? (int64_t)e.perm[row] : row;
                epi_vec8(e, v, o, t, CF::ROWS, CF::ROWS ? (int)min((int64_t)8, e.n - t) : 8);
            }
            wg_bar();  // the staging area is free again
        }
        }
    }
    if (tma_store && wt == 0) bulk_wait_read_all();  // shared memory must outlive the last bulk store's reads
#endif
}

// ---- host side ----
typedef CUresult (*EncodeTiledFn)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                  const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                  CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

struct TmapCache {
    const void *x;
    int64_t n;
    int tn;
    CUtensorMap map;
};

// A token-major bf16 matrix p (n × cols) in boxes of 64 columns × tn tokens, 128-byte swizzle: x
// for the TMA filler's B tiles, y for the bulk stores of the epilogue.
static int encode_map(const void *p, int64_t cols, int64_t n, int tn, CUtensorMap *map) {
    static EncodeTiledFn encode = NULL;
    if (!encode) {
        cudaDriverEntryPointQueryResult q;
        void *fn = NULL;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) != cudaSuccess ||
            q != cudaDriverEntryPointSuccess)
            return -1;
        encode = (EncodeTiledFn)fn;
    }
    cuuint64_t dims[2] = {(cuuint64_t)cols, (cuuint64_t)n};
    cuuint64_t strides[1] = {(cuuint64_t)cols * 2};
    cuuint32_t box[2] = {64, (cuuint32_t)tn}, estr[2] = {1, 1};
    CUresult r = encode(map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, (void *)p, dims, strides, box, estr,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                        CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? 0 : -1;
}

// Output tiles of bm rows × tn tokens.
static int64_t tile_count(const VnmDeviceMatrix *d, int64_t n, int tn, int bm = BM) {
    return (d->out_pad / bm) * ((n + tn - 1) / tn);
}

// The tile order (row tiles per band, the kernel's maps.band): vnm_tile_band (train/vnm_device_layout.h)
// with this device's L2 size. VNM_TILE_BAND=B forces bands of B row tiles (0: row-first).
static int64_t tile_band(int64_t row_tiles, int64_t token_tiles, double w_tile, double x_tile, int64_t G, bool pair) {
    static int env = -2;
    if (env == -2) env = env_int("VNM_TILE_BAND", -1, 0, 1 << 20);
    static double l2 = 0;
    if (l2 == 0) {
        int dev = 0, bytes = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&bytes, cudaDevAttrL2CacheSize, dev);
        l2 = bytes > 0 ? bytes : 50e6;
    }
    return vnm_tile_band(row_tiles, token_tiles, w_tile, x_tile, G, l2, pair, env);
}

// Whether the persistent TMA kernel runs stream-K (Segments): when whole tiles would leave the last
// round of CTAs less than 90 % full, there are at least 4 rounds of tiles and a tile has at least
// 32 ring stages (in >= 2048). Measured on an H200 (experiments/kernels/NOTES.md, Session 9): at
// 4096 × 4096 and 4096 × 11008, n = 8192, 192-token tiles with stream-K (688 tiles = 5.2 rounds)
// took 294 / 777 µs, the best without it 331 / 878; with fewer rounds (11008 × 4096 at n = 2048,
// DeiT-B 768 × 3072: 11 % / 28 % slower than the same tiles without) or 6-12 stages per tile (DeiT
// 384 × 384, 768 × 768) it lost. VNM_STREAMK=0 / 1: never / whenever possible.
static bool use_stream_k(int64_t tiles, int64_t nstages, int64_t G) {
    static int env = -2;
    if (env == -2) env = env_int("VNM_STREAMK", -1, 0, 1);
    if (env == 0 || tiles * nstages < G) return false;  // every CTA needs a unit (the stream-K part has >= min(tiles, G) tiles)
    const int64_t rounds = (tiles + G - 1) / G;
    return env == 1 || (nstages >= 32 && tiles >= 4 * G && tiles < 0.9 * (double)(rounds * G));
}

// Whether the persistent kernels can run the bf16 epilogue with bulk tensor stores of y (and bulk
// loads of the residual): token-major y, no row permutation, rows 16-byte aligned (VNM_TMA_STORE=0:
// the fp32 staging and 16-byte stores by the threads instead).
static bool bf16_epilogue_ok(const VnmEpi &e) {
    static int store_env = -2;
    if (store_env == -2) store_env = env_int("VNM_TMA_STORE", -1, 0, 1);
    return store_env != 0 && !e.perm && e.out % 8 == 0 && (uintptr_t)e.y % 16 == 0 && (uintptr_t)e.residual % 16 == 0;
}

// Tile of the SS kernel for n tokens: 128 or 192 tokens × 256 rows, or 256 tokens × 128 rows (the
// wide form, RG = 1, which needs the bf16 epilogue, x rows aligned to 128 bytes and at least 32 ring
// stages per tile: at DeiT's in = 768 its tiles' fixed costs made it 5-10 % slower). The smaller
// estimated time: rounds of tiles (or, with stream-K, which the wide form does not run, tiles / SMs
// + 1 for its partial sums) × rows·tokens per tile × a cost per multiply-add (shared-memory bytes:
// 0.0566 at 128 tokens, 0.0508 at 192, Cfg comment; the wide form measured 3-5 % faster than 128
// at the same rounds: 0.0543).
// It picks 128 → wide for 4096 rows × 2048 or 8192 tokens, 192 for 11008 rows × 2048 tokens (the
// wide form's 688 tiles make 5.2 rounds: 195.5 vs 185.9 µs, H200, Session 16) and the DeiT shapes.
// Stream-K's cost was half a round until Session 14, whose faster producer made 192 + stream-K lose
// to 128 at 4096 × 11008, n = 8192 (H200: 682 vs 643 µs for 64:2:8, 783 vs 745 for 2:4; 4096², n = 8192:
// 270 vs 258 and 277 vs 282). VNM_SS_TN=128 / 192 / 256 forces one (256: the wide form if it can run).
// Returns the tokens per tile; 256 means the wide form.
static int ss_tile_tokens(const VnmDeviceMatrix *d, const VnmEpi &e) {
    static int forced = -1;
    if (forced < 0) {
        forced = env_int("VNM_SS_TN", 0, 128, 256);
        if (forced % 64) forced = 0;  // 128, 192 or 256
    }
    const int64_t G = d->num_sms, nstages = d->KT / 2;
    // (and rows of x 128-byte aligned: the wide form's 32 KB x boxes made rows straddling 128-byte
    // lines cost far more than in the 256-row tiles: in = 4104, 64:2:12, 0.85× vs 1.13× dense.)
    const bool wide_ok = bf16_epilogue_ok(e) && nstages >= 32 && d->in % 64 == 0;
    if (forced) return forced == 256 && !wide_ok ? 128 : forced;
    auto cost = [&](int tn, int bm, double per_mac) {
        const int64_t tiles = tile_count(d, e.n, tn, bm);
        const bool sk = bm == BM && use_stream_k(tiles, nstages, G);
        const double rounds = sk ? (double)tiles / G + 1.0 : (double)((tiles + G - 1) / G);
        return rounds * tn * bm / BM * per_mac;
    };
    const double c128 = cost(128, BM, 0.0566), c192 = cost(192, BM, 0.0508), cwide = wide_ok ? cost(256, 128, 0.0543) : 1e30;
    return cwide <= c128 && cwide <= c192 ? 256 : c192 < c128 ? 192 : 128;
}

// CTAs of a persistent grid of 2-CTA clusters: 2 × the clusters of `kernel` launched as `cfg`
// (its cluster attribute, block and shared memory) that fit at once.
template <typename K>
static int64_t pair_ctas(const VnmDeviceMatrix *d, K kernel, cudaLaunchConfig_t cfg) {
    cfg.gridDim = dim3((unsigned)d->num_sms / 2 * 2);
    int clusters = 0;
    const bool ok = cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) == cudaSuccess && clusters > 0;
    cudaGetLastError();
    return ok ? 2 * clusters : d->num_sms / 2 * 2;
}

// RG = 1 (128-row tiles) needs the bf16 epilogue (returns 1 without launching when its tensor maps
// cannot be made) and runs in 2-CTA clusters when pair (the caller made maps.x with half-tile boxes
// then). 0: launched, -1: a CUDA error.
template <int FILL, int TN = BN, int RG = 2>
int launch(const VnmDeviceMatrix *d, const VnmDev &dev, const uint16_t *x, VnmEpi e, TmaMaps &maps,
           cudaStream_t stream, bool pair = false) {
    using CF = Cfg<FILL, TN, RG>;
    auto kernel = vnm_wgmma_sp_kernel<FILL, TN, RG>;
    static bool attr_set = false;
    if (!attr_set) {
        if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, CF::SMEM) != cudaSuccess) return -1;
        attr_set = true;
    }
    // One CTA per tile, or (persistent, VNM_PERSISTENT=0 turns it off) one per SM looping over tiles
    // or over its stream-K range.
    static int persist_env = -2;
    if (persist_env == -2) persist_env = env_int("VNM_PERSISTENT", -1, 0, 1);
    const bool persist = CF::PERSIST && persist_env != 0;
    cudaLaunchConfig_t cfg = {};  // the grid is set below
    cudaLaunchAttribute attr;
    cfg.blockDim = dim3(384), cfg.dynamicSmemBytes = CF::SMEM, cfg.stream = stream;
    if (pair) {
        attr.id = cudaLaunchAttributeClusterDimension;
        attr.val.clusterDim.x = 2, attr.val.clusterDim.y = 1, attr.val.clusterDim.z = 1;
        cfg.attrs = &attr, cfg.numAttrs = 1;
    }
    static int64_t G_pairs = 0;  // persistent CTAs in pairs (one query per kernel)
    if (pair && !G_pairs) G_pairs = pair_ctas(d, kernel, cfg);
    const int64_t tiles = tile_count(d, e.n, TN, CF::BMT), G = pair ? G_pairs : d->num_sms;
    const bool sk = persist && RG == 2 && use_stream_k(tiles, d->KT / CF::KS, G);
    const int64_t grid = sk || (persist && tiles > G) ? G : tiles;  // pairs: G and tiles are even
    const int64_t row_tiles = d->out_pad / CF::BMT;
    maps.band = tile_band(row_tiles, tiles / row_tiles, (double)(d->KT / CF::KS) * (CF::A_BYTES + CF::META_BYTES),
                          (double)TN * d->in * 2, G, pair);
    maps.y_store = CF::PERSIST && bf16_epilogue_ok(e) &&
                   (!e.residual || encode_map(e.residual, e.out, e.n, CF::EPI_TOK, &maps.r) == 0) &&
                   encode_map(e.y, e.out, e.n, CF::EPI_TOK, &maps.y) == 0;
    if (RG == 1 && !maps.y_store) return 1;  // not run (the caller falls back to the 256-row tiles)
    e.ws = NULL, e.flags = NULL;
    if (sk) {  // partial sums and flags from the stream's pool (vnm_keep_pool)
        vnm_keep_pool();
        const size_t part_bytes = (size_t)G * SK_SLOT_FLOATS * sizeof(float);
        if (cudaMallocAsync((void **)&e.ws, part_bytes + (size_t)G * sizeof(int), stream) != cudaSuccess) return -1;
        e.flags = (int *)((char *)e.ws + part_bytes);
        cudaMemsetAsync(e.flags, 0, (size_t)G * sizeof(int), stream);
    }
    cfg.gridDim = dim3((unsigned)grid);
    const cudaError_t rc = cudaLaunchKernelEx(&cfg, kernel, dev, x, e, maps);
    if (sk) cudaFreeAsync(e.ws, stream);
    return rc == cudaSuccess ? 0 : -1;
}

// 2-CTA pairs of the wide form (clusters of 2 CTAs sharing the x tile by multicast, VNM_SS_PAIR=1): as fast
// as without (H200, Session 16, within ±3 %), so off by default.
static bool ss_pairs() {
    static int env = -2;
    if (env == -2) env = env_int("VNM_SS_PAIR", -1, 0, 1);
    return env == 1;
}

}  // namespace vnm90
using namespace vnm90;

int vnm_wgmma_sp_available(void) {
    static int avail = -1;
    if (avail < 0) {
        cudaFuncAttributes a;
        avail = cudaFuncGetAttributes(&a, vnm_wgmma_sp_kernel<VNM_FILL_WINDOW>) == cudaSuccess && a.binaryVersion >= 90;
        cudaGetLastError();
    }
    return avail;
}

// x: token-major x, or xT when e.ld != 0 (feature-major: rows filler).
int vnm_launch_wgmma_sp(const VnmDeviceMatrix *d, const VnmDev &dev, const uint16_t *x, const VnmEpi &e,
                        cudaStream_t stream) {
    TmaMaps maps;
    memset(&maps, 0, sizeof maps);
    if (e.ld) return launch<VNM_FILL_ROWS>(d, dev, x, e, maps, stream);
    if (d->fill == VNM_FILL_TMA) {
        // maps.x with boxes of `box` tokens (cached per matrix: x, n and box of the last call)
        auto x_map = [&](int box) {
            VnmDeviceMatrix *dm = (VnmDeviceMatrix *)d;  // the cache is logically const
            TmapCache *c = (TmapCache *)dm->tmap_cache;
            if (!c) dm->tmap_cache = c = (TmapCache *)calloc(1, sizeof(TmapCache));
            if (c->x != x || c->n != e.n || c->tn != box) {
                if (encode_map(x, d->in, e.n, box, &c->map)) return -1;
                c->x = x, c->n = e.n, c->tn = box;
            }
            maps.x = c->map;
            return 0;
        };
        int tn = d->ss ? ss_tile_tokens(d, e) : BN;
        if (tn == 256) {  // the wide form; pairs load half an x tile each
            const bool pair = ss_pairs();
            if (x_map(pair ? 128 : 256)) return -1;
            const int rc = launch<FILL_TMA_SS, 256, 1>(d, dev, x, e, maps, stream, pair);
            if (rc <= 0) return rc;
            tn = 128;  // 1: its bf16 epilogue could not be set up; the 256-row tiles instead
        }
        if (x_map(tn)) return -1;
        if (!d->ss) return launch<VNM_FILL_TMA>(d, dev, x, e, maps, stream);
        return tn == 192 ? launch<FILL_TMA_SS, 192>(d, dev, x, e, maps, stream)
                         : launch<FILL_TMA_SS, 128>(d, dev, x, e, maps, stream);
    }
    if (d->fill == VNM_FILL_WINDOW) return launch<VNM_FILL_WINDOW>(d, dev, x, e, maps, stream);
    return launch<VNM_FILL_GENERIC>(d, dev, x, e, maps, stream);
}
