"""A tiny LoRA adapter for a tiny model: random (non-zero) LoRA weights so it changes outputs."""

from __future__ import annotations

from pathlib import Path


def make_tiny_adapter(model_dir: Path, path: Path, *, seed: int = 1, scale: float = 4.0,
                      use_dora: bool = False,
                      targets: tuple[str, ...] = ("q_proj", "v_proj", "down_proj")) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=list(targets),
        init_lora_weights=False,  # random A and B: the adapter really perturbs the model
        use_dora=use_dora,
    )
    model = get_peft_model(base, config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.mul_(scale)
    model.save_pretrained(path)
    return path
