// Llama (the Llama-2 architecture) as HF transformers' LlamaForCausalLM builds it:
// token embedding -> n_layers × pre-norm decoder layers
//   h = rmsnorm(x);  x += o_proj(causal_attention(rope(q_proj(h)), rope(k_proj(h)), v_proj(h)))
//   h = rmsnorm(x);  x += down_proj(silu(gate_proj(h)) · up_proj(h))
// -> final rmsnorm -> lm_head (not tied to the embedding). No biases. Parameter names are HF's
// (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ..., model.norm.weight,
// lm_head.weight), so HF safetensors load as they are and LoRA targets are q_proj ... down_proj.
// Multi-head attention only: n_kv_heads must equal n_heads (grouped-query attention, Llama-2-70B
// style, is not supported). RoPE is HF's rotate_half form (op_rope).
#pragma once
#include "autograd/device.h"
#include "autograd/ops.h"
#include "train/config.h"
#include "train/linear.h"
#include "train/params.h"

typedef struct LlamaLayer {
    Tensor *attn_norm, *mlp_norm;  // input_layernorm.weight, post_attention_layernorm.weight (C)
    Linear q, k, v, o;             // self_attn.{q,k,v,o}_proj (C, C)
    Linear gate, up, down;         // mlp.gate_proj, mlp.up_proj (F, C); mlp.down_proj (C, F)
    struct Llama *model;           // the layer's model and index (the layer as a checkpoint segment)
    int index;
} LlamaLayer;

typedef struct Llama {
    ModelConfig cfg;               // vocab_size, hidden_size (C), intermediate_size (F), n_layers,
                                   // n_heads, n_kv_heads, rope_theta, rms_eps
    Tensor *embed;                 // (vocab, C)
    LlamaLayer *layers;
    Tensor *norm;                  // (C)
    Linear lm_head;                // (vocab, C)
    Linear **linears;              // every Linear in forward order (layers..., lm_head)
    int n_linears;
    ParamList params;
    Arena *arena;                  // where parameters live
    // Optional, inference only (tape not recording): layer i computes in layer_arenas[i % 2], which is
    // reset first, so activations take two layers' worth of memory instead of n_layers'.
    Arena *layer_arenas[2];
} Llama;

// KV cache for inference: per layer k, v (batch, max_len, C) after RoPE; positions [0, len) hold data.
typedef struct LlamaCache {
    Tensor **k, **v;
    int64_t batch, max_len, len;
    Tensor *pos;  // len as an I32 on the cache's device, which the kernels read (CUDA graphs replay steps)
} LlamaCache;

// Checks the Llama fields of cfg (sizes positive, head dim even, n_kv_heads == n_heads).
int llama_check_config(const ModelConfig *cfg, Err *err);
// Allocates and registers the parameters from `arena` (storage as the arena leaves it: zero unless
// no_zero); llama_init also initialises them like HF (normal(0, 0.02) for linears and the embedding,
// ones for the norms). fatal() on a bad config.
void llama_alloc(Llama *m, const ModelConfig *cfg, Arena *arena);
void llama_init(Llama *m, const ModelConfig *cfg, Arena *arena, uint64_t seed);
void llama_free(Llama *m);
// ids (B, T) DT_I32 -> logits (B, T, vocab), positions 0..T-1, causal.
Tensor *llama_forward(Llama *m, Tape *t, Tensor *ids);
// Inference with a KV cache: ids (B, T) at positions cache->len .. cache->len + T - 1; appends their
// keys and values and advances cache->len. Returns logits (B, T, vocab).
Tensor *llama_forward_cached(Llama *m, Tape *t, Tensor *ids, LlamaCache *cache);
// Shifted LM labels, as LlamaForCausalLM(labels=input_ids): labels[b, t] = ids[b, t + 1], and -1
// (ignored by op_cross_entropy) at t = T - 1. The loss is op_cross_entropy(logits, labels).
void llama_shift_labels(const int32_t *ids, int64_t B, int64_t T, int32_t *labels);
void llama_cache_init(LlamaCache *c, const Llama *m, Arena *arena, int64_t batch, int64_t max_len);
// Empties the cache (len = 0, on the host and the device).
void llama_cache_reset(LlamaCache *c);
// Moves the cache's position by `tokens` (llama_forward_cached does it; a replayed CUDA graph of a
// step moves the device position itself, and the host's with this, device = false).
void llama_cache_advance(LlamaCache *c, int64_t tokens, bool device);

// A decode step recorded once as a CUDA graph and replayed at later positions (the kernels read the
// position from cache->pos): the GPU work of a step without the host work of building it.
typedef struct LlamaStepGraph {
    DeviceGraph *graph;
    Tensor *ids_in;  // (B, T) the recorded step reads its token ids from
    Tensor *logits;  // (B, T, vocab) it writes, in the tape's arena (valid until the tape is reset)
} LlamaStepGraph;
// Records one step of ids_in's shape (CUDA only). Needs an earlier eager llama_forward_cached of the
// same shape (buffers, GEMM plans and kernel settings are made on first use, which cannot happen
// while recording). Nothing runs; the cache does not move.
void llama_step_graph_record(LlamaStepGraph *g, Llama *m, Tape *t, LlamaCache *cache, Tensor *ids_in);
// Copies ids into ids_in (unless they are it), replays the step, moves the cache: the logits.
Tensor *llama_step_graph_run(LlamaStepGraph *g, LlamaCache *cache, const Tensor *ids);
void llama_step_graph_free(LlamaStepGraph *g);
void llama_cache_free(LlamaCache *c);
// Bytes of parameters (+ alignment slack), and a generous bound on the activation arena of a
// training step (forward + backward) of B × T tokens. With `recompute` (every decoder layer a
// checkpoint segment, tape_segment) that arena keeps only each layer's output and its gradient, and
// one layer's activations and gradients live in the segment arena: llama_segment_bytes.
size_t llama_param_bytes(const ModelConfig *cfg, DType dt);
size_t llama_activation_bytes(const ModelConfig *cfg, int64_t B, int64_t T, bool recompute);
size_t llama_segment_bytes(const ModelConfig *cfg, int64_t B, int64_t T);
// Multiply-adds ×2 of one forward pass over T tokens of one sequence (linears + attention).
double llama_forward_flops(const ModelConfig *cfg, int64_t T);
