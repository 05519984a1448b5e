// safetensors reader (mmap + cJSON header) and writer (see safetensors.h).
// The format is little-endian; so are the hosts we run on (x86-64, aarch64).
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "autograd/device.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_MAX_HEADER (100u << 20)  // the reference implementation's limit

// Every dtype of the format, with its element size; the first SFT_OTHER ones map to our enum.
static const struct { const char *name; StDType dt; size_t size; } DTYPES[] = {
    {"F32", SFT_F32, 4},   {"BF16", SFT_BF16, 2},   {"F16", SFT_F16, 2},     {"I32", SFT_I32, 4},
    {"I64", SFT_I64, 8},   {"U8", SFT_U8, 1},       {"F64", SFT_OTHER, 8},   {"I8", SFT_OTHER, 1},
    {"I16", SFT_OTHER, 2}, {"U16", SFT_OTHER, 2},   {"U32", SFT_OTHER, 4},   {"U64", SFT_OTHER, 8},
    {"BOOL", SFT_OTHER, 1}, {"F8_E4M3", SFT_OTHER, 1}, {"F8_E5M2", SFT_OTHER, 1},
};

const char *st_dtype_str(StDType dt) {
    for (size_t i = 0; i < ARRAY_LEN(DTYPES); i++)
        if (DTYPES[i].dt == dt) return DTYPES[i].name;
    return "OTHER";
}

size_t st_dtype_size(StDType dt) {
    if (dt == SFT_OTHER) return 0;
    for (size_t i = 0; i < ARRAY_LEN(DTYPES); i++)
        if (DTYPES[i].dt == dt) return DTYPES[i].size;
    return 0;
}

// ---- reading the header ----

// A JSON number that is a whole value in [0, 2^53).
static bool json_u64(const cJSON *j, uint64_t *v) {
    if (!cJSON_IsNumber(j)) return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d < 9007199254740992.0) || d != floor(d)) return false;
    *v = (uint64_t)d;
    return true;
}

// Fills e from the JSON object j (the value of tensor `name`); data_len = bytes after the header.
static int parse_entry(const char *path, const char *name, const cJSON *j, uint64_t data_start, uint64_t data_len,
                       StEntry *e, Err *err) {
    e->name = xstrdup(name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsObject(j) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) || !cJSON_IsArray(offs))
        return err_set(err, "%s: tensor '%s': header entry needs \"dtype\" (string), \"shape\" and \"data_offsets\" (arrays)",
                       path, name);
    size_t elem = 0;
    e->dtype = SFT_OTHER;
    snprintf(e->dtype_name, sizeof e->dtype_name, "%s", dt->valuestring);
    for (size_t i = 0; i < ARRAY_LEN(DTYPES); i++)
        if (strcmp(dt->valuestring, DTYPES[i].name) == 0) e->dtype = DTYPES[i].dt, elem = DTYPES[i].size;
    if (elem == 0) return err_set(err, "%s: tensor '%s': unknown dtype '%s'", path, name, dt->valuestring);

    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS) return err_set(err, "%s: tensor '%s': %d dims (at most %d)", path, name, nd, ST_MAX_DIMS);
    e->ndim = nd;
    e->numel = 1;
    const cJSON *d;
    int i = 0;
    cJSON_ArrayForEach(d, shape) {
        uint64_t v;
        if (!json_u64(d, &v) || v > (1ull << 40))
            return err_set(err, "%s: tensor '%s': shape entry %d is not a valid dimension", path, name, i);
        e->shape[i++] = (int64_t)v;
        e->numel *= (int64_t)v;
    }
    uint64_t begin, end;
    if (cJSON_GetArraySize(offs) != 2 || !json_u64(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_u64(cJSON_GetArrayItem(offs, 1), &end) || end < begin)
        return err_set(err, "%s: tensor '%s': data_offsets must be [begin, end] with 0 <= begin <= end", path, name);
    char sb[128];
    uint64_t want = (uint64_t)e->numel * elem;
    if (end - begin != want)
        return err_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but shape %s of %s needs %llu",
                       path, name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)(end - begin),
                       dims_str(e->ndim, e->shape, sb, sizeof sb), e->dtype_name, (unsigned long long)want);
    if (end > data_len)
        return err_set(err, "%s: tensor '%s': data_offsets [%llu, %llu] go past the end of the data (%llu bytes): "
                       "truncated file?", path, name, (unsigned long long)begin, (unsigned long long)end,
                       (unsigned long long)data_len);
    e->offset = data_start + begin;
    e->nbytes = want;
    return 0;
}

