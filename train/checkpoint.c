// Training checkpoints over h5io (layout in checkpoint.h).
#include "checkpoint.h"

#include <stdlib.h>
#include <string.h>

#include "autograd/device.h"
#include "train/h5io.h"

#define CKPT_FORMAT "vnmtune-checkpoint"
#define CKPT_VERSION 1
#define DSET_LEN 320

// ---- names ----

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

// LoRA params "<layer>.lora_A" / "<layer>.lora_B": the layer name into layer, 'A' or 'B' returned.
static char lora_split(const char *name, char *layer, size_t n) {
    bool a = ends_with(name, ".lora_A"), b = ends_with(name, ".lora_B");
    if (!a && !b) fatal("checkpoint: LoRA param '%s' is not named <layer>.lora_A / <layer>.lora_B", name);
    snprintf(layer, n, "%.*s", (int)(strlen(name) - strlen(".lora_A")), name);
    return a ? 'A' : 'B';
}

// Where param p lives in the file.
static void param_dset(const Param *p, char *buf, size_t n) {
    const char *name = p->value->name;
    if (p->kind == PARAM_BASE) {
        snprintf(buf, n, "/model/%s", name);
        return;
    }
    char layer[TENSOR_NAME_LEN];
    char ab = lora_split(name, layer, sizeof layer);
    snprintf(buf, n, "/lora/%s/%c", layer, ab);
}

static bool stored(const CkptContent *c, const Param *p) { return p->trainable || !c->skip_frozen; }

// ---- f32 arrays on either device (optimizer moments) ----

static int write_f32(H5File *f, const char *dset, const Tensor *like, const float *data, Device dev, Err *err) {
    if (dev == DEV_CPU) return h5_write(f, dset, DT_F32, like->ndim, like->shape, data, err);
    size_t bytes = (size_t)like->numel * sizeof(float);
    float *host = xmalloc(bytes);
    device_copy_d2h(host, data, bytes);
    int rc = h5_write(f, dset, DT_F32, like->ndim, like->shape, host, err);
    free(host);
    return rc;
}

static int read_f32(H5File *f, const char *dset, const Tensor *like, float *data, Device dev, Err *err) {
    if (dev == DEV_CPU) return h5_read(f, dset, DT_F32, like->ndim, like->shape, data, err);
    size_t bytes = (size_t)like->numel * sizeof(float);
    float *host = xmalloc(bytes);
    int rc = h5_read(f, dset, DT_F32, like->ndim, like->shape, host, err);
    if (rc == 0) device_copy_h2d(data, host, bytes);
    free(host);
    return rc;
}

// ---- the parts that save and load share (save: file <- c, else c <- file) ----

// The stored params, at /model/<name> and /lora/<layer>/{A,B}.
static int params_io(H5File *f, const CkptContent *c, bool save, Err *err) {
    char dset[DSET_LEN];
    for (int i = 0; i < c->params->n; i++) {
        const Param *p = &c->params->items[i];
        if (!stored(c, p)) continue;
        param_dset(p, dset, sizeof dset);
        int rc = save ? h5_write_tensor(f, dset, p->value, err) : h5_read_tensor(f, dset, p->value, err);
        if (rc < 0) return -1;
    }
    return 0;
}

// The AdamW moments of the trainable params, at /optim/m/<name> and /optim/v/<name>.
static int moments_io(H5File *f, const CkptContent *c, bool save, Err *err) {
    int k = 0;
    for (int i = 0; i < c->params->n; i++) {
        const Param *p = &c->params->items[i];
        if (!p->trainable) continue;
        for (int which = 0; which < 2; which++) {
            float *data = which == 0 ? c->m[k] : c->v[k];
            char dset[DSET_LEN];
            snprintf(dset, sizeof dset, "/optim/%c/%s", which == 0 ? 'm' : 'v', p->value->name);
            int rc = save ? write_f32(f, dset, p->value, data, c->optim_device, err)
                          : read_f32(f, dset, p->value, data, c->optim_device, err);
            if (rc < 0) return -1;
        }
        k++;
    }
    return 0;
}

// ---- save ----

