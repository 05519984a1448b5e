// Forward values of the CPU ops against direct formulas, eval mode (nothing recorded, dropout
// off), and the GEMM wrapper (BLAS path and the portable loops).
#include "autograd/cpu_gemm.h"
#include "op_check.h"

TestSuite(ops_forward, .init = op_check_setup, .fini = op_check_teardown);

static void expect_close(const char *what, const float *got, const double *want, int64_t count, double tol) {
    double worst = 0.0;
    for (int64_t e = 0; e < count; e++) worst = fmax(worst, fabs(got[e] - want[e]) / (1.0 + fabs(want[e])));
    cr_expect(worst < tol, "%s: worst error %.3g", what, worst);
}

// ---- gemm ----
// C = alpha·op(A)op(B) + beta·C with padded leading dims, every transpose case, sizes across blocks.
static void check_gemm(bool use_loops, bool ta, bool tb) {
    int M = 70, N = 260, K = 130, lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 2, ldc = N + 5;
    float *A = malloc(sizeof(float) * (ta ? K : M) * lda), *B = malloc(sizeof(float) * (tb ? N : K) * ldb);
    float *C = malloc(sizeof(float) * M * ldc);
    double *want = malloc(sizeof(double) * M * N);
    for (int e = 0; e < (ta ? K : M) * lda; e++) A[e] = rng_normal(&g_rng);
    for (int e = 0; e < (tb ? N : K) * ldb; e++) B[e] = rng_normal(&g_rng);
    for (int e = 0; e < M * ldc; e++) C[e] = rng_normal(&g_rng);
    float alpha = 0.5f, beta = -1.5f;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double acc = 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
            want[i * N + j] = alpha * acc + beta * C[i * ldc + j];
        }
    (use_loops ? cpu_gemm_loops : cpu_gemm)(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    for (int i = 0; i < M; i++) {
        char what[64];
        snprintf(what, sizeof what, "gemm %s ta=%d tb=%d row %d", use_loops ? "loops" : "blas", ta, tb, i);
        expect_close(what, C + i * ldc, want + i * N, N, 1e-4);
    }
    free(A), free(B), free(C), free(want);
}

Test(ops_forward, gemm_all_transposes) {
    for (int v = 0; v < 8; v++) check_gemm(v & 4, v & 1, v & 2);
}

// ---- linear ----
// want = x W'ᵀ + b with W' = W + s·B A (dense) or (W + s·B A) ⊙ mask; x rows dropped by `keep`.
static void linear_reference(const Tensor *x, const Tensor *w, const Tensor *b, const LoraRef *l, double *want) {
    int64_t in = w->shape[1], out = w->shape[0], rows = x->numel / in, r = l ? l->A->shape[0] : 0;
    const float *X = tensor_f32(x), *W = tensor_f32(w);
    for (int64_t i = 0; i < rows; i++)
        for (int64_t o = 0; o < out; o++) {
            double acc = b ? tensor_f32(b)[o] : 0.0;
            for (int64_t k = 0; k < in; k++) {
                double wk = W[o * in + k];
                for (int64_t q = 0; q < r; q++)
                    wk += l->scale * tensor_f32(l->B)[o * r + q] * tensor_f32(l->A)[q * in + k];
                if (l && l->mask) wk *= ((uint8_t *)l->mask->data)[o * in + k];
                acc += X[i * in + k] * wk;
            }
            want[i * out + o] = acc;
        }
}

Test(ops_forward, linear_dense_and_masked_lora) {
    Tensor *x = IN3("x", false, 2, 3, 8), *w = IN2("w", false, 6, 8), *b = IN1("b", false, 6);
    LoraRef l = {.A = IN2("A", false, 2, 8), .B = IN2("B", false, 6, 2), .scale = 1.5f};
    double want[36];
    linear_reference(x, w, b, &l, want);
    Tensor *y = op_linear(&g_tape, x, w, b, &l, "dense");
    cr_expect(y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 6);
    expect_close("dense LoRA", tensor_f32(y), want, 36, 1e-5);
    l.mask = tensor_new2(&g_inputs, DT_U8, 6, 8, "mask");
    for (int e = 0; e < 48; e++) ((uint8_t *)l.mask->data)[e] = (e * 7) % 3 != 0;
    linear_reference(x, w, b, &l, want);
    expect_close("masked LoRA", tensor_f32(op_linear(&g_tape, x, w, b, &l, "masked")), want, 36, 1e-5);
}

