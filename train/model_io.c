#include "model_io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/safetensors.h"

#define MAX_SHARDS 64

// Opens every file of the comma-separated list; returns how many (-1 on error, all closed).
static int open_shards(const char *paths, StFile *files, Err *err) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", paths);
    int n = 0;
    for (char *save = NULL, *p = strtok_r(buf, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        if (n == MAX_SHARDS || st_open(&files[n], p, err)) {
            if (n == MAX_SHARDS) err_set(err, "%s: more than %d safetensors files", paths, MAX_SHARDS);
            while (n > 0) st_close(&files[--n]);
            return -1;
        }
        n++;
    }
    return n;
}

int model_load_safetensors(ParamList *pl, const char *path, bool lora_too, Err *err) {
    StFile files[MAX_SHARDS];
    int n = open_shards(path, files, err);
    if (n < 0) return -1;
    int rc = 0;
    for (int i = 0; i < pl->n && rc == 0; i++) {
        Param *p = &pl->items[i];
        if (p->kind == PARAM_LORA && !lora_too) continue;
        int k = 0;
        while (k < n && !st_find(&files[k], p->value->name)) k++;
        if (k == n)
            rc = err_set(err, "%s: tensor '%s' is missing (the model needs it with shape %s)", path, p->value->name,
                         tensor_shape_str(p->value, (char[64]){0}, 64));
        else
            rc = st_read_tensor(&files[k], p->value->name, p->value, err);
    }
    while (n > 0) st_close(&files[--n]);
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
