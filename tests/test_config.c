// Config: defaults, YAML, overrides, every error class (with file:line), write/reload round trip.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/config.h"

// Loads `yaml` on top of the defaults; returns the rc and leaves the message in err.
static int load(Config *c, const char *yaml, Err *err) {
    config_defaults(c);
    err->msg[0] = 0;
    return config_load_string(c, yaml, "job.yaml", err);
}

// Expects the load to fail with a message containing `want`.
static void expect_error(const char *yaml, const char *want) {
    Config c;
    Err err;
    cr_assert_eq(load(&c, yaml, &err), -1, "accepted: %s", yaml);
    cr_assert(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

static void expect_override_error(const char *assignment, const char *want) {
    Config c;
    Err err;
    config_defaults(&c);
    Config before = c;
    cr_assert_eq(config_override(&c, assignment, &err), -1, "accepted: %s", assignment);
    cr_assert(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
    cr_assert_eq(memcmp(&c, &before, sizeof c), 0, "failed override changed the config");
}

static void expect_invalid(const char *yaml, const char *want) {
    Config c;
    Err err;
    cr_assert_eq(load(&c, yaml, &err), 0, "%s", err.msg);
    cr_assert_eq(config_validate(&c, &err), -1, "validated: %s", yaml);
    cr_assert(strstr(err.msg, want), "message '%s' lacks '%s'", err.msg, want);
}

Test(config, defaults) {
    Config c;
    config_defaults(&c);
    Err err;
    cr_assert_eq(config_validate(&c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.model.arch, "deit");
    cr_assert_eq(c.model.img_size, 224);
    cr_assert_eq(c.model.patch_size, 16);
    cr_assert_eq(c.model.in_chans, 3);
    cr_assert_eq(c.model.num_classes, 1000);
    cr_assert_eq(c.model.embed_dim, 192);
    cr_assert_eq(c.model.depth, 12);
    cr_assert_eq(c.model.num_heads, 3);
    cr_assert_float_eq(c.model.mlp_ratio, 4.f, 0);
    cr_assert(c.model.qkv_bias);
    cr_assert_float_eq(c.model.ln_eps, 1e-6f, 0);
    cr_assert_eq(c.model.vocab_size, 32000);
    cr_assert_eq(c.model.hidden_size, 4096);
    cr_assert_eq(c.model.intermediate_size, 11008);
    cr_assert_eq(c.model.n_layers, 32);
    cr_assert_eq(c.model.n_heads, 32);
    cr_assert_eq(c.model.n_kv_heads, 32);
    cr_assert_eq(c.model.max_seq_len, 4096);
    cr_assert_float_eq(c.model.rope_theta, 10000.f, 0);
    cr_assert_float_eq(c.model.rms_eps, 1e-5f, 0);
    cr_assert_str_eq(c.data.dataset, "fashion_mnist");
    cr_assert_str_eq(c.data.path, "/usr/share/datasets/fashion-mnist");
    cr_assert(c.data.augment);
    cr_assert_float_eq(c.data.mean, 0.2860f, 0);
    cr_assert_float_eq(c.data.std, 0.3530f, 0);
    cr_assert_not(c.lora.enabled);
    cr_assert_eq(c.lora.rank, 16);
    cr_assert_float_eq(c.lora.alpha, 32.f, 0);
    cr_assert_eq(c.lora.n_targets, 4);
    cr_assert_str_eq(c.lora.targets[0], "qkv");
    cr_assert_str_eq(c.lora.targets[3], "fc2");
    cr_assert(c.lora.train_head);
    cr_assert_float_eq(c.optim.lr, 1e-3f, 0);
    cr_assert_float_eq(c.optim.min_lr, 1e-5f, 0);
    cr_assert_float_eq(c.optim.weight_decay, 0.05f, 0);
    cr_assert_float_eq(c.optim.beta1, 0.9f, 0);
    cr_assert_float_eq(c.optim.beta2, 0.999f, 0);
    cr_assert_float_eq(c.optim.eps, 1e-8f, 0);
    cr_assert_float_eq(c.optim.grad_clip, 1.f, 0);
    cr_assert_float_eq(c.optim.warmup, 0.05f, 0);
    cr_assert_str_eq(c.train.device, "auto");
    cr_assert_eq(c.train.batch_size, 128);
    cr_assert_eq(c.train.epochs, 1);
    cr_assert_eq(c.train.steps, 0);
    cr_assert_eq(c.train.seed, 42);
    cr_assert_eq(c.train.log_every, 20);
    cr_assert_str_eq(c.train.out_dir, "runs/default");
    cr_assert_eq(c.eval.every, 0);
    cr_assert_eq(c.eval.batch_size, 256);
    cr_assert_str_eq(c.checkpoint.resume, "");
    cr_assert_not(c.sparsity.enabled);
    cr_assert_str_eq(c.sparsity.pattern, "64:2:5");
    cr_assert_str_eq(c.sparsity.score, "magnitude");
    cr_assert_float_eq(c.sparsity.ria_alpha, 0.5f, 0);
    cr_assert_eq(c.sparsity.calib_batches, 4);
    cr_assert_eq(c.sparsity.n_targets, 4);
    cr_assert_str_eq(c.schedule.mode, "three_stage");
    cr_assert_float_eq(c.schedule.stage1, 0.05f, 0);
    cr_assert_eq(c.schedule.mask_update_every, 10);
    cr_assert_str_eq(c.export.path, "");
    cr_assert_str_eq(c.dist.backend, "none");
}

static const char *FULL =
    "# a complete job\n"
    "model:\n"
    "  arch: deit\n"
    "  img_size: 28\n"
    "  patch_size: 4\n"
    "  in_chans: 1\n"
    "  num_classes: 10\n"
    "  embed_dim: 64\n"
    "  depth: 2\n"
    "  num_heads: 4\n"
    "  mlp_ratio: 2.5\n"
    "  qkv_bias: no\n"
    "data:\n"
    "  dataset: hdf5\n"
    "  path: \"/data/x y.h5\"\n"
    "  augment: false\n"
    "  train_limit: 5000000000\n"
    "lora:\n"
    "  enabled: true\n"
    "  rank: 8\n"
    "  targets: [qkv, fc1]\n"
    "optim:\n"
    "  lr: 3e-4\n"
    "  warmup: 100\n"
    "train:\n"
    "  device: cuda\n"
    "  batch_size: 64\n"
    "  steps: 1000\n"
    "  seed: 18446744073709551615\n"
    "  out_dir: runs/fm\n"
    "checkpoint:\n"
    "  resume:\n"
    "sparsity:\n"
    "  enabled: true\n"
    "  pattern: 64:2:8\n"
    "  score: ria\n"
    "  targets:\n"
    "    - qkv\n"
    "    - proj\n"
    "    - fc2\n"
    "schedule:\n"
    "  mode: three_stage\n"
    "  stage1: 50\n"
    "  stage2: 0.1\n"
    "eval:\n"
    "dist: {backend: mpi}\n";

Test(config, full_yaml) {
    Config c;
    Err err;
    cr_assert_eq(load(&c, FULL, &err), 0, "%s", err.msg);
    cr_assert_eq(config_validate(&c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.source, "job.yaml");
    cr_assert_eq(c.model.img_size, 28);
    cr_assert_eq(c.model.in_chans, 1);
    cr_assert_float_eq(c.model.mlp_ratio, 2.5f, 0);
    cr_assert_not(c.model.qkv_bias);
    cr_assert_str_eq(c.data.dataset, "hdf5");
    cr_assert_str_eq(c.data.path, "/data/x y.h5");
    cr_assert_eq(c.data.train_limit, 5000000000LL);
    cr_assert(c.lora.enabled);
    cr_assert_eq(c.lora.n_targets, 2);
    cr_assert_str_eq(c.lora.targets[1], "fc1");
    cr_assert_float_eq(c.optim.lr, 3e-4f, 0);
    cr_assert_float_eq(c.optim.warmup, 100.f, 0);
    cr_assert_str_eq(c.train.device, "cuda");
    cr_assert_eq(c.train.steps, 1000);
    cr_assert_eq(c.train.seed, UINT64_MAX);
    cr_assert_str_eq(c.checkpoint.resume, "");
    cr_assert_eq(c.sparsity.n_targets, 3);
    cr_assert_str_eq(c.sparsity.targets[2], "fc2");
    cr_assert_str_eq(c.sparsity.score, "ria");
    cr_assert_float_eq(c.schedule.stage1, 50.f, 0);
    cr_assert_str_eq(c.dist.backend, "mpi");
    cr_assert_eq(c.train.epochs, 1);  // untouched keys keep their defaults
}

Test(config, load_file) {
    char path[] = "/tmp/vnm_cfg_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    const char *text = "train:\n  batch_size: 7\n  lr: 1\n";
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    Config c;
    Err err;
    config_defaults(&c);
    cr_assert_eq(config_load_file(&c, path, &err), -1);
    char want[128];
    snprintf(want, sizeof want, "%s:3: train.lr: unknown key (did you mean 'optim.lr'?)", path);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(c.train.batch_size, 128, "failed load changed the config");
    unlink(path);
    cr_assert_eq(config_load_file(&c, path, &err), -1);
    cr_assert(strstr(err.msg, "cannot open: No such file"), "%s", err.msg);
}

Test(config, overrides) {
    Config c;
    Err err;
    config_defaults(&c);
    cr_assert_eq(config_override(&c, "train.lr=1", &err), -1);
    cr_assert_eq(config_override(&c, "optim.lr=3e-4", &err), 0, "%s", err.msg);
    cr_assert_float_eq(c.optim.lr, 3e-4f, 0);
    cr_assert_eq(config_override(&c, "sparsity.pattern=64:2:8", &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.sparsity.pattern, "64:2:8");
    cr_assert_eq(config_override(&c, "lora.targets=qkv, proj,fc2", &err), 0, "%s", err.msg);
    cr_assert_eq(c.lora.n_targets, 3);
    cr_assert_str_eq(c.lora.targets[1], "proj");
    cr_assert_eq(config_override(&c, "sparsity.targets=[fc1]", &err), 0, "%s", err.msg);
    cr_assert_eq(c.sparsity.n_targets, 1);
    cr_assert_str_eq(c.sparsity.targets[0], "fc1");
    cr_assert_eq(config_override(&c, "lora.targets=", &err), 0, "%s", err.msg);
    cr_assert_eq(c.lora.n_targets, 0);
    cr_assert_eq(config_override(&c, "checkpoint.resume=runs/a/ckpt.h5", &err), 0, "%s", err.msg);
    cr_assert_str_eq(c.checkpoint.resume, "runs/a/ckpt.h5");
    cr_assert_eq(config_override(&c, "lora.enabled=true", &err), 0, "%s", err.msg);
    cr_assert(c.lora.enabled);
    cr_assert_eq(config_override(&c, "train.seed=0x10", &err), 0, "%s", err.msg);
    cr_assert_eq(c.train.seed, 16);
}

Test(config, override_errors) {
    expect_override_error("train.lr", "override 'train.lr': expected section.key=value");
    expect_override_error("train.lr=abc", "override 'train.lr=abc': train.lr: unknown key (did you mean 'optim.lr'?)");
    expect_override_error("optim.lr=abc", "override 'optim.lr=abc': optim.lr: expected a number, got 'abc'");
    expect_override_error("train.batch_size=abc",
                          "override 'train.batch_size=abc': train.batch_size: expected an integer, got 'abc'");
    expect_override_error("train.batch_sise=4", "unknown key (did you mean 'train.batch_size'?)");
    expect_override_error("train.batch_size=0", "train.batch_size: 0 is out of range [1, 1000000]");
    expect_override_error("train.device=tpu", "train.device: 'tpu' is not one of auto|cpu|cuda");
    expect_override_error("lora.targets=a,,b", "lora.targets: empty list item");
    expect_override_error("lora.enabled=maybe", "lora.enabled: expected true or false, got 'maybe'");
    expect_override_error("train.seed=-1", "train.seed: expected a non-negative integer, got '-1'");
    expect_override_error("lora.targets=a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q", "more than 16 items");
}

Test(config, yaml_errors_name_file_and_line) {
    // unknown section / key (with a suggestion), wrong type, range, allowed set, syntax
    expect_error("model:\n  arch: deit\ntrian:\n  lr: 1\n", "job.yaml:3: trian: unknown section (did you mean 'train'?)");
    expect_error("model:\n  arch: deit\n  embed_dims: 3\n",
                 "job.yaml:3: model.embed_dims: unknown key (did you mean 'model.embed_dim'?)");
    expect_error("model:\n  zzzzzzzzzz: 3\n", "job.yaml:2: model.zzzzzzzzzz: unknown key");
    expect_error("train:\n\n  batch_size: abc\n", "job.yaml:3: train.batch_size: expected an integer, got 'abc'");
    expect_error("train:\n  batch_size: 1.5\n", "job.yaml:2: train.batch_size: expected an integer, got '1.5'");
    expect_error("optim:\n  lr: fast\n", "job.yaml:2: optim.lr: expected a number, got 'fast'");
    expect_error("optim:\n  lr: .inf\n", "job.yaml:2: optim.lr: expected a number, got '.inf'");
    expect_error("optim:\n  beta1: 1.0\n", "job.yaml:2: optim.beta1: 1.0 is out of range");
    expect_error("model:\n  depth: 3000000000\n", "job.yaml:2: model.depth: 3000000000 does not fit in an int");
    expect_error("model:\n  depth:\n", "job.yaml:2: model.depth: expected an integer, got ''");
    expect_error("train:\n  device: gpu\n", "job.yaml:2: train.device: 'gpu' is not one of auto|cpu|cuda");
    expect_error("schedule:\n  mode: magic\n",
                 "job.yaml:2: schedule.mode: 'magic' is not one of dense|one_shot|fixed_mask_lora|three_stage");
    expect_error("data:\n  augment: sure\n", "job.yaml:2: data.augment: expected true or false, got 'sure'");
    expect_error("train:\n  batch_size: [1, 2]\n", "job.yaml:2: train.batch_size: expected a single int value, got a list");
    expect_error("lora:\n  targets: [qkv, [a]]\n", "job.yaml:2: lora.targets: list items must be plain values");
    expect_error("train:\n  batch_size: 4\n  batch_size: 5\n", "job.yaml:3: train.batch_size: set twice (first on line 2)");
    expect_error("train:\n  steps: 1\ntrain:\n  seed: 1\n", "job.yaml:3: train: section appears twice");
    expect_error("train: 5\n", "job.yaml:1: train: expected a mapping of keys under the section");
    expect_error("- a\n- b\n", "job.yaml:1: yaml: expected a mapping of sections");
    expect_error("train:\n  out_dir: a: b\n", "job.yaml:2: yaml: syntax error: mapping values are not allowed");
    expect_error("train:\n\tseed: 3\n", "job.yaml:2: yaml: syntax error: found character that cannot start any token");
    expect_error("train:\n  out_dir: \"abc\n", "job.yaml:3: yaml: syntax error:");
    expect_error("lora:\n  targets: [qkv, proj\n", "job.yaml:3: yaml: syntax error:");
    expect_error("train:\n  seed: 1\n---\ntrain:\n  seed: 2\n", "job.yaml:3: yaml: only one YAML document is allowed");
    char long_dir[400];
    snprintf(long_dir, sizeof long_dir, "train:\n  out_dir: %0300d\n", 0);
    expect_error(long_dir, "job.yaml:2: train.out_dir: '0000");
    expect_error(long_dir, "is too long (at most 255 characters)");
}

Test(config, empty_inputs_are_fine) {
    Config c, d;
    Err err;
    config_defaults(&d);
    const char *empties[] = {"", "# nothing\n", "---\n", "lora:\n", "lora: ~\n"};
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        cr_assert_eq(load(&c, empties[i], &err), 0, "'%s': %s", empties[i], err.msg);
        memcpy(c.source, d.source, sizeof c.source);
        cr_assert_eq(memcmp(&c, &d, sizeof c), 0, "'%s' changed the config", empties[i]);
    }
}

Test(config, validation) {
    expect_invalid("model:\n  img_size: 30\n  patch_size: 4\n", "job.yaml: model.img_size: 30 is not divisible by model.patch_size 4");
    expect_invalid("model:\n  embed_dim: 100\n  num_heads: 3\n", "model.embed_dim: 100 is not divisible by model.num_heads 3");
    expect_invalid("model:\n  arch: llama\n  n_kv_heads: 5\n", "model.n_kv_heads");
    expect_invalid("lora:\n  enabled: true\n  rank: 0\n", "lora.rank: must be > 0 when lora.enabled");
    expect_invalid("optim:\n  lr: 1e-6\n", "optim.min_lr");
    expect_invalid("data:\n  dataset: hdf5\n  path: \"\"\n", "data.path: empty");
    expect_invalid("data:\n  dataset: tokens\n", "data.dataset: tokens with model.arch deit: token files are for llama");
    expect_invalid("model:\n  arch: llama\n  max_seq_len: 64\ndata:\n  dataset: tokens\n  seq_len: 65\n",
                   "data.seq_len: 65 is longer than model.max_seq_len 64");
    const char *sp = "lora:\n  enabled: true\nsparsity:\n  enabled: true\n";
    char buf[512];
    snprintf(buf, sizeof buf, "%s  pattern: \"\"\n", sp);
    expect_invalid(buf, "sparsity.pattern: empty while sparsity.enabled");
    snprintf(buf, sizeof buf, "%s  pattern: 64:x:5\n", sp);
    expect_invalid(buf, "sparsity.pattern: '64:x:5' is not V:N:M");
    snprintf(buf, sizeof buf, "%s  pattern: 64:3:5\n", sp);
    expect_invalid(buf, "N must be 2");
    snprintf(buf, sizeof buf, "%sschedule:\n  stage1: 0.5\n  stage2: 0.5\n", sp);
    expect_invalid(buf, "schedule.stage2: stage1 + stage2 = 1 leaves no steps for stage 3");
    snprintf(buf, sizeof buf, "%sschedule:\n  stage1: 600\n  stage2: 0.5\ntrain:\n  steps: 1000\n", sp);
    expect_invalid(buf, "stages 1 and 2 take all 1000 steps");
    snprintf(buf, sizeof buf, "%sschedule:\n  stage1: 1.5\n", sp);
    expect_invalid(buf, "schedule.stage1: 1.5 is neither a fraction");
    expect_invalid("sparsity:\n  enabled: true\n", "schedule.mode: three_stage needs lora.enabled: true");

    Config c;
    Err err;
    snprintf(buf, sizeof buf, "%s  pattern: 2:4\n", sp);
    cr_assert_eq(load(&c, buf, &err), 0, "%s", err.msg);
    cr_assert_eq(config_validate(&c, &err), 0, "%s", err.msg);
}

static void expect_round_trip(Config *c) {
    char *yaml = config_to_yaml(c);
    Config r;
    Err err;
    // Load on top of a config that differs everywhere it can, so every key must be written.
    memset(&r, 0, sizeof r);
    cr_assert_eq(config_load_string(&r, yaml, "written.yaml", &err), 0, "%s\n%s", err.msg, yaml);
    memcpy(r.source, c->source, sizeof r.source);
    cr_assert_eq(memcmp(&r, c, sizeof r), 0, "round trip differs:\n%s", yaml);
    free(yaml);
}

Test(config, write_reload_round_trip) {
    Config c;
    Err err;
    config_defaults(&c);
    expect_round_trip(&c);
    cr_assert_eq(load(&c, FULL, &err), 0, "%s", err.msg);
    cr_assert_eq(config_override(&c, "optim.lr=0.000123456789", &err), 0, "%s", err.msg);
    cr_assert_eq(config_override(&c, "train.out_dir=we\"ird\\dir: #x", &err), 0, "%s", err.msg);
    cr_assert_eq(config_override(&c, "lora.targets=", &err), 0, "%s", err.msg);
    expect_round_trip(&c);
    FILE *f = fopen("/dev/null", "w");
    config_print_keys(f);
    fclose(f);
}

// Errors gain context on the way up: err_set(err, "ctx: %s", err->msg) must keep the inner message.
Test(config, error_prefix_keeps_inner_message) {
    Err err;
    err_set(&err, "train.lr: expected a number");
    err_set(&err, "%s: %s", "job.yaml:3", err.msg);
    cr_assert_str_eq(err.msg, "job.yaml:3: train.lr: expected a number");
}

// Environment switches (kernel choices, A/B measurements): a whole number in range, else the fallback.
Test(config, env_int) {
    unsetenv("VNM_TEST_SWITCH");
    cr_assert_eq(env_int("VNM_TEST_SWITCH", 7, 0, 16), 7);
    const struct {
        const char *value;
        int want;
    } cases[] = {{"3", 3}, {"0", 0}, {"16", 16}, {"17", 7}, {"-1", 7}, {"", 7}, {"1x", 7}, {"x", 7}, {"99999999999999", 7}};
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        setenv("VNM_TEST_SWITCH", cases[i].value, 1);
        cr_assert_eq(env_int("VNM_TEST_SWITCH", 7, 0, 16), cases[i].want, "VNM_TEST_SWITCH=%s", cases[i].value);
    }
    setenv("VNM_TEST_SWITCH", "-2", 1);
    cr_assert_eq(env_int("VNM_TEST_SWITCH", 0, -5, 5), -2);
    unsetenv("VNM_TEST_SWITCH");
}
