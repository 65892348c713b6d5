"""The CPU training speed-ups compute what plain training computes: same products, same
dropout distribution, attention at least as exact."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from core.training.cpu_speed import cast_frozen_linears, fast_lora_dropout, use_fp32_attention


@pytest.fixture
def lora_model(tiny_model_dir):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.25, target_modules="all-linear",
                        init_lora_weights=False)
    return get_peft_model(model, config)


def logits(model, ids):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return model(input_ids=ids).logits.float()


def test_bf16_frozen_weights_give_the_same_products_under_autocast(lora_model):
    lora_model.eval()
    ids = torch.randint(0, 100, (2, 12))
    before = logits(lora_model, ids)
    assert cast_frozen_linears(lora_model, torch.bfloat16) > 0
    assert torch.equal(before, logits(lora_model, ids))
    assert all(p.dtype == torch.float32 for p in lora_model.parameters() if p.requires_grad)


def test_fp32_attention_matches_fp32_sdpa(lora_model):
    lora_model.eval()
    ids = torch.randint(0, 100, (2, 12))
    with torch.no_grad():
        before = lora_model(input_ids=ids).logits
        assert use_fp32_attention(lora_model.get_base_model())
        after = lora_model(input_ids=ids).logits
    torch.testing.assert_close(before, after)
    assert torch.isfinite(logits(lora_model, ids)).all()  # and it runs under bf16 autocast


def test_lora_dropout_keeps_its_probability_and_scaling(lora_model):
    assert fast_lora_dropout(lora_model) > 0
    dropout = next(m for m in lora_model.modules() if type(m).__name__ == "RandDropout")
    x = torch.ones(200_000)
    dropout.train()
    out = dropout(x)
    kept = out != 0
    assert abs(float(kept.float().mean()) - 0.75) < 0.01
    assert torch.allclose(out[kept], torch.full_like(out[kept], 1 / 0.75))
    dropout.eval()
    assert torch.equal(dropout(x), x)
