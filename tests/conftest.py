"""Shared fixtures: a tiny real model, real services on a real DuckDB file, an HTTP client."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.tiny_models import make_tiny_llama  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# The studio answers only to its own host names (DNS rebinding); TestClient's default is not one
LOCAL = "http://127.0.0.1"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return make_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")


@pytest.fixture(scope="session")
def real_model_cache(tmp_path_factory) -> Path:
    """The bundled default model, converted once per test session (for `slow` tests)."""
    from core.serving.models import convert_bundled_model

    cache = tmp_path_factory.mktemp("real-model-cache")
    convert_bundled_model(cache)
    return cache


@pytest.fixture
def settings(tmp_path, tiny_model_dir):
    from core.settings import Settings

    # The reference engine: the fast engine's conversions have their own tests.
    return Settings(
        data_dir=tmp_path / "data", model=str(tiny_model_dir), default_max_new_tokens=8,
        engine="transformers",
    )


@pytest.fixture
def services(settings):
    from core.services import build_services

    built = build_services(settings)
    yield built
    built.close()


@pytest.fixture
def client(services):
    from fastapi.testclient import TestClient

    from app import create_app

    with TestClient(create_app(services), base_url=LOCAL) as test_client:
        yield test_client
