#include "model_export.h"

#include <stdlib.h>
#include <string.h>

#include "train/vnm_export.h"
#include "train/vnm_linear.h"
#include "train/vnm_permute.h"

// ---- writing ----

// Folding input permutations into the layers that make the input. A permuted layer whose input is
// made only by other sparse layers through elementwise ops (DeiT's fc2 from GELU(fc1), Llama's
// down_proj from silu(gate_proj)·up_proj) gets that input in its permuted order: the producers'
// output rows are renumbered (weights, biases, row permutations) and the consumer's stored
// columns become plain positions. The export computes the same function; the consumer then has
// no input permutation, so at prefill its 2:4 form runs without a gather of x (kernels/vnm_spmm.h),
// and the producers' renumbered rows cost nothing there (the 2:4 form stores rows in output order).
static const struct {
    const char *consumer, *producers[2];
} FOLDS[] = {{"mlp.fc2", {"mlp.fc1", NULL}}, {"mlp.down_proj", {"mlp.gate_proj", "mlp.up_proj"}}};

typedef struct Fold {
    const int32_t *in_order;   // the layer's inputs arrive in this order (new index -> original), or NULL
    const int32_t *out_order;  // the layer's outputs leave in this order, or NULL
} Fold;

static int linear_index(Linear *const *linears, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(linears[i]->name, name)) return i;
    return -1;
}

// f[i] for every layer: the FOLDS entries whose consumer is permuted and whose producers are all
// sparse layers of s with as many outputs as the consumer has inputs.
static void plan_folds(const Schedule *s, Fold *f) {
    for (int i = 0; i < s->n_layers; i++) {
        const char *name = s->layers[i]->name;
        const size_t len = strlen(name);
        for (size_t k = 0; k < sizeof FOLDS / sizeof FOLDS[0] && s->perm_in[i]; k++) {
            const size_t cl = strlen(FOLDS[k].consumer);
            if (len <= cl || name[len - cl - 1] != '.' || strcmp(name + len - cl, FOLDS[k].consumer)) continue;
            int prod[2] = {-1, -1}, ok = 1;
            for (int j = 0; j < 2 && FOLDS[k].producers[j]; j++) {
                char pn[sizeof s->layers[i]->name + 32];
                snprintf(pn, sizeof pn, "%.*s%s", (int)(len - cl), name, FOLDS[k].producers[j]);
                prod[j] = linear_index(s->layers, s->n_layers, pn);
                ok &= prod[j] >= 0 && s->layers[prod[j]]->out == s->layers[i]->in && !f[prod[j]].out_order;
            }
            if (!ok) continue;
            f[i].in_order = s->perm_in[i]->data;
            for (int j = 0; j < 2 && prod[j] >= 0; j++) f[prod[j]].out_order = s->perm_in[i]->data;
        }
    }
}

// new_index[k] = the new index of original index orig[k] (orig NULL: k) under `order` (new ->
// original; NULL: unchanged).
static int32_t *new_index(const int32_t *orig, const int32_t *order, int64_t n) {
    int32_t *inv = xmalloc((size_t)n * sizeof *inv), *r = xmalloc((size_t)n * sizeof *r);
    for (int64_t k = 0; k < n; k++) inv[order ? order[k] : k] = (int32_t)k;
    for (int64_t k = 0; k < n; k++) r[k] = inv[orig ? orig[k] : k];
    free(inv);
    return r;
}

