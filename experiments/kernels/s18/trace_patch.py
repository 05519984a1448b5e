#!/usr/bin/env python3
"""Instruments kernels/vnm_spmm_decode.cu in place (experiments only; restore the file after):
thread 0 of every CTA stamps clock64 at its phases, and the 10th launch of each shape and n
(outside graph capture) prints the median / 90th percentile of each phase over the CTAs, in cycles,
and the CTAs' starts and ends in ns (globaltimer) from the first CTA's start. At exit the last
launch is printed too ("trace_last"): with bench spmm --decode-layers --shapes S --n N, a layer run
behind the layer before it, as in a model."""
import sys

path = sys.argv[1] if len(sys.argv) > 1 else "kernels/vnm_spmm_decode.cu"
s = open(path).read()


def rep(a, b):
    global s
    if s.count(a) != 1:
        sys.exit(f"trace_patch: anchor found {s.count(a)} times: {a[:70]!r}")
    s = s.replace(a, b)


rep('#include <stdlib.h>\n', '#include <stdio.h>\n#include <stdlib.h>\n')
rep('// A fragments and metadata words of the four 16-row tiles', r'''#define DT_SLOTS 12
__device__ unsigned long long g_decode_trace[4096 * DT_SLOTS];
__device__ __forceinline__ unsigned long long dt_gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}
#define DT(slot, val)                                                                          \
    do {                                                                                       \
        if (tid == 0 && blockIdx.y * gridDim.x + blockIdx.x < 4096)                            \
            g_decode_trace[(blockIdx.y * gridDim.x + blockIdx.x) * DT_SLOTS + (slot)] = (val); \
    } while (0)

// A fragments and metadata words of the four 16-row tiles''')
rep('''    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
''', '''    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    DT(0, dt_gtime());
    DT(1, clock64());
''')
rep('''    load_a_tiles<KQ>(d, rt0 * 4, ks0 + kw0, kw, lane, a, m);
''', '''    load_a_tiles<KQ>(d, rt0 * 4, ks0 + kw0, kw, lane, a, m);
    DT(2, clock64());
''')
rep('''    cp_async_commit();
    cp_async_wait<0>();
''', '''    DT(3, clock64());
    cp_async_commit();
    cp_async_wait<0>();
''')
rep('''    if (push) cluster_wait();  // every CTA of the cluster has initialised its mbarriers
''', '''    if (push) cluster_wait();  // every CTA of the cluster has initialised its mbarriers
    DT(4, clock64());
''')
rep('''        __syncthreads();
        // 6. The CTA''', '''        __syncthreads();
        if (rt == 0) DT(5, clock64());
        // 6. The CTA''')
rep('''        const int lo = i0(split), hi = i0(split + 1);
''', '''        if (rt == 0) DT(6, clock64());
        const int lo = i0(split), hi = i0(split + 1);
''')
rep('''            mbar_wait(bar, (uint32_t)(rt >> 1) & 1);
''', '''            mbar_wait(bar, (uint32_t)(rt >> 1) & 1);
            if (rt == 0) DT(7, clock64());
''')
rep('''            cluster_wait_acquire();
            for (int i''', '''            cluster_wait_acquire();
            if (rt == 0) DT(7, clock64());
            for (int i''')
