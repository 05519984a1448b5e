// Registers the CUDA kernels of every op (see ops_cuda.h).
#include "kernels/cuda_common.cuh"
#include "kernels/ops_cuda.h"

extern "C" {
#include "autograd/device.h"
}

extern "C" void ops_cuda_register(void) {
    static bool done = false;
    if (done) return;
    if (!device_cuda_available()) fatal("ops_cuda_register: no CUDA GPU is visible");
#define REG(op, name) op_register(op, DEV_CUDA, cuda_##name##_fwd, cuda_##name##_bwd)
    REG(OP_LINEAR, linear);
    REG(OP_LAYERNORM, layernorm);
    REG(OP_ATTENTION, attention);
    REG(OP_GELU, gelu);
    REG(OP_ADD, add);
    REG(OP_PATCH_EMBED, patch_embed);
    REG(OP_CLS_POS, cls_pos);
    REG(OP_SELECT_TOKEN, select_token);
    REG(OP_MEAN_TOKENS, mean_tokens);
    REG(OP_CROSS_ENTROPY, cross_entropy);
    REG(OP_RMSNORM, rmsnorm);
    REG(OP_ROPE, rope);
    REG(OP_SWIGLU, swiglu);
    REG(OP_EMBEDDING, embedding);
#undef REG
    done = true;
}