// Compress one merged, masked layer. With a permutation the mask has the V:N:M structure only in
// permuted coordinates: mask_perm[r][k] = mask[perm_out[r]][perm_in[k]]. With a fold (f) the
// weight is first renumbered to the new input / output order, and so are the stored indices.
static int compress_layer(const Schedule *s, int i, const Fold *f, VnmMatrix *m, Err *err) {
    const Linear *l = s->layers[i];
    int64_t out = l->out, in = l->in;
    float *W = xmalloc((size_t)(out * in) * sizeof *W);
    tensor_get_f32(l->w, W, out * in);
    const uint8_t *mask = s->host_mask[i];
    int rc;
    if (s->perm_in[i] || f->in_order || f->out_order) {
        const int32_t *pi = s->perm_in[i] ? s->perm_in[i]->data : NULL, *po = s->perm_out[i] ? s->perm_out[i]->data : NULL;
        uint8_t *mp = xmalloc((size_t)(out * in));
        for (int64_t r = 0; r < out; r++)
            for (int64_t k = 0; k < in; k++) mp[r * in + k] = mask[(po ? po[r] : r) * in + (pi ? pi[k] : k)];
        int32_t *in_new = new_index(pi, f->in_order, in), *out_new = new_index(po, f->out_order, out);
        float *Wn = xmalloc((size_t)(out * in) * sizeof *Wn);  // W[o'][c'] = W[out_order[o']][in_order[c']]
        vnm_permute_apply(W, out, in, f->in_order, f->out_order, Wn);
        rc = vnm_compress_permuted(Wn, mp, out, in, s->layer_pattern[i], in_new, out_new, m, err);
        free(mp), free(in_new), free(out_new), free(Wn);
    } else {
        rc = vnm_compress(W, mask, out, in, s->layer_pattern[i], NULL, m, err);
    }
    free(W);
    if (rc) err_set(err, "layer '%s': %s", l->name, err->msg);
    return rc;
}

static bool is_sparse_weight(const Schedule *s, const Tensor *w) {
    for (int i = 0; i < s->n_layers; i++)
        if (s->layers[i]->w == w) return true;
    return false;
}

// The base parameters that stay dense, as fp32 host copies (free with free_dense); a fold
// producer's bias in its new output order.
static VnmDense *dense_params(const ParamList *pl, const Schedule *s, const Fold *f, int *n) {
    VnmDense *dense = xcalloc((size_t)pl->n, sizeof *dense);
    *n = 0;
    for (int p = 0; p < pl->n; p++) {
        Tensor *t = pl->items[p].value;
        if (pl->items[p].kind != PARAM_BASE || is_sparse_weight(s, t)) continue;
        VnmDense *d = &dense[(*n)++];
        d->name = t->name;
        d->ndim = t->ndim;
        memcpy(d->shape, t->shape, sizeof d->shape);
        d->data = xmalloc((size_t)t->numel * sizeof(float));
        tensor_get_f32(t, d->data, t->numel);
        for (int i = 0; i < s->n_layers; i++)
            if (f[i].out_order && s->layers[i]->b == t) {
                float *b = xmalloc((size_t)t->numel * sizeof *b);
                for (int64_t o = 0; o < t->numel; o++) b[o] = d->data[f[i].out_order[o]];
                free(d->data);
                d->data = b;
            }
    }
    return dense;
}

int model_export_write(const ParamList *pl, const Schedule *s, const Config *cfg, const char *path, Err *err) {
    if (!s->sparse || !s->masks_valid) return err_set(err, "export: the job has no V:N:M masks (sparsity.enabled and a sparse schedule.mode)");
    VnmMatrix *mats = xcalloc((size_t)s->n_layers, sizeof *mats);
    VnmExportLayer *layers = xcalloc((size_t)s->n_layers, sizeof *layers);
    Fold *folds = xcalloc((size_t)s->n_layers, sizeof *folds);
    if (cfg->export.fold_permutations) plan_folds(s, folds);
    int rc = 0, n_dense;
    for (int i = 0; i < s->n_layers && rc == 0; i++) {
        rc = compress_layer(s, i, &folds[i], &mats[i], err);
        layers[i] = (VnmExportLayer){s->layers[i]->name, &mats[i]};
    }
    VnmDense *dense = dense_params(pl, s, folds, &n_dense);
    char *yaml = config_to_yaml(cfg);
    if (rc == 0) rc = vnm_export_write(path, layers, s->n_layers, dense, n_dense, yaml, err);
    free(yaml);
    for (int i = 0; i < s->n_layers; i++) vnm_free(&mats[i]);
    for (int i = 0; i < n_dense; i++) free(dense[i].data);
    free(mats), free(layers), free(dense), free(folds);
    return rc;
}

// ---- loading ----

