// Export of V:N:M-compressed models to HDF5, the loader with validation, and `vnmtune inspect`.
//
// File layout (written to path.tmp, renamed when complete; see h5io.h):
//   /                         attributes: format = VNM_EXPORT_FORMAT, config = the job's YAML text
//   /vnm/<layer>/values       uint16 (bf16 bits, dataset attribute dtype="bf16"), (out, 2C)
//   /vnm/<layer>/columns      uint16 (R, C, 4): original input channels of each block, ascending
//   /vnm/<layer>/meta         uint32 (meta_words): 2:4 metadata in the kernels' layout
//                             (vnm_format.c, vnm_pack_meta); idx is recomputed from it on load
//   /vnm/<layer>/row_perm     int32 (out), only for layers with an output-row permutation
//   /vnm/<layer>              attributes: V, N, M, out, in (int64), dtype = "bf16",
//                             meta_layout = VNM_META_LAYOUT
//   /dense/<name>             float32, any shape up to 4 dims: tensors that stay dense
// Layer names are the model's parameter names without "/" (e.g. "blocks.0.mlp.fc1").
//
// The loader checks every layer: attributes present and consistent (N = 2, 4 <= M <= 64,
// out % V == 0, in % M == 0), dataset shapes and types, column indices < in, ascending inside a
// block and never repeated within a row block, meta codes valid 2:4 pairs and meta equal to its
// re-packed form (padding included), finite values, row_perm a permutation. Errors name the file
// and the layer.
#pragma once
#include <stdint.h>
#include <stdio.h>

#include "autograd/tensor.h"
#include "autograd/util.h"
#include "train/h5io.h"
#include "train/vnm_format.h"

#define VNM_EXPORT_FORMAT "vnmtune-vnm-1"
// Identifies vnm_pack_meta's layout: 16-row groups × 32-wide k-steps, 16 words each, ordered 4-bit
// codes (see vnm_format.c). Bump when that layout changes; the loader refuses other layouts.
#define VNM_META_LAYOUT "g16k32-ordered-nibbles-1"

typedef struct VnmExportLayer {
    const char *name;
    const VnmMatrix *m;
} VnmExportLayer;

typedef struct VnmDense {
    char *name;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    float *data;
} VnmDense;

// Writes a whole export file. dense entries are written from their name/shape/data (not freed);
// config may be NULL.
int vnm_export_write(const char *path, const VnmExportLayer *layers, int n_layers,
                     const VnmDense *dense, int n_dense, const char *config, Err *err);

typedef struct VnmExport {
    char *config;        // NULL when the file has none
    int n_layers;
    char **layer_names;  // sorted
    VnmMatrix *layers;
    int n_dense;
    VnmDense *dense;     // sorted by name
} VnmExport;

int vnm_export_read(const char *path, VnmExport *e, Err *err);
// The config attribute alone (malloc'd), without reading the layers; NULL with err when path is no
// export or has no config.
char *vnm_export_read_config(const char *path, Err *err);
// True when path is a V:N:M export (its format attribute), false for checkpoints and anything else.
bool vnm_export_is_export(const char *path);
void vnm_export_free(VnmExport *e);

// One layer from an open file (used by vnm_export_read and inspect), validated as above.
int vnm_layer_read(H5File *f, const char *name, VnmMatrix *m, Err *err);

// Bytes of the compressed layer in the file (values, columns, meta, row_perm).
int64_t vnm_compressed_bytes(const VnmMatrix *m);
// True when some block keeps a column outside its own M-wide range (an input permutation).
bool vnm_has_col_perm(const VnmMatrix *m);

// Prints the listing below for path to out (validating every layer).
int vnm_inspect(const char *path, FILE *out, Err *err);
// `vnmtune inspect file.h5` (argv[0] is the command name): lists layers, pattern, shape,
// density, compressed vs dense bf16 bytes, permutation; dense tensors. 0 ok, 1 error, 2 usage.
int vnm_inspect_main(int argc, char **argv);
