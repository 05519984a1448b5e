// Every CUDA op against the CPU reference (autograd/cpu_*.c) on random inputs.
//
// Each case builds the same op (or chain) twice from the same values: on the CPU in f32 and on the
// GPU in bf16 (inputs are rounded to bf16 first, so both sides start from identical numbers). The
// output gradient is a fixed random R (or tape_backward for a scalar loss). Compared by relative L2
// error ‖gpu − cpu‖ / ‖cpu‖ of the outputs and of every input gradient. Gradients start prefilled
// (f32 parameter grads 0.25, bf16 activation grads 1/16), so kernels must accumulate, not overwrite.
//
// Tolerances (bf16 storage, fp32 accumulation; bf16 rounding alone is ~2e-3 relative):
//   outputs 1e-2 (most ops), 2e-2 for chains of several bf16 roundings;
//   gradients 2e-2 (3e-2 for attention and chains, where bf16 P and dS feed further GEMMs).
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "autograd/ops.h"
#include "autograd/rng.h"
#include "kernels/ops_cuda.h"

#define PREFILL_F32 0.25f
#define PREFILL_BF16 0.0625f
#define MAX_INPUTS 10

typedef enum { G_NONE, G_ACT, G_PARAM } GradKind;  // ACT: bf16 grad on the GPU, PARAM: f32 grad

static Arena a_cin, a_cact, a_gin, a_gact;
static Tape t_cpu, t_gpu;
static Rng rng;

static void setup(void) {
    if (!device_cuda_available()) return;
    ops_cuda_register();
    arena_init(&a_cin, "cpu_in", DEV_CPU, 64 << 20);
    arena_init(&a_cact, "cpu_act", DEV_CPU, 256 << 20);
    arena_init(&a_gin, "gpu_in", DEV_CUDA, 64 << 20);
    arena_init(&a_gact, "gpu_act", DEV_CUDA, 256 << 20);
    tape_init(&t_cpu, &a_cact);
    tape_init(&t_gpu, &a_gact);
    t_cpu.seed = t_gpu.seed = 777;
    rng_seed(&rng, 2024);
}

static void teardown(void) {
    if (!device_cuda_available()) return;
    tape_free(&t_cpu);
    tape_free(&t_gpu);
    arena_free(&a_cin);
    arena_free(&a_cact);
    arena_free(&a_gin);
    arena_free(&a_gact);
}

TestSuite(ops_cuda, .init = setup, .fini = teardown);

#define NEED_GPU()                                                        \
    do {                                                                  \
        if (!device_cuda_available()) cr_skip_test("no CUDA GPU visible"); \
    } while (0)

// One input on both devices.
typedef struct Case {
    Tensor *cpu[MAX_INPUTS], *gpu[MAX_INPUTS];
    int n;
    float p[4];  // op parameters for the build function
    int ip[4];
} Case;

static float bf16_round(float v) { return bf16_to_f32(f32_to_bf16(v)); }

static void prefill(Tensor *t, GradKind kind) {
    if (kind == G_NONE) return;
    t->requires_grad = true;
    t->grad_f32 = kind == G_PARAM;
    Tensor *g = tensor_ensure_grad(t, t->device == DEV_CPU ? &a_cin : &a_gin);
    float v = kind == G_PARAM ? PREFILL_F32 : PREFILL_BF16;
    float *h = malloc((size_t)g->numel * sizeof *h);
    for (int64_t e = 0; e < g->numel; e++) h[e] = v;
    tensor_set_f32(g, h, g->numel);
    free(h);
}

// A random float input (normal · scale, rounded to bf16) on both devices.
static int add_input(Case *c, const char *name, GradKind kind, float scale, int ndim, int64_t d0, int64_t d1, int64_t d2,
                     int64_t d3) {
    int64_t shape[4] = {d0, d1, d2, d3};
    Tensor *tc = tensor_new(&a_cin, DT_F32, ndim, shape, name);
    Tensor *tg = tensor_new(&a_gin, DT_BF16, ndim, shape, name);
    for (int64_t e = 0; e < tc->numel; e++) tensor_f32(tc)[e] = bf16_round(scale * rng_normal(&rng));
    tensor_set_f32(tg, tensor_f32(tc), tc->numel);
    prefill(tc, kind);
    prefill(tg, kind);
    c->cpu[c->n] = tc;
    c->gpu[c->n] = tg;
    return c->n++;
}

