#!/usr/bin/env python3
"""PyTorch + timm + PEFT baseline for `vnmtune bench train` (issue #5).

DeiT LoRA training step on synthetic data already on the GPU: batch 256, 224x224, 1000 classes,
LoRA r=16 alpha=32 (dropout 0) on every block's attn.qkv / attn.proj / mlp.fc1 / mlp.fc2, the head
trainable (PEFT modules_to_save), AdamW(fused=True), autocast bf16 (fp32 weights). Eager and
torch.compile. Prints one JSON object per configuration (img/s, step ms, peak memory, MFU).

MFU counts the FLOPs the step must do (see train_flops_per_image) over the H100 SXM dense bf16
peak, 989.4 TFLOP/s. The C benchmark (bench_train) uses the same count.

  python bench_train_torch.py --models deit_small,deit_base --modes eager,compile --steps 30
"""
import argparse
import json
import sys
import time

import torch

PEAK_FLOPS = 989.4e12
MODELS = {  # name -> (timm name, width, depth, heads)
    "deit_small": ("deit_small_patch16_224", 384, 12, 6),
    "deit_base": ("deit_base_patch16_224", 768, 12, 12),
}


def train_flops_per_image(width, depth, rank=16, img=224, patch=16, classes=1000):
    """FLOPs of one LoRA training step per image (multiply-add = 2).

    Frozen linears: forward + input gradient (2x). Attention core: forward (QK^T, PV) + backward
    (4 products) = 3x. LoRA factors and the head: forward + input grad + weight grad (3x).
    Patch embedding: forward only (frozen, no image gradient).
    """
    n = (img // patch) ** 2
    t, c = n + 1, width
    frozen = 2 * t * c * (3 * c + c + 4 * c + 4 * c)  # qkv, proj, fc1, fc2 per block
    attn = 2 * 2 * t * t * c
    lora = 2 * t * rank * ((c + 3 * c) + (c + c) + (c + 4 * c) + (4 * c + c))
    head = 2 * c * classes
    patch_fw = 2 * n * c * 3 * patch * patch
    return depth * (2 * frozen + 3 * attn + 3 * lora) + 3 * head + patch_fw


def build(model_key, compile_model, rank, alpha):
    import timm
    from peft import LoraConfig, get_peft_model

    timm_name, width, depth, heads = MODELS[model_key]
    model = timm.create_model(timm_name, pretrained=False, num_classes=1000)
    cfg = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, bias="none",
                     target_modules=r".*blocks\.\d+\.(attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)",
                     modules_to_save=["head"])
    model = get_peft_model(model, cfg).cuda()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.05, fused=True)
    fwd = torch.compile(model) if compile_model else model
    return model, fwd, opt, params, width, depth


def run(model_key, mode, batch, steps, warmup, rank, alpha):
    torch.manual_seed(0)
    model, fwd, opt, params, width, depth = build(model_key, mode == "compile", rank, alpha)
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = loss_fn(fwd(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss

    t0 = time.time()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.time() - t0
    torch.cuda.reset_peak_memory_stats()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(steps):
        loss = step()
    end.record()
    torch.cuda.synchronize()
    ms = start.elapsed_time(end) / steps
    ips = batch / (ms / 1e3)
    flops = train_flops_per_image(width, depth, rank) * ips
    res = {
        "framework": "pytorch", "model": model_key, "mode": mode, "batch": batch, "steps": steps,
        "step_ms": round(ms, 3), "img_per_s": round(ips, 1),
        "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
        "mfu": round(flops / PEAK_FLOPS, 4), "tflops": round(flops / 1e12, 1),
        "warmup_s": round(warm_s, 1), "loss": round(float(loss), 4),
        "trainable_params": sum(p.numel() for p in params),
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
    }
    del model, fwd, opt, params
    torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="deit_small,deit_base")
    ap.add_argument("--modes", default="eager,compile")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--alpha", type=float, default=32)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA device"}))
        return 1
    for m in a.models.split(","):
        for mode in a.modes.split(","):
            res = run(m, mode, a.batch, a.steps, a.warmup, a.rank, a.alpha)
            print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
