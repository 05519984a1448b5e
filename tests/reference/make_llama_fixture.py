"""Reference fixture for tests/test_llama.c: a tiny random LlamaForCausalLM and what PyTorch computes.

Run where PyTorch + transformers + peft + safetensors exist (the GPU machine's /opt/torch/.venv):
    python tests/reference/make_llama_fixture.py tests/fixtures/llama_tiny_ref.safetensors
The output (fp32, ~0.4 MB) holds:
  - the model's state dict under HF names (model.embed_tokens.weight, model.layers.0.self_attn.q_proj.weight, ...)
  - input_ids (B, T) as float, logits (B, T, V), loss (1): LlamaForCausalLM(input_ids, labels=input_ids),
    i.e. the mean cross-entropy of the shifted labels
  - grad.<name> for a few parameters (full fine-tuning)
  - LoRA (PEFT, r=4, alpha=8, all seven projections, B randomised so the branch matters):
    <layer>.lora_A, <layer>.lora_B, lora_logits, lora_loss and lora_grad.<layer>.lora_{A,B}
"""
import sys

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

CFG = dict(vocab_size=64, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=4, max_position_embeddings=64, rms_norm_eps=1e-5, rope_theta=10000.0,
           initializer_range=0.05, tie_word_embeddings=False, attention_bias=False, mlp_bias=False)
B, T = 2, 12
GRADS = ["model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
         "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
         "model.layers.0.self_attn.v_proj.weight", "model.layers.1.self_attn.o_proj.weight",
         "model.layers.1.post_attention_layernorm.weight", "model.layers.1.mlp.gate_proj.weight",
         "model.layers.0.mlp.up_proj.weight", "model.layers.1.mlp.down_proj.weight", "model.norm.weight",
         "lm_head.weight"]
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main(out_path):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CFG, attn_implementation="eager")).float()
    with torch.no_grad():  # norms at 1 would hide a wrong norm-weight gradient
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
    model.train()
    ids = torch.randint(0, CFG["vocab_size"], (B, T))
    out_m = model(input_ids=ids, labels=ids)
    out_m.loss.backward()
    out = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    out.update(input_ids=ids.float(), logits=out_m.logits.detach(), loss=out_m.loss.detach().reshape(1))
    params = dict(model.named_parameters())
    for name in GRADS:
        out["grad." + name] = params[name].grad.detach().clone()

    from peft import LoraConfig, get_peft_model
    model.zero_grad(set_to_none=True)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=TARGETS))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    out_l = peft_model(input_ids=ids, labels=ids)
    out_l.loss.backward()
    out.update(lora_logits=out_l.logits.detach(), lora_loss=out_l.loss.detach().reshape(1))
    n_lora = 0
    for name, p in peft_model.named_parameters():
        if "lora_" not in name:
            continue
        # base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight -> model.layers.0.self_attn.q_proj.lora_A
        layer = name.replace("base_model.model.", "", 1).replace(".default.weight", "")
        out[layer] = p.detach().clone()
        out["lora_grad." + layer] = p.grad.detach().clone()
        n_lora += 1
    save_file({k: v.float().contiguous() for k, v in out.items()}, out_path,
              metadata={"config": repr(CFG), "made_by": "tests/reference/make_llama_fixture.py"})
    print(f"wrote {out_path}: {len(out)} tensors ({n_lora} LoRA factors), loss {out_m.loss.item():.6f}, "
          f"lora loss {out_l.loss.item():.6f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/llama_tiny_ref.safetensors")
