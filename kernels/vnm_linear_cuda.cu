// OP_VNM_LINEAR on the GPU: y = x · W_vnmᵀ + b through vnm_spmm_cuda (kernels/vnm_spmm.h).
#include <stdlib.h>

#include "kernels/cuda_common.cuh"  // first: makes autograd/util.h C++-friendly
#include "kernels/vnm_linear_cuda.h"
#include "kernels/vnm_spmm.h"
extern "C" {
#include "train/vnm_linear.h"
}

extern "C" int vnm_linear_cuda_upload(VnmLayer *l, Err *err) {
    VnmDeviceMatrix *d = (VnmDeviceMatrix *)xcalloc(1, sizeof *d);
    if (vnm_upload(&l->m, d, err)) {
        free(d);
        return -1;
    }
    l->device = d;
    return 0;
}

extern "C" void vnm_linear_cuda_free(VnmLayer *l) {
    if (!l->device) return;
    vnm_device_free((VnmDeviceMatrix *)l->device);
    free(l->device);
    l->device = NULL;
}

extern "C" size_t vnm_linear_cuda_bytes(const VnmLayer *l, size_t *as24_bytes) {
    if (as24_bytes) *as24_bytes = 0;
    return l->device ? vnm_device_bytes((const VnmDeviceMatrix *)l->device, as24_bytes) : 0;
}

extern "C" void vnm_linear_cuda_forward(TapeNode *n) {
    VnmLayer *l = (VnmLayer *)(intptr_t)n->i[0];
    const VnmDeviceMatrix *d = (const VnmDeviceMatrix *)l->device;
    const Tensor *x = n->in[0], *b = n->in[1], *res = n->in[2];
    Tensor *y = n->out[0];
    if (x->dtype != DT_BF16 || (b && b->dtype != DT_BF16) || (res && res->dtype != DT_BF16))
        fatal("vnm_linear '%s': needs bf16 tensors on the GPU", y->name);
    int64_t rows = x->numel / l->m.in;
    Err err;
    if (vnm_spmm_cuda(d, (const uint16_t *)x->data, rows, b ? (const uint16_t *)b->data : NULL,
                      res ? (const uint16_t *)res->data : NULL, VNM_ACT_NONE,
                      (uint16_t *)y->data, cuda_stream(), &err))
        fatal("vnm_linear '%s': %s", y->name, err.msg);
    l->kernel = vnm_spmm_kernel_name(d, rows, VNM_KERNEL_AUTO);
}