// An int32 or u8/f32 mask input copied as is.
static int add_raw(Case *c, const char *name, DType dt, int ndim, const int64_t *shape, const void *values) {
    Tensor *tc = tensor_new(&a_cin, dt, ndim, shape, name);
    Tensor *tg = tensor_new(&a_gin, dt, ndim, shape, name);
    size_t bytes = (size_t)tc->numel * dtype_size(dt);
    memcpy(tc->data, values, bytes);
    device_copy_h2d(tg->data, values, bytes);
    c->cpu[c->n] = tc;
    c->gpu[c->n] = tg;
    return c->n++;
}

static double rel_l2(const float *got, const float *want, int64_t n, float offset) {
    double num = 0.0, den = 0.0;
    for (int64_t e = 0; e < n; e++) {
        double w = (double)want[e] - offset, g = (double)got[e] - offset;
        num += (g - w) * (g - w);
        den += w * w;
    }
    return sqrt(num) / (sqrt(den) + 1e-30);
}

static float *host_copy(const Tensor *t) {
    float *h = malloc((size_t)t->numel * sizeof *h);
    tensor_get_f32(t, h, t->numel);
    return h;
}

typedef Tensor *(*Build)(Tape *t, Tensor **in, const Case *c);

static void backward_seeded(Tape *t, Tensor *out, const float *R) {
    if (out->numel == 1) {
        tape_backward(t, out);
        return;
    }
    Tensor *g = tensor_ensure_grad(out, t->act);
    tensor_set_f32(g, R, out->numel);
    for (int k = t->n - 1; k >= 0; k--) {
        TapeNode *node = &t->nodes[k];
        if (!node->out[0]->grad) continue;
        for (int i = 0; i < node->nin; i++)
            if (node->in[i] && node->in[i]->requires_grad) tensor_ensure_grad(node->in[i], t->act);
        g_ops[node->op].backward[node->out[0]->device](node);
    }
}

static Tensor *run_side(Tape *t, Tensor **in, const Case *c, Build build, const float *R_or_null, float **R_out) {
    tape_reset(t);
    t->counter = 0;
    t->record = true;
    t->training = true;
    Tensor *out = build(t, in, c);
    float *R = (float *)R_or_null;
    if (!R) {
        R = malloc((size_t)out->numel * sizeof *R);
        for (int64_t e = 0; e < out->numel; e++) R[e] = bf16_round(rng_normal(&rng));
        *R_out = R;
    }
    backward_seeded(t, out, R);
    return out;
}

// Runs both sides and checks outputs and gradients; returns the worst gradient error.
static void compare(const char *label, Case *c, Build build, double out_tol, double grad_tol) {
    float *R = NULL;
    Tensor *oc = run_side(&t_cpu, c->cpu, c, build, NULL, &R);
    Tensor *og = run_side(&t_gpu, c->gpu, c, build, R, NULL);
    device_synchronize();
    float *hg = host_copy(og);
    double e = rel_l2(hg, tensor_f32(oc), oc->numel, 0.0f);
    printf("  %-32s out %-10s rel err %.2e (tol %.0e)\n", label, og->name, e, out_tol);
    cr_expect(e < out_tol, "%s: output off by %.3g (relative L2)", label, e);
    free(hg);
    for (int i = 0; i < c->n; i++) {
        Tensor *xc = c->cpu[i], *xg = c->gpu[i];
        if (!xc->requires_grad) continue;
        float off = xg->grad_f32 ? PREFILL_F32 : PREFILL_BF16;
        float *gg = host_copy(xg->grad);
        double ge = rel_l2(gg, tensor_f32(xc->grad), xc->numel, off);
        printf("  %-32s d%-9s rel err %.2e (tol %.0e, %s)\n", label, xg->name, ge, grad_tol, dtype_name(xg->grad->dtype));
        cr_expect(ge < grad_tol, "%s: gradient of %s off by %.3g (relative L2)", label, xg->name, ge);
        free(gg);
    }
    free(R);
}

// ---- linear ----
// in: 0 x, 1 w, 2 b (or NULL via ip[0]=0), 3 A, 4 B, 5 mask; ip[1] = lora, ip[2] = mask, ip[3] = index
// of a residual input (0: none); p[0] scale, p[1] dropout
static Tensor *build_linear(Tape *t, Tensor **in, const Case *c) {
    LoraRef lora = {.A = c->ip[1] ? in[3] : NULL, .B = c->ip[1] ? in[4] : NULL, .mask = c->ip[2] ? in[5] : NULL,
                    .scale = c->p[0], .dropout = c->p[1]};
    return op_linear_residual(t, in[0], in[1], c->ip[0] ? in[2] : NULL, c->ip[1] ? &lora : NULL,
                              c->ip[3] ? in[c->ip[3]] : NULL, "lin");
}

