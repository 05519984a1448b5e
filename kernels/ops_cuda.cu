// Registers the CUDA kernels of every op (see ops_cuda.h), and the optional per-op profiler.
#include <cuda_profiler_api.h>
#include <stdio.h>

#include "kernels/cuda_common.cuh"
#include "kernels/ops_cuda.h"

extern "C" {
#include "autograd/device.h"
}

static KernelFn g_fwd[OP_COUNT], g_bwd[OP_COUNT];

extern "C" void ops_cuda_register(void) {
    static bool done = false;
    if (done) return;
    if (!device_cuda_available()) fatal("ops_cuda_register: no CUDA GPU is visible");
#define REG(op, name) g_fwd[op] = cuda_##name##_fwd, g_bwd[op] = cuda_##name##_bwd
    REG(OP_LINEAR, linear);
    REG(OP_LAYERNORM, layernorm);
    REG(OP_ATTENTION, attention);
    REG(OP_GELU, gelu);
    REG(OP_ADD, add);
    REG(OP_PATCH_EMBED, patch_embed);
    REG(OP_CLS_POS, cls_pos);
    REG(OP_SELECT_TOKEN, select_token);
    REG(OP_MEAN_TOKENS, mean_tokens);
    REG(OP_CROSS_ENTROPY, cross_entropy);
    REG(OP_RMSNORM, rmsnorm);
    REG(OP_ROPE, rope);
    REG(OP_SWIGLU, swiglu);
    REG(OP_EMBEDDING, embedding);
    REG(OP_CONCAT, concat);
    g_fwd[OP_ATTENTION_CACHED] = cuda_attention_cached_fwd;  // inference only
#undef REG
    // ops without kernels here (OP_VNM_LINEAR: train/vnm_linear.c registers its own) keep theirs
    for (int op = 0; op < OP_COUNT; op++)
        if (g_fwd[op]) op_register((OpId)op, DEV_CUDA, g_fwd[op], g_bwd[op]);
    done = true;
}

// ---- profiler: CUDA events around every kernel call (and every GEMM), summed per op ----
#define PROF_MAX 65536
#define PROF_GEMM OP_COUNT  // pseudo-op: time inside gemm()
typedef struct ProfEntry {
    int op, dir;  // dir 0 forward, 1 backward
    int plan;     // GEMM plan (shape) for PROF_GEMM entries, else -1
    double host_s;  // host time spent in the call (enqueueing, and any synchronization inside it)
    cudaEvent_t start, stop;
} ProfEntry;
static ProfEntry *g_prof;
static int g_prof_n;
bool g_cuda_profiling;

int cuda_prof_begin(int op, int dir) {
    if (!g_cuda_profiling || g_prof_n >= PROF_MAX) return -1;
    ProfEntry *e = &g_prof[g_prof_n];
    if (!e->start) {
        CUDA_CHECK(cudaEventCreate(&e->start));
        CUDA_CHECK(cudaEventCreate(&e->stop));
    }
    e->op = op, e->dir = dir, e->plan = -1, e->host_s = 0;
    CUDA_CHECK(cudaEventRecord(e->start, cuda_stream()));
    return g_prof_n++;
}
int cuda_prof_gemm_begin(int plan) {
    int id = cuda_prof_begin(PROF_GEMM, 0);
    if (id >= 0) g_prof[id].plan = plan;
    return id;
}
void cuda_prof_end(int id) {
    if (id >= 0) CUDA_CHECK(cudaEventRecord(g_prof[id].stop, cuda_stream()));
}

static void prof_call(TapeNode *n, int dir, KernelFn fn) {
    int id = cuda_prof_begin(n->op, dir);
    double t0 = now_seconds();
    fn(n);
    if (id >= 0) g_prof[id].host_s = now_seconds() - t0;
    cuda_prof_end(id);
}
static void prof_fwd(TapeNode *n) { prof_call(n, 0, g_fwd[n->op]); }
static void prof_bwd(TapeNode *n) { prof_call(n, 1, g_bwd[n->op]); }

