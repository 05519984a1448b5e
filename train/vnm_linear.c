#include "vnm_linear.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/util.h"
#include "train/select_vm.h"
#ifdef VNMTUNE_HAVE_CUDA
#include "kernels/vnm_linear_cuda.h"
#endif

// in[0] = x, in[1] = bias (or NULL), in[2] = residual (or NULL); i[0] = the VnmLayer pointer.
static VnmLayer *node_layer(const TapeNode *n) { return (VnmLayer *)(intptr_t)n->i[0]; }

static void cpu_forward(TapeNode *n) {
    VnmLayer *l = node_layer(n);
    const Tensor *x = n->in[0], *b = n->in[1];
    int64_t rows = x->numel / l->m.in;
    float *y = tensor_f32(n->out[0]);
    vnm_spmm_cpu(&l->m, tensor_f32(x), rows, b ? tensor_f32(b) : NULL, y);
    if (n->in[2])
        for (int64_t e = 0; e < n->out[0]->numel; e++) y[e] += tensor_f32(n->in[2])[e];
    l->kernel = "cpu";
}

static void register_kernels(void) {
    static bool done;
    if (done) return;
    done = true;
    g_ops[OP_VNM_LINEAR].name = "vnm_linear";
    op_register(OP_VNM_LINEAR, DEV_CPU, cpu_forward, NULL);
#ifdef VNMTUNE_HAVE_CUDA
    op_register(OP_VNM_LINEAR, DEV_CUDA, vnm_linear_cuda_forward, NULL);
#endif
}

int vnm_layer_init(VnmLayer *l, VnmMatrix *m, Device dev, const char *name, Err *err) {
    memset(l, 0, sizeof *l);
    l->m = *m;
    memset(m, 0, sizeof *m);
    register_kernels();
    if (dev == DEV_CPU) return 0;
#ifdef VNMTUNE_HAVE_CUDA
    if (vnm_linear_cuda_upload(l, err)) return err_set(err, "layer '%s': %s", name, err->msg);
    return 0;
#else
    return err_set(err, "layer '%s': the GPU sparse path needs the CUDA build", name);
#endif
}

size_t vnm_layer_device_bytes(const VnmLayer *l, size_t *as24_bytes) {
    if (as24_bytes) *as24_bytes = 0;
#ifdef VNMTUNE_HAVE_CUDA
    return vnm_linear_cuda_bytes(l, as24_bytes);
#else
    (void)l;
    return 0;
#endif
}

void vnm_layer_free(VnmLayer *l) {
#ifdef VNMTUNE_HAVE_CUDA
    vnm_linear_cuda_free(l);
#endif
    vnm_free(&l->m);
    memset(l, 0, sizeof *l);
}

Tensor *op_vnm_linear(Tape *t, Tensor *x, VnmLayer *layer, Tensor *b, Tensor *residual, const char *name) {
    register_kernels();
    if (x->shape[x->ndim - 1] != layer->m.in)
        fatal("op_vnm_linear('%s'): x has %lld features, the layer takes %lld", name,
              (long long)x->shape[x->ndim - 1], (long long)layer->m.in);
    if ((x->device == DEV_CUDA) != (layer->device != NULL))
        fatal("op_vnm_linear('%s'): x and the compressed weight are on different devices", name);
    int64_t shape[TENSOR_MAX_DIMS];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = layer->m.out;
    Tensor *y = tensor_new(t->act, x->dtype, x->ndim, shape, name);
    if (residual && (!tensor_same_shape(residual, y) || residual->dtype != y->dtype || residual->device != y->device))
        fatal("op_vnm_linear('%s'): residual '%s' does not match the output (shape, dtype, device)", name, residual->name);
    TapeNode n = {.op = OP_VNM_LINEAR, .in = {x, b, residual}, .nin = 3, .out = {y}, .nout = 1};
    n.i[0] = (int64_t)(intptr_t)layer;
    tape_exec(t, &n);
    return y;
}

static const SpeedTable *g_dispatch;

void vnm_dispatch_set_table(const SpeedTable *t) { g_dispatch = t; }

bool vnm_layer_use_sparse(VnmLayer *l, int64_t n) {
    l->measured = g_dispatch ? speed_table_nearest(g_dispatch, l->m.out, l->m.in, n, l->m.p.V, l->m.p.M) : -1;
    if (l->measured < 0 || l->measured >= 1.0) return true;
    l->kernel = "dense";
    return false;
}
