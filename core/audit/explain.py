"""SHAP and LIME attributions of a prompt's words to a fixed answer (data only, no plotting).

The quantity explained is the answer's log-likelihood under teacher forcing given a
(partly masked) prompt: how much each prompt word makes the model more or less likely
to give exactly this answer. Words are whitespace-separated; masked words become "...".
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from core.errors import InvalidInput, NotFound
from core.serving.answers import Cancelled, answer_prompts
from core.serving.generation import encode_messages
from core.serving.models import ModelService
from core.serving.modelspec import BASE, ModelResolver, ResolvedModel
from core.store.explain import ExplanationCache

MASK = "..."
WORD = re.compile(r"\S+")
METHODS = ("shap", "lime")

Progress = Callable[[int, int], None]  # (evaluations done, evaluations planned)


def split_words(prompt: str) -> list[str]:
    return WORD.findall(prompt)


@dataclass(frozen=True, kw_only=True)
class ExplainSettings:
    methods: tuple[str, ...] = METHODS
    max_evals: int = 64  # model evaluations per method: the cost bound
    batch_size: int = 8
    max_answer_tokens: int = 32  # the answer is scored on its first tokens only
    max_words: int = 120
    seed: int = 0

    def __post_init__(self) -> None:
        methods = tuple(dict.fromkeys(self.methods))
        if not methods or any(m not in METHODS for m in methods):
            raise InvalidInput(f"methods must be a non-empty subset of {METHODS}, got {methods}")
        object.__setattr__(self, "methods", methods)
        if not 8 <= self.max_evals <= 5000:
            raise InvalidInput(f"max_evals must be 8-5000, got {self.max_evals}")
        if not 1 <= self.batch_size <= 128:
            raise InvalidInput(f"batch_size must be 1-128, got {self.batch_size}")
        if not 1 <= self.max_answer_tokens <= 1024:
            raise InvalidInput(f"max_answer_tokens must be 1-1024, got {self.max_answer_tokens}")
        if not 1 <= self.max_words <= 1000:
            raise InvalidInput(f"max_words must be 1-1000, got {self.max_words}")


@dataclass(frozen=True, kw_only=True)
class Explanation:
    model: str  # the spec the person chose
    model_version: str
    prompt: str  # whitespace-normalised: the words joined by single spaces
    answer: str
    words: list[str]
    full_score: float  # log-likelihood of the answer given the whole prompt
    masked_score: float  # ... given a prompt with every word masked
    shap: list[float] | None  # one value per word, in log-likelihood units
    lime: list[float] | None  # one weight per word, in units of the wrapped probability
    agreement: float | None  # Spearman rank correlation of SHAP and LIME
    evaluations: int
    seconds: float
    settings: dict = field(default_factory=dict)
    cached: bool = False

    def top_words(self, method: str, k: int = 10) -> list[tuple[str, float]]:
        values = getattr(self, method) or []
        order = np.argsort(-np.abs(np.asarray(values, dtype=float)))[:k]
        return [(self.words[i], float(values[i])) for i in order]


class AnswerScorer:
    """Log-likelihood of a fixed answer after each prompt, in padded batches.

    Prompts are left-padded so the answer occupies the last positions of every row;
    explicit position ids keep padded rows identical to unpadded ones, and only the
    answer positions' logits are computed. The model is held per batch, so chat turns
    can interleave with a long explanation.
    """

    def __init__(
        self,
        models: ModelService,
        target: ResolvedModel,
        answer: str,
        *,
        settings: ExplainSettings,
        on_batch: Callable[[int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        if not answer.strip():
            raise InvalidInput("the answer to explain is empty")
        self.models = models
        self.target = target
        self.answer = answer
        self.settings = settings
        self.on_batch = on_batch
        self.cancel = cancel
        self.evaluations = 0  # model passes actually run
        self.memo: dict[str, float] = {}

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        prompts = [str(p) for p in prompts]
        # SHAP and LIME both ask again for the whole and the empty prompt: score each once
        todo = list(dict.fromkeys(p for p in prompts if p not in self.memo))
        for start in range(0, len(todo), self.settings.batch_size):
            if self.cancel is not None and self.cancel.is_set():
                raise Cancelled("the explanation was cancelled")
            batch = todo[start : start + self.settings.batch_size]
            self.memo.update(zip(batch, self._score_batch(batch), strict=True))
            self.evaluations += len(batch)
            if self.on_batch is not None:
                self.on_batch(len(batch))
        return np.array([self.memo[p] for p in prompts], dtype=float)

    def _score_batch(self, prompts: list[str]) -> np.ndarray:
        import torch

        with self.models.use(self.target.adapter_dir) as loaded, torch.inference_mode():
            tokenizer = loaded.tokenizer
            answer = tokenizer(self.answer, add_special_tokens=False)["input_ids"]
            answer = answer[: self.settings.max_answer_tokens]
            room = loaded.context_length - len(answer)
            rows = [
                encode_messages(tokenizer, [{"role": "user", "content": p}])[-room:] + answer
                for p in prompts
            ]
            width = max(len(r) for r in rows)
            pad = tokenizer.pad_token_id
            ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            logits = loaded.model(
                input_ids=ids.to(loaded.device),
                attention_mask=mask.to(loaded.device),
                position_ids=positions.to(loaded.device),
                logits_to_keep=len(answer) + 1,
            ).logits[:, :-1].float()
            targets = torch.tensor(answer, device=logits.device).expand(len(rows), -1)
            logprobs = torch.log_softmax(logits, dim=-1).gather(-1, targets[..., None])
            return logprobs.squeeze(-1).sum(-1).cpu().numpy().astype(float)


class _WordTokenizer:
    """What shap's Text masker needs from a tokenizer: one 'token' per whitespace word."""

    def __call__(self, text: str, return_offsets_mapping: bool = False) -> dict:
        ends = [m.end() for m in WORD.finditer(text)]
        # each segment starts after the previous word, so a masked word keeps its space
        spans = list(zip([0, *ends][: len(ends)], ends, strict=True))
        out = {"input_ids": list(range(1, len(spans) + 1))}
        if return_offsets_mapping:
            out["offset_mapping"] = spans
        return out


