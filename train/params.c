#include "params.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/util.h"

void params_add(ParamList *pl, Tensor *value, ParamKind kind, bool trainable, bool decay) {
    if (params_find(pl, value->name)) fatal("parameter '%s' registered twice", value->name);
    if (pl->n == pl->cap) {
        pl->cap = pl->cap ? 2 * pl->cap : 64;
        pl->items = xrealloc(pl->items, (size_t)pl->cap * sizeof *pl->items);
    }
    value->requires_grad = trainable;
    value->grad_f32 = trainable;  // f32 gradients on CUDA too (tensor_ensure_grad)
    pl->items[pl->n++] = (Param){.value = value, .kind = kind, .trainable = trainable, .decay = decay};
}

Param *params_find(const ParamList *pl, const char *name) {
    for (int i = 0; i < pl->n; i++)
        if (strcmp(pl->items[i].value->name, name) == 0) return &pl->items[i];
    return NULL;
}

int64_t params_count(const ParamList *pl, bool trainable_only) {
    int64_t n = 0;
    for (int i = 0; i < pl->n; i++)
        if (!trainable_only || pl->items[i].trainable) n += pl->items[i].value->numel;
    return n;
}

void params_free(ParamList *pl) {
    free(pl->items);
    memset(pl, 0, sizeof *pl);
}
