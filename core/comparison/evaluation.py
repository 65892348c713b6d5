"""Automatic evaluation: loss/perplexity on references, overlap scores, speed, relevance.

A run evaluates one model spec on a dataset version's validation split or an uploaded set of
prompts with reference answers; it reports progress, can be cancelled, and is stored.
"""

from __future__ import annotations

import csv
import json
import math
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from core.errors import InvalidInput, NotFound, RefineryError
from core.jobs import (
    EVALUATION,
    INTERRUPTED,
    Cancelled,
    Failed,
    JobBoard,
    Progressed,
    Queued,
    Started,
    Succeeded,
)
from core.knowledge.scoring import exact_match, rouge_l, token_f1
from core.serving.generation import GenerationOptions
from core.serving.modelspec import AnswerStream, Embed, ModelResolver, ResolvedModel
from core.store.arena import ArenaStore
from core.store.jobs import JobStore

METRICS = (
    "loss",
    "perplexity",
    "exact_match",
    "token_f1",
    "rouge_l",
    "relevance",
    "groundedness",
    "mean_latency_ms",
    "tokens_per_s",
)
HIGHER_IS_BETTER = {"loss": False, "perplexity": False, "mean_latency_ms": False}
MAX_ITEMS = 5000
REFERENCE_KEYS = ("reference", "response", "answer", "chosen")  # upload and preference rows

Progress = Callable[[int, int], None]
Retrieve = Callable[[str], list[str]]  # prompt -> texts of the retrieved chunks


@dataclass(frozen=True)
class EvalItem:
    id: str
    messages: list[dict]  # the conversation up to the question (ends with a user turn)
    reference: str | None  # None: only reference-free scores
    contexts: list[str] = field(default_factory=list)  # chunks the answer should rest on


def item_from_row(row: dict, index: int) -> EvalItem:
    """An sft row {id, messages} (last = reference answer) or {prompt, reference|response}."""
    row_id = str(row.get("id", index))
    contexts = [str(c) for c in row.get("contexts") or []]
    if isinstance(row.get("messages"), list) and row["messages"]:
        messages = [{"role": m["role"], "content": m["content"]} for m in row["messages"]]
        reference = None
        if messages[-1]["role"] == "assistant":
            reference = messages.pop()["content"]
        if not messages or messages[-1]["role"] != "user":
            raise InvalidInput(f"row {row_id}: the conversation must end with a user question")
        return EvalItem(row_id, messages, reference, contexts)
    prompt = row.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput(f"row {row_id}: needs 'messages' or a non-empty 'prompt'")
    reference = next((row[k] for k in REFERENCE_KEYS if row.get(k) not in (None, "")), None)
    reference = None if reference is None else str(reference)
    return EvalItem(row_id, [{"role": "user", "content": prompt}], reference, contexts)


def read_eval_file(path: Path) -> list[dict]:
    """Rows from .jsonl, .json (a list) or .csv with prompt and reference columns."""
    path = Path(path)
    if path.suffix not in (".jsonl", ".json", ".csv"):
        raise InvalidInput(f"{path.name}: use a .jsonl, .json or .csv file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"{path.name}: cannot read it as UTF-8 text ({error})") from error
    try:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in text.splitlines() if line.strip()]
        if path.suffix == ".json":
            rows = json.loads(text)
            if not isinstance(rows, list):
                raise InvalidInput(f"{path.name}: expected a JSON list of rows")
            return rows
    except json.JSONDecodeError as error:
        raise InvalidInput(f"{path.name}: not valid JSON ({error})") from error
    return list(csv.DictReader(text.splitlines()))


@dataclass(frozen=True, kw_only=True)
class EvalRequest:
    model: str
    dataset_id: str | None = None
    rows: list[dict] | None = None  # an uploaded evaluation set
    source_name: str = "upload"
    max_new_tokens: int = 64
    limit: int | None = None
    use_documents: bool = False  # retrieve chunks per prompt to score groundedness

    def __post_init__(self) -> None:
        if (self.dataset_id is None) == (self.rows is None):
            raise InvalidInput("give either a dataset id or uploaded rows, not both")
        if self.rows is not None and not self.rows:
            raise InvalidInput("the evaluation set is empty")
        if not 1 <= self.max_new_tokens <= 1024:
            raise InvalidInput(f"max_new_tokens must be 1-1024, got {self.max_new_tokens}")
        if self.limit is not None and self.limit < 1:
            raise InvalidInput(f"limit must be at least 1, got {self.limit}")


