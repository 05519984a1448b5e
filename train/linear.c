#include "linear.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/util.h"
#include "train/vnm_linear.h"

static void collect_act_sq(const Linear *l, const Tensor *x) {
    // GPU / bf16 activations: a host copy
    float *p = x->device == DEV_CPU && x->dtype == DT_F32 ? tensor_f32(x) : tensor_to_host_f32(x);
    int64_t rows = x->numel / l->in;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < l->in; j++) l->act_sq[j] += (double)p[r * l->in + j] * p[r * l->in + j];
    for (int64_t r = 0; l->act_gram && r < rows; r++)
        for (int64_t i = 0; i < l->in; i++)
            for (int64_t j = 0; j < l->in; j++) l->act_gram[i * l->in + j] += (double)p[r * l->in + i] * p[r * l->in + j];
    if (p != x->data) free(p);
}

Tensor *linear_forward(Tape *t, Linear *l, Tensor *x) { return linear_forward_residual(t, l, x, NULL); }

Tensor *linear_forward_residual(Tape *t, Linear *l, Tensor *x, Tensor *residual) {
    if (l->act_sq) collect_act_sq(l, x);
    if (l->vnm && vnm_layer_use_sparse(l->vnm, x->numel / l->in)) return op_vnm_linear(t, x, l->vnm, l->b, residual, l->name);
    LoraRef lora = {.A = l->lora_A, .B = l->lora_B, .mask = l->masked ? l->mask : NULL, .scale = l->lora_scale,
                    .dropout = l->lora_dropout, .vnm_V = l->mask_V, .vnm_M = l->mask_M};
    // Without LoRA a mask is already applied to w itself (prune_apply), so the plain GEMM runs.
    return op_linear_residual(t, x, l->w, l->b, l->lora_A ? &lora : NULL, residual, l->name);
}

bool linear_name_matches(const Linear *l, const char *pattern) {
    if (strcmp(pattern, "all") == 0) return true;
    if (strchr(pattern, '.')) return strstr(l->name, pattern) != NULL;
    const char *last = strrchr(l->name, '.');
    return strcmp(last ? last + 1 : l->name, pattern) == 0;
}

void linear_free_sparse(Linear *l) {
    if (!l->vnm) return;
    vnm_layer_free(l->vnm);
    free(l->vnm);
    l->vnm = NULL;
}

void linear_print_kernels(FILE *f, Linear *const *linears, int n) {
    for (int i = 0; i < n; i++) {
        const Linear *l = linears[i];
        if (!l->vnm) continue;
        fprintf(f, "  %-22s %d:2:%d %s", l->name, l->vnm->m.p.V, l->vnm->m.p.M, l->vnm->kernel ? l->vnm->kernel : "-");
        if (l->vnm->measured >= 0) fprintf(f, " (table: sparse %.2fx dense)", l->vnm->measured);
        fprintf(f, "\n");
    }
}
