// V:N:M SpMM for decode (n <= 16 tokens) on sm_90: split-K inside a thread-block cluster.
//
// At n <= 16 the product is memory-bound: the time is reading the A fragments (values + metadata,
// 40 bytes per row per 32-wide k-step), and a kernel this short is won by having every load in
// flight at once, with no chain of dependent memory latencies. The grid is (S <= 16 splits) ×
// (groups of R 64-row tiles); the S CTAs of a group form one cluster and each takes a slice of at
// most DC_KC k-steps of every row tile of the group. R is the smallest count that lets every
// cluster be resident at once (one wave: 1 for 4096 rows, 3 for 11008). Per CTA, in this order:
//   1. the kept channels of the slice in each row tile -> shared memory (cp.async, issued first so
//      that they do not queue behind the A loads);
//   2. the loads of all A fragments and metadata words of the first row tile's slice go out, into
//      registers: warp w takes the w-th quarter of the slice's k-steps in all four 16-row tiles
//      (one 16-byte and one 4-byte load per thread, tile and k-step, coalesced, read once:
//      evict-first); up to here only weights are read, so with programmatic dependent launch
//      (kernels/pdl.cuh) all this overlaps the kernel before;
//   3. the x channels the slice can touch ([c0, c0 + xw), n tokens) are copied into shared memory,
//      independent of the column lists: by one bulk copy per token row from thread 0 when rows are
//      16-byte aligned (cp.async from every thread queued behind that thread's A loads in the
//      load/store unit: 4 k cycles at n = 16, Session 18), else by the widest aligned cp.async;
//      rows are 16 channels longer than they need to be, so that the B gathers of step 4 (a warp
//      reads 8 tokens at once) fall in different banks; with permuted input channels
//      (cols_local = 0) x is gathered from global memory instead (step 4);
//   then for each row tile of the group:
//   4. each warp gathers the B fragments of its k-steps (the kept channels of 8 tokens) straight
//      from the staged copy into registers, once for the four 16-row tiles when they share their
//      columns: no B tile in shared memory and no barrier between gather and mma (a B tile built by
//      all threads, then a barrier, cost 1-2.5 µs per layer, Session 20);
//   5. mma.sp m16n8k32 over the warp's k-steps;
//   6. the four warps' partial sums go to shared memory (DC_WLD floats per token, so that the
//      stores do not conflict) and are added; CTA s reduces about 1/S of the 64 × n outputs;
//   7. push (the default at every n since Session 21; the host decides): each CTA's share goes into
//      that CTA's receive buffer, completing bytes on its mbarrier: at n <= 8 by st.async straight
//      from the warp sum's registers, above by one bulk copy of a reduced copy in shared memory.
//      The next row tile's A loads go out into the same registers as soon as the warp's mmas are
//      done (in the wide form with bulk copies: after the sends); CTA s waits on its mbarrier and
//      sums its share over the S senders in rank order: no cluster barrier per row tile. Pull
//      (only with VNM_DECODE_PUSH_N below n and one row tile per cluster): a cluster barrier, the
//      next A loads issued between its arrive and its wait (the arrive's release is a MEMBAR.ALL.GPU
//      that waited for loads issued before it, Session 17), then CTA s reads its share from the S
//      CTAs by DSMEM. Then the epilogue. With R > 1 the buffers alternate between row tiles. No
//      global workspace, no atomics: the same result on every run.
// 5 CTAs per SM (96 registers): with 4, a 4096-row matrix had 64 clusters of 8 and only 62 could
// be resident, and the last two ran as a second wave. Reductions longer than DC_MAX_SPLIT × DC_KC
// k-steps run a wide form of this kernel, up to DC_KC_WIDE k-steps per CTA at 4 CTAs per SM
// (Llama's 4096 × 11008: 1.76× dense at n = 1 vs 1.56× through the atomic kernel, Session 19);
// longer ones the atomic split-K kernel of vnm_spmm.cu (which also serves sm_80).
// Measurements: experiments/kernels/NOTES.md, Sessions 6 and 16-21.
#include <stdlib.h>
#include <string.h>

#include "kernels/mma_sync.cuh"
#include "kernels/sm90_ptx.cuh"
#include "kernels/vnm_spmm_common.cuh"

