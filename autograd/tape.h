// Tape autograd.
//
// The model's forward is a sequence of coarse ops (linear, layernorm, attention, ...). Each op
// call builds a TapeNode (its input and output tensors plus scalar parameters), runs the op's
// forward kernel for the tensors' device, and - when the tape is recording and some input needs a
// gradient - appends the node to the tape. tape_backward() walks the nodes in reverse and calls
// each op's backward kernel, which ACCUMULATES (+=) into the gradients of its inputs.
//
// Kernels are looked up in the op registry (g_ops) by op id and device, so a backend (CUDA) adds
// its kernels with op_register() and the model code stays the same.
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "tensor.h"

#define NODE_MAX_IN 8
#define NODE_MAX_OUT 2
#define NODE_MAX_SAVED 4

typedef enum {
    OP_LINEAR,
    OP_LAYERNORM,
    OP_ATTENTION,
    OP_GELU,
    OP_ADD,
    OP_PATCH_EMBED,
    OP_CLS_POS,
    OP_SELECT_TOKEN,
    OP_MEAN_TOKENS,
    OP_CROSS_ENTROPY,
    OP_RMSNORM,
    OP_ROPE,
    OP_SWIGLU,
    OP_EMBEDDING,
    OP_CONCAT,
    OP_ATTENTION_CACHED,  // inference-only attention over a KV cache (no backward)
    OP_VNM_LINEAR,  // inference-only V:N:M sparse linear (train/vnm_linear.h registers its kernels)
    OP_SEGMENT,     // a recomputed checkpoint segment (tape_segment): no kernels, tape.c runs it
    OP_COUNT
} OpId;

typedef struct TapeNode TapeNode;
typedef struct Tape Tape;
typedef void (*KernelFn)(TapeNode *node);
// A checkpoint segment's forward (tape_segment): ops on t from input x to the returned output.
typedef Tensor *(*SegmentFn)(Tape *t, Tensor *x, void *ctx);

typedef struct OpDef {
    const char *name;
    KernelFn forward[DEV_COUNT];
    KernelFn backward[DEV_COUNT];
} OpDef;

struct TapeNode {
    OpId op;
    Tensor *in[NODE_MAX_IN];  // NULL for absent optional inputs (e.g. no bias)
    int nin;
    Tensor *out[NODE_MAX_OUT];
    int nout;
    Tensor *saved[NODE_MAX_SAVED];  // forward results kept for backward (allocated by the kernel)
    float f[6];                      // scalar parameters, meaning documented per op in ops.h
    int64_t i[8];
    Tape *tape;
    SegmentFn segment;  // OP_SEGMENT: the forward to re-run (with segment_ctx); i[0]=tape counter,
    void *segment_ctx;  // i[1]=training at the segment's start
};

struct Tape {
    TapeNode *nodes;
    int n, cap;
    Arena *act;        // activations, saved tensors and activation gradients; reset every step
    bool record;       // false in eval: nothing is kept for backward
    bool training;     // dropout active
    uint64_t seed;     // dropout seed; each dropout draw also uses node index for its stream
    uint64_t counter;  // incremented per op call, so masks differ between layers and steps
    Arena *segment;    // activation recomputation (tape_segment) computes segments here; NULL: off
};

extern OpDef g_ops[OP_COUNT];

// Adds (or replaces) the kernels of an op for one device.
void op_register(OpId op, Device dev, KernelFn forward, KernelFn backward);
// Registers the CPU reference kernels (idempotent). Called by tape_init.
void ops_cpu_register(void);

void tape_init(Tape *t, Arena *activations);
void tape_free(Tape *t);
// Forget all nodes and reset the activation arena (start of a step).
void tape_reset(Tape *t);
// Run `node` forward (kernels looked up by the device of node->out[0]) and record it if needed.
void tape_exec(Tape *t, TapeNode *node);
// Seeds d(loss)=1 and runs backward over the recorded nodes. `loss` must be a 1-element tensor.
// Gradients of activations are allocated from the activation arena; parameters that need a
// gradient must already have ->grad (see model code), which is accumulated into.
void tape_backward(Tape *t, Tensor *loss);
// The same with d(loss) = seed (gradient accumulation: 1/micro-batches, so that the summed gradients
// are those of the mean loss over the whole batch).
void tape_backward_seeded(Tape *t, Tensor *loss, float seed);

// Activation recomputation (a checkpoint segment): y = fn(t, x, ctx), but when t->segment is set, fn
// runs without recording in the scratch arena t->segment and only x and a copy of y (in t->act) are
// kept: when the tape records, one OP_SEGMENT node. Its backward resets t->segment, re-runs fn there
// recording (the same ops on the same input, the tape counter and training flag of the forward:
// the same dropout masks), back-propagates y's gradient through those nodes (parameter gradients
// accumulate as usual, x's into x->grad) and forgets them. So a segment's activations exist once at
// a time, in t->segment, at the cost of a second forward. fn must depend on nothing but x, ctx and
// parameters, and ctx must live until the backward. Without t->segment: fn(t, x, ctx).
Tensor *tape_segment(Tape *t, SegmentFn fn, Tensor *x, void *ctx, const char *name);