class EvaluationService:
    def __init__(
        self,
        resolver: ModelResolver,
        store: ArenaStore,
        *,
        datasets=None,
        embed: Embed | None = None,
        retrieve: Retrieve | None = None,
        jobs: JobBoard | None = None,  # where each run's lifecycle is reported
    ) -> None:
        self.resolver = resolver
        self.store = store
        self.jobs = jobs or JobBoard(JobStore(store.db))
        self.store.interrupted_evaluations(INTERRUPTED)
        self.datasets = datasets
        self.embed = embed
        self.retrieve = retrieve
        self._cancels: dict[str, threading.Event] = {}

    # the set to evaluate
    def items(self, request: EvalRequest) -> tuple[list[EvalItem], str]:
        if request.rows is not None:
            rows, source = request.rows, request.source_name
        else:
            if self.datasets is None:
                raise NotFound("datasets are not available in this studio")
            dataset = self.datasets.get(request.dataset_id)
            rows = list(dataset.validation)
            source = f"{dataset.name} v{dataset.version} ({dataset.id}) validation"
            if not rows:
                raise InvalidInput(f"{source} has no rows")
        items = [item_from_row(row, i) for i, row in enumerate(rows[:MAX_ITEMS])]
        return items[: request.limit] if request.limit else items, source

    # runs
    def start(self, request: EvalRequest, *, progress: Progress | None = None) -> str:
        """Validate, store a 'running' row and evaluate in a background thread."""
        run_id, prepared = self._prepare(request)
        thread = threading.Thread(
            target=self._execute, args=(run_id, *prepared, progress), daemon=True
        )
        thread.start()
        return run_id

    def run(
        self,
        request: EvalRequest,
        *,
        progress: Progress | None = None,
        cancel: threading.Event | None = None,
    ) -> dict:
        """Evaluate in the caller's thread (UI: gr.Progress, CLI: tqdm) and return the run;
        setting `cancel` (or calling cancel(run id)) stops it with the results so far."""
        run_id, prepared = self._prepare(request, cancel)
        self._execute(run_id, *prepared, progress)
        return self.get(run_id)

    def cancel(self, run_id: str) -> dict:
        run = self.get(run_id)
        if event := self._cancels.get(run_id):
            event.set()
        return run

    def get(self, run_id: str) -> dict:
        run = self.store.get_evaluation(run_id)
        if run is None:
            raise NotFound(f"no evaluation run with id {run_id!r}")
        return run

    def history(self, limit: int = 50) -> list[dict]:
        return self.store.evaluations(limit)

    def _prepare(self, request: EvalRequest, cancel: threading.Event | None = None):
        resolved = self.resolver.resolve(request.model)
        items, source = self.items(request)
        run_id = uuid.uuid4().hex
        self._cancels[run_id] = cancel or threading.Event()
        self.store.add_evaluation(
            {
                "id": run_id,
                "created_at": datetime.now(),
                "model": resolved.spec,
                "model_version": resolved.version,
                "source": source,
                "status": "running",
                "total": len(items),
            }
        )
        self.jobs.emit(Queued(run_id, EVALUATION, f"evaluate {resolved.spec} on {source}",
                              detail={"model": resolved.spec, "source": source,
                                      "items": len(items)}))
        self.jobs.emit(Started(run_id))
        options = GenerationOptions(max_new_tokens=request.max_new_tokens, temperature=0.0)
        return run_id, (resolved, items, options, request.use_documents)

    def _execute(self, run_id, resolved, items, options, use_documents, progress) -> None:
        cancel = self._cancels[run_id]
        scored: list[dict] = []
        try:
            for done, item in enumerate(items, start=1):
                if cancel.is_set():
                    break
                row = self._score(resolved, item, options, cancel, use_documents)
                if cancel.is_set():
                    break  # an answer cut short by the cancel would skew the scores
                scored.append(row)
                self.store.update_evaluation(run_id, done=done)
                self.jobs.emit(Progressed(run_id, progress=done / len(items),
                                          message=f"scored {done} of {len(items)}"))
                if progress is not None:
                    progress(done, len(items))
            status = "cancelled" if cancel.is_set() else "done"
            metrics = summarise(scored)
            self.store.update_evaluation(
                run_id,
                status=status,
                finished_at=datetime.now(),
                metrics=metrics,
                items=scored,
            )
            ending = Cancelled if status == "cancelled" else Succeeded
            self.jobs.emit(ending(run_id, f"{status}: scored {len(scored)} of {len(items)}",
                                  result={"metrics": metrics}))
        except (RefineryError, RuntimeError, ValueError, OSError) as error:
            self.store.update_evaluation(
                run_id, status="failed", finished_at=datetime.now(), error=str(error)
            )
            self.jobs.emit(Failed(run_id, str(error)))
        finally:
            self._cancels.pop(run_id, None)

    def _score(self, resolved: ResolvedModel, item: EvalItem, options, cancel, grounded) -> dict:
        answer = AnswerStream(self.resolver, resolved, item.messages, options, cancel)
        text = "".join(answer)
        result = answer.result
        row = {
            "id": item.id,
            "prompt": item.messages[-1]["content"],
            "reference": item.reference,
            "answer": text,
            "latency_ms": result.latency_ms,
            "completion_tokens": result.completion_tokens,
            "tokens_per_s": result.tokens_per_s,
        }
        if item.reference is not None:
            nll, count = self._reference_loss(resolved, answer.prompt.input_ids, item.reference)
            row |= {
                "nll": nll,
                "reference_tokens": count,
                "exact_match": exact_match(text, item.reference),
                "token_f1": token_f1(text, item.reference),
                "rouge_l": rouge_l(text, item.reference),
            }
        contexts = item.contexts
        if not contexts and grounded and self.retrieve is not None:
            contexts = self.retrieve(row["prompt"])
        if self.embed is not None:
            vectors = self.embed([text, row["prompt"], *contexts])
            row["relevance"] = float(vectors[0] @ vectors[1])
            if contexts:
                row["groundedness"] = float(np.max(vectors[2:] @ vectors[0]))
        return row

    def _reference_loss(self, resolved, prompt_ids: list[int], reference: str) -> tuple[float, int]:
        """Summed negative log-likelihood of the reference given the prompt (teacher forcing)."""
        import torch

        with self.resolver.models.use(resolved.adapter_dir) as loaded:
            tokenizer = loaded.tokenizer
            target = tokenizer(reference, add_special_tokens=False)["input_ids"]
            if tokenizer.eos_token_id is not None:
                target = [*target, tokenizer.eos_token_id]
            target = target[: loaded.context_length - 1]
            keep = loaded.context_length - len(target)
            ids = [*prompt_ids[-keep:], *target]
            inputs = torch.tensor([ids], device=loaded.device)
            with torch.inference_mode():
                logits = loaded.model(input_ids=inputs).logits[0, :-1].float()
            labels = inputs[0, 1:]
            start = len(ids) - len(target) - 1
            loss = torch.nn.functional.cross_entropy(
                logits[start:], labels[start:], reduction="sum"
            )
        return float(loss), len(target)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [row[key] for row in rows if row.get(key) is not None]
    return sum(values) / len(values) if values else None