#define DC_KC 8                   // k-steps per CTA at most (their A fragments live in registers)
#define DC_KC_WIDE 12             // ... in the wide form (4 CTAs per SM), for longer reductions (VNM_DECODE_KC=8: none)
#define DC_MAX_SPLIT 16           // CTAs per cluster (above 8: a non-portable size, allowed on H100/H200)
#define DC_STAGE_MAX (64 * 1024)  // bytes of staged x per CTA at most
#define DC_PAD_PAIR 0xffffffffu   // the channel pair of a padding column block (gather_b_frag gives 0)
#define DC_RECV_FLOATS (16 * 64 + 4 * DC_MAX_SPLIT)  // [S][share] partial sums per buffer: S·share <= 16·64 + 4·S
// Floats per token in a warp's partial sums (64 rows + 4): the accumulators of mma m16n8 put lane
// (g, tig)'s values at tokens 2·tig (+1, +8), rows g (+8, +16·tile), so with rows 64 floats apart
// the four tig of one store would hit the same banks (a 4-way conflict on every store at n > 2); 68
// apart they fall in four distinct groups of 8 banks, and each store keeps one base address plus a
// constant (an XOR swizzle did not: the compiler rebuilt the address of every store).
#define DC_WLD 68
#define DC_PUSH_MAX_N 16          // up to this n partial sums are pushed to their owners (all decode sizes; VNM_DECODE_PUSH_N=N: pulled above N unless R > 1; NOTES, Sessions 17, 20, 21)
#define DC_STASYNC_MAX_N 8        // up to this n they are pushed by st.async, above it by bulk copies (VNM_DECODE_STASYNC_N=N; Session 23)

// How a launch runs: kc_max k-steps per CTA at most; xw channels of x staged per token (0: gathered
// from global memory), rows xp >= xw channels apart in shared memory; R row tiles per cluster;
// partial sums pushed (else pulled), by st.async from the registers of the warp sum (stasync) or by
// bulk copies of a reduced copy in shared memory; xbulk: x staged by bulk copies, one per token row,
// completing on an mbarrier (rows of 16-byte multiples at 16-byte-aligned addresses), else by
// cp.async from every thread.
struct DecodeCfg {
    int kc_max, xw, xp, R;
    bool push, stasync, xbulk;
};

// Shared memory of one CTA (bytes), laid out in this order.
struct DecodeSmem {
    size_t bars, recv, part, warp_part, cols, xs, total;
};

// ntiles column lists per k-step, n tokens.
static __host__ __device__ DecodeSmem decode_smem(int ntiles, const DecodeCfg &c, int n) {
    DecodeSmem s;
    s.bars = 4 * sizeof(uint64_t);                                 // an mbarrier per receive buffer, two for x
    const int bufs = c.R > 1 ? 2 : 1;                              // row tiles alternate between two buffers
    s.recv = c.push ? bufs * DC_RECV_FLOATS * sizeof(float) : 0;   // our share's partial sums, per sender
    s.part = (size_t)(c.push ? !c.stasync : bufs) * n * 64 * sizeof(float); // our partial sums of the row tile(s) [t][r]
    s.warp_part = (size_t)4 * n * DC_WLD * sizeof(float);          // each warp's partial sums [warp][t][r], rows DC_WLD apart
    s.cols = (size_t)c.R * ntiles * c.kc_max * 8 * sizeof(uint2);  // [row tile][tile][k-step][block] channels
    s.xs = (size_t)n * c.xp * sizeof(uint16_t);                    // [token][channel - c0], rows xp apart
    s.total = s.bars + s.recv + s.part + s.warp_part + s.cols + s.xs;
    return s;
}

// A fragments and metadata words of the four 16-row tiles q0 .. q0 + 3, k-steps ks .. ks + kw - 1
// (kw <= KQ), this lane's, into registers a[tile · KQ + k]: all loads in flight at once.
template <int KQ>
__device__ __forceinline__ void load_a_tiles(const VnmDev &d, int64_t q0, int64_t ks, int kw, int lane, uint4 (&a)[4 * KQ],
                                             uint32_t (&m)[4 * KQ]) {
#pragma unroll
    for (int r16 = 0; r16 < 4; r16++)
#pragma unroll
        for (int k = 0; k < KQ; k++)
            if (k < kw) vnm_load_a_frag(d, q0 + r16, ks + k, lane, a[r16 * KQ + k], m[r16 * KQ + k]);
}