static int parse_metadata(StFile *f, const cJSON *j, Err *err) {
    if (!cJSON_IsObject(j)) return err_set(err, "%s: __metadata__ is not an object", f->path);
    f->meta = xcalloc((size_t)(2 * cJSON_GetArraySize(j)), sizeof(char *));
    const cJSON *kv;
    cJSON_ArrayForEach(kv, j) {
        if (!cJSON_IsString(kv)) return err_set(err, "%s: __metadata__ '%s' is not a string", f->path, kv->string);
        f->meta[2 * f->n_meta] = xstrdup(kv->string);
        f->meta[2 * f->n_meta + 1] = xstrdup(kv->valuestring);
        f->n_meta++;
    }
    return 0;
}

static int by_offset(const void *a, const void *b) {
    uint64_t x = ((const StEntry *)a)->offset, y = ((const StEntry *)b)->offset;
    return x < y ? -1 : x > y;
}

static int parse_header(StFile *f, uint64_t hlen, Err *err) {
    const char *text = (const char *)f->map + 8;
    const char *end_ptr = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, hlen, &end_ptr, false);
    if (!root) {
        long at = end_ptr ? (long)(end_ptr - text) : -1;
        return err_set(err, "%s: malformed JSON header (%llu bytes) near byte %ld of the header", f->path,
                       (unsigned long long)hlen, at);
    }
    int rc = 0;
    if (!cJSON_IsObject(root)) rc = err_set(err, "%s: the JSON header is not an object", f->path);
    uint64_t data_start = 8 + hlen, data_len = f->size - data_start;
    f->entries = xcalloc((size_t)cJSON_GetArraySize(root) + 1, sizeof *f->entries);
    const cJSON *j;
    cJSON_ArrayForEach(j, root) {
        if (rc < 0) break;
        if (strcmp(j->string, "__metadata__") == 0) {
            rc = parse_metadata(f, j, err);
        } else if (st_find(f, j->string)) {
            rc = err_set(err, "%s: tensor '%s' appears twice in the header", f->path, j->string);
        } else {
            rc = parse_entry(f->path, j->string, j, data_start, data_len, &f->entries[f->n], err);
            f->n++;  // counted even on error so that st_close frees the name
        }
    }
    cJSON_Delete(root);
    if (rc == 0) qsort(f->entries, (size_t)f->n, sizeof *f->entries, by_offset);
    return rc;
}

int st_open(StFile *f, const char *path, Err *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return err_set(err, "%s: not a regular file", path);
    }
    f->size = (uint64_t)sb.st_size;
    if (f->size < 8) {
        close(fd);
        return err_set(err, "%s: %llu bytes, too short for a safetensors file (8-byte header length)", path,
                       (unsigned long long)f->size);
    }
    void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return err_set(err, "%s: mmap failed: %s", path, strerror(errno));
    f->map = map;
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    int rc;
    if (hlen > f->size - 8)
        rc = err_set(err, "%s: header length %llu is larger than the file (%llu bytes): not a safetensors file, or "
                     "truncated", path, (unsigned long long)hlen, (unsigned long long)f->size);
    else if (hlen > ST_MAX_HEADER)
        rc = err_set(err, "%s: header length %llu is over the 100 MiB limit", path, (unsigned long long)hlen);
    else
        rc = parse_header(f, hlen, err);
    if (rc < 0) st_close(f);
    return rc;
}

