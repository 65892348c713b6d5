"""Exports of a registered adapter: adapter folder, merged safetensors, GGUF + Modelfile."""

from __future__ import annotations

import torch


def register_random_adapter(services, tiny_model_dir, tmp_path) -> str:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = get_peft_model(base, LoraConfig(r=4, target_modules="all-linear",
                                            init_lora_weights=False))
    folder = tmp_path / "adapter"
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(folder)
    services.registry.register(
        model_id="adapter-random", name="random", base_model=str(tiny_model_dir),
        adapter_dir=folder, job_id=None, config={}, dataset_id=None, dataset_version=None,
        metrics={}, duration_s=None, lineage={})
    return "adapter-random"


def test_exports_merge_and_write_a_verified_gguf(client, services, tiny_model_dir, tmp_path):
    model_id = register_random_adapter(services, tiny_model_dir, tmp_path)
    url = f"/api/v1/models/{model_id}/export"
    assert client.post(url, json={"format": "onnx"}).status_code == 422
    adapter = client.post(url, json={"format": "adapter"}).json()
    assert "adapter_model.safetensors" in adapter["files"]

    merged = client.post(url, json={"format": "merged"}).json()
    assert "model.safetensors" in merged["files"]
    from transformers import AutoModelForCausalLM

    ids = torch.tensor([[5, 6, 7, 8]])
    with services.models.use(services.registry.get(model_id).adapter_dir) as loaded:
        expected = loaded.model(ids).logits
    reloaded = AutoModelForCausalLM.from_pretrained(merged["path"])(ids).logits
    assert torch.allclose(expected, reloaded, atol=1e-4)

    for fmt, tolerance in (("gguf-f32", 1e-3), ("gguf-f16", 5e-2)):
        body = client.post(url, json={"format": fmt}).json()
        assert "Modelfile" in body["files"] and any(f.endswith(".gguf") for f in body["files"])
        assert body["max_logit_diff"] <= tolerance
    modelfile = (tmp_path / "data" / "exports" / "models" / model_id / "gguf-f16" / "Modelfile")
    assert modelfile.read_text().startswith("FROM ./adapter-random-f16.gguf")
