// Data-parallel training processes (DESIGN.md §7): `mpirun -np N vnmtune train job.yaml
// dist.backend=mpi`. A tiny process-wide interface over MPI; without dist.backend mpi (or in a
// build without MPI) there is one process: rank 0 of 1, and every call is a no-op.
//   CPU gradients   MPI_Allreduce (sum, then / N) of each trainable parameter's fp32 gradient
//   CUDA gradients  NCCL (kernels/dist_nccl.cu): ncclAllReduce(avg) on the trainer's stream; one GPU
//                   per rank (the node-local rank, modulo the visible GPUs); the communicator's
//                   ncclUniqueId is broadcast over MPI
// Every rank gets the same result from an all-reduce (MPI's Allreduce = Reduce + Bcast semantics),
// so the replicas' weights stay identical.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/tensor.h"
#include "autograd/util.h"

#ifdef __cplusplus
extern "C" {
#endif

// backend "none" | "mpi". "mpi" starts MPI (an error naming dist.backend in a build without MPI);
// "none" in a process that mpirun started as one of several is an error too (N copies of the same
// single-process job would race on train.out_dir). Calling it again is a no-op.
int dist_init(const char *backend, Err *err);
void dist_finalize(void);
// Ends every process (after an error on one rank, which the others would wait for forever).
_Noreturn void dist_abort(int code);
int dist_rank(void);
int dist_size(void);
// In place over all ranks: buf = mean of every rank's buf (n floats).
void dist_allreduce_mean(float *buf, int64_t n);
// bytes of root's buf into every rank's buf.
void dist_broadcast(void *buf, size_t bytes, int root);
void dist_barrier(void);

// GPU training over several ranks: this rank's GPU (before the first CUDA work; none without a GPU
// or NCCL) and the NCCL communicator (an error in a build without NCCL). No-ops with one rank.
int dist_cuda_select_device(Err *err);
int dist_cuda_init(Err *err);
// The gradients (value->grad) of n tensors, all on CPU or all on the GPU: mean over the ranks.
void dist_allreduce_grads(Tensor *const *values, int n);

// kernels/dist_nccl.cu (VNMTUNE_HAVE_NCCL): the NCCL side of the above.
int dist_nccl_select_device(int local_rank, Err *err);
int dist_nccl_init(int rank, int size, Err *err);
void dist_nccl_allreduce_grads(Tensor *const *values, int n);
void dist_nccl_finalize(void);
#ifdef __cplusplus
}
#endif
