// ImageSet <-> HDF5 (format in imageset.h). Files are opened and written through train/h5io.h;
// reading a range of images uses an HDF5 hyperslab here, since h5io reads whole datasets.
#include <hdf5.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/imageset.h"
#include "train/h5io.h"

int imageset_write_h5(const char *path, const ImageSet *s, Err *err) {
    for (int64_t i = 0; i < s->n; i++)
        if (s->labels[i] < 0 || s->labels[i] >= s->num_classes)
            return err_set(err, "%s: not written: label %d of image %lld is out of range [0, %d)", path,
                           s->labels[i], (long long)i, s->num_classes);
    H5File f;
    if (h5_create(&f, path, err)) return -1;
    int64_t ishape[4] = {s->n, s->h, s->w, s->c};
    if (h5_write(&f, "/images", DT_U8, 4, ishape, s->pixels, err) ||
        h5_write(&f, "/labels", DT_I32, 1, &s->n, s->labels, err) ||
        h5_set_attr_i64(&f, "/", "num_classes", s->num_classes, err) ||
        h5_set_attr_str(&f, "/", "name", s->name, err)) {
        h5_abort(&f);
        return -1;
    }
    return h5_close_commit(&f, err);
}

// Shapes and attributes; out gets n, h, w, c, num_classes, name (no arrays).
static int read_header(H5File *f, ImageSet *out, Err *err) {
    int64_t ishape[TENSOR_MAX_DIMS], lshape[TENSOR_MAX_DIMS];
    int nd = h5_shape(f, "/images", ishape, err);
    if (nd < 0) return -1;
    if (nd != 4 || ishape[1] < 1 || ishape[2] < 1 || ishape[3] < 1 || ishape[1] > 65536 || ishape[2] > 65536 ||
        ishape[3] > 64)
        return err_set(err, "%s: dataset '/images' must be (N, H, W, C) with H, W, C > 0 (has %d dims)", f->path,
                       nd);
    nd = h5_shape(f, "/labels", lshape, err);
    if (nd < 0) return -1;
    if (nd != 1 || lshape[0] != ishape[0])
        return err_set(err, "%s: dataset '/labels' must be (N) with N = %lld, the number of images", f->path,
                       (long long)ishape[0]);
    int64_t num_classes;
    if (h5_get_attr_i64(f, "/", "num_classes", &num_classes, err)) return -1;
    if (num_classes < 1 || num_classes > INT32_MAX)
        return err_set(err, "%s: attribute num_classes = %lld (must be >= 1)", f->path, (long long)num_classes);
    char *name = h5_get_attr_str(f, "/", "name", err);
    if (!name) return -1;
    memset(out, 0, sizeof *out);
    out->n = ishape[0];
    out->h = (int)ishape[1];
    out->w = (int)ishape[2];
    out->c = (int)ishape[3];
    out->num_classes = (int)num_classes;
    snprintf(out->name, sizeof out->name, "%s", name);
    free(name);
    return 0;
}

// Rows [start, start + count) of a dataset whose stored type must be an integer of `size` bytes
// and signedness `is_signed` (described as `want` in errors).
static int read_rows(H5File *f, const char *dset, hid_t memtype, size_t size, bool is_signed, const char *want,
                     int64_t start, int64_t count, void *out, Err *err) {
    hid_t ds = H5Dopen2((hid_t)f->id, dset, H5P_DEFAULT);
    if (ds < 0) return err_set(err, "%s: '%s' is not a readable dataset", f->path, dset);
    hid_t type = H5Dget_type(ds);
    H5T_class_t cls = H5Tget_class(type);
    size_t have_size = H5Tget_size(type);
    bool have_signed = cls == H5T_INTEGER && H5Tget_sign(type) == H5T_SGN_2;
    H5Tclose(type);
    int rc = 0;
    if (cls != H5T_INTEGER || have_size != size || have_signed != is_signed) {
        rc = err_set(err, "%s: dataset '%s': stored as %s%zu, expected %s", f->path, dset,
                     cls == H5T_INTEGER ? (have_signed ? "int" : "uint") : cls == H5T_FLOAT ? "float" : "non-number ",
                     8 * have_size, want);
    } else if (count > 0) {
        hid_t space = H5Dget_space(ds);
        int ndim = H5Sget_simple_extent_ndims(space);
        hsize_t off[4] = {0}, dims[4];
        H5Sget_simple_extent_dims(space, dims, NULL);
        off[0] = (hsize_t)start;
        dims[0] = (hsize_t)count;
        hid_t mem = H5Screate_simple(ndim, dims, NULL);
        if (H5Sselect_hyperslab(space, H5S_SELECT_SET, off, NULL, dims, NULL) < 0 ||
            H5Dread(ds, memtype, mem, space, H5P_DEFAULT, out) < 0)
            rc = err_set(err, "%s: dataset '%s': reading rows %lld..%lld failed (truncated or corrupt file?)",
                         f->path, dset, (long long)start, (long long)(start + count));
        H5Sclose(mem);
        H5Sclose(space);
    }
    H5Dclose(ds);
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

static int read_range(H5File *f, int64_t start, int64_t count, ImageSet *out, Err *err) {
    ImageSet hdr;
    if (read_header(f, &hdr, err)) return -1;
    if (count < 0) count = hdr.n - start;
    if (start < 0 || count < 0 || start + count > hdr.n)
        return err_set(err, "%s: cannot read images %lld..%lld: the file holds %lld", f->path, (long long)start,
                       (long long)(start + count), (long long)hdr.n);
    imageset_alloc(out, count, hdr.h, hdr.w, hdr.c, hdr.num_classes, hdr.name);
    if (read_rows(f, "/images", H5T_NATIVE_UINT8, 1, false, "uint8", start, count, out->pixels, err) ||
        read_rows(f, "/labels", H5T_NATIVE_INT32, 4, true, "int32", start, count, out->labels, err))
        return -1;
    for (int64_t i = 0; i < count; i++)
        if (out->labels[i] < 0 || out->labels[i] >= out->num_classes)
            return err_set(err, "%s: dataset '/labels': label %d at index %lld is out of range [0, %d)", f->path,
                           out->labels[i], (long long)(start + i), out->num_classes);
    return 0;
}

int imageset_read_h5_range(const char *path, int64_t start, int64_t count, ImageSet *out, Err *err) {
    memset(out, 0, sizeof *out);
    H5File f;
    if (h5_open_read(&f, path, err)) return -1;
    int rc = read_range(&f, start, count, out, err);
    h5_close_commit(&f, NULL);
    if (rc) imageset_free(out);
    return rc;
}

int imageset_read_h5(const char *path, ImageSet *out, Err *err) {
    return imageset_read_h5_range(path, 0, -1, out, err);
}

int imageset_info_h5(const char *path, ImageSet *out, Err *err) {
    memset(out, 0, sizeof *out);
    H5File f;
    if (h5_open_read(&f, path, err)) return -1;
    int rc = read_header(&f, out, err);
    h5_close_commit(&f, NULL);
    return rc;
}