def shap_values(score: Callable, prompt: str, *, max_evals: int, batch_size: int) -> np.ndarray:
    """Owen values from shap's Partition explainer with a word-level Text masker.

    Averaging over both contexts of every split needs about M^2 evaluations for M words,
    and a smaller budget leaves whole groups of words with one shared value. Below that,
    the sibling group stays present (fixed_context=1): every word gets its own value from
    2(M - 1) evaluations, and the values still sum to full minus fully-masked score.
    """
    import shap

    masker = shap.maskers.Text(_WordTokenizer(), mask_token=MASK, collapse_mask_token=False)
    explainer = shap.explainers.Partition(score, masker)
    words = len(split_words(prompt))
    result = explainer(
        [prompt],
        max_evals=max_evals,
        batch_size=batch_size,
        fixed_context=1 if max_evals < words * words else None,
        silent=True,
    )
    return np.asarray(result.values[0], dtype=float)


def lime_values(
    score: Callable, prompt: str, *, full_score: float, answer_tokens: int, samples: int, seed: int
) -> np.ndarray:
    """LIME weights per word position.

    LIME fits a linear model to class probabilities, so the score is wrapped as a
    two-class output: p = sigmoid(per-token change of the answer's log-likelihood
    against the whole prompt). p = 0.5 for the whole prompt, falls towards 0 when
    masking words makes the answer less likely; dividing by the answer's length keeps
    the change in a range where the sigmoid does not saturate.
    """
    from lime.lime_text import LimeTextExplainer

    def probabilities(texts: list[str]) -> np.ndarray:
        change = (score(texts) - full_score) / answer_tokens
        p = 1.0 / (1.0 + np.exp(-change))
        return np.column_stack([1.0 - p, p])

    words = split_words(prompt)
    explainer = LimeTextExplainer(
        split_expression=r"\s+", bow=False, mask_string=MASK, random_state=seed
    )
    result = explainer.explain_instance(
        prompt, probabilities, labels=(1,), num_features=len(words), num_samples=samples
    )
    weights = np.zeros(len(words))
    for index, weight in result.as_map()[1]:
        weights[index] = weight
    return weights


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return float(spearmanr(a, b).statistic)


