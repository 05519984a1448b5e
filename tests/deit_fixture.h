// The DeiT fixture (tests/fixtures/deit_small_ref.safetensors, made by
// tests/reference/make_deit_fixture.py: timm VisionTransformer in fp32, + PEFT LoRA r=4) and the
// model configuration it was made with; shared by the CPU and GPU DeiT tests.
#pragma once
#include <stdio.h>

#include "train/config.h"

#define DEIT_FIXTURE VNMTUNE_SOURCE_DIR "/tests/fixtures/deit_small_ref.safetensors"

__attribute__((unused)) static ModelConfig deit_fixture_config(void) {
    ModelConfig c = {0};
    snprintf(c.arch, sizeof c.arch, "deit");
    c.img_size = 32, c.patch_size = 8, c.in_chans = 3, c.num_classes = 10;
    c.embed_dim = 48, c.depth = 2, c.num_heads = 3, c.mlp_ratio = 4.0f, c.qkv_bias = true, c.ln_eps = 1e-6f;
    return c;
}
