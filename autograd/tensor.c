#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "util.h"

#define ARENA_ALIGN 64

// Tensor headers live in host memory (also for device arenas), in chunks owned by the arena.
#define HEADERS_PER_CHUNK 256
struct HeaderChunk {
    Tensor items[HEADERS_PER_CHUNK];
    struct HeaderChunk *next;
};

void arena_init(Arena *a, const char *name, Device dev, size_t capacity) {
    memset(a, 0, sizeof *a);
    snprintf(a->name, sizeof a->name, "%s", name);
    a->device = dev;
    a->capacity = capacity;
    if (dev == DEV_CPU) {
        a->base = aligned_alloc(ARENA_ALIGN, (capacity + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
        if (!a->base) fatal("out of memory: arena '%s' of %zu bytes", name, capacity);
    } else {
        a->base = device_malloc(capacity);
    }
}

void arena_free(Arena *a) {
    if (!a->base) return;
    if (a->device == DEV_CPU) free(a->base);
    else device_free(a->base);
    a->base = NULL;
    a->capacity = a->used = 0;
    while (a->header_chunks) {
        struct HeaderChunk *next = a->header_chunks->next;
        free(a->header_chunks);
        a->header_chunks = next;
    }
    a->headers_used = 0;
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t start = (a->used + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (start + bytes > a->capacity)
        fatal("arena '%s' is full: need %zu more bytes, capacity %zu (raise its size)", a->name, bytes,
              a->capacity);
    a->used = start + bytes;
    if (a->used > a->high_water) a->high_water = a->used;
    return a->base + start;
}

void arena_reset(Arena *a) {
    a->used = 0;
    a->headers_used = 0;
}

size_t dtype_size(DType dt) {
    static const size_t sizes[] = {[DT_F32] = 4, [DT_BF16] = 2, [DT_U8] = 1, [DT_I32] = 4};
    return sizes[dt];
}
const char *dtype_name(DType dt) {
    static const char *names[] = {[DT_F32] = "f32", [DT_BF16] = "bf16", [DT_U8] = "u8", [DT_I32] = "i32"};
    return names[dt];
}

// arena_reset() recycles tensor headers along with the storage.

static Tensor *tensor_header(Arena *a) {
    int index = a->headers_used++;
    struct HeaderChunk **link = &a->header_chunks;
    for (int c = 0; c <= index / HEADERS_PER_CHUNK; c++) {
        if (!*link) *link = xcalloc(1, sizeof(struct HeaderChunk));
        if (c < index / HEADERS_PER_CHUNK) link = &(*link)->next;
    }
    Tensor *t = &(*link)->items[index % HEADERS_PER_CHUNK];
    memset(t, 0, sizeof *t);
    return t;
}

Tensor *tensor_new(Arena *a, DType dt, int ndim, const int64_t *shape, const char *name) {
    if (ndim < 0 || ndim > TENSOR_MAX_DIMS) fatal("tensor '%s': %d dims (max %d)", name, ndim, TENSOR_MAX_DIMS);
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] <= 0) fatal("tensor '%s': dim %d is %lld", name ? name : "?", i, (long long)shape[i]);
        numel *= shape[i];
    }
    size_t bytes = (size_t)numel * dtype_size(dt);
    void *data = arena_alloc(a, bytes);
    Tensor *t = tensor_header(a);
    snprintf(t->name, sizeof t->name, "%s", name ? name : "");
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->numel = numel;
    t->dtype = dt;
    t->device = a->device;
    t->data = data;
    if (!a->no_zero) tensor_zero(t);
    return t;
}

Tensor *tensor_new2(Arena *a, DType dt, int64_t d0, int64_t d1, const char *name) {
    int64_t s[2] = {d0, d1};
    return tensor_new(a, dt, 2, s, name);
}

Tensor *tensor_new1(Arena *a, DType dt, int64_t d0, const char *name) { return tensor_new(a, dt, 1, &d0, name); }

Tensor *tensor_like(Arena *a, const Tensor *like, const char *name) {
    if (a->device != like->device) fatal("tensor_like('%s'): arena '%s' is on another device", name, a->name);
    return tensor_new(a, like->dtype, like->ndim, like->shape, name);
}

