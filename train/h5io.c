// Thin helpers over the HDF5 C API (see h5io.h). HDF5's own error printing is switched off;
// every failure becomes one Err message naming the file and the dataset / attribute.
#include "h5io.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/device.h"

// ---- stored element types ----
// bf16 is stored as uint16 with the attribute dtype="bf16" on the dataset so readers can tell.
typedef enum { ST_F32, ST_BF16, ST_U8, ST_I32, ST_U16, ST_U64, ST_COUNT, ST_OTHER = -1 } StoredType;

static const char *st_names[ST_COUNT] = {"f32", "bf16", "u8", "i32", "u16", "u64"};

static hid_t st_native(StoredType st) {
    switch (st) {
    case ST_F32: return H5T_NATIVE_FLOAT;
    case ST_BF16:
    case ST_U16: return H5T_NATIVE_UINT16;
    case ST_U8: return H5T_NATIVE_UINT8;
    case ST_I32: return H5T_NATIVE_INT32;
    case ST_U64: return H5T_NATIVE_UINT64;
    default: fatal("h5io: bad stored type %d", (int)st);
    }
}

static StoredType st_from_dtype(DType dt) {
    switch (dt) {
    case DT_F32: return ST_F32;
    case DT_BF16: return ST_BF16;
    case DT_U8: return ST_U8;
    case DT_I32: return ST_I32;
    }
    fatal("h5io: bad dtype %d", (int)dt);
}

static void h5_quiet(void) {
    static bool done = false;
    if (!done) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        done = true;
    }
}

// The innermost HDF5 error description (e.g. "truncated file: eof = ..."), or "".
static herr_t take_first_error(unsigned n, const H5E_error2_t *e, void *out) {
    if (n == 0 && e->desc) snprintf(out, 256, "%s", e->desc);
    return 0;
}
static const char *h5_detail(char buf[256]) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first_error, buf);
    H5Eclear2(H5E_DEFAULT);
    return buf;
}

static const char *fname(const H5File *f) { return f->writing ? f->tmp_path : f->path; }

// ---- files ----