static int load_sparse_weight(Linear *l, const VnmMatrix *v, const char *path, Err *err) {
    if (v->out != l->out || v->in != l->in)
        return err_set(err, "%s: layer '%s' is %lldx%lld, the model's is %lldx%lld", path, l->name, (long long)v->out,
                       (long long)v->in, (long long)l->out, (long long)l->in);
    float *rows = xmalloc((size_t)(v->out * v->in) * sizeof *rows), *W = xmalloc((size_t)(v->out * v->in) * sizeof *W);
    vnm_decompress(v, rows);
    for (int64_t r = 0; r < v->out; r++) {
        int64_t dst = v->row_perm ? v->row_perm[r] : r;
        memcpy(W + dst * v->in, rows + r * v->in, (size_t)v->in * sizeof *W);
    }
    tensor_set_f32(l->w, W, v->out * v->in);
    free(rows), free(W);
    return 0;
}

static const VnmDense *find_dense(const VnmExport *e, const char *name) {
    for (int i = 0; i < e->n_dense; i++)
        if (!strcmp(e->dense[i].name, name)) return &e->dense[i];
    return NULL;
}

static Linear *find_linear(Linear **linears, int n, const char *name) {
    const int i = linear_index(linears, n, name);
    return i >= 0 ? linears[i] : NULL;
}

static Linear *linear_of_weight(Linear **linears, int n, const Tensor *w) {
    for (int i = 0; i < n; i++)
        if (linears[i]->w == w) return linears[i];
    return NULL;
}

// One /vnm layer into its linear: the dense weight, and with `sparse` the compressed matrix
// (taken from e->layers[k]) attached for the SpMM.
static int load_vnm_layer(VnmExport *e, int k, Linear **linears, int n, const char *path, bool sparse, Err *err) {
    Linear *l = find_linear(linears, n, e->layer_names[k]);
    if (!l) return err_set(err, "%s: V:N:M layer '%s' is not a linear layer of this model", path, e->layer_names[k]);
    if (load_sparse_weight(l, &e->layers[k], path, err)) return -1;
    if (!sparse) return 0;
    linear_free_sparse(l);
    l->vnm = xcalloc(1, sizeof *l->vnm);
    return vnm_layer_init(l->vnm, &e->layers[k], l->w->device, l->name, err);
}

// A base parameter that is not a /vnm layer's weight, from /dense/<name>.
static int load_dense_param(const VnmExport *e, Tensor *t, const Linear *owner, const char *path, Err *err) {
    const VnmDense *d = find_dense(e, t->name);
    char shape[64];
    tensor_shape_str(t, shape, sizeof shape);
    if (!d && owner)
        return err_set(err, "%s: layer '%s' is missing (neither /vnm/%s nor /dense/%s; the model needs %s)", path,
                       owner->name, owner->name, t->name, shape);
    if (!d) return err_set(err, "%s: /dense/%s is missing (the model needs %s)", path, t->name, shape);
    if (d->ndim != t->ndim || memcmp(d->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim))
        return err_set(err, "%s: /dense/%s is of another shape (the model needs %s)", path, t->name, shape);
    tensor_set_f32(t, d->data, t->numel);
    return 0;
}

int model_export_load(ParamList *pl, Linear **linears, int n_linears, const char *path, bool sparse, Err *err) {
    VnmExport e;
    if (vnm_export_read(path, &e, err)) return -1;
    int rc = 0;
    for (int k = 0; k < e.n_layers && rc == 0; k++) rc = load_vnm_layer(&e, k, linears, n_linears, path, sparse, err);
    for (int p = 0; p < pl->n && rc == 0; p++) {
        Tensor *t = pl->items[p].value;
        if (pl->items[p].kind != PARAM_BASE) continue;
        const Linear *owner = linear_of_weight(linears, n_linears, t);
        bool in_vnm = false;
        for (int k = 0; owner && k < e.n_layers && !in_vnm; k++) in_vnm = !strcmp(e.layer_names[k], owner->name);
        if (!in_vnm) rc = load_dense_param(&e, t, owner, path, err);
    }
    vnm_export_free(&e);
    return rc;
}

int model_export_config(const char *path, Config *c, Err *err) {
    char *yaml = vnm_export_read_config(path, err);
    if (!yaml) return -1;
    config_defaults(c);
    int rc = config_load_string(c, yaml, path, err);
    free(yaml);
    return rc;
}

int model_export_path(const Config *c, char *buf, size_t n, Err *err) {
    int w = c->export.path[0] ? snprintf(buf, n, "%s", c->export.path) : snprintf(buf, n, "%s/export.h5", c->train.out_dir);
    return w < (int)n ? 0 : err_set(err, "%s: export path too long", c->source);
}
