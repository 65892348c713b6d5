"""Fine-tunes the sentence-transformers retriever on embedding rows {query, positive, negatives}.

Runs inside the training worker like the LoRA trainer (same events, stop flag and
checkpoints) but trains every weight of the small encoder and writes a whole
sentence-transformers model folder to `run.adapter_dir`. Retrieval quality on the
validation split is measured before and after (core.documents.retrieval_metrics); with
`early_stopping_patience` the run stops once the validation loss stops improving and
keeps the best weights.
"""

from __future__ import annotations

import math
import random
import shutil
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from core.documents.retrieval_metrics import evaluate_encoder
from core.training.distributed import Ranks
from core.training.events import RunFolder, read_jsonl
from core.training.loop import StepLoop

MNRL, COSINE, TRIPLET = "MultipleNegativesRankingLoss", "CosineSimilarityLoss", "TripletLoss"
NEEDS_NEGATIVES = (COSINE, TRIPLET)


@dataclass(frozen=True)
class Example:
    texts: tuple[str, ...]  # the loss's input columns
    label: float
    key: str | None  # MNRL: the positive, never twice in one batch (it would be its own negative)


def make_examples(rows: list[dict], loss: str) -> list[Example]:
    """The rows in the column layout each loss expects."""
    if loss == MNRL:
        triplets = bool(rows) and all(row["negatives"] for row in rows)
        return [Example((r["query"], r["positive"], *r["negatives"][:1 if triplets else 0]),
                        0.0, r["positive"]) for r in rows]
    if loss == TRIPLET:
        return [Example((r["query"], r["positive"], n), 0.0, None)
                for r in rows for n in r["negatives"]]
    examples = []
    for r in rows:
        examples.append(Example((r["query"], r["positive"]), 1.0, None))
        examples.extend(Example((r["query"], n), 0.0, None) for n in r["negatives"])
    return examples


def check_loss_rows(rows: list[dict], loss: str) -> str | None:
    """Why these rows cannot train with this loss, or None."""
    if loss in NEEDS_NEGATIVES and not any(row.get("negatives") for row in rows):
        return (f"{loss} needs rows with negatives and none has any; "
                f"use {MNRL}, which takes the other rows of a batch as negatives")
    return None


def spread(keys: list[str | None], order: list[int]) -> list[int]:
    """`order` re-sequenced round-robin over equal keys, so repeats land far apart."""
    groups: dict[object, list[int]] = defaultdict(list)
    for i in order:
        groups[keys[i] if keys[i] is not None else ("unique", i)].append(i)
    queues = list(groups.values())
    out: list[int] = []
    depth = 0
    while len(out) < len(order):
        out.extend(queue[depth] for queue in queues if depth < len(queue))
        depth += 1
    return out


def batch_plan(keys: list[str | None], *, batch_size: int, grad_accumulation: int,
               total_steps: int, seed: int) -> list[list[list[int]]]:
    """Optimizer steps -> micro-batches -> example indices; reshuffled every epoch."""
    rng = random.Random(seed)
    batches: list[list[int]] = []
    while len(batches) < total_steps * grad_accumulation:
        order = list(range(len(keys)))
        rng.shuffle(order)
        ordered = spread(keys, order)
        batches.extend(ordered[s:s + batch_size] for s in range(0, len(ordered), batch_size))
    return [batches[s * grad_accumulation:(s + 1) * grad_accumulation]
            for s in range(total_steps)]


def build_loss(name: str, model):
    from sentence_transformers.sentence_transformer import losses

    return getattr(losses, name)(model)


