"""Reference fixture for tests/test_deit.c: a small random-init timm DeiT and what PyTorch computes.

Run where PyTorch + timm + peft + safetensors exist (the GPU machine's /opt/torch/.venv):
    python tests/reference/make_deit_fixture.py tests/fixtures/deit_small_ref.safetensors
The output (fp32, ~0.3 MB) holds:
  - the model's state dict under timm's names (patch_embed.proj.weight, blocks.0.attn.qkv.weight, ...)
  - input (B, C, H, W), labels (B) as float, logits (B, K), loss (1)
  - grad.<name> for a few parameters (full fine-tuning, loss = mean cross-entropy)
  - LoRA (PEFT, r=4, alpha=8, targets qkv/proj/fc1/fc2, B randomised so the branch matters):
    <layer>.lora_A, <layer>.lora_B, lora_logits, lora_loss and lora_grad.<layer>.lora_{A,B}
"""
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer

CFG = dict(img_size=32, patch_size=8, in_chans=3, num_classes=10, embed_dim=48, depth=2,
           num_heads=3, mlp_ratio=4.0, qkv_bias=True)
GRADS = ["patch_embed.proj.weight", "cls_token", "pos_embed", "blocks.0.norm1.weight",
         "blocks.0.attn.qkv.weight", "blocks.0.attn.proj.bias", "blocks.1.mlp.fc1.weight",
         "blocks.1.mlp.fc2.bias", "norm.bias", "head.weight"]
# the block linears only (a bare "proj" would also put PEFT LoRA on the patch_embed.proj conv)
LORA_TARGETS = r".*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))"


def main(out_path):
    torch.manual_seed(0)
    model = VisionTransformer(**CFG).float()
    # random-init timm uses cls_token ~ 1e-6; make it matter for the check
    with torch.no_grad():
        model.cls_token.normal_(0, 0.02)
    model.train()
    B = 4
    x = torch.randn(B, CFG["in_chans"], CFG["img_size"], CFG["img_size"])
    y = torch.randint(0, CFG["num_classes"], (B,))
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    out.update(input=x, labels=y.float(), logits=logits.detach(), loss=loss.detach().reshape(1))
    params = dict(model.named_parameters())
    for name in GRADS:
        out["grad." + name] = params[name].grad.detach().clone()

    # LoRA through PEFT on the same base weights
    from peft import LoraConfig, get_peft_model
    model.zero_grad(set_to_none=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                  target_modules=LORA_TARGETS))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    logits_l = peft_model(x)
    loss_l = F.cross_entropy(logits_l, y)
    loss_l.backward()
    out.update(lora_logits=logits_l.detach(), lora_loss=loss_l.detach().reshape(1))
    for name, p in peft_model.named_parameters():
        if "lora_" not in name:
            continue
        # base_model.model.blocks.0.attn.qkv.lora_A.default.weight -> blocks.0.attn.qkv.lora_A
        layer = name.replace("base_model.model.", "").replace(".default.weight", "")
        out[layer] = p.detach().clone()
        out["lora_grad." + layer] = p.grad.detach().clone()
    save_file({k: v.float().contiguous() for k, v in out.items()}, out_path,
              metadata={"config": repr(CFG), "made_by": "tests/reference/make_deit_fixture.py"})
    print(f"wrote {out_path}: {len(out)} tensors, loss {loss.item():.6f}, lora loss {loss_l.item():.6f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/deit_small_ref.safetensors")
