// Model <-> V:N:M export file (train/vnm_export.h), for any model given as its parameter list and
// its linear layers (DeiT: train/pipeline.c, Llama: train/llama_export.c).
//   write: the schedule's sparse layers, compressed under their masks (with the channel / row
//          permutation when one was searched), as /vnm/<layer>; every other base parameter as
//          /dense/<name> (fp32); the job's YAML as the config attribute
//   load:  /vnm layers decompressed (row_perm applied) into their linears' dense weights, every
//          other base parameter from /dense; optionally the compressed matrices stay attached to
//          the linears (OP_VNM_LINEAR: CPU reference SpMM or the sparse tensor-core kernels)
#pragma once
#include <stdbool.h>

#include "train/config.h"
#include "train/linear.h"
#include "train/params.h"
#include "train/schedule.h"

// The layers' weights must already be merged and masked (s->masks_valid).
int model_export_write(const ParamList *pl, const Schedule *s, const Config *cfg, const char *path, Err *err);
// Names and shapes must match the model. A linear weight found neither under /vnm nor under /dense,
// a /vnm layer that is no linear of the model, or a shape mismatch is an error naming the file and
// the layer. With `sparse` the V:N:M layers keep the compressed matrix on the weights' device and
// compute with the SpMM (forward only).
int model_export_load(ParamList *pl, Linear **linears, int n_linears, const char *path, bool sparse, Err *err);
// The job (defaults + the export's config attribute) an export was written with.
int model_export_config(const char *path, Config *c, Err *err);
// export.path, or <train.out_dir>/export.h5 when it is empty, into buf.
int model_export_path(const Config *c, char *buf, size_t n, Err *err);
