// V:N:M export files: writer, validating loader, `vnmtune inspect`. See vnm_export.h.
#include "train/vnm_export.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VNM_EXPORT_MAX_M 64  // what vnm_compress and the kernels accept
#define DSET_LEN 600         // "/vnm/<layer>/<array>"

static const char *file_name(const H5File *f) { return f->writing ? f->tmp_path : f->path; }

// ---- uint32 datasets (h5io has no u32 helpers; meta is the only user) ----

static int write_u32(H5File *f, const char *dset, int64_t n, const uint32_t *data, Err *err) {
    hsize_t dims[1] = {(hsize_t)n};
    hid_t space = H5Screate_simple(1, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t ds = H5Dcreate2((hid_t)f->id, dset, H5T_NATIVE_UINT32, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Sclose(space);
    if (ds < 0) return err_set(err, "%s: cannot create dataset '%s'", file_name(f), dset);
    int rc = 0;
    if (H5Dwrite(ds, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = err_set(err, "%s: dataset '%s': write failed", file_name(f), dset);
    H5Dclose(ds);
    return rc;
}

static int read_u32(H5File *f, const char *dset, int64_t n, uint32_t *data, Err *err) {
    int64_t shape[TENSOR_MAX_DIMS];
    int ndim = h5_shape(f, dset, shape, err);
    if (ndim < 0) return -1;
    if (ndim != 1 || shape[0] != n)
        return err_set(err, "%s: dataset '%s': expected %lld uint32 words", file_name(f), dset, (long long)n);
    hid_t ds = H5Dopen2((hid_t)f->id, dset, H5P_DEFAULT);
    hid_t type = H5Dget_type(ds);
    bool is_u32 = H5Tget_class(type) == H5T_INTEGER && H5Tget_size(type) == 4 &&
                  H5Tget_sign(type) == H5T_SGN_NONE;
    H5Tclose(type);
    int rc = 0;
    if (!is_u32) rc = err_set(err, "%s: dataset '%s': stored type is not uint32", file_name(f), dset);
    else if (H5Dread(ds, H5T_NATIVE_UINT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = err_set(err, "%s: dataset '%s': read failed (truncated or corrupt file?)", file_name(f), dset);
    H5Dclose(ds);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

// ---- writing ----

static int64_t meta_words_for(int64_t out, int64_t C) { return (out + 15) / 16 * ((C + 7) / 8) * 16; }

static int check_name(const char *name, const char *what, Err *err) {
    if (!name || !*name || strchr(name, '/'))
        return err_set(err, "export: %s name '%s' must be non-empty and contain no '/'", what,
                       name ? name : "(null)");
    return 0;
}

// "<group>/<leaf>" into d (DSET_LEN bytes); returns d, so it can stand as an argument.
static const char *child(char d[DSET_LEN], const char *group, const char *leaf) {
    snprintf(d, DSET_LEN, "%s/%s", group, leaf);
    return d;
}

static int write_layer(H5File *f, const char *name, const VnmMatrix *m, Err *err) {
    char g[512], d[DSET_LEN];
    snprintf(g, sizeof g, "/vnm/%s", name);
    int64_t vshape[2] = {m->out, 2 * m->C}, cshape[3] = {m->R, m->C, 4};
    CHECK(m->meta_words == meta_words_for(m->out, m->C), "export '%s': meta not packed", name);
    if (h5_write(f, child(d, g, "values"), DT_BF16, 2, vshape, m->values, err)) return -1;
    if (h5_write_u16(f, child(d, g, "columns"), 3, cshape, m->columns, err)) return -1;
    if (write_u32(f, child(d, g, "meta"), m->meta_words, m->meta, err)) return -1;
    if (m->row_perm && h5_write(f, child(d, g, "row_perm"), DT_I32, 1, &m->out, m->row_perm, err)) return -1;
    const char *keys[] = {"V", "N", "M", "out", "in"};
    int64_t vals[] = {m->p.V, m->p.N, m->p.M, m->out, m->in};
    for (int k = 0; k < 5; k++)
        if (h5_set_attr_i64(f, g, keys[k], vals[k], err)) return -1;
    if (h5_set_attr_str(f, g, "dtype", "bf16", err)) return -1;
    return h5_set_attr_str(f, g, "meta_layout", VNM_META_LAYOUT, err);
}

int vnm_export_write(const char *path, const VnmExportLayer *layers, int n_layers,
                     const VnmDense *dense, int n_dense, const char *config, Err *err) {
    for (int i = 0; i < n_layers; i++)
        if (check_name(layers[i].name, "layer", err)) return -1;
    for (int i = 0; i < n_dense; i++)
        if (check_name(dense[i].name, "dense tensor", err)) return -1;
    H5File f;
    if (h5_create(&f, path, err)) return -1;
    int rc = h5_set_attr_str(&f, "/", "format", VNM_EXPORT_FORMAT, err);
    if (rc == 0 && config) rc = h5_set_attr_str(&f, "/", "config", config, err);
    for (int i = 0; i < n_layers && rc == 0; i++) rc = write_layer(&f, layers[i].name, layers[i].m, err);
    for (int i = 0; i < n_dense && rc == 0; i++) {
        char d[512];
        snprintf(d, sizeof d, "/dense/%s", dense[i].name);
        rc = h5_write(&f, d, DT_F32, dense[i].ndim, dense[i].shape, dense[i].data, err);
    }
    if (rc) {
        h5_abort(&f);
        return -1;
    }
    return h5_close_commit(&f, err);
}

// ---- reading and validation ----

static int read_attrs(H5File *f, const char *g, const char *name, VnmMatrix *m, Err *err) {
    const char *keys[] = {"V", "N", "M", "out", "in"};
    int64_t v[5];
    for (int k = 0; k < 5; k++)
        if (h5_get_attr_i64(f, g, keys[k], &v[k], err)) return -1;
    const char *fn = file_name(f);
    if (v[1] != 2 || v[2] < 4 || v[2] > VNM_EXPORT_MAX_M || v[0] < 1 || v[0] > (1 << 20))
        return err_set(err, "%s: layer '%s': bad pattern V=%lld N=%lld M=%lld", fn, name,
                       (long long)v[0], (long long)v[1], (long long)v[2]);
    if (v[3] < 1 || v[4] < 1 || v[3] % v[0] || v[4] % v[2] || v[4] > 65536)
        return err_set(err, "%s: layer '%s': shape (%lld, %lld) does not fit pattern %lld:2:%lld", fn,
                       name, (long long)v[3], (long long)v[4], (long long)v[0], (long long)v[2]);
    for (int k = 0; k < 2; k++) {
        const char *key = k ? "meta_layout" : "dtype", *want = k ? VNM_META_LAYOUT : "bf16";
        char *s = h5_get_attr_str(f, g, key, err);
        if (!s) return -1;
        int bad = strcmp(s, want) != 0;
        if (bad) err_set(err, "%s: layer '%s': %s is '%s', this build reads '%s'", fn, name, key, s, want);
        free(s);
        if (bad) return -1;
    }
    memset(m, 0, sizeof *m);
    m->p = (VnmPattern){(int)v[0], 2, (int)v[2]};
    m->out = v[3], m->in = v[4];
    m->R = m->out / m->p.V, m->C = m->in / m->p.M;
    return 0;
}

// Columns: < in, ascending within a block, no channel twice within a row block.
static int check_columns(const H5File *f, const char *name, const VnmMatrix *m, Err *err) {
    uint8_t *seen = xmalloc((size_t)m->in);
    int rc = 0;
    for (int64_t rb = 0; rb < m->R && rc == 0; rb++) {
        memset(seen, 0, (size_t)m->in);
        for (int64_t cb = 0; cb < m->C && rc == 0; cb++) {
            const uint16_t *c = m->columns + (rb * m->C + cb) * 4;
            for (int k = 0; k < 4 && rc == 0; k++) {
                if (c[k] >= m->in)
                    rc = err_set(err, "%s: layer '%s': columns[%lld][%lld][%d] = %d is not < in = %lld",
                                 file_name(f), name, (long long)rb, (long long)cb, k, c[k], (long long)m->in);
                else if (k > 0 && c[k] <= c[k - 1])
                    rc = err_set(err, "%s: layer '%s': columns[%lld][%lld] = (%d, %d, %d, %d) not ascending",
                                 file_name(f), name, (long long)rb, (long long)cb, c[0], c[1], c[2], c[3]);
                else if (seen[c[k]]++)
                    rc = err_set(err, "%s: layer '%s': input channel %d is used twice in row block %lld",
                                 file_name(f), name, c[k], (long long)rb);
            }
        }
    }
    free(seen);
    return rc;
}

// idx from meta; each code must be an ordered pair, and re-packing must give the same words.
static int decode_meta(const H5File *f, const char *name, VnmMatrix *m, Err *err) {
    m->idx = xmalloc((size_t)(m->out * m->C));
    vnm_unpack_meta(m, m->idx);
    for (int64_t k = 0; k < m->out * m->C; k++) {
        int a = m->idx[k] & 3, b = m->idx[k] >> 2;
        if (a >= b)
            return err_set(err, "%s: layer '%s': meta code 0x%x for row %lld, column block %lld is not "
                           "a valid 2:4 pair", file_name(f), name, m->idx[k], (long long)(k / m->C),
                           (long long)(k % m->C));
    }
    uint32_t *stored = m->meta;
    m->meta = NULL;
    vnm_pack_meta(m);
    int64_t bad = -1;
    for (int64_t w = 0; w < m->meta_words && bad < 0; w++)
        if (stored[w] != m->meta[w]) bad = w;
    free(stored);
    if (bad >= 0)
        return err_set(err, "%s: layer '%s': meta word %lld has invalid padding codes", file_name(f),
                       name, (long long)bad);
    return 0;
}

static int check_values(const H5File *f, const char *name, const VnmMatrix *m, Err *err) {
    for (int64_t k = 0; k < m->out * 2 * m->C; k++)
        if (!isfinite(bf16_to_f32(m->values[k])))
            return err_set(err, "%s: layer '%s': non-finite value at row %lld", file_name(f), name,
                           (long long)(k / (2 * m->C)));
    return 0;
}

static int check_row_perm(const H5File *f, const char *name, const VnmMatrix *m, Err *err) {
    uint8_t *seen = xcalloc((size_t)m->out, 1);
    int rc = 0;
    for (int64_t r = 0; r < m->out && rc == 0; r++) {
        int32_t t = m->row_perm[r];
        if (t < 0 || t >= m->out || seen[t]++)
            rc = err_set(err, "%s: layer '%s': row_perm[%lld] = %d makes row_perm not a permutation of 0..%lld",
                         file_name(f), name, (long long)r, t, (long long)(m->out - 1));
    }
    free(seen);
    return rc;
}

static int read_layer_data(H5File *f, const char *g, const char *name, VnmMatrix *m, Err *err) {
    char d[DSET_LEN];
    int64_t vshape[2] = {m->out, 2 * m->C}, cshape[3] = {m->R, m->C, 4};
    m->values = xmalloc((size_t)(vshape[0] * vshape[1]) * sizeof(uint16_t));
    m->columns = xmalloc((size_t)(m->R * m->C * 4) * sizeof(uint16_t));
    m->meta_words = meta_words_for(m->out, m->C);
    m->meta = xmalloc((size_t)m->meta_words * sizeof(uint32_t));
    if (h5_read(f, child(d, g, "values"), DT_BF16, 2, vshape, m->values, err)) return -1;
    if (h5_read_u16(f, child(d, g, "columns"), 3, cshape, m->columns, err)) return -1;
    if (read_u32(f, child(d, g, "meta"), m->meta_words, m->meta, err)) return -1;
    if (h5_exists(f, child(d, g, "row_perm"))) {
        m->row_perm = xmalloc((size_t)m->out * sizeof(int32_t));
        if (h5_read(f, d, DT_I32, 1, &m->out, m->row_perm, err)) return -1;
        if (check_row_perm(f, name, m, err)) return -1;
    }
    if (check_columns(f, name, m, err) || decode_meta(f, name, m, err)) return -1;
    return check_values(f, name, m, err);
}

int vnm_layer_read(H5File *f, const char *name, VnmMatrix *m, Err *err) {
    char g[512];
    snprintf(g, sizeof g, "/vnm/%s", name);
    memset(m, 0, sizeof *m);
    if (!h5_exists(f, g)) return err_set(err, "%s: no V:N:M layer '%s'", file_name(f), name);
    if (read_attrs(f, g, name, m, err)) return -1;
    if (read_layer_data(f, g, name, m, err)) {
        vnm_free(m);
        return -1;
    }
    return 0;
}

static int read_dense(H5File *f, const char *name, VnmDense *t, Err *err) {
    char d[512];
    snprintf(d, sizeof d, "/dense/%s", name);
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->ndim = h5_shape(f, d, t->shape, err);
    if (t->ndim < 0) return -1;
    int64_t numel = 1;
    for (int i = 0; i < t->ndim; i++) numel *= t->shape[i];
    t->data = xmalloc((size_t)numel * sizeof(float));
    return h5_read(f, d, DT_F32, t->ndim, t->shape, t->data, err);
}

// Names under group (none when the group is absent).
static int list_group(H5File *f, const char *group, char ***names, int *count, Err *err) {
    *names = NULL, *count = 0;
    return h5_exists(f, group) ? h5_list(f, group, names, count, err) : 0;
}

static int check_format(H5File *f, Err *err) {
    char *fmt = h5_get_attr_str(f, "/", "format", err);
    if (!fmt) return err_set(err, "%s: not a vnmtune V:N:M export (no 'format' attribute)", f->path);
    int bad = strcmp(fmt, VNM_EXPORT_FORMAT) != 0;
    if (bad) err_set(err, "%s: format '%s', expected '%s'", f->path, fmt, VNM_EXPORT_FORMAT);
    free(fmt);
    return bad ? -1 : 0;
}

bool vnm_export_is_export(const char *path) {
    H5File f;
    Err err;
    if (h5_open_read(&f, path, &err)) return false;
    bool yes = check_format(&f, &err) == 0;
    h5_close_commit(&f, &err);
    return yes;
}

char *vnm_export_read_config(const char *path, Err *err) {
    H5File f;
    if (h5_open_read(&f, path, err)) return NULL;
    char *config = NULL;
    if (check_format(&f, err) == 0 && !(config = h5_get_attr_str(&f, "/", "config", &(Err){{0}})))
        err_set(err, "%s: the export has no config attribute", path);
    h5_close_commit(&f, &(Err){{0}});
    return config;
}

int vnm_export_read(const char *path, VnmExport *e, Err *err) {
    memset(e, 0, sizeof *e);
    H5File f;
    if (h5_open_read(&f, path, err)) return -1;
    int rc = check_format(&f, err);
    if (rc == 0) e->config = h5_get_attr_str(&f, "/", "config", &(Err){{0}});  // optional
    char **dense_names = NULL;
    if (rc == 0) rc = list_group(&f, "/vnm", &e->layer_names, &e->n_layers, err);
    if (rc == 0) {
        e->layers = xcalloc((size_t)e->n_layers, sizeof(VnmMatrix));
        for (int i = 0; i < e->n_layers && rc == 0; i++)
            rc = vnm_layer_read(&f, e->layer_names[i], &e->layers[i], err);
    }
    if (rc == 0) rc = list_group(&f, "/dense", &dense_names, &e->n_dense, err);
    if (rc == 0) {
        e->dense = xcalloc((size_t)e->n_dense, sizeof(VnmDense));
        for (int i = 0; i < e->n_dense && rc == 0; i++) rc = read_dense(&f, dense_names[i], &e->dense[i], err);
    }
    h5_free_list(dense_names, e->n_dense);
    Err close_err;
    h5_close_commit(&f, &close_err);
    if (rc) vnm_export_free(e);
    return rc;
}

void vnm_export_free(VnmExport *e) {
    for (int i = 0; i < e->n_layers; i++)
        if (e->layers) vnm_free(&e->layers[i]);
    if (e->layer_names) h5_free_list(e->layer_names, e->n_layers);
    for (int i = 0; i < e->n_dense; i++)
        if (e->dense) free(e->dense[i].name), free(e->dense[i].data);
    free(e->layers);
    free(e->dense);
    free(e->config);
    memset(e, 0, sizeof *e);
}

// ---- inspect ----

int64_t vnm_compressed_bytes(const VnmMatrix *m) {
    return m->out * 2 * m->C * 2 + m->R * m->C * 4 * 2 + m->meta_words * 4 + (m->row_perm ? m->out * 4 : 0);
}

bool vnm_has_col_perm(const VnmMatrix *m) {
    for (int64_t b = 0; b < m->R * m->C; b++) {
        int64_t c0 = (b % m->C) * m->p.M;
        for (int k = 0; k < 4; k++)
            if (m->columns[b * 4 + k] < c0 || m->columns[b * 4 + k] >= c0 + m->p.M) return true;
    }
    return false;
}

static void print_layer(FILE *out, const char *name, const VnmMatrix *m, int64_t *sparse_bytes,
                        int64_t *dense_bytes) {
    char pattern[32], shape[48];
    snprintf(pattern, sizeof pattern, "%d:%d:%d", m->p.V, m->p.N, m->p.M);
    snprintf(shape, sizeof shape, "%lldx%lld", (long long)m->out, (long long)m->in);
    int64_t cb = vnm_compressed_bytes(m), db = m->out * m->in * 2;
    bool cols = vnm_has_col_perm(m);
    const char *perm = cols && m->row_perm ? "in+out" : cols ? "in" : m->row_perm ? "out" : "no";
    fprintf(out, "  %-40s %-9s %-12s %7.4f %12lld %12lld %6.2fx  %s\n", name, pattern, shape,
            2.0 / m->p.M, (long long)cb, (long long)db, (double)db / (double)cb, perm);
    *sparse_bytes += cb, *dense_bytes += db;
}

static int print_dense(FILE *out, H5File *f, const char *name, int64_t *bytes, Err *err) {
    char d[512], shape[96] = "";
    int64_t s[TENSOR_MAX_DIMS], numel = 1;
    snprintf(d, sizeof d, "/dense/%s", name);
    int nd = h5_shape(f, d, s, err);
    if (nd < 0) return -1;
    for (int k = 0; k < nd; k++) {
        numel *= s[k];
        size_t len = strlen(shape);
        snprintf(shape + len, sizeof shape - len, k ? "x%lld" : "%lld", (long long)s[k]);
    }
    fprintf(out, "  %-40s %-9s %-12s %7s %12lld\n", name, "dense", shape, "1", (long long)(numel * 4));
    *bytes += numel * 4;
    return 0;
}

int vnm_inspect(const char *path, FILE *out, Err *err) {
    H5File f;
    if (h5_open_read(&f, path, err)) return -1;
    char **names = NULL, **dense = NULL;
    int n = 0, n_dense = 0;
    int rc = check_format(&f, err);
    if (rc == 0) rc = list_group(&f, "/vnm", &names, &n, err);
    if (rc == 0) rc = list_group(&f, "/dense", &dense, &n_dense, err);
    char *config = h5_get_attr_str(&f, "/", "config", &(Err){{0}});
    if (rc == 0) {
        fprintf(out, "%s: %d V:N:M layer(s), %d dense tensor(s), config %s\n", path, n, n_dense,
                config ? "attached" : "absent");
        fprintf(out, "  %-40s %-9s %-12s %7s %12s %12s %7s  %s\n", "layer", "pattern", "shape",
                "density", "bytes", "dense bf16", "ratio", "permuted");
    }
    int64_t sparse_bytes = 0, dense_bytes = 0, other_bytes = 0;
    for (int i = 0; i < n && rc == 0; i++) {  // one layer in memory at a time, fully validated
        VnmMatrix m;
        if ((rc = vnm_layer_read(&f, names[i], &m, err))) break;
        print_layer(out, names[i], &m, &sparse_bytes, &dense_bytes);
        vnm_free(&m);
    }
    for (int i = 0; i < n_dense && rc == 0; i++) rc = print_dense(out, &f, dense[i], &other_bytes, err);
    if (rc == 0 && n > 0)
        fprintf(out, "V:N:M layers: %lld bytes compressed vs %lld dense bf16 (%.2fx smaller); "
                     "dense tensors: %lld bytes (f32)\n", (long long)sparse_bytes, (long long)dense_bytes,
                (double)dense_bytes / (double)sparse_bytes, (long long)other_bytes);
    free(config);
    h5_free_list(names, n);
    h5_free_list(dense, n_dense);
    h5_close_commit(&f, &(Err){{0}});
    return rc;
}

int vnm_inspect_main(int argc, char **argv) {
    static const char usage[] =
        "usage: vnmtune inspect FILE.h5\n"
        "  Lists the V:N:M layers of an export (pattern, shape, density, compressed vs dense bf16\n"
        "  bytes, input/output permutation) and its dense tensors; validates every layer.\n";
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc != 2) {
        fputs(usage, stderr);
        return 2;
    }
    Err err;
    if (vnm_inspect(argv[1], stdout, &err)) {
        fprintf(stderr, "vnmtune inspect: error: %s\n", err.msg);
        return 1;
    }
    return 0;
}
