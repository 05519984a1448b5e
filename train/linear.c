#include "linear.h"

#include <string.h>

#include "autograd/util.h"

static void collect_act_sq(const Linear *l, const Tensor *x) {
    if (x->device != DEV_CPU || x->dtype != DT_F32) fatal("calibration of '%s' needs fp32 CPU activations", l->name);
    const float *p = tensor_f32(x);
    for (int64_t r = 0; r < x->numel / l->in; r++)
        for (int64_t j = 0; j < l->in; j++) l->act_sq[j] += (double)p[r * l->in + j] * p[r * l->in + j];
}

Tensor *linear_forward(Tape *t, Linear *l, Tensor *x) {
    if (l->act_sq) collect_act_sq(l, x);
    LoraRef lora = {.A = l->lora_A, .B = l->lora_B, .mask = l->mask, .scale = l->lora_scale,
                    .dropout = l->lora_dropout};
    // Without LoRA a mask is already applied to w itself (prune_apply), so the plain GEMM runs.
    return op_linear(t, x, l->w, l->b, l->lora_A ? &lora : NULL, l->name);
}

bool linear_name_matches(const Linear *l, const char *pattern) {
    if (strcmp(pattern, "all") == 0) return true;
    if (strchr(pattern, '.')) return strstr(l->name, pattern) != NULL;
    const char *last = strrchr(l->name, '.');
    return strcmp(last ? last + 1 : l->name, pattern) == 0;
}
