"""The one set of generation defaults the REST API, the OpenAI-compatible API and the Chat tab use.

Sampling follows the model's own recommendation, the temperature and top_p of its
generation_config.json, where it has one. Otherwise the fallback is SmolLM2's model card (the
bundled model): temperature 0.2 and top_p 0.9; small chat models wander off topic at the 0.7
many servers default to. The answer length is Settings.default_max_new_tokens.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from core.serving.generation import GenerationOptions
from core.serving.models import BUNDLED_NAME

FALLBACK_TEMPERATURE = 0.2
FALLBACK_TOP_P = 0.9
MODEL_RECOMMENDATION = "generation_config.json"
FALLBACK = "fallback"


@dataclass(frozen=True, kw_only=True)
class GenerationDefaults:
    max_new_tokens: int
    temperature: float
    top_p: float
    source: str  # where temperature and top_p came from: generation_config.json or fallback

    def options(
        self,
        *,
        max_new_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        **given,
    ) -> GenerationOptions:
        """The request's own values where it gave them, these defaults for the rest (options
        without a model default, such as the repetition control, pass through)."""
        return GenerationOptions(
            max_new_tokens=self.max_new_tokens if max_new_tokens is None else max_new_tokens,
            temperature=self.temperature if temperature is None else temperature,
            top_p=self.top_p if top_p is None else top_p,
            **given,
        )


def model_folder(name: str, cache_dir: Path) -> Path | None:
    """Where a model's files are, without loading or converting it (None: not on this disk)."""
    if name.lower() in ("smollm2", BUNDLED_NAME.lower()):
        return cache_dir / BUNDLED_NAME
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(name, "generation_config.json")
    except ValueError:  # not a hub id either
        return None
    return Path(found).parent if isinstance(found, str) else None


def recommended_sampling(folder: Path | None) -> tuple[float, float] | None:
    """(temperature, top_p) from the model's generation_config.json, when it recommends them."""
    path = folder / "generation_config.json" if folder else None
    if path is None or not path.is_file():
        return None
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict):
        return None
    temperature, top_p = config.get("temperature"), config.get("top_p")
    if config.get("do_sample") is False:
        temperature = 0.0  # the model asks for greedy decoding
    if temperature is None and top_p is None:
        return None
    temperature = FALLBACK_TEMPERATURE if temperature is None else temperature
    top_p = FALLBACK_TOP_P if top_p is None else top_p
    if not (isinstance(temperature, (int, float)) and isinstance(top_p, (int, float))):
        return None
    if not (0.0 <= temperature <= 2.0 and 0.0 < top_p <= 1.0):
        return None
    return float(temperature), float(top_p)


def resolve_defaults(folder: Path | None, *, max_new_tokens: int) -> GenerationDefaults:
    recommended = recommended_sampling(folder)
    temperature, top_p = recommended or (FALLBACK_TEMPERATURE, FALLBACK_TOP_P)
    return GenerationDefaults(
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        source=MODEL_RECOMMENDATION if recommended else FALLBACK,
    )


class ModelDefaults:
    """The served model's defaults. Read again until the model is loaded: the bundled model's
    folder only appears when it is first converted."""

    def __init__(self, models, *, max_new_tokens: int) -> None:
        self.models = models  # core.serving.models.ModelService
        self.max_new_tokens = max_new_tokens
        self._settled: GenerationDefaults | None = None
        self._lock = threading.Lock()

    def get(self) -> GenerationDefaults:
        with self._lock:
            if self._settled is not None:
                return self._settled
            loaded = self.models.is_loaded
            folder = model_folder(self.models.name, self.models.cache_dir)
            defaults = resolve_defaults(folder, max_new_tokens=self.max_new_tokens)
            if loaded:
                self._settled = defaults
            return defaults
