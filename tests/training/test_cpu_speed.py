"""The CPU training speed-ups compute what plain training computes: same products, same
LoRA formula and gradients, dropout with the same keep probability, attention at least as
exact."""

from __future__ import annotations

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from core.training import fused_lora
from core.training.cpu_speed import cast_frozen_linears, use_fp32_attention
from core.training.fused_lora import fuse_lora_layers, keep_mask


def lora_model_with(model_dir, *, dropout: float, **options):
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear",
                        init_lora_weights=False, **options)
    return get_peft_model(model, config)


@pytest.fixture
def lora_model(tiny_model_dir):
    return lora_model_with(tiny_model_dir, dropout=0.25)


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


def test_keep_mask_keeps_each_element_with_its_probability():
    mask, p_used = keep_mask((400, 1000), 0.1, "cpu")
    assert abs(p_used - 0.1) <= 2 ** -17
    assert mask.dtype == torch.bool and mask.shape == (400, 1000)
    for lane in range(4):  # each of the four 16-bit lanes of a 64-bit draw is random
        kept = mask.flatten()[lane::4].float().mean()
        assert abs(float(kept) - 0.9) < 0.005


def test_lora_function_computes_the_lora_formula_and_its_gradients():
    torch.manual_seed(0)
    x = torch.randn(6, 8, requires_grad=True)
    weight, bias = torch.randn(5, 8), torch.randn(5)
    lora_a, lora_b = torch.randn(3, 8, requires_grad=True), torch.randn(5, 3, requires_grad=True)
    mask = torch.rand(6, 8) > 0.3
    coefficient = 1.7
    plain = x @ weight.t() + bias + ((x * mask) @ lora_a.t() @ lora_b.t()) * coefficient
    fused = fused_lora._function_class().apply(x, weight, bias, lora_a, lora_b, mask, coefficient)
    torch.testing.assert_close(fused, plain)
    upstream = torch.randn(6, 5)
    expected = torch.autograd.grad(plain, (x, lora_a, lora_b), upstream)
    got = torch.autograd.grad(fused, (x, lora_a, lora_b), upstream)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b)


def loss_and_lora_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_layers_train_like_peft(tiny_model_dir, autocast):
    """Without dropout the fused layers give peft's loss and gradients (fp32 and bf16 autocast);
    with it, the training loss still runs and every LoRA weight gets a gradient."""
    ids = torch.randint(0, 100, (2, 12))
    models = [lora_model_with(tiny_model_dir, dropout=0.0) for _ in range(2)]
    assert fuse_lora_layers(models[1]) > 0
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        (loss, grads), (fused_loss, fused_grads) = (loss_and_lora_grads(m, ids) for m in models)
    tolerance = {"atol": 2e-2, "rtol": 2e-2} if autocast else {}
    torch.testing.assert_close(fused_loss, loss, **tolerance)
    for fused, plain in zip(fused_grads, grads, strict=True):
        torch.testing.assert_close(fused, plain, **tolerance)
    dropped = lora_model_with(tiny_model_dir, dropout=0.25)
    fuse_lora_layers(dropped)
    loss, grads = loss_and_lora_grads(dropped.train(), ids)
    assert torch.isfinite(loss) and all(g.abs().sum() > 0 for g in grads)


def test_layers_the_function_does_not_cover_keep_peft_forward(tiny_model_dir):
    ids = torch.randint(0, 100, (2, 12))
    dora = lora_model_with(tiny_model_dir, dropout=0.0, use_dora=True).eval()
    with torch.no_grad():
        before = dora(input_ids=ids).logits
        fuse_lora_layers(dora)
        torch.testing.assert_close(dora(input_ids=ids).logits, before)
        with dora.disable_adapter():
            fused_base = dora(input_ids=ids).logits
    assert not torch.allclose(fused_base, before)  # disabled adapters: the base model alone
