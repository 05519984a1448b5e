// The named parameters of a model: what safetensors import, checkpoints and the optimizer walk.
// Names follow the reference state dicts (timm for DeiT, HF transformers for Llama), e.g.
// "blocks.0.attn.qkv.weight"; LoRA factors are "<layer>.lora_A" / "<layer>.lora_B".
#pragma once
#include <stdbool.h>

#include "autograd/tensor.h"

typedef enum { PARAM_BASE = 0, PARAM_LORA = 1 } ParamKind;

typedef struct Param {
    Tensor *value;    // the tensor the model computes with (its ->name is the param name)
    ParamKind kind;
    bool trainable;   // gets a gradient and optimizer state
    bool decay;       // AdamW weight decay applies (weights yes; biases, norms, embeddings no)
} Param;

typedef struct ParamList {
    Param *items;
    int n, cap;
} ParamList;

void params_add(ParamList *pl, Tensor *value, ParamKind kind, bool trainable, bool decay);
Param *params_find(const ParamList *pl, const char *name);
int64_t params_count(const ParamList *pl, bool trainable_only);  // number of scalar values
void params_free(ParamList *pl);
