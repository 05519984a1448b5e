// Model weights <-> safetensors files with the reference names (timm / Hugging Face state dicts).
#pragma once
#include <stdbool.h>

#include "autograd/util.h"
#include "train/params.h"

// Loads every base parameter of `pl` (and the LoRA factors too when `lora_too`) from `path`,
// converting F32/BF16/F16 to the parameter's dtype. `path` may list several files separated by
// commas (a sharded HF checkpoint: model-00001-of-00002.safetensors,model-00002-of-00002.safetensors);
// each tensor is read from the first file that has it. A missing tensor or a shape mismatch is an
// error naming the tensor and the file; tensors the model does not have are ignored.
int model_load_safetensors(ParamList *pl, const char *path, bool lora_too, Err *err);
// Writes all parameters (fp32, or bf16 when `bf16`) to `path` (atomically).
int model_save_safetensors(const ParamList *pl, const char *path, bool bf16, Err *err);