void st_close(StFile *f) {
    if (f->map) munmap((void *)f->map, f->size);
    for (int i = 0; i < f->n; i++) free(f->entries[i].name);
    free(f->entries);
    for (int i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    memset(f, 0, sizeof *f);
}

const StEntry *st_find(const StFile *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (f->entries[i].name && strcmp(f->entries[i].name, name) == 0) return &f->entries[i];
    return NULL;
}

const char *st_metadata(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
    return NULL;
}

// ---- reading tensors ----

// IEEE half -> float (exact: every half is a float).
static float f16_to_f32(uint16_t h) {
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    float v;
    if (exp == 0) v = ldexpf((float)mant, -24);                       // zero / subnormal
    else if (exp == 31) v = mant ? NAN : INFINITY;
    else v = ldexpf((float)(mant | 0x400), exp - 25);                 // 1.mant * 2^(exp-15)
    return sign ? -v : v;
}

// The entry `name` if it exists and has exactly the expected shape.
static const StEntry *lookup(const StFile *f, const char *name, int ndim, const int64_t *shape, Err *err) {
    const StEntry *e = st_find(f, name);
    if (!e) {
        err_set(err, "%s: missing tensor '%s' (the file has %d tensors)", f->path, name, f->n);
        return NULL;
    }
    bool same = e->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = e->shape[i] == shape[i];
    if (!same) {
        char a[128], b[128];
        err_set(err, "%s: tensor '%s': expected %s, file has %s", f->path, name, dims_str(ndim, shape, a, sizeof a),
                dims_str(e->ndim, e->shape, b, sizeof b));
        return NULL;
    }
    return e;
}

static int unsupported(const StFile *f, const StEntry *e, const char *what, Err *err) {
    return err_set(err, "%s: tensor '%s': unsupported dtype %s (%s)", f->path, e->name, e->dtype_name, what);
}

// Converts the entry's data (F32/BF16/F16) to fp32 in dst.
static void to_f32(const StFile *f, const StEntry *e, float *dst) {
    const uint8_t *src = f->map + e->offset;
    if (e->dtype == SFT_F32) {
        memcpy(dst, src, e->nbytes);
        return;
    }
    for (int64_t i = 0; i < e->numel; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, 2);  // unaligned-safe
        dst[i] = e->dtype == SFT_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
}

static bool float_like(StDType dt) { return dt == SFT_F32 || dt == SFT_BF16 || dt == SFT_F16; }

int st_read_f32(const StFile *f, const char *name, float *dst, int ndim, const int64_t *expected_shape, Err *err) {
    const StEntry *e = lookup(f, name, ndim, expected_shape, err);
    if (!e) return -1;
    if (!float_like(e->dtype)) return unsupported(f, e, "readable as fp32: F32, BF16, F16", err);
    to_f32(f, e, dst);
    return 0;
}

int st_read_tensor(const StFile *f, const char *name, Tensor *t, Err *err) {
    if (t->dtype != DT_F32 && t->dtype != DT_BF16)
        fatal("st_read_tensor('%s'): tensor dtype %s", name, dtype_name(t->dtype));
    const StEntry *e = lookup(f, name, t->ndim, t->shape, err);
    if (!e) return -1;
    if (!float_like(e->dtype)) return unsupported(f, e, "readable as fp32: F32, BF16, F16", err);
    size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
    void *host = t->device == DEV_CPU ? t->data : xmalloc(bytes);
    if (t->dtype == DT_BF16 && e->dtype == SFT_BF16) {
        memcpy(host, f->map + e->offset, bytes);
    } else if (t->dtype == DT_F32) {
        to_f32(f, e, host);
    } else {  // bf16 tensor from F32 / F16
        float *tmp = xmalloc((size_t)t->numel * sizeof(float));
        to_f32(f, e, tmp);
        for (int64_t i = 0; i < t->numel; i++) ((uint16_t *)host)[i] = f32_to_bf16(tmp[i]);
        free(tmp);
    }
    if (t->device != DEV_CPU) {
        device_copy_h2d(t->data, host, bytes);
        free(host);
    }
    return 0;
}

// ---- writing ----

static int64_t numel_of(const StWriteEntry *e) {
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
    return n;
}

static char *build_header(const StWriteEntry *entries, int n, const StMeta *meta, int n_meta, uint64_t *data_len) {
    cJSON *root = cJSON_CreateObject();
    if (n_meta > 0) {
        cJSON *m = cJSON_AddObjectToObject(root, "__metadata__");
        for (int i = 0; i < n_meta; i++) cJSON_AddStringToObject(m, meta[i].key, meta[i].value);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        const StWriteEntry *e = &entries[i];
        cJSON *o = cJSON_AddObjectToObject(root, e->name);
        cJSON_AddStringToObject(o, "dtype", st_dtype_str(e->dtype));
        cJSON *shape = cJSON_AddArrayToObject(o, "shape");
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        uint64_t nbytes = (uint64_t)numel_of(e) * st_dtype_size(e->dtype);
        cJSON *offs = cJSON_AddArrayToObject(o, "data_offsets");
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(off + nbytes)));
        off += nbytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) fatal("st_write: cJSON out of memory");
    *data_len = off;
    return json;
}