// The B fragment of mma.sp m16n8k32 (32 k × 8 tokens) of one k-step, this lane's, gathered straight
// from x: b[i] holds k = 8i + 2·tig + {0, 1}, i.e. the kept pair (tig & 1) of block j = 2i + (tig >> 1),
// whose two channels are the halves of pairs[2j + (tig & 1)]; blocks jbase + j >= C are padding.
// load_pairs: the lane's four channel pairs of one k-step, pr[i] for block 2i + (tig >> 1)
// (DC_PAD_PAIR for padding blocks).
__device__ __forceinline__ void load_pairs(uint32_t (&pr)[4], const uint32_t *pairs, int64_t jbase, int64_t C, int tig) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int j = 2 * i + (tig >> 1);
        pr[i] = jbase + j < C ? pairs[2 * j + (tig & 1)] : DC_PAD_PAIR;
    }
}
// b[i]: the two channels of pr[i] for the lane's token (channel c at r[c]: staged x or x); padding
// pairs give 0. They read channels `safe` (two valid channels), so that the loads need no branch:
// behind a branch per pair, each pair waited for its own loads before the next pair's were issued
// (Session 22: 4-9 % faster at 64:2:8, 10-16 % at 16:2:8).
__device__ __forceinline__ void gather_b_frag(uint32_t (&b)[4], const uint32_t (&pr)[4], const uint16_t *r, uint32_t safe) {
    uint32_t v[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const uint32_t p = pr[i] == DC_PAD_PAIR ? safe : pr[i];
        v[i] = vnm_pack2(r[p & 0xffff], r[p >> 16]);
    }
#pragma unroll
    for (int i = 0; i < 4; i++) b[i] = pr[i] == DC_PAD_PAIR ? 0u : v[i];
}

// NT: column lists per k-step (1 when the 64 rows of a CTA share their kept columns, 4 for 16/32-row
// groups). KC: k-steps per CTA at most, DC_KC (5 CTAs per SM) or DC_KC_WIDE (4: more registers).
template <int NT, int KC>
__global__ void __launch_bounds__(128, KC <= DC_KC ? 5 : 4) vnm_decode_cluster_kernel(VnmDev d, const uint16_t *__restrict__ x, VnmEpi e,
                                                                 DecodeCfg cfg) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#if !defined(VNM_SM90A)
    __trap();  // bulk copies, mbarriers and the cluster barrier halves are compiled for sm_90a only (sm90_ptx.cuh)
