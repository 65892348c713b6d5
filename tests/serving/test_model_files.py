"""Model files: safetensors only (pickle weights are refused with a clear message), and code
shipped inside a model folder never runs unless --trust-remote-code turns it on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import ModelUnavailable
from core.serving.models import load_model
from core.settings import Settings, parse_settings
from tests.tiny_adapters import make_tiny_adapter
from tests.training_helpers import chat_rows


def pickled_model(source: Path, target: Path) -> Path:
    """The tiny model with its weights as a pickle (pytorch_model.bin) instead of safetensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(source, target)
    weights = target / "model.safetensors"
    torch.save(load_file(weights), target / "pytorch_model.bin")
    weights.unlink()
    return target


def pickled_adapter(model_dir: Path, target: Path) -> Path:
    import torch
    from safetensors.torch import load_file

    make_tiny_adapter(model_dir, target)
    weights = target / "adapter_model.safetensors"
    torch.save(load_file(weights), target / "adapter_model.bin")
    weights.unlink()
    return target


def test_a_model_folder_with_only_pickle_weights_is_refused(tiny_model_dir, tmp_path):
    folder = pickled_model(tiny_model_dir, tmp_path / "pickled")
    with pytest.raises(ModelUnavailable, match="safetensors weights only") as caught:
        load_model(str(folder), cache_dir=tmp_path / "cache")
    assert "pytorch_model.bin" in caught.value.message


def test_training_on_a_pickled_base_model_is_refused_over_http(client, services, tiny_model_dir):
    pickled_model(tiny_model_dir, services.settings.models_dir / "pickled")
    response = client.post("/api/v1/training/jobs", json={
        "kind": "sft", "train": chat_rows(1), "config": {"base_model": "models/pickled"}})
    assert response.status_code == 503
    assert "pytorch_model.bin" in response.json()["error"]
    assert client.get("/api/v1/training/jobs").json()["items"] == []


def test_an_adapter_with_only_pickle_weights_is_refused(client, services, tiny_model_dir):
    pickled_adapter(tiny_model_dir, services.settings.data_dir / "adapters" / "pickled")
    response = client.post("/api/v1/compare", json={
        "prompt": "hi", "model_a": "base", "model_b": "adapters/pickled", "max_new_tokens": 2})
    assert response.status_code == 503, response.text
    assert "adapter_model.bin" in response.json()["error"]
    with pytest.raises(ModelUnavailable, match="safetensors"):
        with services.models.use(services.settings.data_dir / "adapters" / "pickled"):
            pass


def remote_code_model(tiny_model_dir: Path, target: Path, marker: Path) -> Path:
    """A model folder whose config points at Python code in the folder; the code leaves a mark."""
    shutil.copytree(tiny_model_dir, target)
    config = json.loads((target / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilModel",
    }
    (target / "config.json").write_text(json.dumps(config))
    code = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    (target / "configuration_evil.py").write_text(
        code + "from transformers import LlamaConfig\nclass EvilConfig(LlamaConfig):\n    pass\n")
    (target / "modeling_evil.py").write_text(
        code + "from transformers import LlamaForCausalLM\n"
        "class EvilModel(LlamaForCausalLM):\n    pass\n")
    return target


def test_code_inside_a_model_folder_does_not_run_by_default(tiny_model_dir, tmp_path):
    marker = tmp_path / "code-ran"
    folder = remote_code_model(tiny_model_dir, tmp_path / "evil", marker)
    loaded = None
    try:
        loaded = load_model(str(folder), cache_dir=tmp_path / "cache")
    except ModelUnavailable:
        pass  # refusing is fine; running the folder's code is not
    assert not marker.exists()
    if loaded is not None:
        assert type(loaded.model).__name__ == "LlamaForCausalLM"


def test_trust_remote_code_is_a_flag_threaded_to_models_and_training(tmp_path, tiny_model_dir):
    assert parse_settings([], {}).trust_remote_code is False
    assert parse_settings(["--trust-remote-code"], {}).trust_remote_code is True
    assert parse_settings([], {"REFINERY_TRUST_REMOTE_CODE": "1"}).trust_remote_code is True
    from core.services import build_services

    services = build_services(Settings(engine="transformers",
                                       data_dir=tmp_path / "d", model=str(tiny_model_dir),
                                       trust_remote_code=True))
    try:
        assert services.models.trust_remote_code is True
        assert services.training.trust_remote_code is True
    finally:
        services.close()