int h5_create(H5File *f, const char *path, Err *err) {
    h5_quiet();
    memset(f, 0, sizeof *f);
    f->id = -1;
    if (strlen(path) >= sizeof f->path) return err_set(err, "%s: path too long", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    snprintf(f->tmp_path, sizeof f->tmp_path, "%s.tmp", path);
    // Create the file ourselves first: HDF5 does not report errno (missing directory, permissions).
    int fd = open(f->tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return err_set(err, "%s: cannot create: %s", f->tmp_path, strerror(errno));
    close(fd);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    // 1.8+ object headers: attributes may exceed 64 KiB (dense storage), e.g. the config text.
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    hid_t id = H5Fcreate(f->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (id < 0) {
        char d[256];
        unlink(f->tmp_path);
        return err_set(err, "%s: cannot create HDF5 file %s", f->tmp_path, h5_detail(d));
    }
    f->id = id;
    f->writing = true;
    return 0;
}

int h5_open_read(H5File *f, const char *path, Err *err) {
    h5_quiet();
    memset(f, 0, sizeof *f);
    f->id = -1;
    if (strlen(path) >= sizeof f->path) return err_set(err, "%s: path too long", path);
    snprintf(f->path, sizeof f->path, "%s", path);
    struct stat sb;
    if (stat(path, &sb) != 0) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return err_set(err, "%s: not a regular file", path);
    if (H5Fis_hdf5(path) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return err_set(err, "%s: not an HDF5 file (no HDF5 signature, %lld bytes)", path, (long long)sb.st_size);
    }
    hid_t id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0) {
        char d[256];
        return err_set(err, "%s: cannot open HDF5 file (truncated or corrupt?): %s", path, h5_detail(d));
    }
    f->id = id;
    return 0;
}

int h5_close_commit(H5File *f, Err *err) {
    if (f->id < 0) return err_set(err, "%s: file is not open", f->path);
    hid_t id = (hid_t)f->id;
    f->id = -1;
    if (!f->writing) {
        if (H5Fclose(id) < 0) return err_set(err, "%s: error closing HDF5 file", f->path);
        return 0;
    }
    f->writing = false;
    char d[256];
    if (H5Fflush(id, H5F_SCOPE_GLOBAL) < 0 || H5Fclose(id) < 0) {
        h5_detail(d);
        H5Fclose(id);
        unlink(f->tmp_path);
        return err_set(err, "%s: error writing HDF5 file: %s", f->tmp_path, d);
    }
    // Make the bytes durable before the rename makes them visible under the final name.
    int fd = open(f->tmp_path, O_RDONLY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    if (rename(f->tmp_path, f->path) != 0) {
        int e = errno;
        unlink(f->tmp_path);
        return err_set(err, "%s: cannot rename %s over it: %s", f->path, f->tmp_path, strerror(e));
    }
    return 0;
}

void h5_abort(H5File *f) {
    if (f->id >= 0) H5Fclose((hid_t)f->id);
    if (f->writing) unlink(f->tmp_path);
    H5Eclear2(H5E_DEFAULT);
    f->id = -1;
    f->writing = false;
}

// ---- writing datasets ----

static int write_dataset(H5File *f, const char *dset, StoredType st, int ndim, const int64_t *shape,
                         const void *data, Err *err) {
    if (!f->writing) return err_set(err, "%s: dataset '%s': file is open for reading", f->path, dset);
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) fatal("h5_write('%s'): %d dims", dset, ndim);
    hsize_t dims[TENSOR_MAX_DIMS];
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) fatal("h5_write('%s'): negative dim", dset);
        dims[i] = (hsize_t)shape[i];
    }
    hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t type = st_native(st);
    hid_t ds = H5Dcreate2((hid_t)f->id, dset, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    H5Sclose(space);
    char d[256];
    if (ds < 0) return err_set(err, "%s: cannot create dataset '%s' (exists already?): %s", fname(f), dset, h5_detail(d));
    int rc = 0;
    if (H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = err_set(err, "%s: dataset '%s': write failed: %s", fname(f), dset, h5_detail(d));
    H5Dclose(ds);
    if (rc == 0 && st == ST_BF16) rc = h5_set_attr_str(f, dset, "dtype", "bf16", err);
    return rc;
}

int h5_write(H5File *f, const char *dset, DType dt, int ndim, const int64_t *shape, const void *data, Err *err) {
    return write_dataset(f, dset, st_from_dtype(dt), ndim, shape, data, err);
}
int h5_write_u16(H5File *f, const char *dset, int ndim, const int64_t *shape, const uint16_t *data, Err *err) {
    return write_dataset(f, dset, ST_U16, ndim, shape, data, err);
}
int h5_write_u64(H5File *f, const char *dset, int64_t n, const uint64_t *data, Err *err) {
    return write_dataset(f, dset, ST_U64, 1, &n, data, err);
}

// ---- reading datasets ----

static hid_t open_dataset(H5File *f, const char *dset, Err *err) {
    if (f->id < 0) {
        err_set(err, "%s: dataset '%s': file is not open", f->path, dset);
        return -1;
    }
    if (!h5_exists(f, dset)) {
        err_set(err, "%s: missing dataset '%s'", fname(f), dset);
        return -1;
    }
    hid_t ds = H5Dopen2((hid_t)f->id, dset, H5P_DEFAULT);
    if (ds < 0) {
        char d[256];
        err_set(err, "%s: '%s' is not a readable dataset: %s", fname(f), dset, h5_detail(d));
    }
    return ds;
}

static bool attr_is(hid_t obj, const char *name, const char *want);

// What the file holds, in our terms. `desc` gets a name for the error message in any case.
static StoredType stored_type(hid_t ds, char desc[32]) {
    hid_t t = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(t);
    size_t size = H5Tget_size(t);
    H5T_sign_t sign = cls == H5T_INTEGER ? H5Tget_sign(t) : H5T_SGN_ERROR;
    H5Tclose(t);
    StoredType st = ST_OTHER;
    if (cls == H5T_FLOAT && size == 4) st = ST_F32;
    else if (cls == H5T_INTEGER && sign == H5T_SGN_NONE && size == 1) st = ST_U8;
    else if (cls == H5T_INTEGER && sign == H5T_SGN_NONE && size == 2) st = attr_is(ds, "dtype", "bf16") ? ST_BF16 : ST_U16;
    else if (cls == H5T_INTEGER && sign == H5T_SGN_2 && size == 4) st = ST_I32;
    else if (cls == H5T_INTEGER && sign == H5T_SGN_NONE && size == 8) st = ST_U64;
    if (st != ST_OTHER) snprintf(desc, 32, "%s", st_names[st]);
    else if (cls == H5T_FLOAT) snprintf(desc, 32, "float%zu", 8 * size);
    else if (cls == H5T_INTEGER) snprintf(desc, 32, "%sint%zu", sign == H5T_SGN_NONE ? "u" : "", 8 * size);
    else snprintf(desc, 32, "non-numeric type (class %d)", (int)cls);
    return st;
}

// ndim of the dataspace (or -1 with err); dims into shape.
static int dataset_shape(H5File *f, const char *dset, hid_t ds, int64_t shape[TENSOR_MAX_DIMS], Err *err) {
    hid_t space = H5Dget_space(ds);
    int ndim = H5Sget_simple_extent_ndims(space);
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) {
        H5Sclose(space);
        return err_set(err, "%s: dataset '%s': %d dims (max %d)", fname(f), dset, ndim, TENSOR_MAX_DIMS);
    }
    hsize_t dims[TENSOR_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    H5Sclose(space);
    for (int i = 0; i < ndim; i++) shape[i] = (int64_t)dims[i];
    return ndim;
}

static int read_dataset(H5File *f, const char *dset, StoredType want, int ndim, const int64_t *shape, void *data,
                        Err *err) {
    hid_t ds = open_dataset(f, dset, err);
    if (ds < 0) return -1;
    int rc = 0;
    char have_t[32], a[96], b[96], d[256];
    int64_t have[TENSOR_MAX_DIMS];
    StoredType st = stored_type(ds, have_t);
    int have_ndim = dataset_shape(f, dset, ds, have, err);
    if (have_ndim < 0) {
        rc = -1;
    } else if (st != want) {
        rc = err_set(err, "%s: dataset '%s': stored as %s, expected %s", fname(f), dset, have_t, st_names[want]);
    } else if (have_ndim != ndim || memcmp(have, shape, (size_t)ndim * sizeof *shape) != 0) {
        rc = err_set(err, "%s: dataset '%s': expected shape %s, file has %s", fname(f), dset,
                     dims_str(ndim, shape, a, sizeof a), dims_str(have_ndim, have, b, sizeof b));
    } else if (H5Dread(ds, st_native(st), H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
        rc = err_set(err, "%s: dataset '%s': read failed (truncated or corrupt file?): %s", fname(f), dset,
                     h5_detail(d));
    }
    H5Dclose(ds);
    return rc;
}

int h5_read(H5File *f, const char *dset, DType dt, int ndim, const int64_t *shape, void *data, Err *err) {
    return read_dataset(f, dset, st_from_dtype(dt), ndim, shape, data, err);
}
int h5_read_u16(H5File *f, const char *dset, int ndim, const int64_t *shape, uint16_t *data, Err *err) {
    return read_dataset(f, dset, ST_U16, ndim, shape, data, err);
}
int h5_read_u64(H5File *f, const char *dset, int64_t n, uint64_t *data, Err *err) {
    return read_dataset(f, dset, ST_U64, 1, &n, data, err);
}

int h5_shape(H5File *f, const char *dset, int64_t shape[TENSOR_MAX_DIMS], Err *err) {
    hid_t ds = open_dataset(f, dset, err);
    if (ds < 0) return -1;
    int ndim = dataset_shape(f, dset, ds, shape, err);
    H5Dclose(ds);
    return ndim;
}

// H5Lexists fails when an intermediate group is missing, so walk the path one link at a time.
bool h5_exists(H5File *f, const char *path) {
    if (f->id < 0) return false;
    size_t n = strlen(path);
    char *buf = xmalloc(n + 1);
    memcpy(buf, path, n + 1);
    bool ok = true;
    for (size_t i = 1; i <= n && ok; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char saved = buf[i];
        buf[i] = 0;
        if (!(i == 1 && buf[0] == '/')) ok = H5Lexists((hid_t)f->id, buf, H5P_DEFAULT) > 0;
        buf[i] = saved;
    }
    if (n == 0) ok = false;
    free(buf);
    H5Eclear2(H5E_DEFAULT);
    return ok;
}

// ---- whole tensors (CUDA tensors go through a host buffer) ----

int h5_write_tensor(H5File *f, const char *dset, const Tensor *t, Err *err) {
    size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
    if (t->device == DEV_CPU) return h5_write(f, dset, t->dtype, t->ndim, t->shape, t->data, err);
    void *host = xmalloc(bytes);
    device_copy_d2h(host, t->data, bytes);
    int rc = h5_write(f, dset, t->dtype, t->ndim, t->shape, host, err);
    free(host);
    return rc;
}

int h5_read_tensor(H5File *f, const char *dset, Tensor *t, Err *err) {
    size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
    if (t->device == DEV_CPU) return h5_read(f, dset, t->dtype, t->ndim, t->shape, t->data, err);
    void *host = xmalloc(bytes);
    int rc = h5_read(f, dset, t->dtype, t->ndim, t->shape, host, err);
    if (rc == 0) device_copy_h2d(t->data, host, bytes);
    free(host);
    return rc;
}

// ---- attributes ----

static hid_t open_object(H5File *f, const char *obj, Err *err) {
    if (f->id < 0) {
        err_set(err, "%s: '%s': file is not open", f->path, obj);
        return -1;
    }
    if (strcmp(obj, "/") != 0 && !h5_exists(f, obj)) {
        err_set(err, "%s: missing object '%s'", fname(f), obj);
        return -1;
    }
    hid_t o = H5Oopen((hid_t)f->id, obj, H5P_DEFAULT);
    if (o < 0) {
        char d[256];
        err_set(err, "%s: cannot open object '%s': %s", fname(f), obj, h5_detail(d));
    }
    return o;
}

// Replace the attribute `name` on `o` with a fresh one of `type`, holding `value`.
static int put_attr(H5File *f, hid_t o, const char *obj, const char *name, hid_t type, const void *value, Err *err) {
    if (H5Aexists(o, name) > 0) H5Adelete(o, name);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(space);
    char d[256];
    if (a < 0) return err_set(err, "%s: '%s': cannot create attribute '%s': %s", fname(f), obj, name, h5_detail(d));
    int rc = 0;
    if (H5Awrite(a, type, value) < 0)
        rc = err_set(err, "%s: '%s': cannot write attribute '%s': %s", fname(f), obj, name, h5_detail(d));
    H5Aclose(a);
    return rc;
}

int h5_set_attr_str(H5File *f, const char *obj, const char *name, const char *value, Err *err) {
    if (!f->writing) return err_set(err, "%s: '%s': file is open for reading", f->path, obj);
    hid_t o = open_object(f, obj, err);
    if (o < 0) return -1;
    // Fixed-length, NUL-padded string of exactly the text's length (at least 1 byte).
    size_t len = strlen(value);
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, len ? len : 1);
    H5Tset_strpad(type, H5T_STR_NULLPAD);
    int rc = put_attr(f, o, obj, name, type, len ? value : "", err);
    H5Tclose(type);
    H5Oclose(o);
    return rc;
}

int h5_set_attr_i64(H5File *f, const char *obj, const char *name, int64_t value, Err *err) {
    if (!f->writing) return err_set(err, "%s: '%s': file is open for reading", f->path, obj);
    hid_t o = open_object(f, obj, err);
    if (o < 0) return -1;
    int rc = put_attr(f, o, obj, name, H5T_NATIVE_INT64, &value, err);
    H5Oclose(o);
    return rc;
}

static hid_t open_attr(H5File *f, hid_t o, const char *obj, const char *name, Err *err) {
    if (H5Aexists(o, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        err_set(err, "%s: '%s': missing attribute '%s'", fname(f), obj, name);
        return -1;
    }
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    if (a < 0) {
        char d[256];
        err_set(err, "%s: '%s': cannot open attribute '%s': %s", fname(f), obj, name, h5_detail(d));
    }
    return a;
}

// Reads fixed-length strings (ours) and variable-length ones (h5py's default).
static char *read_str_attr(H5File *f, hid_t a, const char *obj, const char *name, Err *err) {
    hid_t type = H5Aget_type(a);
    char *out = NULL;
    if (H5Tget_class(type) != H5T_STRING) {
        err_set(err, "%s: '%s': attribute '%s' is not a string", fname(f), obj, name);
    } else if (H5Tis_variable_str(type) > 0) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, H5T_VARIABLE);
        H5Tset_cset(mem, H5Tget_cset(type));  // h5py writes UTF-8; HDF5 won't convert between charsets
        char *s = NULL;
        if (H5Aread(a, mem, &s) >= 0 && s) {
            out = xstrdup(s);
            H5free_memory(s);
        } else {
            err_set(err, "%s: '%s': cannot read attribute '%s'", fname(f), obj, name);
        }
        H5Tclose(mem);
    } else {
        size_t size = H5Tget_size(type);
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_size(mem, size);
        H5Tset_cset(mem, H5Tget_cset(type));
        H5Tset_strpad(mem, H5T_STR_NULLPAD);
        out = xcalloc(size + 1, 1);
        if (H5Aread(a, mem, out) < 0) {
            free(out);
            out = NULL;
            err_set(err, "%s: '%s': cannot read attribute '%s'", fname(f), obj, name);
        }
        H5Tclose(mem);
    }
    H5Tclose(type);
    H5Eclear2(H5E_DEFAULT);
    return out;
}

char *h5_get_attr_str(H5File *f, const char *obj, const char *name, Err *err) {
    hid_t o = open_object(f, obj, err);
    if (o < 0) return NULL;
    char *out = NULL;
    hid_t a = open_attr(f, o, obj, name, err);
    if (a >= 0) {
        out = read_str_attr(f, a, obj, name, err);
        H5Aclose(a);
    }
    H5Oclose(o);
    return out;
}

static bool attr_is(hid_t obj, const char *name, const char *want) {
    bool yes = false;
    if (H5Aexists(obj, name) > 0) {
        H5File dummy = {.id = -1};
        hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
        char *s = a >= 0 ? read_str_attr(&dummy, a, "", name, NULL) : NULL;
        yes = s && strcmp(s, want) == 0;
        free(s);
        if (a >= 0) H5Aclose(a);
    }
    H5Eclear2(H5E_DEFAULT);
    return yes;
}

int h5_get_attr_i64(H5File *f, const char *obj, const char *name, int64_t *value, Err *err) {
    hid_t o = open_object(f, obj, err);
    if (o < 0) return -1;
    int rc = -1;
    hid_t a = open_attr(f, o, obj, name, err);
    if (a >= 0) {
        hid_t type = H5Aget_type(a);
        hid_t space = H5Aget_space(a);
        if (H5Tget_class(type) != H5T_INTEGER || H5Sget_simple_extent_npoints(space) != 1)
            err_set(err, "%s: '%s': attribute '%s' is not a single integer", fname(f), obj, name);
        else if (H5Aread(a, H5T_NATIVE_INT64, value) < 0)
            err_set(err, "%s: '%s': cannot read attribute '%s'", fname(f), obj, name);
        else
            rc = 0;
        H5Sclose(space);
        H5Tclose(type);
        H5Aclose(a);
    }
    H5Oclose(o);
    return rc;
}

// ---- listing ----

// Names in ascending name order (H5Lget_name_by_idx is the same across HDF5 1.10 / 1.12 / 1.14).
int h5_list(H5File *f, const char *group, char ***names, int *count, Err *err) {
    *names = NULL;
    *count = 0;
    hid_t g = open_object(f, group, err);
    if (g < 0) return -1;
    H5G_info_t info;
    if (H5Iget_type(g) != H5I_GROUP || H5Gget_info(g, &info) < 0) {
        H5Oclose(g);
        H5Eclear2(H5E_DEFAULT);
        return err_set(err, "%s: '%s' is not a group", fname(f), group);
    }
    char **out = xcalloc(info.nlinks ? info.nlinks : 1, sizeof *out);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        if (len < 0) {
            H5Oclose(g);
            h5_free_list(out, (int)i);
            char d[256];
            return err_set(err, "%s: cannot list group '%s': %s", fname(f), group, h5_detail(d));
        }
        out[i] = xmalloc((size_t)len + 1);
        H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, out[i], (size_t)len + 1, H5P_DEFAULT);
    }
    H5Oclose(g);
    *names = out;
    *count = (int)info.nlinks;
    return 0;
}

void h5_free_list(char **names, int count) {
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
}
