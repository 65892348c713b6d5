"""Fine-tune the real default model (SmolLM2-135M-Instruct) for a few steps (slow)."""

from __future__ import annotations

import pytest

from core.services import build_services
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from core.settings import Settings
from tests.training_helpers import chat_rows, wait_final

pytestmark = pytest.mark.slow


def test_a_few_steps_on_the_default_model_register_a_servable_adapter(tmp_path,
                                                                      real_model_cache):
    services = build_services(Settings(engine="transformers",
                                       data_dir=tmp_path, cache_dir=real_model_cache))
    try:
        rows = chat_rows(1)
        spec = services.training.make_spec({"max_steps": 2, "batch_size": 2,
                                            "grad_accumulation": 1, "max_length": 128})
        job = wait_final(services.training,
                         services.training.submit(spec, train=rows, validation=rows[:2]).id)
        assert job.status == "completed", job.error
        history = services.training.history(job.id)
        assert len(history["train"]) == 2 and history["validation"]
        services.registry.promote(job.model_id)
        update = services.chat.complete(ChatRequest(
            prompt="What is the capital of France?",
            options=GenerationOptions(max_new_tokens=12, temperature=0)))
        assert update.turn.adapter_version == job.model_id and update.turn.response.strip()
    finally:
        services.close()
