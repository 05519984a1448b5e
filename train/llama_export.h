// Llama into a V:N:M export and back (issue #7, item 3).
//   prune: model.init (a Hugging Face LlamaForCausalLM safetensors file) -> V:N:M masks of the
//          projections that sparsity.targets names (q/k/v/o/gate/up/down; lm_head and the embedding
//          always stay dense) from sparsity.score, one-shot (wanda / ria / sparsegpt calibrated on
//          random windows of the data.path token file, llama_eval.h), with V lowered per layer where it
//          does not divide the rows (schedule.h) and the optional channel permutation -> the export
//          file (model_export.h: /vnm/<projection>, /dense/<embedding, norms, lm_head>, the job's YAML)
//   load:  an export into a Llama of the export's sizes: the projections as their masked dense
//          weights and, with `sparse`, also as V:N:M sparse linears (OP_VNM_LINEAR, CPU or CUDA)
#pragma once
#include "train/config.h"
#include "train/llama.h"

int llama_prune_export(const Config *c, const char *path, Err *err);
// m must be allocated with the export's sizes (llama_export_config) on the device it computes on.
int llama_load_export(Llama *m, const char *path, bool sparse, Err *err);
// The model section of the job an export was written with (arch llama, sizes checked).
int llama_export_config(const char *path, ModelConfig *mc, Err *err);

int cmd_prune(int argc, char **argv);
