// From a trained job to a V:N:M model file, and the whole mission pipeline in one command.
//   export:   merge LoRA into W under the mask, compress the sparse layers to the V:N:M format
//             (with the channel / row permutation when one was searched), dense tensors as fp32
//   pipeline: dense DeiT (trained, or reused) -> one-shot / fixed-mask LoRA / three-stage LoRA,
//             each with and without permutation -> export -> table of test accuracies
#pragma once
#include "train/trainer.h"

// Merges LoRA (the trainer's model is changed: it computes with the merged, masked weights
// afterwards) and writes the export file.
int export_trainer_model(Trainer *tr, const char *path, Err *err);
// Loads an export file into a model: V:N:M layers decompressed (row_perm applied) into their
// dense weights, every other parameter from /dense. Names and shapes must match the model.
// With `sparse` the layers also keep the compressed matrix and compute with the V:N:M SpMM
// (train/vnm_linear.h: CPU reference or sparse tensor cores); for inference only.
int model_load_export(Deit *m, const char *path, bool sparse, Err *err);

int cmd_export(int argc, char **argv);
int cmd_pipeline(int argc, char **argv);
