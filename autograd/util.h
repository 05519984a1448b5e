// Small shared helpers: errors, checked allocation, logging.
#pragma once
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// Error report for functions that read user input (configs, checkpoints, data files).
// Convention: such functions take `Err *err`, return 0 on success and -1 on failure after
// filling err->msg with a message naming the file and the key / tensor / byte offset.
typedef struct Err {
    char msg[1024];
} Err;

// Formats into err->msg (err may be NULL) and returns -1, so callers can `return err_set(...)`.
// The arguments may include err->msg (to prefix context to an inner error).
int err_set(Err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prints "vnmtune: error: ..." to stderr and exits(1). For programming errors and OOM.
_Noreturn void fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

double now_seconds(void);  // monotonic clock

// Environment variable `name` as an integer (kernel choices and A/B switches for measurements):
// `fallback` when it is unset, not a whole decimal number or outside [lo, hi].
int env_int(const char *name, int fallback, int lo, int hi);

// Calls fn(ctx, begin, end) on contiguous chunks covering [0, n), on up to 16 threads (one per
// online CPU), each chunk at least min_chunk long; returns when all are done. fn must only write
// what its own range owns.
void parallel_for(int64_t n, int64_t min_chunk, void (*fn)(void *ctx, int64_t begin, int64_t end), void *ctx);
// mkdir -p: creates path and its missing parents (errors name the directory).
int make_dirs(const char *path, Err *err);

// "[2, 3, 4]": a shape as text into buf (n bytes, truncated to fit), for error messages. Returns buf.
const char *dims_str(int ndim, const int64_t *shape, char *buf, size_t n);

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define CHECK(cond, ...)                         \
    do {                                         \
        if (!(cond)) fatal(__VA_ARGS__);         \
    } while (0)