// Also brackets the profiled calls for an outside profiler (`ncu --profile-from-start off`).
extern "C" void ops_cuda_profile(bool on) {
    ops_cuda_register();
    if (on) CUDA_CHECK(cudaProfilerStart());
    else if (g_cuda_profiling) CUDA_CHECK(cudaProfilerStop());
    if (on && !g_prof) g_prof = (ProfEntry *)xcalloc(PROF_MAX, sizeof(ProfEntry));
    g_prof_n = 0;
    g_cuda_profiling = on;
    for (int op = 0; op < OP_COUNT; op++) {
        if (!g_fwd[op] && g_ops[op].forward[DEV_CUDA] != prof_fwd) {  // registered elsewhere (OP_VNM_LINEAR)
            g_fwd[op] = g_ops[op].forward[DEV_CUDA];
            g_bwd[op] = g_ops[op].backward[DEV_CUDA];
        }
        if (g_fwd[op]) op_register((OpId)op, DEV_CUDA, on ? prof_fwd : g_fwd[op], on && g_bwd[op] ? prof_bwd : g_bwd[op]);
    }
}

// The GEMM shapes that take the most time, with their achieved TFLOP/s.
static void report_gemm_shapes(FILE *f, int steps) {
    enum { PLANS = 1024, TOP = 16 };
    static double ms[PLANS];
    static int calls[PLANS];
    memset(ms, 0, sizeof ms);
    memset(calls, 0, sizeof calls);
    for (int i = 0; i < g_prof_n; i++) {
        int p = g_prof[i].plan;
        if (p < 0 || p >= PLANS) continue;
        float t = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t, g_prof[i].start, g_prof[i].stop));
        ms[p] += t;
        calls[p]++;
    }
    fprintf(f, "  top GEMM shapes (m×n×k, row-major; per step):\n");
    for (int r = 0; r < TOP; r++) {
        int best = -1;
        for (int p = 0; p < PLANS; p++)
            if (calls[p] && (best < 0 || ms[p] > ms[best])) best = p;
        if (best < 0) break;
        char desc[96];
        double flops = gemm_plan_describe(best, desc, sizeof desc);
        fprintf(f, "    %-32s %8.3f ms %4d calls %7.1f TFLOP/s\n", desc, ms[best] / steps, calls[best] / steps,
                flops * calls[best] / (ms[best] * 1e-3) / 1e12);
        calls[best] = 0;
    }
}

extern "C" void ops_cuda_profile_report(FILE *f, int steps, double step_ms) {
    CUDA_CHECK(cudaStreamSynchronize(cuda_stream()));
    double ms[OP_COUNT + 1][2] = {{0}}, host_ms[OP_COUNT + 1][2] = {{0}};
    int calls[OP_COUNT + 1][2] = {{0}};
    for (int i = 0; i < g_prof_n; i++) {
        float t = 0;
        CUDA_CHECK(cudaEventElapsedTime(&t, g_prof[i].start, g_prof[i].stop));
        ms[g_prof[i].op][g_prof[i].dir] += t;
        host_ms[g_prof[i].op][g_prof[i].dir] += 1e3 * g_prof[i].host_s;
        calls[g_prof[i].op][g_prof[i].dir]++;
    }
    double total = 0, host_total = 0;
    fprintf(f, "per-op GPU time per step (%d steps profiled; step %.2f ms; host: time of the op's host call):\n", steps,
            step_ms);
    for (int op = 0; op <= OP_COUNT; op++)
        for (int d = 0; d < 2; d++) {
            if (!calls[op][d]) continue;
            const char *name = op == PROF_GEMM ? "(gemm inside ops)" : g_ops[op].name ? g_ops[op].name : "?";
            fprintf(f, "  %-20s %-3s %8.3f ms  %5d calls  host %8.3f ms\n", name, d ? "bwd" : "fwd", ms[op][d] / steps,
                    calls[op][d] / steps, host_ms[op][d] / steps);
            if (op != PROF_GEMM) total += ms[op][d] / steps, host_total += host_ms[op][d] / steps;
        }
    fprintf(f, "  ops total %.3f ms (host %.3f ms); outside ops (grad zeroing, optimizer, gaps) %.3f ms\n", total,
            host_total, step_ms - total);
    report_gemm_shapes(f, steps);
    g_prof_n = 0;
}
