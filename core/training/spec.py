"""What a training run is asked to do: a validated, serialisable LoRA fine-tuning spec."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from core.errors import InvalidInput

SCHEDULES = ("cosine", "linear")
PRECISIONS = ("auto", "fp32", "bf16")  # auto: bf16 autocast where the hardware has native bf16
KINDS = ("sft", "text", "preference", "embedding")  # dataset kinds a run can train on
AUTO_TARGETS = "all-linear"  # peft's name for every linear layer except the output head
# sentence-transformers losses an embedding (retriever) run may use; LoRA fields do not apply
EMBEDDING_LOSSES = ("MultipleNegativesRankingLoss", "CosineSimilarityLoss", "TripletLoss")


@dataclass(frozen=True, kw_only=True)
class TrainingSpec:
    base_model: str
    dataset_id: str | None = None
    name: str = ""
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.1
    target_modules: str | tuple[str, ...] = AUTO_TARGETS
    learning_rate: float = 2e-4
    warmup_ratio: float = 0.05
    schedule: str = "cosine"
    epochs: float = 3
    batch_size: int = 4
    grad_accumulation: int = 4
    max_length: int = 512
    weight_decay: float = 0.0
    seed: int = 0
    max_steps: int | None = None  # optimizer steps; caps epochs when set
    checkpoint_every: int = 50
    eval_every: int | None = None  # None: evaluate about ten times per run
    init_adapter: str | None = None  # continue from this adapter ("incremental update")
    quantize_4bit: bool = False  # QLoRA; needs a CUDA GPU and bitsandbytes
    precision: str = "auto"
    dpo_beta: float = 0.1  # preference runs: how far the adapter may move from the base model
    embedding_loss: str = "MultipleNegativesRankingLoss"  # embedding runs only
    early_stopping_patience: int | None = None  # evaluations without a better val loss

    def __post_init__(self) -> None:
        if not str(self.base_model).strip():
            raise InvalidInput("base_model is empty")
        if isinstance(self.target_modules, list):
            object.__setattr__(self, "target_modules", tuple(self.target_modules))
        checks = [
            (self.lora_rank >= 1, "lora_rank must be at least 1"),
            (self.lora_alpha > 0, "lora_alpha must be positive"),
            (0 <= self.lora_dropout < 1, "lora_dropout must be in [0, 1)"),
            (0 < self.learning_rate < 1, "learning_rate must be in (0, 1)"),
            (0 <= self.warmup_ratio < 1, "warmup_ratio must be in [0, 1)"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}"),
            (0 < self.epochs <= 100, "epochs must be in (0, 100]"),
            (1 <= self.batch_size <= 1024, "batch_size must be 1-1024"),
            (1 <= self.grad_accumulation <= 1024, "grad_accumulation must be 1-1024"),
            (8 <= self.max_length <= 32768, "max_length must be 8-32768"),
            (0 <= self.weight_decay < 1, "weight_decay must be in [0, 1)"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be at least 1"),
            (self.checkpoint_every >= 1, "checkpoint_every must be at least 1"),
            (self.eval_every is None or self.eval_every >= 1, "eval_every must be at least 1"),
            (bool(self.target_modules), "target_modules is empty"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (0 < self.dpo_beta <= 10, "dpo_beta must be in (0, 10]"),
            (self.embedding_loss in EMBEDDING_LOSSES,
             f"embedding_loss must be one of {', '.join(EMBEDDING_LOSSES)}"),
            (self.early_stopping_patience is None or self.early_stopping_patience >= 1,
             "early_stopping_patience must be at least 1"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidInput(message)

    @property
    def effective_batch(self) -> int:
        return self.batch_size * self.grad_accumulation

    def total_steps(self, n_train: int) -> int:
        per_epoch = math.ceil(math.ceil(n_train / self.batch_size) / self.grad_accumulation)
        steps = max(1, math.ceil(per_epoch * self.epochs))
        return min(steps, self.max_steps) if self.max_steps else steps

    def to_dict(self) -> dict:
        data = asdict(self)
        if isinstance(self.target_modules, tuple):
            data["target_modules"] = list(self.target_modules)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> TrainingSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidInput(f"unknown training option(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as error:
            raise InvalidInput(f"bad training options: {error}") from error


def incremental_update(spec: TrainingSpec, *, init_adapter: str) -> TrainingSpec:
    """The 'incremental update' preset: continue an adapter gently on only the new examples."""
    return replace(
        spec,
        init_adapter=init_adapter,
        learning_rate=spec.learning_rate / 10,
        epochs=max(1, spec.epochs / 3),
        warmup_ratio=0.0,
    )


# The preset names: the CLI, the API, the Train tab and retraining all spell them from here.
DEFAULT, QUICK_TEST, INCREMENTAL = "default", "quick test", "incremental update"
TEACH, CORRECT = "teach documents", "learn corrections"
RECIPES = (TEACH, CORRECT)  # presets that go with a dataset built by the recipe of that name
PRESETS = {
    DEFAULT: "LoRA r16/α32 on all linear layers, lr 2e-4 cosine, 3 epochs",
    QUICK_TEST: "a few steps to check the pipeline end to end",
    INCREMENTAL: "continue an existing adapter on only new examples, 10x lower lr",
    TEACH: "learn the documents' facts: several questions per fact, grounded variants, "
           "general replay; lr 1e-3, enough passes for small data",
    CORRECT: "make corrected answers stick under reworded questions: many passes over "
             "paraphrased prompts with general replay, lr 1e-3",
}
# Knowledge needs many passes: at least this many optimizer steps and epochs, at most MAX_EPOCHS.
RECIPE_BUDGET = {TEACH: (60, 3), CORRECT: (50, 5)}
# Corrections are short: their grounded turns are fitted (passages cut) to this many tokens.
RECIPE_MAX_LENGTH = {TEACH: 512, CORRECT: 256}
MAX_EPOCHS = 20


def recipe_spec(spec: TrainingSpec, recipe: str, n_rows: int) -> TrainingSpec:
    """A budget that scales with the data: small data gets more epochs, large data fewer."""
    min_steps, min_epochs = RECIPE_BUDGET[recipe]
    batch = 8
    epochs = max(min_epochs, math.ceil(min_steps * batch / max(n_rows, 1)))
    return replace(spec, learning_rate=1e-3, lora_dropout=0.05, warmup_ratio=0.03,
                   batch_size=batch, grad_accumulation=1, epochs=min(epochs, MAX_EPOCHS),
                   max_length=RECIPE_MAX_LENGTH[recipe])
