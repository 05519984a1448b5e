// Registry of the CPU kernels, and the helpers they share (cpu_kernels.h).
#include <stdio.h>

#include "cpu_kernels.h"
#include "util.h"

void ops_cpu_register(void) {
    static const struct {
        OpId op;
        const char *name;
        KernelFn fwd, bwd;
    } table[] = {
        {OP_LINEAR, "linear", cpu_linear_forward, cpu_linear_backward},
        {OP_LAYERNORM, "layernorm", cpu_layernorm_forward, cpu_layernorm_backward},
        {OP_ATTENTION, "attention", cpu_attention_forward, cpu_attention_backward},
        {OP_GELU, "gelu", cpu_gelu_forward, cpu_gelu_backward},
        {OP_ADD, "add", cpu_add_forward, cpu_add_backward},
        {OP_PATCH_EMBED, "patch_embed", cpu_patch_embed_forward, cpu_patch_embed_backward},
        {OP_CLS_POS, "cls_pos", cpu_cls_pos_forward, cpu_cls_pos_backward},
        {OP_SELECT_TOKEN, "select_token", cpu_select_token_forward, cpu_select_token_backward},
        {OP_MEAN_TOKENS, "mean_tokens", cpu_mean_tokens_forward, cpu_mean_tokens_backward},
        {OP_CROSS_ENTROPY, "cross_entropy", cpu_cross_entropy_forward, cpu_cross_entropy_backward},
        {OP_RMSNORM, "rmsnorm", cpu_rmsnorm_forward, cpu_rmsnorm_backward},
        {OP_ROPE, "rope", cpu_rope_forward, cpu_rope_backward},
        {OP_SWIGLU, "swiglu", cpu_swiglu_forward, cpu_swiglu_backward},
        {OP_EMBEDDING, "embedding", cpu_embedding_forward, cpu_embedding_backward},
        {OP_CONCAT, "concat", cpu_concat_forward, cpu_concat_backward},
        {OP_ATTENTION_CACHED, "attention_cached", cpu_attention_cached_forward, NULL},
    };
    for (size_t k = 0; k < ARRAY_LEN(table); k++) {
        g_ops[table[k].op].name = table[k].name;
        op_register(table[k].op, DEV_CPU, table[k].fwd, table[k].bwd);
    }
}

float *cpu_f32(const TapeNode *n, const Tensor *t) {
    if (t->dtype != DT_F32)
        fatal("op %s: CPU kernels take f32 tensors, '%s' is %s", g_ops[n->op].name, t->name, dtype_name(t->dtype));
    return tensor_f32(t);
}

int64_t cpu_position(const TapeNode *n, int slot) {
    return n->nin > slot && n->in[slot] ? ((const int32_t *)n->in[slot]->data)[0] : n->i[1];
}

float *cpu_grad(const Tensor *t) {
    if (!t || !t->requires_grad || !t->grad) return NULL;
    if (t->grad->dtype != DT_F32) fatal("CPU gradient of '%s' is %s, expected f32", t->name, dtype_name(t->grad->dtype));
    return tensor_f32(t->grad);
}

bool cpu_recording(const TapeNode *n) { return n->tape->record && n->out[0]->requires_grad; }

ScratchMark cpu_scratch_begin(const TapeNode *n) {
    return (ScratchMark){n->tape->act->used, n->tape->act->headers_used};
}

float *cpu_scratch(const TapeNode *n, int64_t count) {
    return arena_alloc(n->tape->act, (size_t)(count > 0 ? count : 1) * sizeof(float));
}

void cpu_scratch_end(const TapeNode *n, ScratchMark m) {
    n->tape->act->used = m.used;
    n->tape->act->headers_used = m.headers_used;
}

Tensor *cpu_save(TapeNode *n, int slot, int ndim, const int64_t *shape, const char *what) {
    char name[TENSOR_NAME_LEN];
    snprintf(name, sizeof name, "%.*s.%s", 64, n->out[0]->name, what);
    n->saved[slot] = tensor_new(n->tape->act, DT_F32, ndim, shape, name);
    return n->saved[slot];
}

void cpu_axpy1(float *restrict y, const float *restrict x, int64_t count) {
    for (int64_t i = 0; i < count; i++) y[i] += x[i];
}

void cpu_add_colsum(float *restrict sums, const float *restrict x, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++) cpu_axpy1(sums, x + r * cols, cols);
}
