// A linear layer as the models and the sparsity pipeline see it: frozen or trainable base weight,
// optional LoRA factors, optional V:N:M mask. The forward is one op_linear node (autograd/ops.h),
// which picks the dense-LoRA or masked mode from what is attached.
#pragma once
#include <stdbool.h>
#include <stdio.h>

#include "autograd/ops.h"

typedef struct Linear {
    char name[80];        // state-dict prefix, e.g. "blocks.0.attn.qkv" (weight = name + ".weight")
    int64_t in, out;
    Tensor *w, *b;        // w (out, in); b (out) or NULL
    Tensor *lora_A;       // (r, in) or NULL
    Tensor *lora_B;       // (out, r) or NULL
    float lora_scale;     // alpha / r
    float lora_dropout;
    Tensor *mask;         // (out, in) DT_U8 0/1, or NULL (dense). Without LoRA, w is kept masked.
    bool masked;          // the mask applies (stages 2-3); stage 1 runs the plain dense-LoRA op
    int mask_V, mask_M;   // the mask's V:N:M blocks in this layer's own row/column order (0 = not
                          // known, e.g. permuted): the CPU backward then uses the V:N:M SDDMM
    double *act_sq;       // when set (calibration), forward adds Σ x_j² over tokens per input channel
    double *act_gram;     // when set (sparsegpt calibration), forward adds XᵀX (in, in)
    struct VnmLayer *vnm; // when set (a loaded V:N:M export, inference only), forward runs the SpMM of
                          // the compressed weight instead of w (owned; freed by linear_free_sparse)
} Linear;

Tensor *linear_forward(Tape *t, Linear *l, Tensor *x);
// residual + linear(x) (residual shaped like the output), one op_linear_residual node.
Tensor *linear_forward_residual(Tape *t, Linear *l, Tensor *x, Tensor *residual);
// True when `pattern` names this layer: it matches the last dotted component ("qkv", "fc1"), or
// any substring of the name when it contains a dot ("attn.proj"), or "all".
bool linear_name_matches(const Linear *l, const char *pattern);
void linear_free_sparse(Linear *l);
// One line per V:N:M sparse layer (loaded export): its pattern and the kernel its last forward ran.
void linear_print_kernels(FILE *f, Linear *const *linears, int n);
