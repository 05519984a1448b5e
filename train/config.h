// Job configuration: YAML file (libyaml) + `section.key=value` overrides.
//
// Every key lives in one table in config.c (name, type, offset, range, allowed values), which
// drives parsing, overrides, validation, printing and `vnmtune --help`. Unknown keys, bad types
// and out-of-range values are errors naming the file and line (or the override argument).
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "autograd/util.h"

#define CFG_STR 256
#define CFG_MAX_TARGETS 16

typedef struct ModelConfig {
    char arch[16];          // "deit" | "llama"
    char init[CFG_STR];     // safetensors file to load weights from ("" = random init)
    int img_size, patch_size, in_chans, num_classes;
    int embed_dim, depth, num_heads;
    float mlp_ratio;
    bool qkv_bias;
    float ln_eps;
    // llama
    int vocab_size, hidden_size, intermediate_size, n_layers, n_heads, n_kv_heads, max_seq_len;
    float rope_theta, rms_eps;
} ModelConfig;

typedef struct DataConfig {
    char dataset[32];       // "fashion_mnist" | "hdf5" | "tokens" (llama)
    char path[CFG_STR];     // fashion_mnist: directory of idx .gz files; hdf5: the file; tokens: training token file
    char test_path[CFG_STR];  // tokens: test token file
    int seq_len;            // tokens: tokens per window
    bool augment;           // random crop (pad 2) + horizontal flip for training
    float mean, std;        // normalisation applied to all channels (x/255 - mean) / std
    int64_t train_limit;    // use only the first N training samples (0 = all)
    int64_t test_limit;     // use only the first N test samples (tokens: windows) (0 = all)
} DataConfig;

typedef struct LoraConfig {
    bool enabled;           // false: full fine-tuning / training from scratch of all params
    int rank;
    float alpha;
    float dropout;
    char targets[CFG_MAX_TARGETS][32];  // layer-name patterns, e.g. "qkv", "proj", "fc1", "fc2"
    int n_targets;
    bool train_head;        // also train the classifier head (and its bias)
} LoraConfig;

typedef struct OptimConfig {
    float lr, min_lr, weight_decay, beta1, beta2, eps, grad_clip;
    float warmup;           // < 1: fraction of total steps; >= 1: a step count
    float label_smoothing;
} OptimConfig;

typedef struct TrainConfig {
    char device[8];         // "cpu" | "cuda"
    int batch_size;
    int grad_accum;         // micro-batches per optimizer step (batch_size / grad_accum items each)
    char recompute[8];      // "none" | "layers": llama decoder layers recomputed in backward
    int epochs;             // used when steps == 0
    int64_t steps;          // total optimizer steps (0 = derive from epochs)
    int64_t until;          // stop after this step (0 = at the end): a partial run, continued by resume
    uint64_t seed;
    int log_every;
    char out_dir[CFG_STR];  // metrics.jsonl, config.yaml, checkpoints, exports go here
    int threads;            // CPU threads (0 = all cores)
} TrainConfig;

typedef struct EvalConfig {
    int every;              // evaluate every N steps (0 = only at the end)
    int batch_size;
} EvalConfig;

typedef struct CheckpointConfig {
    int every;              // save every N steps (0 = only at the end)
    char resume[CFG_STR];   // checkpoint file to resume from ("" = fresh start)
} CheckpointConfig;

typedef struct SparsityConfig {
    bool enabled;
    char pattern[32];       // "V:N:M" e.g. "64:2:5"; "2:4" is accepted as M=4
    char score[16];         // "magnitude" | "wanda" | "ria"
    float ria_alpha;
    bool permute;           // V:N:M channel permutation
    int calib_batches;      // calibration batches (wanda, ria, sparsegpt); llama: windows
    char targets[CFG_MAX_TARGETS][32];
    int n_targets;
} SparsityConfig;

typedef struct ScheduleConfig {
    char mode[24];          // "three_stage" | "one_shot" | "fixed_mask_lora" | "dense"
    float stage1, stage2;   // < 1: fraction of total steps; >= 1: step counts. stage3 = the rest
    int mask_update_every;
    float reg_lambda;
} ScheduleConfig;

typedef struct ExportConfig {
    char path[CFG_STR];     // "" = <out_dir>/export.h5
    char speed_table[CFG_STR];  // `vnmtune bench spmm` table: sparse layers run dense where it measured faster
    bool fold_permutations;     // renumber producers' outputs so that fc2 / down_proj keep no input permutation
} ExportConfig;

typedef struct DistConfig {
    char backend[8];        // "none" | "mpi"
} DistConfig;

typedef struct Config {
    ModelConfig model;
    DataConfig data;
    LoraConfig lora;
    OptimConfig optim;
    TrainConfig train;
    EvalConfig eval;
    CheckpointConfig checkpoint;
    SparsityConfig sparsity;
    ScheduleConfig schedule;
    ExportConfig export;
    DistConfig dist;
    char source[CFG_STR];   // file the config was read from ("<embedded>" for the default job)
} Config;

void config_defaults(Config *c);
// Parse YAML text (`source` names it in errors) on top of the current values.
int config_load_string(Config *c, const char *yaml, const char *source, Err *err);
int config_load_file(Config *c, const char *path, Err *err);
// "section.key=value" (lists: "lora.targets=qkv,proj").
int config_override(Config *c, const char *assignment, Err *err);
// Cross-field checks (e.g. img_size divisible by patch_size, embed_dim by num_heads).
int config_validate(const Config *c, Err *err);
// The resolved config as YAML (all keys, every section).
void config_write_yaml(const Config *c, FILE *f);
char *config_to_yaml(const Config *c);  // malloc'd
// One line per key: name, type, default, meaning - for `vnmtune train --help`.
void config_print_keys(FILE *f);
