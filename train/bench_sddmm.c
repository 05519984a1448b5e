// `vnmtune bench sddmm`: the masked-LoRA weight gradient on the CPU, G = (dyᵀx) ⊙ mask, computed
// densely (one GEMM, then the mask) vs as a V:N:M SDDMM (only each row block's kept columns),
// on the same data in one run. Prints the backward time of one masked LoRA linear and the ratio.
#include "bench_sddmm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/rng.h"
#include "train/vnm_mask.h"

static double backward_seconds(int64_t T, int64_t out, int64_t in, const char *pattern, bool sddmm, int reps) {
    Arena p, acts;
    arena_init(&p, "p", DEV_CPU, (size_t)(T * in + 3 * out * in + 64 * (in + out)) * 4 + (16 << 20));
    arena_init(&acts, "a", DEV_CPU, (size_t)(4 * T * (in + out) + 4 * out * in) * 4 + (64 << 20));
    Tape t;
    tape_init(&t, &acts);
    Rng r;
    rng_seed(&r, 1);
    Tensor *x = tensor_new2(&p, DT_F32, T, in, "x"), *w = tensor_new2(&p, DT_F32, out, in, "w");
    Tensor *A = tensor_new2(&p, DT_F32, 16, in, "A"), *B = tensor_new2(&p, DT_F32, out, 16, "B");
    Tensor *mask = tensor_new2(&p, DT_U8, out, in, "mask");
    Tensor *ts[] = {x, w, A, B};
    for (int k = 0; k < 4; k++)
        for (int64_t i = 0; i < ts[k]->numel; i++) tensor_f32(ts[k])[i] = rng_normal(&r);
    MaskSpec spec;
    Err err;
    if (mask_spec_parse(pattern, &spec, &err) || mask_compute(tensor_f32(w), out, in, &spec, "bench", mask->data, &err))
        fatal("bench sddmm: %s", err.msg);
    A->requires_grad = B->requires_grad = true;
    tensor_ensure_grad(A, &p), tensor_ensure_grad(B, &p);
    LoraRef lr = {.A = A, .B = B, .mask = mask, .scale = 2.0f, .vnm_V = sddmm ? spec.vnm.V : 0, .vnm_M = sddmm ? spec.vnm.M : 0};
    Tensor *y = op_linear(&t, x, w, NULL, &lr, "lin");
    tensor_ensure_grad(y, &acts);
    for (int64_t i = 0; i < y->numel; i++) tensor_f32(y->grad)[i] = rng_normal(&r);
    TapeNode *node = &t.nodes[t.n - 1];
    g_ops[OP_LINEAR].backward[DEV_CPU](node);  // warm-up
    double t0 = now_seconds();
    for (int i = 0; i < reps; i++) g_ops[OP_LINEAR].backward[DEV_CPU](node);
    double s = (now_seconds() - t0) / reps;
    tape_free(&t);
    arena_free(&p), arena_free(&acts);
    return s;
}

int bench_sddmm_main(int argc, char **argv) {
    int64_t T = 197 * 8;
    int reps = 3;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tokens") && i + 1 < argc) T = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: vnmtune bench sddmm [--tokens N] [--reps N]   (CPU)\n");
            return 2;
        }
    }
    static const int64_t shapes[][2] = {{1152, 384}, {1536, 384}, {384, 1536}, {768, 3072}};
    static const char *patterns[] = {"64:2:8", "64:2:16"};
    printf("masked LoRA linear backward (r=16) on the CPU, %lld tokens: dense G = dyᵀx then mask vs V:N:M SDDMM\n",
           (long long)T);
    printf("%-12s %-8s %12s %12s %8s\n", "out x in", "pattern", "dense G ms", "SDDMM ms", "ratio");
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t p = 0; p < sizeof patterns / sizeof *patterns; p++) {
            double d = backward_seconds(T, shapes[s][0], shapes[s][1], patterns[p], false, reps);
            double q = backward_seconds(T, shapes[s][0], shapes[s][1], patterns[p], true, reps);
            printf("%5lldx%-6lld %-8s %12.2f %12.2f %7.2fx\n", (long long)shapes[s][0], (long long)shapes[s][1], patterns[p],
                   1e3 * d, 1e3 * q, d / q);
            fflush(stdout);
        }
    return 0;
}