static int write_all(H5File *f, const CkptContent *c, Err *err) {
    if (h5_set_attr_str(f, "/", "format", CKPT_FORMAT, err) < 0 ||
        h5_set_attr_i64(f, "/", "version", CKPT_VERSION, err) < 0 ||
        h5_set_attr_i64(f, "/", "frozen_skipped", c->skip_frozen, err) < 0 ||
        (c->config && h5_set_attr_str(f, "/", "config", c->config, err) < 0))
        return -1;
    if (params_io(f, c, true, err) < 0) return -1;
    char dset[DSET_LEN];
    for (int i = 0; i < c->n_masks; i++) {
        if (c->masks[i].mask->dtype != DT_U8 && c->masks[i].mask->dtype != DT_I32)
            fatal("checkpoint: mask '%s' is neither u8 nor i32", c->masks[i].layer);
        snprintf(dset, sizeof dset, "/mask/%s", c->masks[i].layer);
        if (h5_write_tensor(f, dset, c->masks[i].mask, err) < 0) return -1;
    }
    if (c->m && c->v && moments_io(f, c, true, err) < 0) return -1;
    for (int i = 0; i < c->n_state; i++) {
        if (strchr(c->state[i].name, '/')) fatal("checkpoint: state name '%s' contains '/'", c->state[i].name);
        snprintf(dset, sizeof dset, "/state/%s", c->state[i].name);
        if (h5_write_u64(f, dset, 1, &c->state[i].value, err) < 0) return -1;
    }
    return 0;
}

int ckpt_save(const char *path, const CkptContent *c, Err *err) {
    H5File f;
    if (h5_create(&f, path, err) < 0) return -1;
    if (write_all(&f, c, err) < 0) {
        h5_abort(&f);
        return -1;
    }
    return h5_close_commit(&f, err);
}

// ---- load ----

// Every child of `group` must be one of `expected` (when the group exists at all).
static int check_no_extra(H5File *f, const char *group, const char **expected, int n_expected, const char *what,
                          Err *err) {
    if (!h5_exists(f, group)) return 0;
    char **names;
    int n;
    if (h5_list(f, group, &names, &n, err) < 0) return -1;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        bool found = false;
        for (int j = 0; j < n_expected && !found; j++) found = strcmp(names[i], expected[j]) == 0;
        if (!found)
            rc = err_set(err, "%s: '%s/%s' is not %s of this model (checkpoint of another model or config?)",
                         f->path, group, names[i], what);
    }
    h5_free_list(names, n);
    return rc;
}

// The names the params should have under /model (base) and /lora (layers), and trainable ones.
typedef struct Expected {
    const char **base, **lora_layers, **trainable;
    int n_base, n_lora, n_trainable;
    char (*layer_buf)[TENSOR_NAME_LEN];
} Expected;

static void expected_names(const CkptContent *c, Expected *e) {
    int n = c->params->n;
    e->base = xcalloc((size_t)n, sizeof(char *));
    e->lora_layers = xcalloc((size_t)n, sizeof(char *));
    e->trainable = xcalloc((size_t)n, sizeof(char *));
    e->layer_buf = xcalloc((size_t)n, sizeof *e->layer_buf);
    e->n_base = e->n_lora = e->n_trainable = 0;
    for (int i = 0; i < n; i++) {
        const Param *p = &c->params->items[i];
        if (p->trainable) e->trainable[e->n_trainable++] = p->value->name;
        if (!stored(c, p)) continue;
        if (p->kind == PARAM_BASE) {
            e->base[e->n_base++] = p->value->name;
        } else {
            lora_split(p->value->name, e->layer_buf[i], TENSOR_NAME_LEN);
            e->lora_layers[e->n_lora++] = e->layer_buf[i];  // A and B both add it; duplicates are harmless
        }
    }
}

static void expected_free(Expected *e) {
    free(e->base);
    free(e->lora_layers);
    free(e->trainable);
    free(e->layer_buf);
}

