"""The registry: every finished run's model (an adapter or a retriever), and which one of
each kind the studio serves.

Promotions and rollbacks are an append-only log (who, when); the served model of a kind
is what replaying that log leaves on top: a promotion pushes, a rollback pops.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from core.errors import Conflict, InvalidInput, NotFound
from core.store.registry import ModelRecord, RegistryStore

MAX_NAME = 200

# switch(target id, log): serve the target (None: the base model), calling log(con, **extra)
# inside the transaction that makes the switch durable
Switch = Callable[[str | None, Callable[..., None]], None]


class Promotions:
    """The promote/rollback stack of one kind of registered model."""

    def __init__(self, store: RegistryStore, *, promoted: str, nothing: str,
                 default: str | None = None) -> None:
        self.store = store
        self.default = default  # what is served when nothing is promoted (None: the base)
        self.promoted = promoted  # "{id} is already ..."
        self.nothing = nothing  # there is nothing to roll back

    def stack(self) -> list[str]:
        stack: list[str] = []
        id_key = self.store.kind.history_id
        for row in self.store.actions():
            if row["action"] == "promote":
                stack.append(row[id_key])
            elif stack:
                stack.pop()
        return stack

    def top(self) -> str | None:
        """The id served now: the latest promotion left standing, else the default."""
        stack = self.stack()
        return stack[-1] if stack else self.default

    def history(self) -> list[dict]:
        return self.store.actions()

    def promote(self, entry_id: str, *, user: str, switch: Switch | None = None) -> None:
        if self.top() == entry_id:
            raise Conflict(self.promoted.format(id=entry_id))
        self._log("promote", entry_id, entry_id, user, switch)

    def rollback(self, *, user: str, switch: Switch | None = None) -> str | None:
        """Undo the latest promotion; returns the id served now."""
        stack = self.stack()
        if not stack:
            raise Conflict(self.nothing)
        below = stack[-2] if len(stack) > 1 else self.default
        self._log("rollback", stack[-1], below, user, switch)
        return below

    def _log(self, action: str, entry_id: str, target: str | None, user: str,
             switch: Switch | None) -> None:
        user = (user or "").strip() or "anonymous"
        if switch is None:
            self.store.log_action(action, entry_id, user)
            return

        def log(con, **extra) -> None:
            self.store.log_action(action, entry_id, user, con=con, **extra)

        switch(target, log)


class ModelRegistry:
    """The LoRA adapters of finished runs; the promoted one is served by default."""

    def __init__(self, store: RegistryStore) -> None:
        self.store = store
        self.promotions = Promotions(
            store, promoted="{id} is already the promoted model",
            nothing="nothing is promoted, so there is nothing to roll back",
        )

    def register(self, *, model_id: str, name: str, base_model: str, adapter_dir: Path,
                 job_id: str | None, config: dict, dataset_id: str | None,
                 dataset_version: str | None, metrics: dict, duration_s: float | None,
                 lineage: dict) -> ModelRecord:
        existing = self.store.get(model_id)
        if existing is not None:
            return existing  # registering is idempotent: a re-followed run never duplicates
        record = ModelRecord(
            id=model_id, name=name or model_id, base_model=base_model,
            adapter_dir=str(adapter_dir), job_id=job_id, config=config, dataset_id=dataset_id,
            dataset_version=dataset_version, metrics=metrics, duration_s=duration_s,
            lineage=lineage, created_at=datetime.now(),
        )
        self.store.add(record)
        return record

    def get(self, model_id: str) -> ModelRecord:
        record = self.store.get(model_id)
        if record is None:
            raise NotFound(f"no registered model {model_id!r}")
        return record

    def find(self, model_id: str) -> ModelRecord | None:
        return self.store.get(model_id)

    def list(self) -> list[ModelRecord]:
        return self.store.list()

    def by_job(self, job_id: str) -> ModelRecord | None:
        return self.store.by_job(job_id)

    def rename(self, model_id: str, name: str) -> ModelRecord:
        name = (name or "").strip()
        if not name or len(name) > MAX_NAME:
            raise InvalidInput(f"a model name needs 1-{MAX_NAME} characters")
        self.get(model_id)
        self.store.rename(model_id, name)
        return self.get(model_id)

    def delete(self, model_id: str) -> None:
        record = self.get(model_id)
        if model_id in self.promotions.stack():
            raise Conflict(f"{model_id} is (or was) promoted; roll it back before deleting it")
        self.store.delete(model_id)
        shutil.rmtree(record.adapter_dir, ignore_errors=True)

    def active(self) -> ModelRecord | None:
        """The adapter the studio serves by default, or None for the base model."""
        top = self.promotions.top()
        return self.store.get(top) if top else None

    def promote(self, model_id: str, *, user: str = "anonymous") -> ModelRecord:
        record = self.get(model_id)
        self.promotions.promote(model_id, user=user)
        return record

    def rollback(self, *, user: str = "anonymous") -> ModelRecord | None:
        """Undo the latest promotion; returns what is served now (None: the base model)."""
        self.promotions.rollback(user=user)
        return self.active()

    def history(self) -> list[dict]:
        return self.promotions.history()
