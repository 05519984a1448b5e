#include "tape.h"

#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "util.h"

OpDef g_ops[OP_COUNT];

void op_register(OpId op, Device dev, KernelFn forward, KernelFn backward) {
    g_ops[op].forward[dev] = forward;
    g_ops[op].backward[dev] = backward;
}

void tape_init(Tape *t, Arena *activations) {
    memset(t, 0, sizeof *t);
    t->act = activations;
    t->record = true;
    t->training = true;
    ops_cpu_register();
}

void tape_free(Tape *t) {
    free(t->nodes);
    t->nodes = NULL;
    t->n = t->cap = 0;
}

void tape_reset(Tape *t) {
    t->n = 0;
    arena_reset(t->act);
}

static bool needs_grad(const TapeNode *node) {
    for (int k = 0; k < node->nin; k++)
        if (node->in[k] && node->in[k]->requires_grad) return true;
    return false;
}

static void segment_backward(TapeNode *node);

static void append(Tape *t, const TapeNode *node) {
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->nodes = xrealloc(t->nodes, (size_t)t->cap * sizeof *t->nodes);
    }
    t->nodes[t->n++] = *node;
}

void tape_exec(Tape *t, TapeNode *node) {
    node->tape = t;
    Device dev = node->out[0]->device;
    KernelFn fwd = g_ops[node->op].forward[dev];
    if (!fwd) fatal("op '%s' has no kernel for device %d", g_ops[node->op].name, (int)dev);
    bool grad = needs_grad(node);
    for (int k = 0; k < node->nout; k++) node->out[k]->requires_grad = grad;
    fwd(node);
    t->counter++;
    if (t->record && grad) append(t, node);
}

// Backward of nodes [lo, hi), last first.
static void backward_nodes(Tape *t, int lo, int hi) {
    for (int k = hi - 1; k >= lo; k--) {
        TapeNode *node = &t->nodes[k];
        bool any_out_grad = false;
        for (int o = 0; o < node->nout; o++) any_out_grad |= node->out[o]->grad != NULL;
        if (!any_out_grad) continue;
        for (int o = 0; o < node->nout; o++) tensor_ensure_grad(node->out[o], t->act);
        for (int i = 0; i < node->nin; i++) {
            Tensor *x = node->in[i];
            if (x && x->requires_grad) tensor_ensure_grad(x, t->act);
        }
        if (node->op == OP_SEGMENT) {
            segment_backward(node);
            continue;
        }
        KernelFn bwd = g_ops[node->op].backward[node->out[0]->device];
        if (!bwd) fatal("op '%s' has no backward kernel for device %d", g_ops[node->op].name, (int)node->out[0]->device);
        bwd(node);
    }
}

void tape_backward(Tape *t, Tensor *loss) { tape_backward_seeded(t, loss, 1.0f); }

void tape_backward_seeded(Tape *t, Tensor *loss, float seed) {
    if (loss->numel != 1) fatal("tape_backward: loss '%s' has %lld elements, expected 1", loss->name, (long long)loss->numel);
    Tensor *g = tensor_ensure_grad(loss, t->act);
    if (g->device == DEV_CPU) {
        tensor_f32(g)[0] = seed;
    } else {
        uint16_t seed_bf16 = f32_to_bf16(seed);
        device_copy_h2d(g->data, g->dtype == DT_F32 ? (void *)&seed : (void *)&seed_bf16, dtype_size(g->dtype));
    }
    backward_nodes(t, 0, t->n);
}

// ---- checkpoint segments ----

static Tensor *copy_into(Arena *a, const Tensor *y, const char *name) {
    Tensor *c = tensor_like(a, y, name);
    size_t bytes = (size_t)y->numel * dtype_size(y->dtype);
    if (y->device == DEV_CPU) memcpy(c->data, y->data, bytes);
    else device_copy_d2d(c->data, y->data, bytes);
    c->requires_grad = y->requires_grad;
    return c;
}

Tensor *tape_segment(Tape *t, SegmentFn fn, Tensor *x, void *ctx, const char *name) {
    if (!t->segment) return fn(t, x, ctx);
    TapeNode node = {.op = OP_SEGMENT, .in = {x}, .nin = 1, .nout = 1, .tape = t, .segment = fn, .segment_ctx = ctx};
    node.i[0] = (int64_t)t->counter, node.i[1] = t->training;
    Arena *main_arena = t->act;
    bool record = t->record;
    t->act = t->segment, t->record = false;
    arena_reset(t->segment);
    Tensor *y = fn(t, x, ctx);
    t->act = main_arena, t->record = record;
    node.out[0] = copy_into(main_arena, y, name);
    if (record && y->requires_grad) append(t, &node);
    return node.out[0];
}

static void segment_backward(TapeNode *node) {
    TapeNode seg = *node;  // the recomputation appends to the tape: `node` may move
    Tape *t = seg.tape;
    Tensor *x = seg.in[0];
    // (GPU) x's gradient must not take over a buffer of the segment arena, reset by the next segment
    if (x->grad && x->grad->unwritten) tensor_zero(x->grad);
    int first = t->n;
    Arena *main_arena = t->act;
    uint64_t counter = t->counter;
    bool training = t->training, record = t->record;
    t->act = t->segment, t->counter = (uint64_t)seg.i[0], t->training = seg.i[1] != 0, t->record = true;
    arena_reset(t->segment);
    Tensor *y = seg.segment(t, x, seg.segment_ctx);
    y->grad = seg.out[0]->grad;
    backward_nodes(t, first, t->n);
    t->n = first;
    t->act = main_arena, t->counter = counter, t->training = training, t->record = record;
}
