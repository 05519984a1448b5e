// The coarse ops the models are built from. Each function allocates its output(s) from the
// tape's activation arena, runs the forward kernel for the inputs' device and records the op
// for backward (tape.h). Shapes: B batch, T tokens, C channels; "(..., K)" means any leading
// dims, flattened to rows. CPU kernels are fp32 references (autograd/cpu_*.c).
//
// Node layout (what the kernels read), listed per op as in[...] / out[...] / f[...] / i[...].
// saved[] slots belong to the device's own kernels (forward fills them, backward reads them); the
// CPU kernels allocate them only when the node will be recorded (tape->record and a gradient).
#pragma once
#include "tape.h"

// LoRA branch of a linear layer and, for V:N:M stages 2-3, its mask.
//   dense LoRA  (mask == NULL): y = x Wᵀ + b + scale · (drop(x) Aᵀ) Bᵀ
//   masked      (mask != NULL): y = x ((W + scale·B A) ⊙ mask)ᵀ + b      (dropout not applied)
// A: (r, in), B: (out, r), mask: (out, in) DT_U8 of 0/1 (or DT_F32 0/1).
typedef struct LoraRef {
    Tensor *A, *B;
    Tensor *mask;
    float scale;    // alpha / r
    float dropout;  // probability of zeroing an element of x on the LoRA branch (training only)
    int vnm_V, vnm_M;  // the mask's V:N:M block shape when it has one (0: unknown). The CPU backward
                       // then computes G = dyᵀx only at the kept columns of each row block (SDDMM)
} LoraRef;

// x (..., in), w (out, in), b (out) or NULL, lora NULL or as above -> (..., out).
// in[0]=x in[1]=w in[2]=b in[3]=A in[4]=B in[5]=mask; f[0]=scale f[1]=dropout;
// i[0]=dropout seed i[1]=dropout stream i[2]=vnm_V i[3]=vnm_M (masked mode; 0 = unstructured) (nin = 6, absent inputs NULL). Gradients: x, w (if
// w->requires_grad), b, A, B. Dropout: element e of x (flattened) is kept when
// hash_uniform(i[0], i[1], e) >= dropout, kept values scaled by 1/(1-dropout).
// CPU saved: dense LoRA saved[0] = h = drop(x) Aᵀ (rows, r); masked mode saves nothing (W' is
// rebuilt in backward).
// In masked mode dA = s·Bᵀ(G⊙M), dB = s·(G⊙M)Aᵀ with G = dyᵀx (DESIGN.md §2).
Tensor *op_linear(Tape *t, Tensor *x, Tensor *w, Tensor *b, const LoraRef *lora, const char *name);
// The same plus a residual (shaped like the output): y = linear(x) + residual, in[6] = residual
// (nin = 7). The transformer's "x + proj(...)" in one node: the CUDA GEMM adds it in its epilogue
// and its gradient passes the output gradient through without a copy where it can.
Tensor *op_linear_residual(Tape *t, Tensor *x, Tensor *w, Tensor *b, const LoraRef *lora, Tensor *residual,
                           const char *name);

// Layer norm over the last dim: (..., C) -> (..., C). in[0]=x in[1]=gamma in[2]=beta (either may
// be NULL); f[0]=eps.
// saved[0]=mean (rows), saved[1]=rstd (rows).
Tensor *op_layernorm(Tape *t, Tensor *x, Tensor *gamma, Tensor *beta, float eps, const char *name);

// Multi-head self-attention core on a fused qkv projection, timm layout:
// qkv (B, T, 3C) viewed as (B, T, 3, H, D) -> out (B, T, C) = concat_h softmax(q kᵀ/√D [+causal]) v.
// in[0]=qkv; i[0]=n_heads i[1]=causal(0/1); saved[0]=probabilities (B, H, T, T).
Tensor *op_attention(Tape *t, Tensor *qkv, int n_heads, bool causal, const char *name);

// Exact GELU, x·Φ(x) (erf form, as torch.nn.GELU()). in[0]=x.
Tensor *op_gelu(Tape *t, Tensor *x, const char *name);

// a + b, same shape. in[0]=a in[1]=b.
Tensor *op_add(Tape *t, Tensor *a, Tensor *b, const char *name);