static Case linear_case(int64_t M0, int64_t M1, int64_t K, int64_t N, int64_t r, bool bias, GradKind wk) {
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 3, M0, M1, K, 0);
    add_input(&c, "w", wk, 0.2f, 2, N, K, 0, 0);
    add_input(&c, "b", bias ? G_PARAM : G_NONE, 1.0f, 1, N, 0, 0, 0);
    c.ip[0] = bias;
    if (r) {
        add_input(&c, "A", G_PARAM, 0.2f, 2, r, K, 0, 0);
        add_input(&c, "B", G_PARAM, 0.2f, 2, N, r, 0, 0);
        c.ip[1] = 1;
    }
    return c;
}

Test(ops_cuda, linear_bias) {
    NEED_GPU();
    Case c = linear_case(2, 7, 40, 24, 0, true, G_PARAM);
    compare("linear+bias", &c, build_linear, 1e-2, 2e-2);
}

Test(ops_cuda, linear_no_bias_frozen_w) {
    NEED_GPU();
    Case c = linear_case(3, 50, 64, 96, 0, false, G_NONE);
    compare("linear, frozen w", &c, build_linear, 1e-2, 2e-2);
}

Test(ops_cuda, lora_dense) {
    NEED_GPU();
    Case c = linear_case(2, 9, 48, 32, 8, true, G_NONE);
    c.p[0] = 2.0f;
    compare("lora dense", &c, build_linear, 1e-2, 2e-2);
}

Test(ops_cuda, lora_dense_concat_path) {  // N > K: one GEMM over [x | h]
    NEED_GPU();
    Case c = linear_case(2, 9, 48, 144, 16, true, G_NONE);
    c.p[0] = 2.0f;
    compare("lora dense, N > K", &c, build_linear, 1e-2, 2e-2);
}

// op_linear_residual: the residual is C of the GEMM; its gradient takes dy's buffer over.
static void residual_case(const char *label, int64_t K, int64_t N) {
    Case c = linear_case(2, 9, K, N, 16, true, G_NONE);
    c.p[0] = 2.0f;
    c.ip[3] = add_input(&c, "res", G_ACT, 1.0f, 3, 2, 9, N, 0);
    compare(label, &c, build_linear, 1e-2, 2e-2);
}
Test(ops_cuda, lora_residual) {
    NEED_GPU();
    residual_case("lora dense + residual, N <= K", 64, 48);
}
Test(ops_cuda, lora_residual_concat_path) {
    NEED_GPU();
    residual_case("lora dense + residual, N > K", 48, 144);
}

Test(ops_cuda, lora_dense_fused_dy_many_ctas) {  // r = 16: dh and dB from one pass (lora_bwd.cu, opt-in)
    NEED_GPU();
    setenv("VNM_LORA_FUSED", "1", 1);
    Case c = linear_case(4, 5000, 64, 200, 16, false, G_NONE);
    c.p[0] = 0.5f;
    compare("lora dense, fused dy pass, M=20000 N=200", &c, build_linear, 1e-2, 2e-2);
}

Test(ops_cuda, lora_dense_concat_dropout) {
    NEED_GPU();
    Case c = linear_case(1, 20, 32, 64, 8, false, G_NONE);
    c.p[0] = 0.7f;
    c.p[1] = 0.2f;
    compare("lora dense, N > K, dropout 0.2", &c, build_linear, 1e-2, 2e-2);
}

Test(ops_cuda, lora_dense_dropout) {
    NEED_GPU();
    Case c = linear_case(2, 9, 48, 32, 8, false, G_NONE);
    c.p[0] = 2.0f;
    c.p[1] = 0.3f;
    compare("lora dense, dropout 0.3", &c, build_linear, 1e-2, 2e-2);
}

Test(ops_cuda, lora_dense_trainable_w) {
    NEED_GPU();
    Case c = linear_case(1, 33, 64, 40, 4, true, G_PARAM);
    c.p[0] = 0.5f;
    compare("lora dense, trainable w", &c, build_linear, 1e-2, 2e-2);
}

