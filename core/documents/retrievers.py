"""Retrievers: the embedding models behind document search, fine-tuned from feedback.

A finished embedding run registers its model folder here with its retrieval
evaluation (before and after, on the run's held-out queries). Promoting a retriever
re-embeds the whole chunk store with it and then serves it; a rollback re-embeds with
the one promoted before (or the bundled model). Both are an append-only log written in
the same transaction as the new vectors, so after a restart the studio serves exactly
the model that made the stored vectors.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path

from core.datasets.rows import normalise_row
from core.documents.retrieval import bundled_model_dir
from core.documents.retrieval_metrics import comparison_table, evaluate_encoder
from core.documents.service import DocumentService
from core.errors import InvalidInput, ModelUnavailable, NotFound
from core.serving.registry import Promotions
from core.store.registry import RegistryStore, RetrieverRecord
from core.training.embedding import check_loss_rows
from core.training.events import RunFolder
from core.training.spec import TrainingSpec

BUNDLED = "bundled"  # the all-MiniLM-L6-v2 shipped with the studio
# Sentence-embedding fine-tuning wants a far smaller learning rate than LoRA, and no LoRA.
EMBEDDING_DEFAULTS = {"learning_rate": 5e-5, "epochs": 3, "batch_size": 16,
                      "grad_accumulation": 1, "warmup_ratio": 0.1, "max_length": 256,
                      "checkpoint_every": 200}
METRIC_KEYS = ("train_loss", "val_loss", "best_step", "stopped_early", "steps", "tokens",
               "duration_s")

Progress = Callable[[float, str], None]


class RetrieverService:
    def __init__(self, store: RegistryStore, documents: DocumentService) -> None:
        self.store = store
        self.promotions = Promotions(
            store, promoted="{id} is already the serving retriever",
            nothing="no retriever was promoted, so there is nothing to roll back",
            default=BUNDLED,
        )
        self.documents = documents
        self._lock = threading.Lock()  # one promotion or rollback at a time
        active = self.active()
        if active.id != BUNDLED:  # the stored vectors were made by it: serve it after a restart
            documents.serve(Path(active.model_dir))

    # --- the registry -----------------------------------------------------------------------

    def bundled(self) -> RetrieverRecord:
        return RetrieverRecord(
            id=BUNDLED, name="all-MiniLM-L6-v2", model_dir=str(bundled_model_dir()),
            base_model=BUNDLED, job_id=None, dataset_id=None, dataset_version=None,
            loss_function="", config={}, metrics={}, evaluation={},
            created_at=datetime.fromtimestamp(0),
        )

    def get(self, retriever_id: str) -> RetrieverRecord:
        if retriever_id == BUNDLED:
            return self.bundled()
        record = self.store.get(retriever_id)
        if record is None:
            raise NotFound(f"no retriever {retriever_id!r}")
        return record

    def list(self) -> list[RetrieverRecord]:
        """Fine-tuned retrievers, newest first, then the bundled one."""
        return [*self.store.list(), self.bundled()]

    def active(self) -> RetrieverRecord:
        return self.get(self.promotions.top())

    def history(self) -> list[dict]:
        return self.promotions.history()

    def register_run(self, job, metrics: dict) -> RetrieverRecord:
        """Called by the training runner when an embedding run completed; idempotent."""
        retriever_id = f"retriever-{job.id}"
        existing = self.store.get(retriever_id)
        if existing is not None:
            return existing
        record = RetrieverRecord(
            id=retriever_id, name=job.name,
            model_dir=str(RunFolder(Path(job.run_dir)).adapter_dir),
            base_model=job.spec["base_model"], job_id=job.id, dataset_id=job.dataset_id,
            dataset_version=job.dataset_version, loss_function=job.spec["embedding_loss"],
            config=job.spec, metrics={k: metrics.get(k) for k in METRIC_KEYS},
            evaluation=metrics.get("retrieval") or {}, created_at=datetime.now(),
        )
        self.store.add(record)
        return record

    def evaluation_table(self, retriever_id: str) -> list[dict]:
        """Before/after figures of a fine-tuned retriever on its run's held-out queries."""
        evaluation = self.get(retriever_id).evaluation
        return comparison_table(evaluation.get("before"), evaluation.get("after"))

    def evaluate(self, retriever_ids: Sequence[str], rows: Sequence[dict]) -> dict[str, dict]:
        """Retrieval metrics of each retriever on these embedding rows' queries."""
        if not rows:
            raise InvalidInput("no held-out rows to evaluate on")
        rows = [normalise_row("embedding", row, i) for i, row in enumerate(rows)]
        serving = self.active().id
        results = {}
        for retriever_id in dict.fromkeys(retriever_ids):
            record = self.get(retriever_id)
            embedder = (self.documents.retriever if record.id == serving
                        else self.documents.embedder_for(self._folder(record)))
            results[record.id] = evaluate_encoder(embedder.embed, rows)
        return results

    # --- training ---------------------------------------------------------------------------

    def make_spec(self, options: dict | None = None, *,
                  dataset_id: str | None = None) -> TrainingSpec:
        """An embedding run's spec: fine-tune the serving retriever unless told otherwise."""
        options = {"base_model": self.active().id, **EMBEDDING_DEFAULTS, **(options or {})}
        if dataset_id:
            options["dataset_id"] = dataset_id
        return TrainingSpec.from_dict(options)

    def training_source(self, spec: TrainingSpec, rows: Sequence[dict], *,
                        default_model: str) -> tuple[TrainingSpec, str]:
        """(spec naming its retriever, model folder) for an embedding run; the studio's chat
        model as base means 'the serving retriever'."""
        base = spec.base_model
        if base == default_model:
            base = self.active().id
        if base != BUNDLED and self.store.get(base) is None:
            raise InvalidInput(f"an embedding run starts from {BUNDLED!r} or a registered "
                               f"retriever id, not {base!r}")
        problem = check_loss_rows(list(rows), spec.embedding_loss)
        if problem:
            raise InvalidInput(problem)
        return replace(spec, base_model=base), str(self._folder(self.get(base)))

    # --- serving ----------------------------------------------------------------------------

    def promote(self, retriever_id: str, *, user: str = "anonymous",
                progress: Progress | None = None) -> RetrieverRecord:
        """Re-embed the chunk store with this retriever, then serve it."""
        with self._lock:
            record = self.get(retriever_id)
            self.promotions.promote(record.id, user=user, switch=self._switch(progress))
            return record

    def rollback(self, *, user: str = "anonymous",
                 progress: Progress | None = None) -> RetrieverRecord:
        """Undo the latest promotion: re-embed with the retriever served before it."""
        with self._lock:
            return self.get(self.promotions.rollback(user=user, switch=self._switch(progress)))

    def _switch(self, progress: Progress | None):
        """Re-embed every chunk with the target; the log is written with the new vectors."""

        def switch(target: str, log) -> None:
            folder = self._folder(self.get(target))
            self.documents.reembed(folder, then=lambda con, chunks: log(con, chunks=chunks),
                                   progress=progress)

        return switch

    @staticmethod
    def _folder(record: RetrieverRecord) -> Path:
        folder = Path(record.model_dir)
        if not (folder / "modules.json").is_file():
            raise ModelUnavailable(f"the model folder of retriever {record.id} is missing")
        return folder