// Patch embedding = Conv2d(C, D, kernel=p, stride=p) then flatten: img (B, C, H, W) ->
// (B, (H/p)(W/p), D), patches in row-major order. in[0]=img in[1]=w (D, C, p, p) in[2]=b (D);
// i[0]=p.
Tensor *op_patch_embed(Tape *t, Tensor *img, Tensor *w, Tensor *b, int patch, const char *name);

// Prepend the class token and add position embeddings: x (B, N, D), cls (1, 1, D),
// pos (1, N+1, D) -> (B, N+1, D). in[0]=x in[1]=cls in[2]=pos.
Tensor *op_cls_pos(Tape *t, Tensor *x, Tensor *cls, Tensor *pos, const char *name);

// x (B, T, D) -> (B, D): token `index`. in[0]=x; i[0]=index.
Tensor *op_select_token(Tape *t, Tensor *x, int index, const char *name);

// x (B, T, D) -> (B, D): mean over tokens [start, T). in[0]=x; i[0]=start.
Tensor *op_mean_tokens(Tape *t, Tensor *x, int start, const char *name);

// Mean softmax cross-entropy with optional label smoothing: logits (B, K), labels (B) DT_I32 ->
// loss (1); logits (..., K) with one label per row also work (e.g. (B, T, V) and (B, T)). Rows whose label is < 0 are ignored (mean over the rest). in[0]=logits in[1]=labels;
// f[0]=label_smoothing; saved[0]=softmax probabilities (B, K).
Tensor *op_cross_entropy(Tape *t, Tensor *logits, Tensor *labels, float label_smoothing, const char *name);

// --- Llama ops ---
// RMSNorm over the last dim: x / sqrt(mean(x²) + eps) · gamma. in[0]=x in[1]=gamma; f[0]=eps;
// saved[0]=rstd (rows).
Tensor *op_rmsnorm(Tape *t, Tensor *x, Tensor *gamma, float eps, const char *name);
// Rotary embedding (HF Llama "rotate_half" convention) on x (B, T, H, D), positions 0..T-1.
// x may also be (B, T, H·D). in[0]=x; f[0]=theta; i[0]=n_heads i[1]=first position (0 for op_rope).
Tensor *op_rope(Tape *t, Tensor *x, int n_heads, float theta, const char *name);
// The same at positions pos0..pos0+T-1 (tokens appended to a KV cache that already holds pos0).
// pos_t (optional): an I32 tensor of one element on x's device holding pos0; the kernel reads the
// position from it when it runs, so that work recorded once (a CUDA graph of a decode step) can be
// replayed at later positions. pos0 then only serves the argument checks. in[1]=pos_t when given.
Tensor *op_rope_at(Tape *t, Tensor *x, int n_heads, float theta, int64_t pos0, Tensor *pos_t, const char *name);
// silu(gate) · up, same shape. in[0]=gate in[1]=up.
Tensor *op_swiglu(Tape *t, Tensor *gate, Tensor *up, const char *name);
// ids (B, T) DT_I32, table (V, D) -> (B, T, D). in[0]=ids in[1]=table.
Tensor *op_embedding(Tape *t, Tensor *ids, Tensor *table, const char *name);
// Concatenation along the last dim: xs[k] (..., C_k), same leading dims and dtype -> (..., Σ C_k).
// in[0..n)=xs (n <= NODE_MAX_IN). Llama's separate q, k, v -> the fused qkv of op_attention.
Tensor *op_concat(Tape *t, Tensor *const *xs, int n, const char *name);
// Causal attention of Tn new tokens over a KV cache (inference only: no backward).
// q, k, v (B, Tn, C) with C = H·D (k already rotated); k_cache, v_cache (B, Tmax, C) hold positions
// [0, pos). The op first writes k, v into the caches at positions [pos, pos + Tn), then
// out (B, Tn, C): new token i (position pos + i) attends to positions 0 .. pos + i, per head
//   out_h = softmax(q_h K_hᵀ / √D) V_h   (as op_attention with causal, over the cached keys).
// pos_t (optional): pos on the device, read when the kernel runs (as op_rope_at).
// in[0]=q in[1]=k in[2]=v in[3]=k_cache in[4]=v_cache [in[5]=pos_t]; i[0]=n_heads i[1]=pos.
Tensor *op_attention_cached(Tape *t, Tensor *q, Tensor *k, Tensor *v, Tensor *k_cache, Tensor *v_cache, int n_heads,
                            int64_t pos, Tensor *pos_t, const char *name);