static void add_mask(Case *c, DType dt, int64_t N, int64_t K) {
    int64_t shape[2] = {N, K};
    void *m = malloc((size_t)(N * K) * 4);
    for (int64_t e = 0; e < N * K; e++) {
        bool keep = rng_uniform(&rng) < 0.5f;
        if (dt == DT_U8) ((uint8_t *)m)[e] = keep;
        else ((float *)m)[e] = keep ? 1.0f : 0.0f;
    }
    add_raw(c, "mask", dt, 2, shape, m);
    c->ip[2] = 1;
    free(m);
}

Test(ops_cuda, lora_masked_u8_trainable_w) {
    NEED_GPU();
    Case c = linear_case(2, 11, 48, 32, 8, true, G_PARAM);
    c.p[0] = 2.0f;
    add_mask(&c, DT_U8, 32, 48);
    compare("lora masked u8, trainable w", &c, build_linear, 1e-2, 2e-2);
}

Test(ops_cuda, lora_masked_f32_frozen_w) {
    NEED_GPU();
    Case c = linear_case(3, 7, 32, 24, 4, false, G_NONE);
    c.p[0] = 1.5f;
    add_mask(&c, DT_F32, 24, 32);
    compare("lora masked f32, frozen w", &c, build_linear, 1e-2, 2e-2);
}

// ---- norms ----
static Tensor *build_layernorm(Tape *t, Tensor **in, const Case *c) {
    return op_layernorm(t, in[0], c->ip[0] ? in[1] : NULL, c->ip[0] ? in[2] : NULL, 1e-6f, "ln");
}
static Tensor *build_rmsnorm(Tape *t, Tensor **in, const Case *c) { return op_rmsnorm(t, in[0], in[1], 1e-5f, "rms"); }

Test(ops_cuda, layernorm) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 2.0f, 3, 4, 5, 384, 0);
    add_input(&c, "gamma", G_PARAM, 1.0f, 1, 384, 0, 0, 0);
    add_input(&c, "beta", G_PARAM, 1.0f, 1, 384, 0, 0, 0);
    c.ip[0] = 1;
    compare("layernorm", &c, build_layernorm, 1e-2, 2e-2);
}

Test(ops_cuda, layernorm_no_affine) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 2, 37, 64, 0, 0);
    compare("layernorm, no affine", &c, build_layernorm, 1e-2, 2e-2);
}

Test(ops_cuda, rmsnorm) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 3, 3, 4, 128, 0);
    add_input(&c, "gamma", G_PARAM, 1.0f, 1, 128, 0, 0, 0);
    compare("rmsnorm", &c, build_rmsnorm, 1e-2, 2e-2);
}

Test(ops_cuda, norms_wide_rows) {  // rows in registers up to 4096 (Llama, DeiT-B), streamed beyond
    NEED_GPU();
    int64_t widths[] = {4096, 768, 4104};
    for (int i = 0; i < 3; i++) {
        Case c = {0};
        add_input(&c, "x", G_ACT, 1.0f, 2, 3, widths[i], 0, 0);
        add_input(&c, "gamma", G_PARAM, 1.0f, 1, widths[i], 0, 0, 0);
        add_input(&c, "beta", G_PARAM, 1.0f, 1, widths[i], 0, 0, 0);
        compare("rmsnorm, wide", &c, build_rmsnorm, 1e-2, 2e-2);
        c.ip[0] = 1;
        compare("layernorm, wide", &c, build_layernorm, 1e-2, 2e-2);
    }
}

// ---- attention ----
static Tensor *build_attention(Tape *t, Tensor **in, const Case *c) {
    return op_attention(t, in[0], c->ip[0], c->ip[1], "attn");
}

static void attention_case(const char *label, int64_t B, int64_t T, int H, int D, bool causal) {
    Case c = {0};
    add_input(&c, "qkv", G_ACT, 1.0f, 3, B, T, 3 * H * D, 0);
    c.ip[0] = H;
    c.ip[1] = causal;
    compare(label, &c, build_attention, 1e-2, 3e-2);
}

