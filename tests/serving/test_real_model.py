"""The real bundled default model (slow: converts and loads SmolLM2-135M-Instruct)."""

import pytest

from core.services import build_services
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from core.settings import Settings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_services(tmp_path_factory, real_model_cache):
    settings = Settings(data_dir=tmp_path_factory.mktemp("real"), cache_dir=real_model_cache)
    built = build_services(settings)
    yield built
    built.close()


def test_the_default_model_knows_the_capital_of_france(real_services):
    update = real_services.chat.complete(
        ChatRequest(
            prompt="What is the capital of France?",
            options=GenerationOptions(max_new_tokens=30, temperature=0),
        )
    )
    assert "Paris" in update.turn.response
    assert update.turn.confidence is not None and update.turn.tokens_per_s > 0


def test_the_converted_cache_is_reused(real_services):
    cache = real_services.settings.models_dir / "SmolLM2-135M-Instruct"
    assert (cache / "model.safetensors").is_file()
    stamp = (cache / "model.safetensors").stat().st_mtime
    from core.serving.models import convert_bundled_model

    assert convert_bundled_model(real_services.settings.models_dir) == cache
    assert (cache / "model.safetensors").stat().st_mtime == stamp


def test_the_default_engine_converts_the_model_and_answers_on_it(real_services):
    models = real_services.models
    builds = models.fast_builds()
    if builds is None:
        pytest.skip("the default engine is transformers here (a GPU, or no onnxruntime-genai)")
    with models.use(None):
        pass  # the first hold starts the conversion in the background
    builds.join()
    assert builds.status()["failed"] == {}
    update = real_services.chat.complete(
        ChatRequest(
            prompt="What is the capital of France?",
            options=GenerationOptions(max_new_tokens=30, temperature=0),
        )
    )
    assert "Paris" in update.turn.response
    assert update.turn.confidence is not None and update.turn.finish_reason == "stop"
    assert update.turn.settings["engine"] == models.engine_name()
