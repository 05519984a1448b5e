// safetensors files (the Hugging Face format): an 8-byte little-endian header length N, N bytes
// of JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
// then the raw little-endian tensor data (offsets are relative to the end of the header).
//
// st_open() maps the file and checks every entry (dtype known, offsets inside the file and equal
// to numel * element size), so a truncated or malformed file fails at open with a message naming
// the file and the tensor. Readers convert to fp32 (or the Tensor's dtype) and check shapes.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/tensor.h"
#include "autograd/util.h"

#define ST_MAX_DIMS 8

typedef enum {
    SFT_F32, SFT_BF16, SFT_F16, SFT_I32, SFT_I64, SFT_U8,
    SFT_OTHER  // a dtype we list but cannot read (F64, I8, BOOL, F8_*, ...)
} StDType;

typedef struct StEntry {
    char *name;
    StDType dtype;
    char dtype_name[16];     // as written in the file ("F32", "BF16", "F64", ...)
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    int64_t numel;
    uint64_t offset;         // absolute byte offset of the data in the file
    uint64_t nbytes;
} StEntry;

typedef struct StFile {
    char path[512];
    const uint8_t *map;      // the whole file, read-only (mmap)
    uint64_t size;
    StEntry *entries;        // in file (data offset) order
    int n;
    char **meta;             // __metadata__ as key, value, key, value, ... (2 * n_meta strings)
    int n_meta;
} StFile;

int st_open(StFile *f, const char *path, Err *err);
void st_close(StFile *f);
const StEntry *st_find(const StFile *f, const char *name);   // NULL if absent
const char *st_metadata(const StFile *f, const char *key);   // NULL if absent
const char *st_dtype_str(StDType dt);                        // "F32", "BF16", ...
size_t st_dtype_size(StDType dt);                            // 0 for SFT_OTHER

// Reads tensor `name` as fp32 (from F32, BF16 or F16) after checking that its shape is exactly
// expected_shape (ndim dims). dst holds numel floats.
int st_read_f32(const StFile *f, const char *name, float *dst, int ndim, const int64_t *expected_shape, Err *err);
// Reads tensor `name` into t (f32 or bf16, CPU or CUDA), converting the dtype; shape must match t.
int st_read_tensor(const StFile *f, const char *name, Tensor *t, Err *err);

// ---- writing ----
typedef struct StWriteEntry {
    const char *name;
    StDType dtype;           // stored dtype (not SFT_OTHER)
    int ndim;
    const int64_t *shape;
    const void *data;        // raw values in `dtype` layout, or NULL when f32 is given
    const float *f32;        // fp32 values converted to dtype (F32 or BF16 only)
} StWriteEntry;

typedef struct StMeta {
    const char *key, *value;
} StMeta;

// Writes path.tmp (header padded to 8-byte-aligned data) and renames it over path.
int st_write(const char *path, const StWriteEntry *entries, int n, const StMeta *meta, int n_meta, Err *err);
