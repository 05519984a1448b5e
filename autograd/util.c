#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int err_set(Err *err, const char *fmt, ...) {
    if (err) {
        char msg[sizeof err->msg];  // callers prefix an inner error: an argument may be err->msg itself
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        memcpy(err->msg, msg, sizeof msg);
    }
    return -1;
}

void fatal(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("vnmtune: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fatal("out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) fatal("out of memory allocating %zu x %zu bytes", count, size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) fatal("out of memory reallocating %zu bytes", n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = xmalloc(n);
    memcpy(d, s, n);
    return d;
}

int env_int(const char *name, int fallback, int lo, int hi) {
    const char *v = getenv(name);
    if (!v || !*v) return fallback;
    char *end;
    errno = 0;
    const long x = strtol(v, &end, 10);
    return *end || errno || x < lo || x > hi ? fallback : (int)x;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

const char *dims_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t off = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && off < n; i++)
        off += (size_t)snprintf(buf + off, n - off, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (off < n) snprintf(buf + off, n - off, "]");
    return buf;
}

int make_dirs(const char *path, Err *err) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return err_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return err_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
    return 0;
}

typedef struct Chunk {
    void (*fn)(void *, int64_t, int64_t);
    void *ctx;
    int64_t begin, end;
} Chunk;

static void *run_chunk(void *arg) {
    Chunk *c = arg;
    c->fn(c->ctx, c->begin, c->end);
    return NULL;
}

void parallel_for(int64_t n, int64_t min_chunk, void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx) {
    enum { MAX_THREADS = 16 };
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int64_t nt = cpus < 1 ? 1 : cpus > MAX_THREADS ? MAX_THREADS : cpus;
    if (min_chunk < 1) min_chunk = 1;
    if (nt > (n + min_chunk - 1) / min_chunk) nt = (n + min_chunk - 1) / min_chunk;
    if (nt <= 1) {
        if (n > 0) fn(ctx, 0, n);
        return;
    }
    Chunk chunks[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int64_t t = 0; t < nt; t++) {
        chunks[t] = (Chunk){fn, ctx, n * t / nt, n * (t + 1) / nt};
        if (t > 0) started[t] = pthread_create(&threads[t], NULL, run_chunk, &chunks[t]) == 0;
    }
    run_chunk(&chunks[0]);
    for (int64_t t = 1; t < nt; t++) {
        if (started[t]) pthread_join(threads[t], NULL);
        else run_chunk(&chunks[t]);  // no thread: run it here
    }
}
