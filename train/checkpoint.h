// Training checkpoints in HDF5 (DESIGN.md §6), written through h5io (tmp file + rename, so a
// failed save never destroys the previous checkpoint). Layout:
//   /                 attributes "format" = "vnmtune-checkpoint", "version" = 1, "config" = resolved YAML
//   /model/<name>     base params (PARAM_BASE), in the tensor's dtype (f32 or bf16)
//   /lora/<layer>/A   LoRA params named "<layer>.lora_A" (and B for "<layer>.lora_B")
//   /mask/<layer>     u8 masks
//   /optim/m/<name>   AdamW first moments of the trainable params (f32, param shape)
//   /optim/v/<name>   AdamW second moments
//   /state/<name>     one u64 each: step, stage, RNG words, data position, ...
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "autograd/tensor.h"
#include "autograd/util.h"
#include "train/params.h"

typedef struct CkptMask {
    const char *layer;   // e.g. "blocks.0.attn.qkv"
    Tensor *mask;        // DT_U8 (or DT_I32 for index maps such as permutations), CPU or CUDA
} CkptMask;

typedef struct CkptState {
    const char *name;    // e.g. "step", "stage", "rng0"; no '/'
    uint64_t value;      // save: written; load: filled
} CkptState;

typedef struct CkptContent {
    ParamList *params;       // all params; load fills their tensors (names, shapes, dtypes must match)
    float **m, **v;          // moments, one array per TRAINABLE param in ParamList order (numel floats);
                             // NULL = no optimizer state
    Device optim_device;     // where the m[i] / v[i] arrays live
    CkptMask *masks;
    int n_masks;
    CkptState *state;
    int n_state;
    const char *config;      // save: the resolved YAML stored as attribute "config" (NULL = none)
    bool skip_frozen;        // save: leave out non-trainable params (e.g. a frozen base that comes from
                             // model.init); load: don't read them. Recorded in the file; a file saved
                             // this way refuses a load without skip_frozen.

    // Filled by ckpt_load:
    char *config_loaded;     // malloc'd copy of the "config" attribute, NULL if absent (caller frees)
    bool loaded_optim;       // m/v were asked for and the file had /optim
    bool loaded_masks;       // masks were asked for and the file had /mask
} CkptContent;

// Writes everything in c to path (via path.tmp + rename).
int ckpt_save(const char *path, const CkptContent *c, Err *err);

// Reads path into the caller's tensors and arrays. /model and /lora must match c->params exactly
// (every param present with its shape and dtype, no extra ones). Optional groups: /optim is read
// only when c->m and c->v are set, /mask only when c->n_masks > 0; if the file lacks them the
// loaded_* flag stays false and the arrays are untouched; if present, names must match exactly.
// Every state entry must be present. On error the destination contents are unspecified.
int ckpt_load(const char *path, CkptContent *c, Err *err);

// Just the "config" attribute (to rebuild the model before ckpt_load). malloc'd, NULL on error.
char *ckpt_read_config(const char *path, Err *err);
