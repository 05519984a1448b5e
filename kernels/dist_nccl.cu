// NCCL for data-parallel GPU training (train/dist.h): one GPU per rank, gradients averaged with
// ncclAllReduce(ncclAvg) on the trainer's stream, in one group per step.
#include <nccl.h>

#include "kernels/cuda_common.cuh"
#include "train/dist.h"

static ncclComm_t g_comm;

static int nccl_error(ncclResult_t r, const char *what, Err *err) {
    return err_set(err, "dist: %s: NCCL error %s", what, ncclGetErrorString(r));
}

static void nccl_check(ncclResult_t r, const char *what) {
    if (r != ncclSuccess) fatal("dist: %s: NCCL error %s", what, ncclGetErrorString(r));
}

extern "C" int dist_nccl_select_device(int local_rank, Err *err) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return 0;  // no GPU: the job's device decides (train.device cuda fails there)
    }
    if (cudaSetDevice(local_rank % n) != cudaSuccess) return err_set(err, "dist: cannot use GPU %d", local_rank % n);
    return 0;
}

extern "C" int dist_nccl_init(int rank, int size, Err *err) {
    ncclUniqueId id;
    ncclResult_t r;
    if (rank == 0 && (r = ncclGetUniqueId(&id)) != ncclSuccess) return nccl_error(r, "ncclGetUniqueId", err);
    dist_broadcast(&id, sizeof id, 0);
    if ((r = ncclCommInitRank(&g_comm, size, id, rank)) != ncclSuccess) return nccl_error(r, "ncclCommInitRank", err);
    return 0;
}

static ncclDataType_t nccl_type(const Tensor *t) {
    if (t->dtype == DT_F32) return ncclFloat32;
    if (t->dtype == DT_BF16) return ncclBfloat16;
    fatal("dist: gradient '%s' of dtype %s cannot be all-reduced", t->name, dtype_name(t->dtype));
}

extern "C" void dist_nccl_allreduce_grads(Tensor *const *values, int n) {
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (int i = 0; i < n; i++) {
        Tensor *g = values[i]->grad;
        nccl_check(ncclAllReduce(g->data, g->data, (size_t)g->numel, nccl_type(g), ncclAvg, g_comm, cuda_stream()),
                   "ncclAllReduce");
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
}

extern "C" void dist_nccl_finalize(void) {
    if (g_comm) ncclCommDestroy(g_comm);
    g_comm = NULL;
}