Test(ops_forward, lora_dropout_mask_and_eval) {
    Tensor *x = IN2("x", false, 64, 32), *w = IN2("w", false, 4, 32);
    // A = e_k selector rows so that h = drop(x) Aᵀ exposes the dropped x: w = 0, B = I, r = out.
    tensor_zero(w);
    LoraRef l = {.A = IN2("A", false, 4, 32), .B = IN2("B", false, 4, 4), .scale = 1.0f, .dropout = 0.25f};
    tensor_zero(l.A), tensor_zero(l.B);
    for (int q = 0; q < 4; q++) tensor_f32(l.A)[q * 32 + q] = 1.0f, tensor_f32(l.B)[q * 4 + q] = 1.0f;
    g_tape.counter = 7;
    Tensor *y = op_linear(&g_tape, x, w, NULL, &l, "drop");
    int dropped = 0;
    for (int i = 0; i < 64; i++)
        for (int q = 0; q < 4; q++) {
            bool keep = hash_uniform(g_tape.seed, 7, (uint64_t)(i * 32 + q)) >= 0.25f;
            float want = keep ? tensor_f32(x)[i * 32 + q] / 0.75f : 0.0f;
            dropped += !keep;
            cr_expect_float_eq(tensor_f32(y)[i * 4 + q], want, 1e-5, "row %d col %d", i, q);
        }
    cr_expect(dropped > 30 && dropped < 100, "%d of 256 dropped at p = 0.25", dropped);
    // eval: no dropout
    g_tape.training = false;
    Tensor *ye = op_linear(&g_tape, x, w, NULL, &l, "eval");
    for (int i = 0; i < 64; i++)
        for (int q = 0; q < 4; q++) cr_expect_float_eq(tensor_f32(ye)[i * 4 + q], tensor_f32(x)[i * 32 + q], 1e-6);
}

// ---- attention: softmax(q kᵀ/√D) v per head in double ----
Test(ops_forward, attention_matches_formula) {
    int B = 2, T = 5, H = 2, D = 3, C = H * D;
    Tensor *qkv = IN3("qkv", false, B, T, 3 * C);
    const float *in = tensor_f32(qkv);
    for (int causal = 0; causal < 2; causal++) {
        Tensor *out = op_attention(&g_tape, qkv, H, causal, "attn");
        double want[2 * 5 * 6];
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < T; i++) {
                    double s[5], mx = -1e300, sum = 0.0;
                    int len = causal ? i + 1 : T;
                    for (int j = 0; j < len; j++) {
                        s[j] = 0.0;
                        for (int d = 0; d < D; d++)
                            s[j] += in[(b * T + i) * 3 * C + h * D + d] * in[(b * T + j) * 3 * C + C + h * D + d];
                        s[j] /= sqrt(D);
                        mx = fmax(mx, s[j]);
                    }
                    for (int j = 0; j < len; j++) sum += s[j] = exp(s[j] - mx);
                    for (int d = 0; d < D; d++) {
                        double o = 0.0;
                        for (int j = 0; j < len; j++) o += s[j] / sum * in[(b * T + j) * 3 * C + 2 * C + h * D + d];
                        want[(b * T + i) * C + h * D + d] = o;
                    }
                }
        expect_close(causal ? "causal attention" : "attention", tensor_f32(out), want, B * T * C, 1e-5);
    }
}

// ---- patch_embed: a direct strided convolution ----
Test(ops_forward, patch_embed_matches_conv) {
    int B = 2, C = 3, H = 4, W = 6, p = 2, D = 5, Wp = W / p, N = (H / p) * Wp;
    Tensor *img = IN4("img", false, B, C, H, W), *w = IN4("w", false, D, C, p, p), *bias = IN1("b", false, D);
    Tensor *out = op_patch_embed(&g_tape, img, w, bias, p, "patch");
    cr_expect(out->shape[0] == B && out->shape[1] == N && out->shape[2] == D);
    double want[2 * 6 * 5];
    for (int b = 0; b < B; b++)
        for (int n = 0; n < N; n++)
            for (int o = 0; o < D; o++) {
                double acc = tensor_f32(bias)[o];
                int py = n / Wp, px = n % Wp;
                for (int c = 0; c < C; c++)
                    for (int ky = 0; ky < p; ky++)
                        for (int kx = 0; kx < p; kx++)
                            acc += tensor_f32(w)[((o * C + c) * p + ky) * p + kx] *
                                   tensor_f32(img)[((b * C + c) * H + py * p + ky) * W + px * p + kx];
                want[(b * N + n) * D + o] = acc;
            }
    expect_close("patch_embed", tensor_f32(out), want, B * N * D, 1e-5);
}