// Writes one entry's bytes (converting from fp32 where asked).
static bool write_data(FILE *fp, const StWriteEntry *e) {
    int64_t n = numel_of(e);
    if (e->data) return fwrite(e->data, st_dtype_size(e->dtype), (size_t)n, fp) == (size_t)n;
    if (e->dtype == SFT_F32) return fwrite(e->f32, 4, (size_t)n, fp) == (size_t)n;
    uint16_t buf[4096];
    for (int64_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < ARRAY_LEN(buf) && i < n; k++, i++) buf[k] = f32_to_bf16(e->f32[i]);
        if (fwrite(buf, 2, k, fp) != k) return false;
    }
    return true;
}

int st_write(const char *path, const StWriteEntry *entries, int n, const StMeta *meta, int n_meta, Err *err) {
    for (int i = 0; i < n; i++) {
        const StWriteEntry *e = &entries[i];
        if (e->dtype == SFT_OTHER || (e->data == NULL) == (e->f32 == NULL) ||
            (e->f32 && e->dtype != SFT_F32 && e->dtype != SFT_BF16) || e->ndim < 0 || e->ndim > ST_MAX_DIMS)
            fatal("st_write('%s'): bad entry '%s'", path, e->name);
    }
    uint64_t data_len;
    char *json = build_header(entries, n, meta, n_meta, &data_len);
    // Pad the header with spaces so that the data starts 8-byte aligned (as the HF writer does).
    uint64_t hlen = strlen(json), padded = (8 + hlen + 7) / 8 * 8 - 8;
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "wb");
    if (!fp) {
        free(json);
        return err_set(err, "%s: cannot create: %s", tmp, strerror(errno));
    }
    bool ok = fwrite(&padded, 8, 1, fp) == 1 && fwrite(json, 1, hlen, fp) == hlen;
    for (uint64_t i = hlen; ok && i < padded; i++) ok = fputc(' ', fp) != EOF;
    for (int i = 0; ok && i < n; i++) ok = write_data(fp, &entries[i]);
    ok = fflush(fp) == 0 && ok;
    int e = errno;
    ok = fsync(fileno(fp)) == 0 && ok;
    ok = fclose(fp) == 0 && ok;
    free(json);
    if (!ok) {
        unlink(tmp);
        return err_set(err, "%s: write failed: %s", tmp, strerror(e ? e : EIO));
    }
    if (rename(tmp, path) != 0) {
        e = errno;
        unlink(tmp);
        return err_set(err, "%s: cannot rename %s over it: %s", path, tmp, strerror(e));
    }
    return 0;
}