def summarise(rows: list[dict]) -> dict:
    """Run-level metrics; loss is per reference token (so perplexity = exp(loss))."""
    tokens = sum(row.get("reference_tokens", 0) for row in rows)
    loss = sum(row["nll"] for row in rows if "nll" in row) / tokens if tokens else None
    seconds = sum(row["latency_ms"] for row in rows) / 1000
    return {
        "items": len(rows),
        "with_reference": sum("nll" in row for row in rows),
        "loss": loss,
        "perplexity": math.exp(loss) if loss is not None and loss < 700 else None,
        "exact_match": _mean(rows, "exact_match"),
        "token_f1": _mean(rows, "token_f1"),
        "rouge_l": _mean(rows, "rouge_l"),
        "relevance": _mean(rows, "relevance"),
        "groundedness": _mean(rows, "groundedness"),
        "mean_latency_ms": _mean(rows, "latency_ms"),
        "tokens_per_s": sum(r["completion_tokens"] for r in rows) / seconds if seconds else None,
    }


def before_after(runs: list[dict]) -> list[dict]:
    """One row per metric, one column per run (named by model), plus the change last - first."""
    labels = [f"{run['model']} ({run['id'][:6]})" for run in runs]
    table = []
    for metric in METRICS:
        values = [(run.get("metrics") or {}).get(metric) for run in runs]
        row = {"metric": metric, **dict(zip(labels, values, strict=True))}
        if len(runs) >= 2 and values[0] is not None and values[-1] is not None:
            row["change"] = values[-1] - values[0]
            row["better"] = (row["change"] > 0) == HIGHER_IS_BETTER.get(metric, True)
        table.append(row)
    return table