Tensor *tensor_rows(Arena *a, const Tensor *t, int64_t row0, int64_t rows, const char *name) {
    if (t->ndim < 1 || row0 < 0 || rows < 1 || row0 + rows > t->shape[0])
        fatal("tensor_rows('%s'): rows [%lld, %lld) of %lld", t->name, (long long)row0, (long long)(row0 + rows),
              (long long)(t->ndim ? t->shape[0] : 0));
    Tensor *v = tensor_header(a);
    *v = *t;
    snprintf(v->name, sizeof v->name, "%s", name);
    v->grad = NULL;
    v->shape[0] = rows;
    v->numel = t->numel / t->shape[0] * rows;
    v->data = (char *)t->data + (size_t)(t->numel / t->shape[0] * row0) * dtype_size(t->dtype);
    return v;
}

Tensor *tensor_ensure_grad(Tensor *t, Arena *a) {
    if (!t->grad) {
        // gradients are f32 on CPU; on CUDA f32 for tensors flagged grad_f32 (trainable params),
        // else the tensor's dtype (bf16 activations)
        DType gdt = t->device == DEV_CPU || t->grad_f32 ? DT_F32 : t->dtype;
        char nm[TENSOR_NAME_LEN + 8];
        snprintf(nm, sizeof nm, "%s.grad", t->name);
        t->grad = tensor_new(a, gdt, t->ndim, t->shape, nm);
        // kernels accumulate into gradients: zero them, or (GPU) mark them for overwrite
        if (a->no_zero && a->device == DEV_CPU) tensor_zero(t->grad);
        else if (a->no_zero) t->grad->unwritten = true;
    }
    return t->grad;
}

void tensor_zero(Tensor *t) {
    t->unwritten = false;
    size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
    if (t->device == DEV_CPU) memset(t->data, 0, bytes);
    else device_memset0(t->data, bytes);
}

bool tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

const char *tensor_shape_str(const Tensor *t, char *buf, size_t n) { return dims_str(t->ndim, t->shape, buf, n); }

void tensor_write_host(Tensor *t, const void *src) {
    size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
    if (t->device == DEV_CPU) memcpy(t->data, src, bytes);
    else device_copy_h2d(t->data, src, bytes);
}

void tensor_read_host(const Tensor *t, void *dst) {
    size_t bytes = (size_t)t->numel * dtype_size(t->dtype);
    if (t->device == DEV_CPU) memcpy(dst, t->data, bytes);
    else device_copy_d2h(dst, t->data, bytes);
}

float *tensor_to_host_f32(const Tensor *t) {
    float *h = xmalloc((size_t)t->numel * sizeof *h);
    tensor_get_f32(t, h, t->numel);
    return h;
}

void tensor_set_f32(Tensor *t, const float *src, int64_t n) {
    if (n != t->numel) fatal("tensor_set_f32('%s'): %lld values for %lld elements", t->name, (long long)n, (long long)t->numel);
    if (t->dtype == DT_F32) {
        tensor_write_host(t, src);
        return;
    }
    if (t->dtype != DT_BF16) fatal("tensor_set_f32('%s'): dtype %s", t->name, dtype_name(t->dtype));
    uint16_t *h = t->device == DEV_CPU ? t->data : xmalloc((size_t)n * 2);
    for (int64_t i = 0; i < n; i++) h[i] = f32_to_bf16(src[i]);
    if (t->device != DEV_CPU) {
        device_copy_h2d(t->data, h, (size_t)n * 2);
        free(h);
    }
}

void tensor_get_f32(const Tensor *t, float *dst, int64_t n) {
    if (n != t->numel) fatal("tensor_get_f32('%s'): %lld values for %lld elements", t->name, (long long)n, (long long)t->numel);
    if (t->dtype == DT_F32) {
        tensor_read_host(t, dst);
        return;
    }
    if (t->dtype != DT_BF16) fatal("tensor_get_f32('%s'): dtype %s", t->name, dtype_name(t->dtype));
    const uint16_t *h = t->data;
    uint16_t *tmp = NULL;
    if (t->device != DEV_CPU) {
        h = tmp = xmalloc((size_t)n * 2);
        device_copy_d2h(tmp, t->data, (size_t)n * 2);
    }
    for (int64_t i = 0; i < n; i++) dst[i] = bf16_to_f32(h[i]);
    free(tmp);
}
