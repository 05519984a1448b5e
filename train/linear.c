#include "linear.h"

#include <string.h>

Tensor *linear_forward(Tape *t, Linear *l, Tensor *x) {
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