#endif
    using namespace vnm90;
    extern __shared__ __align__(16) unsigned char smem[];
    const DecodeSmem L = decode_smem(NT, cfg, (int)e.n);
    const int kc_max = cfg.kc_max, xw = cfg.xw, xp = cfg.xp, R = cfg.R;
    const bool push = cfg.push;
    uint64_t *bars = (uint64_t *)smem;
    float *recv = (float *)(smem + L.bars);
    float *part = (float *)(smem + L.bars + L.recv);
    float *warp_part = (float *)(smem + L.bars + L.recv + L.part);
    uint2 *scols = (uint2 *)(smem + L.bars + L.recv + L.part + L.warp_part);
    uint16_t *xs = (uint16_t *)(smem + L.bars + L.recv + L.part + L.warp_part + L.cols);

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int split = (int)cluster_rank(), S = (int)cluster_size();
    const int64_t rt0 = (int64_t)blockIdx.y * R, ks0 = (int64_t)split * kc_max;
    const int nrt = (int)min((int64_t)R, d.out_pad / 64 - rt0);  // row tiles of this cluster
    const int kc = (int)max((int64_t)0, min(d.KT, ks0 + kc_max) - ks0);
    const int n = (int)e.n, ntok = n <= 8 ? 8 : 16;  // tokens in the mma's B fragments (columns >= n are not stored)
    // Each warp takes its own k-steps [kw0, kw0 + kw) of the slice, in all four 16-row tiles: so the
    // B fragments it gathers are its own, not shared with the other warps (no B tile, no barrier).
    constexpr int KQ = KC / 4;  // k-steps per warp at most
    const int kq = (kc_max + 3) / 4, kw0 = warp * kq, kw = max(0, min(kc, kw0 + kq) - kw0);
    // Partial sums: element i = t·64 + r of a row tile (E in all) is reduced by CTA `owner`, whose
    // share [i0(owner), i0(owner + 1)) is a whole number of 16-byte words; every CTA sends its part of
    // it there (recv[buffer][sender][i - i0]).
    const int E = n * 64, share = 4 * ((E / 4 + S - 1) / S);
    auto i0 = [&](int rank) { return 4 * (rank * (E / 4) / S); };
    pdl_trigger();
    // The bulk copies of x complete on xbar, in the 5-CTA form those of tokens 8 .. n - 1 on xbar2
    // (the first token half's gathers and mmas start before they arrive: n = 16, 4096², 7.1 vs 7.5
    // µs; the wide form spilled with it, Session 23).
    const uint32_t xbar = smem_u32(bars + 2), xbar2 = smem_u32(bars + 3);
    const int nx0 = KC <= DC_KC && n > 8 ? 8 : n;  // tokens on xbar
    if ((push || cfg.xbulk) && tid == 0) {
        if (push) mbar_init(smem_u32(bars), 1), mbar_init(smem_u32(bars + 1), 1);
        if (cfg.xbulk) mbar_init(xbar, 1), mbar_init(xbar2, 1);
        fence_mbarrier_init();
    }
    if (push) cluster_arrive_relaxed();  // our mbarriers exist; waited for before the first send

    // 1. kept channels of the slice in each row tile -> shared memory (asynchronous, ahead of the A loads).
    for (int i = tid; i < nrt * NT * kc * 8; i += 128) {
        const int j = i & 7, kk = (i >> 3) % kc, tile = (i >> 3) / kc % NT, rt = (i >> 3) / kc / NT;
        const int64_t cb = (ks0 + kk) * 8 + j, g = ((rt0 + rt) * 64 + (NT == 1 ? 0 : 16 * tile)) / d.group_rows;
        cp_async_ca<8>(scols + ((rt * NT + tile) * kc_max + kk) * 8 + j, d.cols + (g * d.KT * 8 + cb) * 4);
    }
    // 2. A fragments and metadata of the first row tile, the warp's k-steps -> registers.
    uint4 a[4 * KQ];
    uint32_t m[4 * KQ];
    load_a_tiles<KQ>(d, rt0 * 4, ks0 + kw0, kw, lane, a, m);
    // Everything above reads weights only (so with programmatic dependent launch, kernels/pdl.cuh, it
    // overlaps the kernel before); x and y belong to the kernels around this one.
    pdl_wait();
    // 3. x channels [c0, c0 + xw) of the n tokens -> shared memory.
    const int64_t c0 = ks0 * 8 * d.M, cw = min((int64_t)xw, d.in - c0);
    if (cfg.xbulk) {  // (only with xw > 0)
        // one bulk copy per token row by thread 0 (not queued behind this thread's A loads in the
        // load/store unit, as cp.async from every thread was); channels >= cw zeroed by all
        if (tid == 0) {
            for (int t = 0; t < n; t++) {
                const uint32_t bar = t < nx0 ? xbar : xbar2;
                if (t == 0 || t == nx0) mbar_arrive_expect_tx(bar, (uint32_t)((t ? n - nx0 : nx0) * cw * 2));
                bulk_load(smem_u32(xs + t * xp), x + t * d.in + c0, (uint32_t)cw * 2, bar);
            }
        }
        for (int i = tid; i < n * (xw - cw); i += 128) xs[i / (xw - cw) * xp + cw + i % (xw - cw)] = 0;
    } else if (xw) {
        // the widest cp.async (channels) that keeps every row aligned (c0 and xp are multiples of 8 channels)
        const uintptr_t xa = (uintptr_t)x;
        const int w = d.in % 8 == 0 && xa % 16 == 0 ? 8 : d.in % 4 == 0 && xa % 8 == 0 ? 4 : d.in % 2 == 0 && xa % 4 == 0 ? 2 : 1;
        for (int t = 0; t < n; t++)
            for (int c = w * tid; c < xw; c += w * 128) {
                uint16_t *dst = xs + t * xp + c;
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
    }
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    if (cfg.xbulk) mbar_wait(xbar, 0);
    if (push) cluster_wait();  // every CTA of the cluster has initialised its mbarriers
    const int g = lane >> 2, tig = lane & 3;
    // One pointer for staged and global x: the staged reads are generic loads. Through a pointer the
    // compiler knows is shared (LDS) every kernel measured slower (Session 22).
    const uint16_t *xbase = xw ? xs - c0 : x;
    const uint32_t safe = (uint32_t)c0 * 0x10001u;  // channel c0 twice: a channel of the slice, staged or in x
    // the lane's token rows in the B fragments, g and 8 + g (tokens >= n read token n - 1): offsets in
    // staged x (channel c0 first) or in x
    int xrow[2];
    for (int nt = 0; nt < 2; nt++) xrow[nt] = min(nt * 8 + g, n - 1) * (xw ? xp : (int)d.in);
    float *wpart = warp_part + (warp * n + 2 * tig) * DC_WLD + g;  // the lane's token 2·tig, row g of the warp's partial sums
    for (int rt = 0; rt < nrt; rt++) {
        const int64_t row0 = (rt0 + rt) * 64;
        const uint32_t *tcols = (const uint32_t *)(scols + rt * NT * kc_max * 8);  // this row tile's kept channels
        if (rt > 0) __syncthreads();  // every warp is done with the last row tile's partial sums and copies
        // 4-5. Per 8 tokens and 16-row tile: the B fragments of the warp's k-steps, gathered from x
        // (once for all four tiles when they share their kept channels), then mma.sp; the tile's
        // partial sums of the warp's k-steps -> warp_part[warp][t][r].
        uint32_t pr[KQ][4];  // the channel pairs of the warp's k-steps (NT = 1: loaded once for both token halves)
        auto pairs_of = [&](int r16, int k) { load_pairs(pr[k], tcols + (r16 * kc_max + kw0 + k) * 16, (ks0 + kw0 + k) * 8, d.C, tig); };
        // Where the column pairs are loaded: 0 once for both token halves, 1 per 16-row tile (NT = 1:
        // per token half), 2 right before each gather. By register pressure (ptxas -v: no kernel
        // spills) and measured (Session 22): 2 in <4, DC_KC_WIDE> ran 16:2:8 4096x11008 at n = 1 in
        // 23.3 us against 30.0 us for 1 (which spilled 180 bytes there).
        constexpr int where = NT == 1 && KC <= DC_KC ? 0 : NT == 4 && KC > DC_KC ? 2 : 1;
        if (where == 0)
#pragma unroll
            for (int k = 0; k < KQ; k++)
                if (k < kw) pairs_of(0, k);
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            if (nt * 8 >= ntok) break;
            if (nt == 1 && rt == 0 && cfg.xbulk && nx0 < n) mbar_wait(xbar2, 0);
            uint32_t b[KQ][4];
#pragma unroll
            for (int r16 = 0; r16 < 4; r16++) {
                if (where == 1 && (NT == 4 || r16 == 0))
#pragma unroll
                    for (int k = 0; k < KQ; k++)
                        if (k < kw) pairs_of(NT == 4 ? r16 : 0, k);
                if (NT == 4 || r16 == 0)
#pragma unroll
                    for (int k = 0; k < KQ; k++)
                        if (k < kw) {
                            if (where == 2) pairs_of(NT == 4 ? r16 : 0, k);
                            gather_b_frag(b[k], pr[k], xbase + xrow[nt], safe);
                        }
                float acc[4] = {0, 0, 0, 0};
#pragma unroll
                for (int k = 0; k < KQ; k++)
                    if (k < kw) mma_sp_16832(acc, a[r16 * KQ + k], b[k], m[r16 * KQ + k]);
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int t = nt * 8 + 2 * tig + (c & 1);
                    if (t < n) wpart[(8 * nt + (c & 1)) * DC_WLD + 16 * r16 + (c >= 2 ? 8 : 0)] = acc[c];
                }
            }
        }
        // Push: the next row tile's A loads go out as soon as the warp's mmas are done, in flight
        // during the warp sum, the sends and the reduction; measured faster except in the wide form
        // with bulk copies (4096x11008, n = 16: 21.0 vs 20.6 µs; there they go out after the sends).
        // The next row tile's A loads, into the registers of this one's.
        auto load_next_a = [&] {
            if (rt + 1 < nrt) load_a_tiles<KQ>(d, (row0 + 64) / 16, ks0 + kw0, kw, lane, a, m);
        };
        const bool early_a = push && (cfg.stasync || KC <= DC_KC);
        if (early_a) load_next_a();
        __syncthreads();
        // 6. The CTA's partial sums, the four warps' added in warp order, 4 elements (rows) at a
        // time: with st.async straight to the owner of element i (recv[buffer][sender][i - i0]),
        // else -> part[t][r] (pull with R > 1: two buffers, row tiles alternating).
        const int buf = rt & 1;
        const uint32_t bar = smem_u32(bars + buf);
        float *mine = part + (push ? 0 : buf * E);
        for (int i = 4 * tid; i < E; i += 4 * 128) {
            const float4 *w = (const float4 *)(warp_part + (i >> 6) * DC_WLD + (i & 63));
            const int we = n * DC_WLD / 4;  // one warp's partial sums, in float4
            const float4 w0 = w[0], w1 = w[we], w2 = w[2 * we], w3 = w[3 * we];
            const float4 sum = make_float4(w0.x + w1.x + w2.x + w3.x, w0.y + w1.y + w2.y + w3.y, w0.z + w1.z + w2.z + w3.z,
                                           w0.w + w1.w + w2.w + w3.w);
            if (cfg.stasync) {
                const int owner = ((i / 4 + 1) * S - 1) / (E / 4);  // the last rank with i0(rank) <= i
                st_async_to_rank(smem_u32(recv + buf * DC_RECV_FLOATS + split * share + i - i0(owner)), sum, bar, owner);
            } else {
                *(float4 *)(mine + i) = sum;
            }
        }
        const int lo = i0(split), hi = i0(split + 1);
        if (push) {
            // 7. Push: our part of each owner's share went by st.async above, or goes now by one
            // bulk copy per owner into its receive buffer; both complete on the owner's mbarrier of
            // this buffer (no cluster barrier per row tile). A receive buffer is written again two
            // row tiles later, by a CTA that has reduced the next tile, which needed the owner's
            // share of it, sent after the owner's __syncthreads above, i.e. after the owner's
            // reduction of this tile. st.async measured faster at n <= 4 (11008x4096, n = 1: 10.0 vs
            // 11.4 µs with the early A loads) and slower at n = 16 (16.9 vs 14.6), Session 23.
            if (!cfg.stasync) {
                fence_proxy_async();  // our writes -> the bulk copies' reads
                __syncthreads();
                if (tid < S) {
                    bulk_copy_to_rank(smem_u32(recv + buf * DC_RECV_FLOATS + split * share), smem_u32(part + i0(tid)),
                                      (uint32_t)(i0(tid + 1) - i0(tid)) * 4, bar, tid);
                    bulk_commit();
                }
            }
            if (!early_a) load_next_a();
            // Our share, summed over the senders in rank order, through the epilogue.
            if (tid == 0) mbar_arrive_expect_tx(bar, (uint32_t)(S * (hi - lo) * 4));
            if (cfg.stasync)
                mbar_wait_cluster(bar, (uint32_t)(rt >> 1) & 1);
            else
                mbar_wait(bar, (uint32_t)(rt >> 1) & 1);
            const float *got = recv + buf * DC_RECV_FLOATS;
            for (int i = lo + tid; i < hi; i += 128) {
                float s = 0.0f;
                for (int r = 0; r < S; r++) s += got[r * share + i - lo];
                vnm_epi_store(e, s, row0 + i % 64, i / 64);
            }
            if (!cfg.stasync && tid < S) bulk_wait_read_all();  // part is written again after the next __syncthreads
        } else {
            // 7. Pull: a cluster barrier, with the next row tile's A loads issued between its arrive
            // and its wait (after the arrive's MEMBAR); then our share read from every CTA (DSMEM, 8
            // loads in flight at a time), summed in rank order. A buffer is written again two row
            // tiles later, after the next barrier, which each CTA reaches once done reading.
            cluster_arrive_release();
            load_next_a();
            cluster_wait_acquire();
            for (int i = lo + tid; i < hi; i += 128) {
                float s = 0.0f;
                for (int r0 = 0; r0 < S; r0 += 8) {
                    float v[8];
#pragma unroll
                    for (int r = 0; r < 8; r++) v[r] = r0 + r < S ? ld_dsmem_f32(smem_u32(mine + i), r0 + r) : 0.0f;
#pragma unroll
                    for (int r = 0; r < 8; r++) s += v[r];
                }
                vnm_epi_store(e, s, row0 + i % 64, i / 64);
            }
        }
    }
    // Push: every value sent to a CTA is one it waits for before it exits. Pull: our partial sums
    // stay until every CTA has read them.
    if (!push) cluster_arrive_release(), cluster_wait_acquire();
