"""Attributions on tiny real models: shape, efficiency, a decisive word, batching and the cache."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from core.audit.explain import MASK, AnswerScorer, ExplainService, ExplainSettings
from core.errors import InvalidInput
from core.serving.answers import Cancelled
from core.serving.models import ModelService
from core.serving.modelspec import ModelResolver
from core.store import open_database
from core.store.arena import ArenaStore
from core.store.explain import ExplanationCache
from tests.tiny_models import make_tiny_llama

FILLER = ["the", "quick", "brown", "lazy", "dog", "today", "what", "is", "of", "how"]
KEYS = {"France": "Paris.", "Hello": "fine.", MASK: "no."}  # no key word: another answer
STEPS = 80


def train_key_word_model(path):
    """A tiny Llama trained until one key word in the prompt decides the one-word answer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.serving.generation import encode_messages

    make_tiny_llama(path, seed=1)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    rng = random.Random(0)
    model.train()
    for _ in range(STEPS):
        rows, targets = [], []
        for _ in range(16):
            words = [w if rng.random() < 0.5 else MASK for w in rng.sample(FILLER, 5)]
            key = rng.choice(list(KEYS))
            words.insert(rng.randrange(6), key)
            prompt = encode_messages(tokenizer, [{"role": "user", "content": " ".join(words)}])
            answer = tokenizer(KEYS[key], add_special_tokens=False)["input_ids"]
            rows.append(prompt + answer)
            targets.append([-100] * len(prompt) + answer)
        width = max(len(r) for r in rows)  # right padding: pads are ignored by the loss
        ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in rows])
        labels = torch.tensor([t + [-100] * (width - len(t)) for t in targets])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def key_word_model(tmp_path_factory):
    return train_key_word_model(tmp_path_factory.mktemp("models") / "key-word")


def make_service(tmp_path, model_dir) -> ExplainService:
    db = open_database(tmp_path / "explain.duckdb")
    models = ModelService(str(model_dir), cache_dir=tmp_path / "models")
    return ExplainService(ModelResolver(models, ArenaStore(db)), ExplanationCache(db))


SMALL = ExplainSettings(max_evals=40, batch_size=8)


def test_one_value_per_word_and_shap_efficiency(tmp_path, tiny_model_dir):
    service = make_service(tmp_path, tiny_model_dir)
    prompt = "What is the capital of France? Answer in one word."
    result = service.explain(prompt, "Paris.", settings=SMALL)
    assert result.words == prompt.split()
    assert len(result.shap) == len(result.lime) == len(result.words)
    scorer = AnswerScorer(service.models, service.target("base"), "Paris.", settings=SMALL)
    full, masked = scorer([prompt, " ".join([MASK] * len(result.words))])
    assert sum(result.shap) == pytest.approx(full - masked, abs=1e-3)
    assert result.full_score == pytest.approx(full, abs=1e-4)
    assert -1.0 <= result.agreement <= 1.0


def test_batched_scores_equal_one_by_one(tmp_path, tiny_model_dir):
    service = make_service(tmp_path, tiny_model_dir)
    def scorer():
        settings = ExplainSettings(batch_size=4)
        return AnswerScorer(service.models, service.target(None), "I am fine.", settings=settings)

    prompts = ["Hello", "Hello, how are you today?", "... are ...", "a b c d e f g h"]
    one_by_one = [scorer()([p])[0] for p in prompts]
    batched = scorer()
    np.testing.assert_allclose(batched([*prompts, "Hello"]), [*one_by_one, one_by_one[0]],
                               atol=1e-4)
    assert batched.evaluations == 4  # the repeated prompt is scored once


def test_the_deciding_word_ranks_first(tmp_path, key_word_model):
    service = make_service(tmp_path, key_word_model)
    prompt = "the lazy France dog quick today"
    result = service.explain(prompt, "Paris.", settings=ExplainSettings(max_evals=60))
    assert result.top_words("shap", 1)[0][0] == "France"
    assert result.top_words("lime", 1)[0][0] == "France"
    assert result.shap[2] > 0 and result.lime[2] > 0  # the key word makes the answer likelier
    assert result.agreement > 0


def test_cache_hit_returns_identical_result(tmp_path, tiny_model_dir):
    service = make_service(tmp_path, tiny_model_dir)
    first = service.explain("Hello, how are you?", "I am fine.", settings=SMALL)
    second = service.explain("Hello,  how are   you?", "I am fine.", settings=SMALL)
    assert not first.cached and second.cached
    assert service.cache.count() == 1
    for name in ("words", "shap", "lime", "agreement", "full_score", "masked_score"):
        assert getattr(second, name) == getattr(first, name)
    other = service.explain("Hello, how are you?", "I am fine.", settings=ExplainSettings(
        max_evals=41, batch_size=8))
    assert not other.cached and service.cache.count() == 2


def test_adapter_changes_the_version_and_the_scores(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(tmp_path / "adapter")
    service = make_service(tmp_path, tiny_model_dir)
    target = service.target(str(tmp_path / "adapter"))
    assert target.adapter_dir is not None and target.version != service.models.name
    settings = ExplainSettings(methods=("shap",), max_evals=20)
    tuned = service.explain("Hello there", "fine", model=str(tmp_path / "adapter"),
                            settings=settings)
    base_result = service.explain("Hello there", "fine", model="base", settings=settings)
    assert tuned.lime is None and tuned.agreement is None
    assert tuned.full_score != pytest.approx(base_result.full_score, abs=1e-6)


def test_progress_and_cancel(tmp_path, tiny_model_dir):
    service = make_service(tmp_path, tiny_model_dir)
    seen = []
    service.explain("one two three four", "five", settings=SMALL,
                    progress=lambda done, total: seen.append((done, total)))
    assert seen and all(done <= total for done, total in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        service.explain("one two three four six", "five", settings=SMALL, cancel=cancel)
    assert service.cache.count() == 1


@pytest.mark.parametrize(
    "prompt, answer, message",
    [("   ", "x", "prompt"), ("hello", " ", "answer"), ("w " * 200, "x", "max_words")],
)
def test_bad_input_is_a_clear_message(tmp_path, tiny_model_dir, prompt, answer, message):
    service = make_service(tmp_path, tiny_model_dir)
    with pytest.raises(InvalidInput, match=message):
        service.explain(prompt, answer, settings=SMALL)


def test_settings_are_validated():
    with pytest.raises(InvalidInput):
        ExplainSettings(methods=("gradcam",))
    with pytest.raises(InvalidInput):
        ExplainSettings(max_evals=2)


@pytest.mark.slow
def test_real_default_model_explanation(tmp_path):
    from core.settings import DEFAULT_MODEL, Settings

    settings = Settings(engine="transformers", data_dir=tmp_path)
    db = open_database(tmp_path / "explain.duckdb")
    models = ModelService(DEFAULT_MODEL, cache_dir=Path("data/runtime/models").resolve()
                          if Path("data/runtime/models").exists() else settings.models_dir)
    service = ExplainService(ModelResolver(models, ArenaStore(db)), ExplanationCache(db))
    result = service.explain("What is the capital of France?", "The capital of France is Paris.",
                             settings=ExplainSettings(max_evals=16))
    assert len(result.shap) == len(result.lime) == 6
    assert sum(result.shap) == pytest.approx(result.full_score - result.masked_score, abs=1e-2)
    assert result.top_words("shap", 1)[0][0] in ("France?", "capital")
