// V:N:M masks on the GPU: the same exact search as mask_compute (train/vnm_mask.c) for scores that
// already live in device memory, e.g. the stage-2 mask updates of W + s·BA.
//
// One thread block per V×M block: the block's scores go to shared memory (column-major), the
// threads split the C(M,4) column subsets, each subset's kept score is summed in the same 8-lane
// order as the CPU code, so the chosen columns and the mask are bit-for-bit those of mask_compute.
#pragma once
#include <stdint.h>

#include "autograd/util.h"
#include "train/vnm_format.h"

#ifdef __cplusplus
extern "C" {
#endif

// d_scores (out, in) fp32 and d_mask (out, in) bytes in device memory. Errors (shape, pattern,
// non-finite scores) name `layer`. Synchronises the device before and after (it must read back
// the non-finite flag), so call it per mask update, not per step.
int vnm_mask_cuda(const float *d_scores, int64_t out, int64_t in, VnmPattern p, const char *layer,
                  uint8_t *d_mask, Err *err);

#ifdef __cplusplus
}
#endif