// ---- rope: HF rotate_half at position t with inv_freq = theta^(-2d/D) ----
Test(ops_forward, rope_rotate_half_convention) {
    int T = 3, H = 2, D = 4;
    float theta = 100.0f;
    Tensor *x = IN3("x", false, 1, T, H * D);
    Tensor *y = op_rope(&g_tape, x, H, theta, "rope");
    double want[3 * 8];
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++)
            for (int d = 0; d < D / 2; d++) {
                double a = t * pow(theta, -2.0 * d / D);
                const float *xi = tensor_f32(x) + (t * H + h) * D;
                double *wo = want + (t * H + h) * D;
                wo[d] = xi[d] * cos(a) - xi[d + D / 2] * sin(a);
                wo[d + D / 2] = xi[d + D / 2] * cos(a) + xi[d] * sin(a);
            }
    expect_close("rope", tensor_f32(y), want, T * H * D, 1e-5);
}

// ---- the small ones ----
Test(ops_forward, norms_gelu_swiglu_values) {
    Tensor *x = input("x", false, 3.0f, 2, 4, 16, 0, 0);
    Tensor *y = op_layernorm(&g_tape, x, NULL, NULL, 0.0f, "ln");
    Tensor *z = op_rmsnorm(&g_tape, x, NULL, 0.0f, "rms");
    for (int r = 0; r < 4; r++) {
        double mean = 0, var = 0, ms = 0;
        for (int c = 0; c < 16; c++) mean += tensor_f32(y)[r * 16 + c] / 16.0;
        for (int c = 0; c < 16; c++) var += pow(tensor_f32(y)[r * 16 + c] - mean, 2) / 16.0;
        for (int c = 0; c < 16; c++) ms += pow(tensor_f32(z)[r * 16 + c], 2) / 16.0;
        cr_expect(fabs(mean) < 1e-5 && fabs(var - 1.0) < 1e-4 && fabs(ms - 1.0) < 1e-4, "row %d: %g %g %g", r, mean, var, ms);
    }
    Tensor *one = IN1("one", false, 2);
    tensor_f32(one)[0] = 1.0f, tensor_f32(one)[1] = -2.0f;
    Tensor *g = op_gelu(&g_tape, one, "gelu");
    cr_expect_float_eq(tensor_f32(g)[0], 0.8413447460685429f, 1e-6);   // torch.nn.GELU()(1.0)
    cr_expect_float_eq(tensor_f32(g)[1], -0.04550026389635842f, 1e-6); // torch.nn.GELU()(-2.0)
    Tensor *s = op_swiglu(&g_tape, one, one, "swiglu");
    cr_expect_float_eq(tensor_f32(s)[0], 1.0f / (1.0f + expf(-1.0f)), 1e-6);
    cr_expect_float_eq(tensor_f32(s)[1], 4.0f / (1.0f + expf(2.0f)), 1e-6);
}

Test(ops_forward, tokens_and_embeddings) {
    Tensor *x = IN3("x", false, 2, 3, 4), *cls = IN3("cls", false, 1, 1, 4), *pos = IN3("pos", false, 1, 4, 4);
    const float *X = tensor_f32(x), *P = tensor_f32(pos);
    Tensor *cp = op_cls_pos(&g_tape, x, cls, pos, "cls_pos");
    cr_expect(cp->shape[1] == 4);
    for (int b = 0; b < 2; b++)
        for (int d = 0; d < 4; d++) {
            cr_expect_float_eq(tensor_f32(cp)[(b * 4) * 4 + d], tensor_f32(cls)[d] + P[d], 1e-6);
            cr_expect_float_eq(tensor_f32(cp)[(b * 4 + 2) * 4 + d], X[(b * 3 + 1) * 4 + d] + P[2 * 4 + d], 1e-6);
        }
    Tensor *sel = op_select_token(&g_tape, x, 2, "sel"), *mean = op_mean_tokens(&g_tape, x, 1, "mean");
    for (int b = 0; b < 2; b++)
        for (int d = 0; d < 4; d++) {
            cr_expect_float_eq(tensor_f32(sel)[b * 4 + d], X[(b * 3 + 2) * 4 + d], 1e-6);
            cr_expect_float_eq(tensor_f32(mean)[b * 4 + d], 0.5f * (X[(b * 3 + 1) * 4 + d] + X[(b * 3 + 2) * 4 + d]), 1e-6);
        }
    int64_t ids_shape[2] = {1, 2};
    Tensor *table = IN2("table", false, 3, 4);
    Tensor *e = op_embedding(&g_tape, int_input("ids", 2, ids_shape, (int32_t[]){2, 0}), table, "emb");
    cr_expect(e->ndim == 3 && e->shape[2] == 4);
    for (int d = 0; d < 4; d++) {
        cr_expect(tensor_f32(e)[d] == tensor_f32(table)[8 + d]);
        cr_expect(tensor_f32(e)[4 + d] == tensor_f32(table)[d]);
    }
}