rep('''                vnm_epi_store(e, s, row0 + i % 64, i / 64);
            }
        }
    }
''', '''                vnm_epi_store(e, s, row0 + i % 64, i / 64);
            }
        }
        if (rt == 0) DT(8, clock64());
    }
    DT(9, clock64());
''')
rep('''    if (!push) cluster_arrive_release(), cluster_wait_acquire();
#endif''', '''    if (!push) cluster_arrive_release(), cluster_wait_acquire();
    DT(10, clock64());
    DT(11, dt_gtime());
#endif''')
rep('// Launches the cluster decode kernel', r'''static int dt_cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// Prints the phases of the kernel whose stamps are in g_decode_trace (after waiting for it).
static void decode_trace_print(const char *label, long long out, long long in, long long n, const DecodeCfg &cf, int ctas) {
    static unsigned long long h[4096 * DT_SLOTS];
    if (cudaDeviceSynchronize() != cudaSuccess ||
        cudaMemcpyFromSymbol(h, g_decode_trace, sizeof(unsigned long long) * ctas * DT_SLOTS) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    static const char *names[] = {"a_issue", "x_issue", "x_wait", "gather_mma", "warp_sum", "reduce_wait", "epilogue", "tiles_rest", "final_bar"};
    static double v[4096];
    fprintf(stderr, "%s %lldx%lld n=%lld R=%d ctas=%d push=%d xbulk=%d xpad=%d:", label, out, in, n, cf.R, ctas, (int)cf.push,
            (int)cf.xbulk, cf.xp - cf.xw);
    for (int p = 0; p < 9; p++) {
        for (int c = 0; c < ctas; c++) v[c] = (double)(h[c * DT_SLOTS + p + 2] - h[c * DT_SLOTS + p + 1]);
        qsort(v, ctas, sizeof(double), dt_cmp);
        fprintf(stderr, " %s %.0f/%.0f", names[p], v[ctas / 2], v[ctas * 9 / 10]);
    }
    unsigned long long g0 = ~0ull;
    for (int c = 0; c < ctas; c++) g0 = h[c * DT_SLOTS] < g0 ? h[c * DT_SLOTS] : g0;
    for (int c = 0; c < ctas; c++) v[c] = (double)(h[c * DT_SLOTS] - g0);
    qsort(v, ctas, sizeof(double), dt_cmp);
    fprintf(stderr, " | start_ns med %.0f max %.0f", v[ctas / 2], v[ctas - 1]);
    for (int c = 0; c < ctas; c++) v[c] = (double)(h[c * DT_SLOTS + 11] - g0);
    qsort(v, ctas, sizeof(double), dt_cmp);
    fprintf(stderr, " end_ns med %.0f max %.0f\n", v[ctas / 2], v[ctas - 1]);
}

// The last launch (graph replays included: in bench spmm --decode-layers, the last layer of the
// last replay, launched behind the layer before it as in a model), printed at exit.
static struct {
    long long out, in, n;
    DecodeCfg cf;
    int ctas;
} dt_last;
static void decode_trace_at_exit(void) {
    if (dt_last.ctas) decode_trace_print("trace_last", dt_last.out, dt_last.in, dt_last.n, dt_last.cf, dt_last.ctas);
}

// The 10th launch of each shape and n outside graph capture: waits for it and prints its phases.
static void decode_trace_report(const VnmDeviceMatrix *d, int64_t n, const DecodeCfg &cf, int ctas, cudaStream_t st) {
    static bool registered = false;
    if (!registered) registered = true, atexit(decode_trace_at_exit);
    if (ctas > 4096) return;
    dt_last.out = d->out, dt_last.in = d->in, dt_last.n = n, dt_last.cf = cf, dt_last.ctas = ctas;
    static long long keys[64];
    static int counts[64], used = 0;
    cudaStreamCaptureStatus cap;
    if (cudaStreamIsCapturing(st, &cap) != cudaSuccess || cap != cudaStreamCaptureStatusNone) return;
    const long long key = (d->out * 100003 + d->in) * 17 + n;
    int k = 0;
    while (k < used && keys[k] != key) k++;
    if (k == used) {
        if (used == 64) return;
        keys[used++] = key;
    }
    if (++counts[k] == 10) decode_trace_print("trace", d->out, d->in, n, cf, ctas);
}

// Launches the cluster decode kernel''')
rep('''    if (rc == cudaSuccess) return 0;
    cudaGetLastError();
    cluster_sizes_failed''', '''    if (rc == cudaSuccess) {
        decode_trace_report(d, e.n, c, (int)(cfg.gridDim.x * cfg.gridDim.y), stream);
        return 0;
    }
    cudaGetLastError();
    cluster_sizes_failed''')
open(path, "w").write(s)