Test(ops_cuda, attention) {
    NEED_GPU();
    attention_case("attention", 2, 13, 4, 16, false);
}
Test(ops_cuda, attention_causal) {
    NEED_GPU();
    attention_case("attention causal", 2, 21, 2, 32, true);
}
// The flash kernels are the default for D = 64, T <= 256; VNM_FLASH=0 selects the WMMA kernels (the
// variable is read once per process; each Criterion test is its own process).
Test(ops_cuda, attention_flash_causal) {
    NEED_GPU();
    setenv("VNM_FLASH", "1", 1);
    attention_case("attention flash T=70 H=3 D=64 causal", 2, 70, 3, 64, true);
}
Test(ops_cuda, attention_flash_deit_small_shape) {
    NEED_GPU();
    setenv("VNM_FLASH", "1", 1);
    attention_case("attention flash T=197 H=6 D=64", 2, 197, 6, 64, false);
}
Test(ops_cuda, attention_flash_edges) {  // the longest sequence (T = 256) and a 5-token causal one
    NEED_GPU();
    setenv("VNM_FLASH", "1", 1);
    attention_case("attention flash T=256 H=2 D=64", 1, 256, 2, 64, false);
    attention_case("attention flash T=5 H=2 D=64 causal", 3, 5, 2, 64, true);
}
Test(ops_cuda, attention_deit_small_shape) {  // WMMA fused kernels, D = 64, T = 197
    NEED_GPU();
    setenv("VNM_FLASH", "0", 1);
    attention_case("attention T=197 H=6 D=64", 2, 197, 6, 64, false);
}
Test(ops_cuda, attention_wmma_d128_causal) {  // WMMA fused kernels
    NEED_GPU();
    attention_case("attention T=77 H=2 D=128 causal", 2, 77, 2, 128, true);
}
Test(ops_cuda, attention_long_general_path) {  // T too long for the fused kernels
    NEED_GPU();
    attention_case("attention T=600 H=2 D=64", 1, 600, 2, 64, false);
}

// ---- elementwise ----
static Tensor *build_gelu(Tape *t, Tensor **in, const Case *c) { return op_gelu(t, in[0], "gelu"); }
static Tensor *build_add(Tape *t, Tensor **in, const Case *c) { return op_add(t, in[0], in[c->ip[0] ? 0 : 1], "add"); }
static Tensor *build_swiglu(Tape *t, Tensor **in, const Case *c) { return op_swiglu(t, in[0], in[1], "swiglu"); }
static Tensor *build_rope(Tape *t, Tensor **in, const Case *c) { return op_rope(t, in[0], c->ip[0], 10000.0f, "rope"); }

Test(ops_cuda, gelu_odd_size) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 2.0f, 2, 7, 149, 0, 0);
    compare("gelu (1043 elements)", &c, build_gelu, 1e-2, 2e-2);
}

Test(ops_cuda, add) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "a", G_ACT, 1.0f, 3, 2, 9, 64, 0);
    add_input(&c, "b", G_PARAM, 1.0f, 3, 2, 9, 64, 0);
    compare("add", &c, build_add, 1e-2, 2e-2);
}

Test(ops_cuda, add_same_tensor_twice) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "a", G_ACT, 1.0f, 2, 5, 33, 0, 0);
    c.ip[0] = 1;
    compare("add(a, a)", &c, build_add, 1e-2, 2e-2);
}

Test(ops_cuda, swiglu) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "gate", G_ACT, 2.0f, 3, 2, 5, 96, 0);
    add_input(&c, "up", G_ACT, 1.0f, 3, 2, 5, 96, 0);
    compare("swiglu", &c, build_swiglu, 1e-2, 2e-2);
}

Test(ops_cuda, rope_fused_heads) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 3, 2, 40, 4 * 32, 0);
    c.ip[0] = 4;
    compare("rope (B,T,H*D)", &c, build_rope, 1e-2, 2e-2);
}

Test(ops_cuda, rope_split_heads) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 4, 1, 17, 3, 64);
    c.ip[0] = 3;
    compare("rope (B,T,H,D)", &c, build_rope, 1e-2, 2e-2);
}

// ip[2]: the position comes from the I32 tensor in[1] (pos0 = 0 only passes the checks)
static Tensor *build_rope_at(Tape *t, Tensor **in, const Case *c) {
    return op_rope_at(t, in[0], c->ip[0], 10000.0f, c->ip[2] ? 0 : c->ip[1], c->ip[2] ? in[1] : NULL, "rope_at");
}

Test(ops_cuda, rope_at_position_offset) {  // a KV-cache step: positions 1000..1002
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 3, 4, 3, 2 * 128, 0);
    c.ip[0] = 2, c.ip[1] = 1000;
    compare("rope at 1000 (B,T,H*D)", &c, build_rope_at, 1e-2, 2e-2);
    int32_t pos = 1000;
    add_raw(&c, "pos", DT_I32, 1, (int64_t[]){1}, &pos);
    c.ip[2] = 1;
    compare("rope at pos tensor 1000", &c, build_rope_at, 1e-2, 2e-2);
}

