// LoRA (Hu et al.) as PEFT does it: y = x Wᵀ + b + (alpha/r) · (dropout(x) Aᵀ) Bᵀ with
// A (r, in) ~ U(-1/√in, 1/√in) (kaiming_uniform, a=√5) and B (out, r) = 0, so training starts
// from the base model. Parameters are named "<layer>.lora_A" / "<layer>.lora_B".
#pragma once
#include "train/config.h"
#include "train/linear.h"
#include "train/params.h"

// Freezes every base parameter (except the head's when cfg->train_head), then adds LoRA factors
// (allocated from `arena`, registered in `params`) to each linear matching one of cfg->targets.
// Returns the number of adapted layers.
int lora_attach(Linear **linears, int n, ParamList *params, Arena *arena, const LoraConfig *cfg, uint64_t seed);
// W <- (W + s·B A) ⊙ mask (mask optional), then detaches A and B from the layer (they stay in the
// param list, frozen). After merging, the layer computes what it computed before (test_lora).
void lora_merge(Linear *l, ParamList *params);
// W <- W ⊙ mask in place (used when a mask is applied without LoRA: one-shot pruning).
void linear_apply_mask(Linear *l);