class EmbeddingTrainer(StepLoop):
    def __init__(self, run: RunFolder, events, stop: threading.Event, ranks: Ranks) -> None:
        import torch

        if ranks.world > 1:  # a 22M-parameter encoder gains nothing from data parallelism
            raise ValueError("embedding runs train in one process; unset REFINERY_TRAIN_PROCESSES")
        super().__init__(run, events, stop, ranks)
        self.device = "cuda" if torch.cuda.is_available() else "cpu"

    # --- setting up -------------------------------------------------------------------------

    def prepare(self) -> None:
        import torch

        torch.manual_seed(self.spec.seed)
        checkpoint = self.run.latest_checkpoint()
        source = str(checkpoint or self.job["model_path"])
        self.events.emit("log", message=f"loading retriever {self.spec.base_model} "
                                        f"on {self.device}")
        self.model = self.load(source)
        self.model.max_seq_length = min(self.spec.max_length, self.model.max_seq_length)
        self.loss = build_loss(self.spec.embedding_loss, self.model)
        self.train_rows = read_jsonl(self.run.train_path)
        self.validation_rows = read_jsonl(self.run.validation_path)
        problem = check_loss_rows(self.train_rows, self.spec.embedding_loss)
        if problem:
            raise ValueError(problem)
        self.train = make_examples(self.train_rows, self.spec.embedding_loss)
        self.validation = make_examples(self.validation_rows, self.spec.embedding_loss)
        self.total_steps = self.spec.total_steps(len(self.train))
        self.plan = batch_plan([e.key for e in self.train], batch_size=self.spec.batch_size,
                               grad_accumulation=self.spec.grad_accumulation,
                               total_steps=self.total_steps, seed=self.spec.seed)
        self.start_optimizer(self.model.parameters())
        self.best = {"loss": math.inf, "step": 0, "bad": 0, "weights": None}
        self.before: dict | None = None
        if checkpoint is not None:
            self.load_checkpoint(checkpoint)  # its weights were loaded above, as the model

    def load(self, source: str):
        from sentence_transformers import SentenceTransformer

        return SentenceTransformer(source, device=self.device, local_files_only=True)

    def save_weights(self, folder: Path) -> None:
        self.model.save(str(folder))

    def extra_state(self) -> dict:
        return {"best": self.best, "before": self.before}

    def restore_extra(self, state: dict) -> None:
        self.best, self.before = state["best"], state["before"]

    def save_model(self) -> None:
        self.replace_output(self.save_weights)

    # --- one step and evaluation ------------------------------------------------------------

    def features(self, examples: list[Example]) -> tuple[list[dict], object, int]:
        """Per column the tokenised texts on the device, the labels, and the real token count."""
        import torch

        columns = []
        tokens = 0
        for texts in zip(*(e.texts for e in examples), strict=True):
            batch = self.model.preprocess(list(texts))
            tokens += int(batch["attention_mask"].sum())
            columns.append({k: v.to(self.device) if isinstance(v, torch.Tensor) else v
                            for k, v in batch.items()})
        labels = torch.tensor([e.label for e in examples], dtype=torch.float32,
                              device=self.device)
        return columns, labels, tokens

    def train_step(self, micro_batches: list[list[int]]) -> tuple[float, int]:
        total, tokens = 0.0, 0
        for group in micro_batches:
            columns, labels, count = self.features([self.train[i] for i in group])
            loss = self.loss(columns, labels) / len(micro_batches)
            loss.backward()
            total += float(loss.detach())
            tokens += count
        self.update(list(self.model.parameters()), total)
        return total, tokens

    def evaluate(self) -> float | None:
        """Mean loss over fixed validation batches (the same batches at every evaluation)."""
        import torch

        if not self.validation:
            return None
        keys = [e.key for e in self.validation]
        ordered = spread(keys, list(range(len(keys))))
        size = self.spec.batch_size
        self.model.eval()
        losses = []
        with torch.no_grad():
            for start in range(0, len(ordered), size):
                group = [self.validation[i] for i in ordered[start:start + size]]
                columns, labels, _ = self.features(group)
                losses.append(float(self.loss(columns, labels)))
        self.model.train()
        return sum(losses) / len(losses)

    def retrieval(self) -> dict | None:
        """Precision/recall/MRR/NDCG@k of the current weights on the held-out queries."""
        if not self.validation_rows:
            return None
        self.model.eval()
        figures = evaluate_encoder(
            lambda texts: self.model.encode(texts, batch_size=64, convert_to_numpy=True,
                                            normalize_embeddings=True, show_progress_bar=False),
            self.validation_rows)
        self.model.train()
        return figures

    def early_stop(self, val_loss: float | None) -> bool:
        """Track the best weights; True once `patience` evaluations brought no improvement."""
        patience = self.spec.early_stopping_patience
        if val_loss is None or patience is None:
            return False
        if val_loss < self.best["loss"] - 1e-6:
            weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            self.best = {"loss": val_loss, "step": self.step, "bad": 0, "weights": weights}
            return False
        self.best["bad"] += 1
        return self.best["bad"] >= patience

    # --- the run ----------------------------------------------------------------------------

    def fit(self) -> dict:
        started = self.started = time.monotonic()
        start_step, tokens_here = self.step, 0
        self.events.emit("start", step=self.step, total_steps=self.total_steps,
                         train_examples=len(self.train), validation_examples=len(self.validation),
                         device=self.device, loss_function=self.spec.embedding_loss)
        if self.step == 0:
            self.before = self.retrieval()
            if self.before:
                self.events.emit("log", message=f"before training: MRR@10 "
                                                f"{self.before['mrr@10']:.3f} on "
                                                f"{self.before['queries']} held-out queries")
        self.model.train()
        losses: list[float] = []
        stopped_early = False
        while self.step < self.total_steps and not self.stop.is_set():
            loss, tokens = self.train_step(self.plan[self.step])
            self.step += 1
            tokens_here += tokens
            self.tokens_seen += tokens
            losses.append(loss)
            self.emit_step(loss, start_step=start_step, tokens_here=tokens_here)
            if self.due(self.eval_every):
                val_loss = self.evaluate()
                self.events.emit("eval", step=self.step, val_loss=val_loss)
                if self.early_stop(val_loss):
                    stopped_early = True
                    self.events.emit("log", message=f"early stopping at step {self.step}: "
                                     f"best validation loss {self.best['loss']:.4f} at step "
                                     f"{self.best['step']}")
                    break
            if self.step % self.spec.checkpoint_every == 0:
                self.save_checkpoint()
        elapsed = time.monotonic() - started
        if self.stop.is_set() and self.step < self.total_steps:
            self.save_checkpoint()  # resume continues from here
            return {"steps": self.step, "total_steps": self.total_steps,
                    "train_loss": losses[-1] if losses else None}
        if self.best["weights"] is not None:
            self.model.load_state_dict(self.best["weights"])
        self.save_model()
        shutil.rmtree(self.run.checkpoints_dir, ignore_errors=True)  # a finished run never resumes
        after = self.retrieval()
        return {
            "steps": self.step, "total_steps": self.total_steps,
            "train_loss": losses[-1] if losses else None,
            "val_loss": self.evaluate(),
            "best_step": self.best["step"] or None, "stopped_early": stopped_early,
            "loss_function": self.spec.embedding_loss,
            "retrieval": {"before": self.before, "after": after},
            "tokens": self.tokens_seen, "tokens_per_s": tokens_here / max(elapsed, 1e-9),
            "duration_s": self.elapsed_before + elapsed,
        }