static Tensor *build_concat(Tape *t, Tensor **in, const Case *c) { return op_concat(t, in, c->n, "concat"); }

Test(ops_cuda, concat_three) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "q", G_ACT, 1.0f, 3, 2, 7, 96, 0);
    add_input(&c, "k", G_PARAM, 1.0f, 3, 2, 7, 96, 0);
    add_input(&c, "v", G_NONE, 1.0f, 3, 2, 7, 40, 0);
    compare("concat", &c, build_concat, 1e-2, 2e-2);
}

// in: q, k, v (B, Tn, C), k_cache, v_cache (B, Tmax, C) holding random "history"; ip[0] heads, ip[1] pos.
// Forward only (an inference op); the caches' new rows are checked through the next case's reads.
// ip[2]: the position from the I32 tensor in[5].
static Tensor *build_attention_cached(Tape *t, Tensor **in, const Case *c) {
    return op_attention_cached(t, in[0], in[1], in[2], in[3], in[4], c->ip[0], c->ip[2] ? 0 : c->ip[1],
                               c->ip[2] ? in[5] : NULL, "attn_cached");
}

// pos_tensor: the position comes from an I32 tensor (as in a replayed CUDA graph of a decode step).
static void attention_cached_case(const char *label, int64_t B, int64_t Tn, int H, int D, int64_t pos, int64_t Tmax,
                                  bool pos_tensor) {
    Case c = {0};
    const char *names[3] = {"q", "k", "v"};
    for (int j = 0; j < 3; j++) add_input(&c, names[j], G_NONE, 1.0f, 3, B, Tn, (int64_t)H * D, 0);
    add_input(&c, "k_cache", G_NONE, 1.0f, 3, B, Tmax, (int64_t)H * D, 0);
    add_input(&c, "v_cache", G_NONE, 1.0f, 3, B, Tmax, (int64_t)H * D, 0);
    c.ip[0] = H, c.ip[1] = (int)pos, c.ip[2] = pos_tensor;
    int32_t pos32 = (int32_t)pos;
    if (pos_tensor) add_raw(&c, "pos", DT_I32, 1, (int64_t[]){1}, &pos32);
    compare(label, &c, build_attention_cached, 1e-2, 1e-2);
    // the appended rows: the GPU caches must hold the new k, v at [pos, pos + Tn)
    for (int j = 3; j < 5; j++) {
        float *g = host_copy(c.gpu[j]);
        double e = rel_l2(g, tensor_f32(c.cpu[j]), c.cpu[j]->numel, 0.0f);
        cr_expect(e < 1e-2, "%s: cache %d differs after the append (%.3g)", label, j - 3, e);
        free(g);
    }
}

Test(ops_cuda, attention_cached_decode_d128) {
    NEED_GPU();
    attention_cached_case("attn cached decode D=128", 3, 1, 4, 128, 300, 320, false);
    attention_cached_case("attn cached decode, pos tensor", 3, 1, 4, 128, 300, 320, true);
}
Test(ops_cuda, attention_cached_chunk_d64) { NEED_GPU(); attention_cached_case("attn cached 9 new D=64", 2, 9, 3, 64, 20, 40, false); }
Test(ops_cuda, attention_cached_prefill_d128) { NEED_GPU(); attention_cached_case("attn cached prefill D=128", 2, 70, 2, 128, 0, 80, false); }
Test(ops_cuda, attention_cached_key_splits) {  // few (i, h, b): the keys split over CTAs, then merged
    NEED_GPU();
    attention_cached_case("attn cached split D=50", 1, 1, 2, 50, 200, 256, false);  // 4 splits of 64 keys
    attention_cached_case("attn cached empty splits", 1, 1, 2, 64, 100, 256, true);  // splits 3, 4 see no key
    attention_cached_case("attn cached split 2 new", 1, 2, 3, 128, 500, 520, false);
}

Test(ops_cuda, attention_cached_odd_head_dims) {
    NEED_GPU();
    attention_cached_case("attn cached D=16", 2, 3, 4, 16, 10, 16, false);  // lanes 16..31 own no dims
    attention_cached_case("attn cached D=96", 1, 2, 2, 96, 40, 48, false);
    attention_cached_case("attn cached D=50", 1, 1, 2, 50, 7, 8, false);  // not 8-byte aligned rows: scalar loads
}

