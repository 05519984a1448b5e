// `vnmtune bench train`: DeiT LoRA training throughput on the GPU against PyTorch + timm + PEFT.
//
// Builds DeiT-small and/or DeiT-base (224², 1000 classes) on the CUDA backend, attaches LoRA
// (r=16, alpha=32, dropout 0) to qkv/proj/fc1/fc2 with the head trainable, and times full
// training steps (forward, backward, fused AdamW with clipping) on synthetic data already on the
// GPU: img/s, step time, peak memory, MFU (FLOPs counted as experiments/bench_train_torch.py
// does, over the H100 SXM dense bf16 peak). Then runs that script (eager and torch.compile) in
// the same invocation and prints the ratios.
//
//   vnmtune bench train [--model deit_small|deit_base|both] [--batch 256] [--steps 20]
//                       [--warmup 5] [--rank 16] [--alpha 32] [--no-torch]
//                       [--torch-modes eager,compile] [--python /opt/torch/.venv/bin/python]
//                       [--torch-script PATH] [--json FILE] [--profile STEPS]
// --profile STEPS: after the timed steps, STEPS more with CUDA events around every op (per-op table).
#pragma once

int bench_train_main(int argc, char **argv);
