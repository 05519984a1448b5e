// SparseGPT (Frantar & Alistarh, 2023): one-shot pruning that also updates the kept weights to
// reconstruct the layer's outputs on calibration data, here for V:N:M and N:M masks.
//   H = XᵀX (+1% mean-diagonal damping); U = upper Cholesky factor of H⁻¹.
//   Columns are processed left to right in groups of M (one V:N:M column block): the group's mask
//   comes from the scores W²/U_jj² (mask_compute on the group), then each column is pruned and its
//   error e = (w − q)/U_jj is spread over the not-yet-processed columns: W[:, k] −= e·U_jk.
// Simplification: all layers use activations of the dense model (one calibration pass), not the
// sequentially pruned model.
#pragma once
#include <stdint.h>

#include "autograd/util.h"
#include "train/vnm_mask.h"

// W (out, in) fp32 is updated in place (pruned entries become 0); gram = XᵀX (in, in) over the
// calibration tokens; mask (out, in) is filled. spec: MASK_VNM or MASK_NM.
int sparsegpt_prune(float *W, const double *gram, int64_t out, int64_t in, const MaskSpec *spec, const char *layer,
                    uint8_t *mask, Err *err);
