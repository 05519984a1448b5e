#include "train/dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef VNMTUNE_HAVE_MPI
#include <mpi.h>
#endif

static struct {
    bool mpi, cuda;     // MPI started by dist_init; the NCCL communicator exists
    int rank, size, local_rank;
} g = {.size = 1};

// The process count of the launcher that started this process (Open MPI, MPICH / PMI), 1 if none.
static int launched_size(void) {
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"};
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i]);
        if (v && atoi(v) > 0) return atoi(v);
    }
    return 1;
}

#ifdef VNMTUNE_HAVE_MPI
static int start_mpi(void) {
    MPI_Init(NULL, NULL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g.size);
    MPI_Comm node;  // the ranks sharing this machine: local rank -> GPU
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g.rank, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &g.local_rank);
    MPI_Comm_free(&node);
    g.mpi = true;
    return 0;
}
#endif

int dist_init(const char *backend, Err *err) {
    if (g.mpi) return 0;
    int launched = launched_size();
    if (strcmp(backend, "mpi"))
        return launched > 1 ? err_set(err, "dist.backend: none, but this is one of %d processes started by mpirun: "
                                           "add dist.backend=mpi for data-parallel training", launched)
                            : 0;
#ifdef VNMTUNE_HAVE_MPI
    return start_mpi();
#else
    return err_set(err, "dist.backend: mpi, but this vnmtune was built without MPI (install libopenmpi-dev and rebuild)");
#endif
}

void dist_finalize(void) {
#ifdef VNMTUNE_HAVE_NCCL
    if (g.cuda) dist_nccl_finalize();
#endif
#ifdef VNMTUNE_HAVE_MPI
    if (g.mpi) MPI_Finalize();
#endif
    g.mpi = g.cuda = false;
}

_Noreturn void dist_abort(int code) {
#ifdef VNMTUNE_HAVE_MPI
    if (g.mpi && g.size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    exit(code);
}

int dist_rank(void) { return g.rank; }
int dist_size(void) { return g.size; }

// MPI counts are ints: large buffers go in chunks.
#define CHUNK ((int64_t)1 << 30)

void dist_allreduce_mean(float *buf, int64_t n) {
    if (g.size < 2) return;
#ifdef VNMTUNE_HAVE_MPI
    for (int64_t at = 0; at < n; at += CHUNK)
        MPI_Allreduce(MPI_IN_PLACE, buf + at, (int)(n - at < CHUNK ? n - at : CHUNK), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    float inv = 1.0f / (float)g.size;
    for (int64_t i = 0; i < n; i++) buf[i] *= inv;
#endif
}

void dist_broadcast(void *buf, size_t bytes, int root) {
    if (g.size < 2) return;
#ifdef VNMTUNE_HAVE_MPI
    for (size_t at = 0; at < bytes; at += (size_t)CHUNK)
        MPI_Bcast((char *)buf + at, (int)(bytes - at < (size_t)CHUNK ? bytes - at : (size_t)CHUNK), MPI_BYTE, root,
                  MPI_COMM_WORLD);
#endif
}

void dist_barrier(void) {
#ifdef VNMTUNE_HAVE_MPI
    if (g.size > 1) MPI_Barrier(MPI_COMM_WORLD);
#endif
}

int dist_cuda_select_device(Err *err) {
#ifdef VNMTUNE_HAVE_NCCL
    if (g.size > 1) return dist_nccl_select_device(g.local_rank, err);
#endif
    return 0;  // without NCCL, dist_cuda_init refuses GPU training over several ranks
}

int dist_cuda_init(Err *err) {
    if (g.size < 2 || g.cuda) return 0;
#ifdef VNMTUNE_HAVE_NCCL
    if (dist_nccl_init(g.rank, g.size, err)) return -1;
    g.cuda = true;
    return 0;
#else
    return err_set(err, "dist: %d processes on the GPU need NCCL, but this vnmtune was built without it "
                        "(or use train.device=cpu)", g.size);
#endif
}

void dist_allreduce_grads(Tensor *const *values, int n) {
    if (g.size < 2 || n == 0) return;
#ifdef VNMTUNE_HAVE_NCCL
    if (values[0]->device == DEV_CUDA) {
        dist_nccl_allreduce_grads(values, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++) {
        Tensor *gr = values[i]->grad;
        if (gr->device != DEV_CPU || gr->dtype != DT_F32) fatal("dist: gradient of '%s' is not fp32 on the CPU", values[i]->name);
        dist_allreduce_mean(tensor_f32(gr), gr->numel);
    }
}
