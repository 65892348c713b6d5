"""One set of generation defaults: the model's own recommendation (generation_config.json) or the
documented fallback, used alike by /api/v1/chat, /api/v1/compare and the Chat tab's sliders."""

from __future__ import annotations

import json
import shutil

import pytest

from core.serving.defaults import (
    FALLBACK,
    FALLBACK_TEMPERATURE,
    FALLBACK_TOP_P,
    MODEL_RECOMMENDATION,
    recommended_sampling,
    resolve_defaults,
)


def with_config(folder, config) -> object:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"temperature": 0.6, "top_p": 0.95, "do_sample": True}, (0.6, 0.95)),
        ({"temperature": 0.5}, (0.5, FALLBACK_TOP_P)),
        ({"top_p": 0.8}, (FALLBACK_TEMPERATURE, 0.8)),
        ({"do_sample": False}, (0.0, FALLBACK_TOP_P)),  # the model asks for greedy decoding
        ({"bos_token_id": 1, "eos_token_id": 2}, None),  # no recommendation
        ({"temperature": 7, "top_p": 0.9}, None),  # out of range: ignored
        ({"temperature": "hot"}, None),
    ],
)
def test_the_recommendation_is_read_from_generation_config(tmp_path, config, expected):
    assert recommended_sampling(with_config(tmp_path / "m", config)) == expected


def test_without_a_recommendation_the_fallback_applies(tmp_path):
    assert recommended_sampling(None) is None
    assert recommended_sampling(tmp_path) is None  # no generation_config.json
    (tmp_path / "generation_config.json").write_text("{not json")
    defaults = resolve_defaults(tmp_path, max_new_tokens=300)
    assert (defaults.temperature, defaults.top_p, defaults.max_new_tokens, defaults.source) == (
        FALLBACK_TEMPERATURE, FALLBACK_TOP_P, 300, FALLBACK
    )
    chosen = defaults.options(temperature=0.0)
    assert (chosen.temperature, chosen.top_p, chosen.max_new_tokens) == (0.0, FALLBACK_TOP_P, 300)


@pytest.fixture
def recommending(tmp_path, tiny_model_dir):
    """Services over a copy of the tiny model whose generation_config.json recommends sampling."""
    from core.services import build_services
    from core.settings import Settings

    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "generation_config.json").read_text())
    with_config(folder, {**config, "temperature": 0.6, "top_p": 0.85})
    built = build_services(Settings(data_dir=tmp_path / "data", model=str(folder),
                                    default_max_new_tokens=5, engine="transformers"))  # fmt: skip
    yield built
    built.close()


def test_the_apis_and_the_chat_tab_use_the_models_recommendation(recommending):
    from fastapi.testclient import TestClient

    from app import create_app
    from tests.conftest import LOCAL

    services = recommending
    defaults = services.defaults.get()
    assert (defaults.temperature, defaults.top_p, defaults.max_new_tokens, defaults.source) == (
        0.6, 0.85, 5, MODEL_RECOMMENDATION
    )
    with TestClient(create_app(services), base_url=LOCAL) as client:
        turn = client.post("/api/v1/chat", json={"prompt": "hi"}).json()
        chosen = client.post("/api/v1/chat", json={"prompt": "hi", "temperature": 0}).json()
        compared = client.post(
            "/api/v1/compare", json={"prompt": "hi", "model_b": "base+fewshot"}
        ).json()
    settings = services.log.get_turn(turn["response_id"])["settings"]
    assert (settings["temperature"], settings["top_p"], settings["max_new_tokens"]) == (
        0.6, 0.85, 5
    )
    assert services.log.get_turn(chosen["response_id"])["settings"]["temperature"] == 0
    assert services.log.get_turn(compared["left"]["response_id"])["settings"]["top_p"] == 0.85

    from ui.layout import build_app

    sliders = {
        block.label: block.value
        for block in build_app(services).blocks.values()
        if type(block).__name__ == "Slider"
    }
    assert sliders["Temperature (0 = greedy)"] == 0.6 and sliders["Top-p"] == 0.85


def test_a_stop_sequence_ends_a_rest_chat_answer(client):
    full = client.post("/api/v1/chat", json={"prompt": "hi", "max_new_tokens": 24,
                                             "temperature": 0}).json()["text"]  # fmt: skip
    assert len(full) >= 6, full
    stop = full[3:5]
    cut = client.post("/api/v1/chat", json={"prompt": "hi", "max_new_tokens": 24,
                                            "temperature": 0, "stop": [stop]}).json()  # fmt: skip
    assert cut["text"] == full[: full.find(stop)] and cut["finish_reason"] == "stop"
    refused = client.post("/api/v1/chat", json={"prompt": "hi", "stop": [""]})
    assert refused.status_code == 400 and "stop sequence" in refused.json()["error"]
