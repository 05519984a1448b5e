// The sparse inference path: a linear layer whose weight is a V:N:M-compressed matrix, computed
// by the SpMM of the compressed form (CPU: vnm_spmm_cpu, the reference; GPU: the sparse tensor
// core kernels of kernels/vnm_spmm.h). Forward only (OP_VNM_LINEAR has no backward): used to
// evaluate / benchmark exported models, never to train them.
#pragma once
#include "autograd/tape.h"
#include "train/vnm_format.h"

typedef struct VnmLayer {
    VnmMatrix m;          // host copy (owned)
    void *device;         // VnmDeviceMatrix* on the GPU, or NULL
    const char *kernel;   // what the last call ran: "cpu", a GPU kernel name, or "dense"
    double measured;      // speed-up from the dispatch table for the last n (-1: not measured)
} VnmLayer;

struct SpeedTable;
// Honest dispatch: with a table (`vnmtune bench spmm`), vnm_layer_use_sparse() says no where the
// sparse kernel measured slower than dense for this shape, pattern and (nearest) n; the caller
// then runs the dense GEMM on the decompressed weight. Without a table the sparse path always runs.
void vnm_dispatch_set_table(const struct SpeedTable *t);
bool vnm_layer_use_sparse(VnmLayer *l, int64_t n);

// Takes ownership of *m; uploads it when dev is DEV_CUDA. Errors name the layer.
int vnm_layer_init(VnmLayer *l, VnmMatrix *m, Device dev, const char *name, Err *err);
void vnm_layer_free(VnmLayer *l);
// GPU bytes of the layer's V:N:M form, and in *as24_bytes (may be NULL) of its 2:4 prefill form
// (kernels/vnm_spmm.h); 0 on the CPU.
size_t vnm_layer_device_bytes(const VnmLayer *l, size_t *as24_bytes);
// x (..., in) -> (..., out) = x · Wᵀ + b [+ residual] (b (out) or NULL; residual shaped like the output
// or NULL: on the GPU it is added in the SpMM epilogue, as op_linear_residual's GEMM does for dense).
// Registers the op's kernels on first use.
Tensor *op_vnm_linear(Tape *t, Tensor *x, VnmLayer *layer, Tensor *b, Tensor *residual, const char *name);
