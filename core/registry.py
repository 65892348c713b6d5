"""The model registry: every finished run's adapter, and which one the studio serves.

Promotions and rollbacks are an append-only log (who, when); the served adapter
is what replaying that log leaves on top: a promotion pushes, a rollback pops.
"""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

from core.errors import Conflict, InvalidInput, NotFound
from core.store.registry import ModelRecord, RegistryStore

MAX_NAME = 200


class ModelRegistry:
    def __init__(self, store: RegistryStore) -> None:
        self.store = store

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
        if model_id in self._stack():
            raise Conflict(f"{model_id} is (or was) promoted; roll it back before deleting it")
        self.store.delete(model_id)
        shutil.rmtree(record.adapter_dir, ignore_errors=True)

    def _stack(self) -> list[str]:
        stack: list[str] = []
        for row in self.store.actions():
            if row["action"] == "promote":
                stack.append(row["model_id"])
            elif stack:
                stack.pop()
        return stack

    def active(self) -> ModelRecord | None:
        """The adapter the studio serves by default, or None for the base model."""
        stack = self._stack()
        return self.store.get(stack[-1]) if stack else None

    def promote(self, model_id: str, *, user: str = "anonymous") -> ModelRecord:
        record = self.get(model_id)
        current = self.active()
        if current is not None and current.id == model_id:
            raise Conflict(f"{model_id} is already the promoted model")
        self.store.log_action("promote", model_id, user.strip() or "anonymous")
        return record

    def rollback(self, *, user: str = "anonymous") -> ModelRecord | None:
        """Undo the latest promotion; returns what is served now (None: the base model)."""
        stack = self._stack()
        if not stack:
            raise Conflict("nothing is promoted, so there is nothing to roll back")
        self.store.log_action("rollback", stack[-1], user.strip() or "anonymous")
        return self.active()

    def history(self) -> list[dict]:
        return self.store.actions()
