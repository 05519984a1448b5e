// DeiT / ViT as timm's VisionTransformer builds deit_{tiny,small,base}_patch16_224:
// patch embedding (conv p×p, stride p) -> prepend cls token, add position embedding ->
// depth × pre-norm blocks [x += proj(attn(qkv(norm1(x)))); x += fc2(gelu(fc1(norm2(x))))] ->
// final norm -> head on the cls token. Parameter names are timm's state-dict names.
#pragma once
#include "autograd/ops.h"
#include "train/config.h"
#include "train/linear.h"
#include "train/params.h"

typedef struct DeitBlock {
    Tensor *norm1_w, *norm1_b, *norm2_w, *norm2_b;
    Linear qkv, proj, fc1, fc2;
} DeitBlock;

typedef struct Deit {
    ModelConfig cfg;
    int n_patches;                 // (img/patch)²
    Tensor *patch_w, *patch_b;     // (D, C, p, p), (D)
    Tensor *cls_token, *pos_embed; // (1, 1, D), (1, N+1, D)
    DeitBlock *blocks;
    Tensor *norm_w, *norm_b;
    Linear head;
    Linear **linears;              // every Linear, in forward order (blocks..., head)
    int n_linears;
    ParamList params;              // all parameters (base, then LoRA as attached)
    Arena *arena;                  // where parameters live
} Deit;

// Allocates the parameters from `arena` and initialises them like timm (trunc-normal 0.02 for
// linear weights and position embedding, 1e-6 normal for the cls token, zero biases, unit norms).
// Every base parameter starts trainable; lora_attach() freezes what LoRA fine-tuning freezes.
void deit_init(Deit *m, const ModelConfig *cfg, Arena *arena, uint64_t seed);
void deit_free(Deit *m);
// img (B, C, H, W) -> logits (B, num_classes).
Tensor *deit_forward(Deit *m, Tape *t, Tensor *img);
// Bytes of parameters, and a generous bound on the activation arena for a batch of B images
// (forward + backward).
size_t deit_param_bytes(const ModelConfig *cfg, DType dt);
size_t deit_activation_bytes(const ModelConfig *cfg, int batch, DType dt);
// Multiply-accumulates of one forward pass per image (for throughput / MFU reports).
double deit_forward_flops(const ModelConfig *cfg);