// ---- embeddings and token ops ----
static Tensor *build_patch(Tape *t, Tensor **in, const Case *c) { return op_patch_embed(t, in[0], in[1], in[2], c->ip[0], "patch"); }
static Tensor *build_cls_pos(Tape *t, Tensor **in, const Case *c) { return op_cls_pos(t, in[0], in[1], in[2], "cls_pos"); }
static Tensor *build_select(Tape *t, Tensor **in, const Case *c) { return op_select_token(t, in[0], c->ip[0], "select"); }
static Tensor *build_mean(Tape *t, Tensor **in, const Case *c) { return op_mean_tokens(t, in[0], c->ip[0], "mean"); }
static Tensor *build_embedding(Tape *t, Tensor **in, const Case *c) { return op_embedding(t, in[0], in[1], "embed"); }

Test(ops_cuda, patch_embed) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "img", G_ACT, 1.0f, 4, 2, 3, 32, 48);
    add_input(&c, "w", G_PARAM, 0.05f, 4, 64, 3, 16, 16);
    add_input(&c, "b", G_PARAM, 1.0f, 1, 64, 0, 0, 0);
    c.ip[0] = 16;
    compare("patch_embed p=16", &c, build_patch, 1e-2, 2e-2);
}

Test(ops_cuda, cls_pos) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 3, 3, 6, 32, 0);
    add_input(&c, "cls", G_PARAM, 1.0f, 3, 1, 1, 32, 0);
    add_input(&c, "pos", G_PARAM, 1.0f, 3, 1, 7, 32, 0);
    compare("cls_pos", &c, build_cls_pos, 1e-2, 2e-2);
}

Test(ops_cuda, select_and_mean_tokens) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "x", G_ACT, 1.0f, 3, 3, 11, 40, 0);
    c.ip[0] = 0;
    compare("select_token 0", &c, build_select, 1e-2, 2e-2);
    c.ip[0] = 1;
    compare("mean_tokens from 1", &c, build_mean, 1e-2, 2e-2);
}

Test(ops_cuda, embedding_repeated_ids) {
    NEED_GPU();
    Case c = {0};
    int64_t shape[2] = {2, 5};
    int32_t ids[10] = {1, 4, 1, 0, 4, 1, 6, 6, 2, 1};
    add_raw(&c, "ids", DT_I32, 2, shape, ids);
    add_input(&c, "table", G_PARAM, 1.0f, 2, 7, 24, 0, 0);
    compare("embedding", &c, build_embedding, 1e-2, 2e-2);
}

// An id outside the table is reported after the kernel (deferred: the op does not synchronize).
Test(ops_cuda, embedding_bad_id_reported_later) {
    NEED_GPU();
    Tensor *ids = tensor_new1(&a_gin, DT_I32, 3, "ids"), *table = tensor_new2(&a_gin, DT_BF16, 7, 8, "table");
    char msg[192] = "";
    int32_t good[3] = {1, 6, 2}, bad[3] = {1, 7, 2};  // 7 is outside [0, 7)
    tensor_write_host(ids, good);
    op_embedding(&t_gpu, ids, table, "embed_ok");
    cr_expect_not(ops_cuda_deferred_error(msg, sizeof msg), "%s", msg);
    tensor_write_host(ids, bad);
    op_embedding(&t_gpu, ids, table, "embed_bad");
    cr_assert(ops_cuda_deferred_error(msg, sizeof msg), "the out-of-range id was not reported");
    cr_expect(strstr(msg, "'embed_bad'") && strstr(msg, "outside [0, 7)"), "message: %s", msg);
    cr_expect_not(ops_cuda_deferred_error(msg, sizeof msg), "reported twice");
}

// ---- loss ----
static Tensor *build_ce(Tape *t, Tensor **in, const Case *c) { return op_cross_entropy(t, in[0], in[1], c->p[0], "loss"); }

Test(ops_cuda, cross_entropy_smoothing_ignored) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "logits", G_ACT, 3.0f, 2, 6, 1000, 0, 0);
    int64_t n = 6;
    int32_t labels[6] = {2, -1, 999, 17, 0, 500};
    add_raw(&c, "labels", DT_I32, 1, &n, labels);
    c.p[0] = 0.1f;
    compare("cross_entropy K=1000, eps 0.1", &c, build_ce, 1e-2, 2e-2);
}

