"""Data-parallel training under torchrun (gloo on CPU): two processes give the same update."""

from __future__ import annotations

from safetensors.torch import load_file

from core.serving.registry import ModelRegistry
from core.store.registry import ADAPTER, RegistryStore
from core.store.training import TrainingStore
from core.training.runner import TrainingRunner
from tests.training_helpers import chat_rows, wait_final


def test_two_processes_match_one(services, tmp_path, tiny_model_dir):
    registry = ModelRegistry(RegistryStore(services.db, ADAPTER))
    options = {"max_steps": 2, "batch_size": 1, "grad_accumulation": 4, "lora_dropout": 0.0,
               "learning_rate": 1e-2, "eval_every": 2}
    adapters = []
    for processes in (1, 2):
        runner = TrainingRunner(TrainingStore(services.db), registry,
                                runs_dir=tmp_path / f"runs{processes}",
                                models_dir=tmp_path / "models", default_model=str(tiny_model_dir),
                                processes=processes)
        job = runner.submit(runner.make_spec(options), train=chat_rows(1))
        job = wait_final(runner, job.id)
        runner.close()
        assert job.status == "completed", job.error
        adapters.append(load_file(f"{job.run_dir}/adapter/adapter_model.safetensors"))
    one, two = adapters
    assert one.keys() == two.keys()
    # Adam divides by tiny second moments, so summation-order noise shows in the 4th decimal.
    worst = max(float((one[name] - two[name]).abs().max()) for name in one)
    assert worst < 2e-3, worst
