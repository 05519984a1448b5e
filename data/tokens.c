// Token files and windows (see tokens.h).
#include "data/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "token files are read in place as little-endian uint16: a big-endian host needs a byte swap here"
#endif

#define HEADER_BYTES (TOKENS_HEADER_INTS * 4)

static int32_t le32(const uint8_t *p) { return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24); }

// The header's magic, version and token count against the file size.
static int check_header(const TokenFile *f, Err *err) {
    const char *path = f->path;
    size_t size = f->map_bytes;
    if (size < HEADER_BYTES)
        return err_set(err, "%s: truncated: %zu bytes, shorter than the %d-byte header of a token file", path, size, HEADER_BYTES);
    const uint8_t *h = f->map;
    int32_t magic = le32(h), version = le32(h + 4), n = le32(h + 8);
    if (magic != TOKENS_MAGIC)
        return err_set(err, "%s: bad magic %d at byte offset 0 (a token file starts with %d, llm.c's format)", path, magic, TOKENS_MAGIC);
    if (version != TOKENS_VERSION)
        return err_set(err, "%s: version %d at byte offset 4 is not supported (version %d: uint16 tokens)", path, version, TOKENS_VERSION);
    if (n < 0) return err_set(err, "%s: negative token count %d at byte offset 8", path, n);
    size_t want = HEADER_BYTES + 2 * (size_t)n;
    if (size < want)
        return err_set(err, "%s: truncated: the header (byte offset 8) says %d tokens, which end at byte offset %zu, but the "
                            "file has %zu bytes (%zu whole tokens)", path, n, want, size, (size - HEADER_BYTES) / 2);
    if (size > want)
        return err_set(err, "%s: %zu bytes after the last of the %d tokens (byte offset %zu): not a token file of version %d",
                       path, size - want, n, want, TOKENS_VERSION);
    return 0;
}

static int check_vocab(const TokenFile *f, int vocab_size, Err *err) {
    for (int64_t i = 0; vocab_size > 0 && i < f->n; i++)
        if (f->tokens[i] >= vocab_size)
            return err_set(err, "%s: token %lld (byte offset %lld) is %u, not below model.vocab_size %d", f->path,
                           (long long)i, (long long)(HEADER_BYTES + 2 * i), f->tokens[i], vocab_size);
    return 0;
}

static int map_file(TokenFile *f, Err *err) {
    int fd = open(f->path, O_RDONLY);
    if (fd < 0) return err_set(err, "%s: cannot open: %s", f->path, strerror(errno));
    struct stat st;
    int rc = fstat(fd, &st) ? err_set(err, "%s: cannot stat: %s", f->path, strerror(errno)) : 0;
    f->map_bytes = rc ? 0 : (size_t)st.st_size;
    if (rc == 0 && f->map_bytes > 0) {
        f->map = mmap(NULL, f->map_bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        if (f->map == MAP_FAILED) f->map = NULL, rc = err_set(err, "%s: cannot map: %s", f->path, strerror(errno));
    }
    close(fd);
    return rc;
}

int token_file_open(TokenFile *f, const char *path, int vocab_size, Err *err) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int rc = map_file(f, err);
    if (rc == 0) rc = check_header(f, err);
    if (rc == 0) {
        f->tokens = (const uint16_t *)((const uint8_t *)f->map + HEADER_BYTES);
        f->n = le32((const uint8_t *)f->map + 8);
        rc = check_vocab(f, vocab_size, err);
    }
    if (rc) token_file_close(f);
    return rc;
}

void token_file_close(TokenFile *f) {
    if (f->map) munmap(f->map, f->map_bytes);
    memset(f, 0, sizeof *f);
}

int token_file_write(const char *path, const int32_t *tokens, int64_t n, Err *err) {
    if (n > INT32_MAX) return err_set(err, "%s: %lld tokens do not fit a token file's int32 count", path, (long long)n);
    int32_t header[TOKENS_HEADER_INTS] = {TOKENS_MAGIC, TOKENS_VERSION, (int32_t)n};
    uint16_t *t = xmalloc((size_t)(n ? n : 1) * sizeof *t);
    int rc = 0;
    for (int64_t i = 0; i < n && rc == 0; i++) {
        if (tokens[i] < 0 || tokens[i] > UINT16_MAX)
            rc = err_set(err, "%s: token %lld is %d, outside the uint16 range of a token file", path, (long long)i, tokens[i]);
        t[i] = (uint16_t)tokens[i];
    }
    FILE *fp = rc ? NULL : fopen(path, "wb");
    if (rc == 0 && !fp) rc = err_set(err, "%s: cannot create: %s", path, strerror(errno));
    if (fp) {
        bool ok = fwrite(header, sizeof header, 1, fp) == 1 && (n == 0 || fwrite(t, sizeof *t, (size_t)n, fp) == (size_t)n);
        if (fclose(fp) || !ok) rc = err_set(err, "%s: write error", path);
    }
    free(t);
    return rc;
}

// ---- windows ----

int token_windows_init(TokenWindows *w, const TokenFile *f, int64_t len, bool random, uint64_t seed, Err *err) {
    memset(w, 0, sizeof *w);
    if (len < 2) return err_set(err, "%s: windows of %lld tokens: at least 2 are needed to predict one", f->path, (long long)len);
    if (f->n < len)
        return err_set(err, "%s: %lld tokens, fewer than one window of data.seq_len %lld", f->path, (long long)f->n, (long long)len);
    w->f = f, w->len = len, w->random = random;
    w->count = random ? INT64_MAX : f->n / len;
    rng_seed(&w->rng, seed);
    return 0;
}

int token_windows_next(TokenWindows *w, int count, int32_t *ids) {
    int k = 0;
    for (; k < count && (w->random || w->next < w->count); k++) {
        int64_t start = w->random ? (int64_t)rng_below(&w->rng, (uint64_t)(w->f->n - w->len + 1)) : w->len * w->next++;
        for (int64_t i = 0; i < w->len; i++) ids[k * w->len + i] = w->f->tokens[start + i];
    }
    return k;
}

// ---- text -> token file ----

int tokens_convert_text(const char *in, const char *out, Err *err) {
    FILE *fp = fopen(in, "r");
    if (!fp) return err_set(err, "%s: cannot open: %s", in, strerror(errno));
    int64_t n = 0, cap = 1024;
    int32_t *t = xmalloc((size_t)cap * sizeof *t);
    int rc = 0;
    for (int c; rc == 0 && (c = fgetc(fp)) != EOF;) {
        if (c == ',' || c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
        ungetc(c, fp);
        long long v;
        if (fscanf(fp, "%lld", &v) != 1 || v < 0 || v > UINT16_MAX) {
            rc = err_set(err, "%s: item %lld is not a token id in [0, 65535]", in, (long long)n);
            break;
        }
        if (n == cap) t = xrealloc(t, (size_t)(cap *= 2) * sizeof *t);
        t[n++] = (int32_t)v;
    }
    fclose(fp);
    if (rc == 0) rc = token_file_write(out, t, n, err);
    if (rc == 0) printf("wrote %s: %lld tokens\n", out, (long long)n);
    free(t);
    return rc;
}
