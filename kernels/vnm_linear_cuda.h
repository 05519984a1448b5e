// GPU side of train/vnm_linear.h: upload of a layer's compressed matrix and the OP_VNM_LINEAR
// forward kernel (bf16 activations) on the backend's stream.
#pragma once
#include "autograd/tape.h"
#include "autograd/util.h"

#ifdef __cplusplus
extern "C" {
#endif
struct VnmLayer;
int vnm_linear_cuda_upload(struct VnmLayer *l, Err *err);
void vnm_linear_cuda_free(struct VnmLayer *l);
size_t vnm_linear_cuda_bytes(const struct VnmLayer *l, size_t *as24_bytes);  // vnm_device_bytes of its upload
void vnm_linear_cuda_forward(TapeNode *n);
#ifdef __cplusplus
}
#endif