static int read_moments(H5File *f, CkptContent *c, const Expected *e, Err *err) {
    if (moments_io(f, c, false, err) < 0) return -1;
    if (check_no_extra(f, "/optim/m", e->trainable, e->n_trainable, "a trainable param", err) < 0 ||
        check_no_extra(f, "/optim/v", e->trainable, e->n_trainable, "a trainable param", err) < 0)
        return -1;
    c->loaded_optim = true;
    return 0;
}

static int read_masks(H5File *f, CkptContent *c, Err *err) {
    const char **layers = xcalloc((size_t)c->n_masks, sizeof(char *));
    int rc = 0;
    char dset[DSET_LEN];
    for (int i = 0; i < c->n_masks && rc == 0; i++) {
        layers[i] = c->masks[i].layer;
        snprintf(dset, sizeof dset, "/mask/%s", c->masks[i].layer);
        rc = h5_read_tensor(f, dset, c->masks[i].mask, err);
    }
    if (rc == 0) rc = check_no_extra(f, "/mask", layers, c->n_masks, "a masked layer", err);
    free(layers);
    if (rc == 0) c->loaded_masks = true;
    return rc;
}

static int check_format(H5File *f, const CkptContent *c, Err *err) {
    Err ignored;
    char *format = h5_get_attr_str(f, "/", "format", &ignored);
    bool ours = format && strcmp(format, CKPT_FORMAT) == 0;
    free(format);
    if (!ours) return err_set(err, "%s: not a vnmtune checkpoint (no format=\"" CKPT_FORMAT "\" attribute)", f->path);
    int64_t version = 0, skipped = 0;
    if (h5_get_attr_i64(f, "/", "version", &version, err) < 0) return -1;
    if (version != CKPT_VERSION)
        return err_set(err, "%s: checkpoint version %lld, this vnmtune reads version %d", f->path, (long long)version,
                       CKPT_VERSION);
    if (h5_get_attr_i64(f, "/", "frozen_skipped", &skipped, err) < 0) return -1;
    if (skipped && !c->skip_frozen)
        return err_set(err, "%s: checkpoint was saved without the frozen params (skip_frozen); load them from "
                       "model.init and load the checkpoint with skip_frozen", f->path);
    return 0;
}

static int read_all(H5File *f, CkptContent *c, Err *err) {
    if (check_format(f, c, err) < 0) return -1;
    Err ignored;
    c->config_loaded = h5_get_attr_str(f, "/", "config", &ignored);  // optional
    if (params_io(f, c, false, err) < 0) return -1;
    Expected e;
    expected_names(c, &e);
    int rc = check_no_extra(f, "/model", e.base, e.n_base, "a base param", err);
    if (rc == 0) rc = check_no_extra(f, "/lora", e.lora_layers, e.n_lora, "a LoRA layer", err);
    if (rc == 0 && c->m && c->v && h5_exists(f, "/optim")) rc = read_moments(f, c, &e, err);
    expected_free(&e);
    if (rc == 0 && c->n_masks > 0 && h5_exists(f, "/mask")) rc = read_masks(f, c, err);
    char dset[DSET_LEN];
    for (int i = 0; i < c->n_state && rc == 0; i++) {
        snprintf(dset, sizeof dset, "/state/%s", c->state[i].name);
        rc = h5_read_u64(f, dset, 1, &c->state[i].value, err);
    }
    return rc;
}

int ckpt_load(const char *path, CkptContent *c, Err *err) {
    c->config_loaded = NULL;
    c->loaded_optim = c->loaded_masks = false;
    H5File f;
    if (h5_open_read(&f, path, err) < 0) return -1;
    int rc = read_all(&f, c, err);
    Err ignored;
    h5_close_commit(&f, &ignored);
    if (rc < 0) {
        free(c->config_loaded);
        c->config_loaded = NULL;
    }
    return rc;
}

char *ckpt_read_config(const char *path, Err *err) {
    H5File f;
    if (h5_open_read(&f, path, err) < 0) return NULL;
    CkptContent none = {.skip_frozen = true};
    char *config = check_format(&f, &none, err) == 0 ? h5_get_attr_str(&f, "/", "config", err) : NULL;
    Err ignored;
    h5_close_commit(&f, &ignored);
    return config;
}
