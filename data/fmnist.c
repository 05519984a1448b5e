// idx reader for Fashion-MNIST (see fmnist.h). zlib's gzread reads plain files transparently.
#include "data/fmnist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_MAGIC_IMAGES 2051u  // 0x00000803: ubyte data, 3 dims
#define IDX_MAGIC_LABELS 2049u  // 0x00000801: ubyte data, 1 dim
#define IDX_MAX_SIDE 4096
#define IDX_MAX_COUNT 1000000000LL

typedef struct IdxFile {
    gzFile gz;
    const char *path;
    int64_t offset;  // bytes consumed so far (uncompressed)
} IdxFile;

// zlib's message for the last error, without the "path: " prefix zlib puts in front.
static const char *gz_message(IdxFile *f, int *zerr) {
    const char *msg = gzerror(f->gz, zerr);
    size_t n = strlen(f->path);
    if (strncmp(msg, f->path, n) == 0 && strncmp(msg + n, ": ", 2) == 0) msg += n + 2;
    return msg;
}

// Reads exactly n bytes. A short read is an error naming what was expected and where the data ended.
static int idx_read(IdxFile *f, void *buf, int64_t n, const char *what, Err *err) {
    int64_t start = f->offset, got = 0;
    while (got < n) {
        int64_t chunk = n - got < (1 << 30) ? n - got : (1 << 30);
        int r = gzread(f->gz, (char *)buf + got, (unsigned)chunk);
        if (r < 0) {
            int zerr;
            const char *msg = gz_message(f, &zerr);
            return err_set(err, "%s: corrupt data near byte offset %lld while reading %s: %s", f->path,
                           (long long)(start + got), what, msg);
        }
        if (r == 0) break;
        got += r;
    }
    f->offset = start + got;
    if (got < n) {
        int zerr;
        const char *msg = gz_message(f, &zerr);
        return err_set(err, "%s: truncated: expected %lld bytes of %s at byte offset %lld, the data ends at "
                       "byte offset %lld%s%s", f->path, (long long)n, what, (long long)start,
                       (long long)f->offset, zerr != Z_OK ? ": " : "", zerr != Z_OK ? msg : "");
    }
    return 0;
}

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

// Opens path and checks the magic; reads ndim big-endian dims into dims.
static int idx_open(IdxFile *f, const char *path, uint32_t magic, int ndim, int64_t *dims, Err *err) {
    memset(f, 0, sizeof *f);
    f->path = path;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz) return err_set(err, "%s: cannot open: %s", path, errno ? strerror(errno) : "out of memory");
    gzbuffer(f->gz, 1 << 17);
    uint8_t hdr[4 * 4];
    if (idx_read(f, hdr, 4 * (1 + ndim), "idx header", err)) return -1;
    uint32_t got = be32(hdr);
    if (got != magic)
        return err_set(err, "%s: bad magic number %u at byte offset 0 (expected %u, an idx%d-ubyte %s file)",
                       path, got, magic, ndim, ndim == 1 ? "label" : "image");
    for (int i = 0; i < ndim; i++) {
        dims[i] = be32(hdr + 4 * (i + 1));
        int64_t max = i == 0 ? IDX_MAX_COUNT : IDX_MAX_SIDE;
        if (dims[i] > max || (i > 0 && dims[i] == 0))
            return err_set(err, "%s: implausible dimension %lld at byte offset %d (allowed %s%lld)", path,
                           (long long)dims[i], 4 * (i + 1), i > 0 ? "1.." : "0..", (long long)max);
    }
    return 0;
}

// After all announced data: the stream must end here (this also makes zlib check the gzip CRC).
static int idx_expect_end(IdxFile *f, Err *err) {
    char extra;
    int r = gzread(f->gz, &extra, 1);
    if (r > 0)
        return err_set(err, "%s: unexpected data after byte offset %lld (the header announces %lld bytes)",
                       f->path, (long long)f->offset, (long long)f->offset);
    int zerr;
    const char *msg = gz_message(f, &zerr);
    if (r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
        return err_set(err, "%s: corrupt data, detected at byte offset %lld (the end of the data): %s", f->path,
                       (long long)f->offset, msg);
    return 0;
}

static void idx_close(IdxFile *f) {
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

static int read_both(IdxFile *im, IdxFile *lb, const char *images_path, const char *labels_path,
                     ImageSet *out, Err *err) {
    int64_t idims[3], ldims[1];
    if (idx_open(im, images_path, IDX_MAGIC_IMAGES, 3, idims, err)) return -1;
    if (idx_open(lb, labels_path, IDX_MAGIC_LABELS, 1, ldims, err)) return -1;
    if (idims[0] != ldims[0])
        return err_set(err, "%s: %lld images (byte offset 4) but %s holds %lld labels", images_path,
                       (long long)idims[0], labels_path, (long long)ldims[0]);
    imageset_alloc(out, idims[0], (int)idims[1], (int)idims[2], 1, FMNIST_NUM_CLASSES, "fashion_mnist");
    if (idx_read(im, out->pixels, out->n * imageset_image_bytes(out), "pixel data", err)) return -1;
    if (idx_expect_end(im, err)) return -1;
    uint8_t *bytes = xmalloc((size_t)out->n);  // labels are bytes on disk
    int rc = idx_read(lb, bytes, out->n, "labels", err);
    if (rc == 0) rc = idx_expect_end(lb, err);
    for (int64_t i = 0; rc == 0 && i < out->n; i++) {
        if (bytes[i] >= FMNIST_NUM_CLASSES)
            rc = err_set(err, "%s: label %d at byte offset %lld is out of range [0, %d)", labels_path,
                         bytes[i], (long long)(8 + i), FMNIST_NUM_CLASSES);
        out->labels[i] = bytes[i];
    }
    free(bytes);
    return rc;
}

int fmnist_read(const char *images_path, const char *labels_path, ImageSet *out, Err *err) {
    memset(out, 0, sizeof *out);
    IdxFile im = {0}, lb = {0};
    int rc = read_both(&im, &lb, images_path, labels_path, out, err);
    idx_close(&im);
    idx_close(&lb);
    if (rc) imageset_free(out);
    return rc;
}

// <dir>/<name>.gz if it exists, else <dir>/<name>.
static void idx_path(char *buf, size_t size, const char *dir, const char *prefix, const char *kind) {
    int n = snprintf(buf, size, "%s/%s-%s-ubyte.gz", dir, prefix, kind);
    CHECK(n >= 0 && (size_t)n < size, "fmnist: path too long under %s", dir);
    if (access(buf, F_OK) != 0) {
        buf[n - 3] = '\0';
        if (access(buf, F_OK) != 0) buf[n - 3] = '.';  // neither exists: report the .gz name
    }
}

int fmnist_load(const char *dir, const char *split, ImageSet *out, Err *err) {
    const char *prefix;
    if (strcmp(split, "train") == 0) prefix = "train";
    else if (strcmp(split, "test") == 0 || strcmp(split, "t10k") == 0) prefix = "t10k";
    else return err_set(err, "fashion_mnist: unknown split '%s' (expected train or test)", split);
    char images[1024], labels[1024];
    idx_path(images, sizeof images, dir, prefix, "images-idx3");
    idx_path(labels, sizeof labels, dir, prefix, "labels-idx1");
    return fmnist_read(images, labels, out, err);
}