@dataclass
class ExplainService:
    resolver: ModelResolver
    cache: ExplanationCache

    @property
    def models(self) -> ModelService:
        return self.resolver.models

    def target(self, spec: str | None) -> ResolvedModel:
        """Fixed weights only ('base' when empty): few-shot prompting has none to explain."""
        resolved = self.resolver.resolve(spec or BASE)
        if resolved.fewshot:
            raise NotFound(f"{resolved.spec!r} has no fixed weights: use 'base' or an adapter")
        return resolved

    def generate_answer(self, prompt: str, *, model: str | None = None, max_new_tokens: int = 64):
        """The model's own greedy answer, for a typed prompt that has none yet."""
        if not prompt.strip():
            raise InvalidInput("the prompt is empty")
        answers = answer_prompts(
            self.models, self.target(model), [prompt], max_new_tokens=max_new_tokens
        )
        return answers[0]["answer"]

    def explain(
        self,
        prompt: str,
        answer: str,
        *,
        model: str | None = None,
        settings: ExplainSettings | None = None,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
        use_cache: bool = True,
    ) -> Explanation:
        settings = settings or ExplainSettings()
        words = split_words(prompt)
        if not words:
            raise InvalidInput("the prompt to explain is empty")
        if len(words) > settings.max_words:
            raise InvalidInput(
                f"the prompt has {len(words)} words; explanations are limited to "
                f"{settings.max_words} (setting max_words)"
            )
        target = self.target(model)
        prompt = " ".join(words)
        key_settings = asdict(settings)
        version = target.weights_version
        if use_cache and (hit := self.cache.get(version, prompt, answer, key_settings)):
            return Explanation(**{**hit, "model": target.spec, "cached": True})
        result = self._compute(target, prompt, words, answer, settings, progress, cancel)
        self.cache.put(version, prompt, answer, key_settings, _cacheable(result))
        return result

    def _compute(self, target, prompt, words, answer, settings, progress, cancel) -> Explanation:
        started = time.perf_counter()
        planned = 2 + settings.max_evals * len(settings.methods)
        done = [0]

        def advance(n: int) -> None:
            done[0] += n
            if progress is not None:
                progress(min(done[0], planned), planned)

        scorer = AnswerScorer(
            self.models, target, answer, settings=settings, on_batch=advance, cancel=cancel
        )
        full, masked = scorer([prompt, " ".join([MASK] * len(words))])
        answer_tokens = self._answer_tokens(answer, settings)
        shap_v = lime_v = None
        if "shap" in settings.methods:
            shap_v = shap_values(
                scorer, prompt, max_evals=settings.max_evals, batch_size=settings.batch_size
            )
        if "lime" in settings.methods:
            lime_v = lime_values(
                scorer,
                prompt,
                full_score=float(full),
                answer_tokens=answer_tokens,
                samples=settings.max_evals,
                seed=settings.seed,
            )
        return Explanation(
            model=target.spec,
            model_version=target.weights_version,
            prompt=prompt,
            answer=answer,
            words=words,
            full_score=float(full),
            masked_score=float(masked),
            shap=None if shap_v is None else shap_v.tolist(),
            lime=None if lime_v is None else lime_v.tolist(),
            agreement=None if shap_v is None or lime_v is None else spearman(shap_v, lime_v),
            evaluations=scorer.evaluations,
            seconds=time.perf_counter() - started,
            settings=asdict(settings),
        )

    def _answer_tokens(self, answer: str, settings: ExplainSettings) -> int:
        tokenizer = self.models.get().tokenizer
        count = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        return max(1, min(count, settings.max_answer_tokens))


def _cacheable(result: Explanation) -> dict:
    row = asdict(replace(result, cached=False))
    row.pop("model")
    row.pop("cached")
    return row