Test(ops_cuda, cross_entropy_token_rows) {
    NEED_GPU();
    Case c = {0};
    add_input(&c, "logits", G_ACT, 2.0f, 3, 2, 3, 50, 0);
    int64_t shape[2] = {2, 3};
    int32_t labels[6] = {0, 49, 3, 3, 1, 25};
    add_raw(&c, "labels", DT_I32, 2, shape, labels);
    compare("cross_entropy (B,T,K)", &c, build_ce, 1e-2, 2e-2);
}

// ---- a DeiT-like block through tape_backward ----
// in: 0 x, 1 ln_g, 2 ln_b, 3 wqkv, 4 A, 5 B, 6 wproj, 7 whead, 8 labels
static Tensor *build_block(Tape *t, Tensor **in, const Case *c) {
    LoraRef lora = {.A = in[4], .B = in[5], .scale = 2.0f};
    Tensor *h = op_layernorm(t, in[0], in[1], in[2], 1e-6f, "ln");
    h = op_linear(t, h, in[3], NULL, &lora, "qkv");
    h = op_attention(t, h, 4, false, "attn");
    h = op_linear(t, h, in[6], NULL, NULL, "proj");
    h = op_gelu(t, h, "gelu");
    h = op_add(t, h, in[0], "res");
    h = op_mean_tokens(t, h, 1, "pool");
    h = op_linear(t, h, in[7], NULL, NULL, "head");
    return op_cross_entropy(t, h, in[8], 0.0f, "loss");
}

static Case block_case(void) {
    Case c = {0};
    int64_t B = 3, T = 17, C = 64;
    add_input(&c, "x", G_ACT, 1.0f, 3, B, T, C, 0);
    add_input(&c, "ln_g", G_PARAM, 1.0f, 1, C, 0, 0, 0);
    add_input(&c, "ln_b", G_PARAM, 1.0f, 1, C, 0, 0, 0);
    add_input(&c, "wqkv", G_NONE, 0.15f, 2, 3 * C, C, 0, 0);
    add_input(&c, "A", G_PARAM, 0.15f, 2, 8, C, 0, 0);
    add_input(&c, "B", G_PARAM, 0.15f, 2, 3 * C, 8, 0, 0);
    add_input(&c, "wproj", G_PARAM, 0.15f, 2, C, C, 0, 0);
    add_input(&c, "whead", G_PARAM, 0.3f, 2, 10, C, 0, 0);
    int32_t labels[3] = {1, 9, 4};
    add_raw(&c, "labels", DT_I32, 1, &B, labels);
    return c;
}

Test(ops_cuda, block_chain) {
    NEED_GPU();
    Case c = block_case();
    compare("block chain -> loss", &c, build_block, 2e-2, 3e-2);
}

// With a no_zero activation arena: outputs are not zeroed and activation gradients start
// `unwritten` (each first writer overwrites): must give the same numbers.
Test(ops_cuda, block_chain_no_zero_arena) {
    NEED_GPU();
    a_gact.no_zero = true;
    Case c = block_case();
    compare("block chain, no_zero arena", &c, build_block, 2e-2, 3e-2);
}

// Same inputs twice on the GPU: bit-identical loss and gradients (no atomics anywhere).
Test(ops_cuda, deterministic) {
    NEED_GPU();
    Case c = block_case();
    float *first[MAX_INPUTS] = {0};
    float loss[2];
    for (int run = 0; run < 2; run++) {
        for (int i = 0; i < c.n; i++)
            if (c.gpu[i]->grad) tensor_zero(c.gpu[i]->grad);
        tape_reset(&t_gpu);
        t_gpu.counter = 0;
        Tensor *out = build_block(&t_gpu, c.gpu, &c);
        tape_backward(&t_gpu, out);
        tensor_get_f32(out, &loss[run], 1);
        for (int i = 0; i < c.n; i++) {
            if (!c.gpu[i]->grad) continue;
            float *g = host_copy(c.gpu[i]->grad);
            if (run == 0) {
                first[i] = g;
            } else {
                cr_expect(memcmp(g, first[i], (size_t)c.gpu[i]->numel * sizeof *g) == 0, "gradient of %s differs between runs",
                          c.gpu[i]->name);
                free(g);
                free(first[i]);
            }
        }
    }
    cr_expect(loss[0] == loss[1], "loss differs between runs: %.9g vs %.9g", loss[0], loss[1]);
}
