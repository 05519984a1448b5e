// Thin helpers over the HDF5 C API, shared by checkpoints (checkpoint.c), the V:N:M export
// (vnm_export.c) and the HDF5 image set (data/imageset.c).
//
// Writers create `<path>.tmp` and h5_close_commit() renames it over `path` only after everything
// was written and flushed, so a crash or a bad value never destroys the previous file.
// Dataset paths may contain groups ("/model/blocks.0.attn.qkv.weight"); missing groups are created.
// Readers check shape and dtype and name the file and dataset in every error.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/tensor.h"
#include "autograd/util.h"

typedef struct H5File {
    int64_t id;              // hid_t
    char path[512];          // the final path
    char tmp_path[520];      // what is being written (writers only)
    bool writing;
} H5File;

int h5_create(H5File *f, const char *path, Err *err);   // writes go to path.tmp
int h5_open_read(H5File *f, const char *path, Err *err);
int h5_close_commit(H5File *f, Err *err);                // writer: flush, close, rename; reader: close
void h5_abort(H5File *f);                                // writer: close and delete the .tmp

// Raw arrays. dtype DT_F32 | DT_BF16 (stored as uint16) | DT_U8 | DT_I32, plus DT_U16 helpers below.
int h5_write(H5File *f, const char *dset, DType dt, int ndim, const int64_t *shape, const void *data, Err *err);
int h5_write_u16(H5File *f, const char *dset, int ndim, const int64_t *shape, const uint16_t *data, Err *err);
int h5_write_u64(H5File *f, const char *dset, int64_t n, const uint64_t *data, Err *err);
// Reads into caller memory after checking that the stored dtype and shape match exactly.
int h5_read(H5File *f, const char *dset, DType dt, int ndim, const int64_t *shape, void *data, Err *err);
int h5_read_u16(H5File *f, const char *dset, int ndim, const int64_t *shape, uint16_t *data, Err *err);
int h5_read_u64(H5File *f, const char *dset, int64_t n, uint64_t *data, Err *err);
// Shape of a dataset (returns ndim, or -1 with err if missing).
int h5_shape(H5File *f, const char *dset, int64_t shape[TENSOR_MAX_DIMS], Err *err);
bool h5_exists(H5File *f, const char *path);

// A whole CPU tensor (f32/bf16/u8/i32) under dset; the reader checks shape against t.
int h5_write_tensor(H5File *f, const char *dset, const Tensor *t, Err *err);
int h5_read_tensor(H5File *f, const char *dset, Tensor *t, Err *err);

// Attributes on an object (group or dataset; "/" is the root).
int h5_set_attr_str(H5File *f, const char *obj, const char *name, const char *value, Err *err);
int h5_set_attr_i64(H5File *f, const char *obj, const char *name, int64_t value, Err *err);
char *h5_get_attr_str(H5File *f, const char *obj, const char *name, Err *err);  // malloc'd or NULL
int h5_get_attr_i64(H5File *f, const char *obj, const char *name, int64_t *value, Err *err);

// Names of the direct children of a group (malloc'd array of malloc'd strings, sorted).
int h5_list(H5File *f, const char *group, char ***names, int *count, Err *err);
void h5_free_list(char **names, int count);