// ---- eval: tape->record = false keeps nothing and gives the same outputs ----
static Tensor *forward_block(Tape *t, Tensor *x, Tensor *w, LoraRef *l, Tensor *gamma) {
    Tensor *h = op_layernorm(t, x, gamma, NULL, 1e-5f, "ln");
    h = op_linear(t, h, w, NULL, l, "qkv");
    h = op_attention(t, h, 2, false, "attn");
    h = op_add(t, op_gelu(t, h, "gelu"), x, "res");
    return op_select_token(t, h, 0, "cls");
}

Test(ops_forward, eval_records_nothing) {
    Tensor *x = IN3("x", false, 2, 5, 8), *w = IN2("w", true, 24, 8), *gamma = IN1("gamma", true, 8);
    LoraRef l = {.A = IN2("A", true, 2, 8), .B = IN2("B", true, 24, 2), .scale = 1.0f, .dropout = 0.5f};
    g_tape.training = false;
    Tensor *train_out = forward_block(&g_tape, x, w, &l, gamma);
    cr_expect(g_tape.n == 6, "%d nodes recorded", g_tape.n);
    cr_expect(train_out->requires_grad);
    size_t used_recording = g_act.used;
    float *want = malloc((size_t)train_out->numel * sizeof *want);
    memcpy(want, train_out->data, (size_t)train_out->numel * sizeof *want);

    tape_reset(&g_tape);
    g_tape.record = false;
    Tensor *eval_out = forward_block(&g_tape, x, w, &l, gamma);
    cr_expect(g_tape.n == 0, "%d nodes recorded in eval", g_tape.n);
    cr_expect(g_act.used < used_recording, "eval kept saved tensors: %zu vs %zu bytes", g_act.used, used_recording);
    for (int64_t e = 0; e < eval_out->numel; e++) cr_expect(tensor_f32(eval_out)[e] == want[e]);
    free(want);
}

Test(ops_forward, frozen_inputs_record_nothing) {
    Tensor *x = IN2("x", false, 3, 4);
    op_gelu(&g_tape, op_add(&g_tape, x, x, "sum"), "gelu");
    cr_expect(g_tape.n == 0);
}

// ---- shape errors are fatal ----
Test(ops_forward, linear_shape_mismatch_is_fatal, .exit_code = 1) {
    op_linear(&g_tape, IN2("x", false, 3, 5), IN2("w", false, 4, 6), NULL, NULL, "bad");
}

// A position tensor (op_rope_at / op_attention_cached) must be I32 with one element.
Test(ops_forward, rope_position_tensor_not_i32_is_fatal, .exit_code = 1) {
    op_rope_at(&g_tape, IN3("x", false, 1, 2, 8), 2, 10.0f, 0, tensor_new1(&g_inputs, DT_F32, 1, "pos"), "bad");
}

Test(ops_forward, rope_position_tensor_of_two_is_fatal, .exit_code = 1) {
    op_rope_at(&g_tape, IN3("x", false, 1, 2, 8), 2, 10.0f, 0, tensor_new1(&g_inputs, DT_I32, 2, "pos"), "bad");
}

Test(ops_forward, attention_cached_position_tensor_not_i32_is_fatal, .exit_code = 1) {
    Tensor *q = IN3("q", false, 1, 1, 8), *kc = IN3("kc", false, 1, 4, 8), *vc = IN3("vc", false, 1, 4, 8);
    op_attention_cached(&g_tape, q, q, q, kc, vc, 2, 0, tensor_new1(&g_inputs, DT_F32, 1, "pos"), "bad");
}