#endif
}

template <int NT, int KC>
static int decode_attrs(size_t bytes, int S) {
    static size_t set = 0;
    static bool big_clusters = false;
    if (S > 8 && !big_clusters) {
        if (cudaFuncSetAttribute(vnm_decode_cluster_kernel<NT, KC>, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
            cudaSuccess)
            return -1;
        big_clusters = true;
    }
    if (bytes <= 48 * 1024 || bytes <= set) return 0;
    if (cudaFuncSetAttribute(vnm_decode_cluster_kernel<NT, KC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes) !=
        cudaSuccess)
        return -1;
    set = bytes;
    return 0;
}

// The environment switches of the decode kernel (for measurements), read once: the split S
// (VNM_DECODE_SPLIT, 0: by KT), the most k-steps per CTA (VNM_DECODE_KC), row tiles per cluster
// (VNM_DECODE_TILES, 0: by occupancy), x staged (VNM_DECODE_STAGE), its rows padded by xpad × 8
// channels (VNM_DECODE_XPAD) and copied by bulk copies (VNM_DECODE_XBULK), partial sums pushed up
// to n = push_max (VNM_DECODE_PUSH_N) and at every n when a cluster has several row tiles
// (VNM_DECODE_PUSH_ROWS=0: not), by st.async up to n = stasync_max (VNM_DECODE_STASYNC_N).
struct DecodeEnv {
    int split, kc_cap, tiles, stage, xpad, xbulk, push_max, push_rows, stasync_max;
};
static const DecodeEnv &decode_env() {
    static const DecodeEnv v = {env_int("VNM_DECODE_SPLIT", 0, 0, DC_MAX_SPLIT),
                                env_int("VNM_DECODE_KC", DC_KC_WIDE, DC_KC, DC_KC_WIDE),
                                env_int("VNM_DECODE_TILES", 0, 0, 64),
                                env_int("VNM_DECODE_STAGE", 1, 0, 1),
                                env_int("VNM_DECODE_XPAD", 2, 0, 64),
                                env_int("VNM_DECODE_XBULK", 1, 0, 1),
                                env_int("VNM_DECODE_PUSH_N", DC_PUSH_MAX_N, 0, 16),
                                env_int("VNM_DECODE_PUSH_ROWS", 1, 0, 1),
                                env_int("VNM_DECODE_STASYNC_N", DC_STASYNC_MAX_N, 0, 16)};
    return v;
}

// Split of the k-steps over the cluster: S CTAs of kc_max k-steps each (the last may have fewer),
// about 8 k-steps per CTA; VNM_DECODE_SPLIT=S in the environment forces S (for measurements).
// Returns 0 when kc_max is at most DC_KC_WIDE (above DC_KC: the wide form, e.g. Llama's 4096 × 11008,
// KT = 172), or at most DC_KC with VNM_DECODE_KC=8; longer reductions run the atomic split-K kernel.
static int decode_split(const VnmDeviceMatrix *d, int *S, int *kc_max) {
    const int forced = decode_env().split;
    int64_t s = forced ? forced : (d->KT + 7) / 8;
    if (s > DC_MAX_SPLIT) s = DC_MAX_SPLIT;
    if (s > d->KT) s = d->KT;
    *kc_max = (int)((d->KT + s - 1) / s);
    *S = (int)((d->KT + *kc_max - 1) / *kc_max);  // no empty CTAs
    return *kc_max <= decode_env().kc_cap ? 0 : -1;
}

// Whether the cluster kernel runs this matrix at n tokens: n <= 16, k-steps that decode_split
// allows, an sm_90 device and binary (a PTX-only or sm_80 build has no cluster code),
// and VNM_DECODE=atomic not set (that selects the atomic split-K kernel everywhere, for comparison).
// [4 column lists per k-step][wide form] bit S: a launch of that kernel with clusters of S CTAs failed (see below)
static unsigned cluster_sizes_failed[2][2];

int vnm_decode_cluster_ok(const VnmDeviceMatrix *d, int64_t n) {
    static int avail = -1;
    if (avail < 0) {
        cudaFuncAttributes a;
        const char *env = getenv("VNM_DECODE");
        avail = !(env && !strcmp(env, "atomic")) &&
                cudaFuncGetAttributes(&a, vnm_decode_cluster_kernel<1, DC_KC>) == cudaSuccess && a.binaryVersion >= 90;
        cudaGetLastError();
    }
    int S, kc_max;
    return avail && d->cc_major >= 9 && n >= 1 && n <= 16 && decode_split(d, &S, &kc_max) == 0 &&
           !((cluster_sizes_failed[d->group_rows % 64 != 0][kc_max > DC_KC] >> S) & 1u);
}

// A cluster decode kernel (NT = 1 or 4, KC = DC_KC or DC_KC_WIDE) and its shared-memory / cluster-size attributes.
typedef void (*DecodeKernel)(VnmDev, const uint16_t *, VnmEpi, DecodeCfg);
typedef int (*DecodeAttrs)(size_t, int);

// Row tiles per cluster: the fewest that let all clusters be resident at once (the kernel loads a
// row tile's A while earlier ones compute; a second wave would start its loads only when the first
// has ended). Resident clusters of `kernel` launched as `cfg` (clusters of S CTAs, the shared memory
// of one row tile per cluster) come from the occupancy API: GPCs limit them below SMs × 5 / S.
// Cached per kernel, cluster size and shared-memory size. VNM_DECODE_TILES=R forces R.
static int decode_tiles_per_cluster(DecodeKernel kernel, DecodeAttrs attrs, cudaLaunchConfig_t cfg, int S,
                                    int64_t row_tiles) {
    if (decode_env().tiles) return decode_env().tiles;
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
    const DecodeEnv &env = decode_env();
    // xw: the channels of a slice when they are local. Rows of x padded by 16 channels (32 bytes, 8
    // banks) in shared memory: unpadded, the 8 tokens of a warp's gathers read the same banks (NOTES,
    // Session 18); 16 measured 0-3 % faster than 8 with the per-warp gathers (Session 20).
    DecodeCfg c = {kc_max, (int)(kc_max * 8 * d->p.M), 0, 1, false, false, false};
    c.xp = c.xw + 8 * env.xpad;
    if (!env.stage || !d->cols_local || e.n * c.xp * sizeof(uint16_t) > DC_STAGE_MAX) c.xw = c.xp = 0;
    // Bulk copies need 16-byte rows at 16-byte addresses: `in` a multiple of 8 channels, x aligned.
    c.xbulk = env.xbulk && c.xw && d->in % 8 == 0 && (uintptr_t)x % 16 == 0;
    // [column lists per k-step 1 / 4][k-steps per CTA DC_KC / DC_KC_WIDE]
    static const DecodeKernel kernels[2][2] = {{vnm_decode_cluster_kernel<1, DC_KC>, vnm_decode_cluster_kernel<1, DC_KC_WIDE>},
                                               {vnm_decode_cluster_kernel<4, DC_KC>, vnm_decode_cluster_kernel<4, DC_KC_WIDE>}};
    static const DecodeAttrs attrs_of[2][2] = {{decode_attrs<1, DC_KC>, decode_attrs<1, DC_KC_WIDE>},
                                               {decode_attrs<4, DC_KC>, decode_attrs<4, DC_KC_WIDE>}};
    const int nt4 = ntiles == 4, wide = kc_max > DC_KC;
    const DecodeKernel kernel = kernels[nt4][wide];
    const DecodeAttrs attrs = attrs_of[nt4][wide];
    cudaLaunchConfig_t cfg = {};
    cfg.blockDim = dim3(128, 1, 1);
    cfg.stream = stream;
    cudaLaunchAttribute attr[2];
    attr[0].id = cudaLaunchAttributeClusterDimension;
    attr[0].val.clusterDim.x = (unsigned)S, attr[0].val.clusterDim.y = 1, attr[0].val.clusterDim.z = 1;
    cfg.attrs = attr, cfg.numAttrs = 1 + pdl_attr(&attr[1]);
    const int64_t row_tiles = d->out_pad / 64;
    // Push the partial sums up to n = DC_PUSH_MAX_N (VNM_DECODE_PUSH_N=N sets that n, for
    // measurements), and at every n when a cluster takes several row tiles: then the next tile's A
    // loads go out without waiting on the cluster (n = 16, Session 20: 11008 × 4096 18.1 vs 21.8 µs,
    // 4096 × 11008 22.9 vs 24.2). With one row tile, 4096², push at n = 16 lost (11.9 vs 9.6 µs)
    // while it had two receive buffers (5 CTAs per SM no longer fit); with one it wins, 7.6 vs
    // 8.3 µs (Session 21). So R is counted from the shared memory of one row tile (one buffer each
    // for the partial sums); with R > 1 the row tiles alternate between two buffers, and R is
    // counted again with those.
    c.push = e.n <= env.push_max;
    c.stasync = c.push && e.n <= env.stasync_max;
    cfg.dynamicSmemBytes = decode_smem(ntiles, c, (int)e.n).total;
    c.R = decode_tiles_per_cluster(kernel, attrs, cfg, S, row_tiles);
    if (c.R > 1) {
        c.push = c.push || env.push_rows;
        c.stasync = c.push && e.n <= env.stasync_max;
        cfg.dynamicSmemBytes = decode_smem(ntiles, c, (int)e.n).total;
        c.R = decode_tiles_per_cluster(kernel, attrs, cfg, S, row_tiles);
    }
    cfg.gridDim = dim3((unsigned)S, (unsigned)((row_tiles + c.R - 1) / c.R), 1);
    cfg.dynamicSmemBytes = decode_smem(ntiles, c, (int)e.n).total;
    const cudaError_t rc = attrs(cfg.dynamicSmemBytes, S) ? cudaErrorInvalidValue : cudaLaunchKernelEx(&cfg, kernel, dev, x, e, c);
    if (rc == cudaSuccess) return 0;
    cudaGetLastError();
    cluster_sizes_failed[nt4][wide] |= 1u << S;
    return -1;
}
