// Tensors and arenas: the storage layer of the engine.
//
// A Tensor is a contiguous, row-major block of f32 or bf16 values on one device. Its storage
// comes from an Arena (a bump allocator), so there is no per-tensor free: parameters, gradients,
// optimizer state and activations each live in their own arena, and the activation arena is
// reset every step.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TENSOR_MAX_DIMS 4
#define TENSOR_NAME_LEN 96

typedef enum { DT_F32 = 0, DT_BF16 = 1, DT_U8 = 2, DT_I32 = 3 } DType;
typedef enum { DEV_CPU = 0, DEV_CUDA = 1, DEV_COUNT = 2 } Device;

typedef struct Arena {
    char name[32];
    Device device;
    char *base;
    size_t capacity, used, high_water;
    struct HeaderChunk *header_chunks;  // host memory for the headers of this arena's tensors
    int headers_used;
    bool no_zero;  // tensor_new leaves storage unset (kernels overwrite outputs); see tensor_ensure_grad
} Arena;

typedef struct Tensor {
    char name[TENSOR_NAME_LEN];
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    int64_t numel;
    DType dtype;
    Device device;
    void *data;
    struct Tensor *grad;   // gradient buffer (same shape, f32 on CPU); NULL until needed
    bool requires_grad;    // true for trainable parameters and for activations that depend on them
    bool grad_f32;         // CUDA: the gradient is f32 (trainable parameters), else it has t->dtype
    bool unwritten;        // storage never written, logically zero (GPU gradients from a no_zero
                           // arena: the first CUDA backward kernel overwrites instead of adding)
} Tensor;

// ---- arenas ----
// capacity in bytes; device memory on DEV_CUDA (needs the CUDA build). Aborts on failure.
void arena_init(Arena *a, const char *name, Device dev, size_t capacity);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t bytes);      // 64-byte aligned, NOT zeroed
void arena_reset(Arena *a);                      // forget all allocations (keeps the memory)

// ---- tensors ----
size_t dtype_size(DType dt);
const char *dtype_name(DType dt);
// Allocates the tensor header and its storage from `a`. Storage is zeroed unless a->no_zero
// (set on a GPU activation arena: every CUDA kernel writes its outputs fully).
Tensor *tensor_new(Arena *a, DType dt, int ndim, const int64_t *shape, const char *name);
Tensor *tensor_new2(Arena *a, DType dt, int64_t d0, int64_t d1, const char *name);
Tensor *tensor_new1(Arena *a, DType dt, int64_t d0, const char *name);
// A tensor with the same shape/dtype/device as `like`.
Tensor *tensor_like(Arena *a, const Tensor *like, const char *name);
// A view of rows [row0, row0 + rows) of t's first dimension: t's storage, a header from `a`
// (gradient accumulation: the micro-batches of a batch).
Tensor *tensor_rows(Arena *a, const Tensor *t, int64_t row0, int64_t rows, const char *name);
// Make sure t->grad exists (allocated from `a`, zeroed). Its dtype: f32 on CPU; on CUDA f32 when
// t->grad_f32 is set (trainable parameters: params_add sets it), else t->dtype (bf16 activations).
// From a no_zero arena on the GPU the gradient is not zeroed but marked `unwritten` (the CUDA
// kernels overwrite it on their first write); on the CPU it is always zeroed.
Tensor *tensor_ensure_grad(Tensor *t, Arena *a);
void tensor_zero(Tensor *t);
bool tensor_same_shape(const Tensor *a, const Tensor *b);
// Human readable "[2, 3, 4]" into buf.
const char *tensor_shape_str(const Tensor *t, char *buf, size_t n);
static inline float *tensor_f32(const Tensor *t) { return (float *)t->data; }

// ---- bf16 helpers (round to nearest even) ----
static inline uint16_t f32_to_bf16(float f) {
    union { float f; uint32_t u; } v = {f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40u);  // NaN stays NaN
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
static inline float bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {(uint32_t)h << 16};
    return v.f;
}

// ---- host <-> tensor, raw: numel · dtype-size bytes, whatever the tensor's device ----
void tensor_write_host(Tensor *t, const void *src);
void tensor_read_host(const Tensor *t, void *dst);

// ---- host <-> tensor in fp32 (converting to/from the tensor's dtype, copying to/from its device) ----
// Only for f32 and bf16 tensors. n must equal t->numel.
void tensor_set_f32(Tensor *t, const float *src, int64_t n);
void tensor_get_f32(const Tensor *t, float *dst, int64_t n);
float *tensor_to_host_f32(const Tensor *t);  // malloc'd fp32 copy of all of t
