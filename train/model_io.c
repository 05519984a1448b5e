#include "model_io.h"

#include <stdlib.h>

#include "train/safetensors.h"

int model_load_safetensors(ParamList *pl, const char *path, bool lora_too, Err *err) {
    StFile f;
    if (st_open(&f, path, err)) return -1;
    int rc = 0;
    for (int i = 0; i < pl->n && rc == 0; i++) {
        Param *p = &pl->items[i];
        if (p->kind == PARAM_LORA && !lora_too) continue;
        if (!st_find(&f, p->value->name)) {
            rc = err_set(err, "%s: tensor '%s' is missing (the model needs it with shape %s)", path, p->value->name,
                         tensor_shape_str(p->value, (char[64]){0}, 64));
            break;
        }
        rc = st_read_tensor(&f, p->value->name, p->value, err);
    }
    st_close(&f);
    return rc;
}

int model_save_safetensors(const ParamList *pl, const char *path, bool bf16, Err *err) {
    StWriteEntry *e = xcalloc((size_t)pl->n, sizeof *e);
    float **host = xcalloc((size_t)pl->n, sizeof *host);
    for (int i = 0; i < pl->n; i++) {
        const Tensor *t = pl->items[i].value;
        host[i] = xmalloc((size_t)t->numel * sizeof(float));
        tensor_get_f32(t, host[i], t->numel);
        e[i] = (StWriteEntry){.name = t->name, .dtype = bf16 ? SFT_BF16 : SFT_F32, .ndim = t->ndim, .shape = t->shape, .f32 = host[i]};
    }
    StMeta meta = {"format", "pt"};
    int rc = st_write(path, e, pl->n, &meta, 1, err);
    for (int i = 0; i < pl->n; i++) free(host[i]);
    free(host), free(e);
    return rc;
}
