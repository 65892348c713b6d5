"""The model registry: registered adapters and the log of promotions and rollbacks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "registry",
        1,
        (
            """CREATE TABLE IF NOT EXISTS registered_models (
                id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                base_model VARCHAR NOT NULL,
                adapter_dir VARCHAR NOT NULL,
                job_id VARCHAR,
                config JSON NOT NULL,
                dataset_id VARCHAR,
                dataset_version VARCHAR,
                metrics JSON NOT NULL,
                duration_s DOUBLE,
                lineage JSON NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS model_promotions (
                seq INTEGER PRIMARY KEY,
                action VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
                model_id VARCHAR,
                user_id VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
        ),
    ),
)


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    id: str
    name: str
    base_model: str
    adapter_dir: str
    job_id: str | None
    config: dict
    dataset_id: str | None
    dataset_version: str | None
    metrics: dict
    duration_s: float | None
    lineage: dict
    created_at: datetime


def _record(row: dict) -> ModelRecord:
    row = dict(row)
    for key in ("config", "metrics", "lineage"):
        row[key] = json.loads(row[key])
    return ModelRecord(**row)


class RegistryStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, model: ModelRecord) -> None:
        self.db.execute(
            "INSERT INTO registered_models VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [model.id, model.name, model.base_model, model.adapter_dir, model.job_id,
             json.dumps(model.config), model.dataset_id, model.dataset_version,
             json.dumps(model.metrics), model.duration_s, json.dumps(model.lineage),
             model.created_at],
        )

    def get(self, model_id: str) -> ModelRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM registered_models WHERE id = ?", [model_id])
        return _record(rows[0]) if rows else None

    def by_job(self, job_id: str) -> ModelRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM registered_models WHERE job_id = ?", [job_id])
        return _record(rows[0]) if rows else None

    def list(self) -> list[ModelRecord]:
        rows = self.db.fetch_dicts("SELECT * FROM registered_models ORDER BY created_at DESC")
        return [_record(row) for row in rows]

    def rename(self, model_id: str, name: str) -> None:
        self.db.execute("UPDATE registered_models SET name = ? WHERE id = ?", [name, model_id])

    def delete(self, model_id: str) -> None:
        self.db.execute("DELETE FROM registered_models WHERE id = ?", [model_id])

    def log_action(self, action: str, model_id: str | None, user: str) -> None:
        with self.db.transaction() as con:
            row = con.execute("SELECT coalesce(max(seq), 0) FROM model_promotions").fetchone()
            con.execute("INSERT INTO model_promotions VALUES (?, ?, ?, ?, ?)",
                        [int(row[0]) + 1, action, model_id, user, datetime.now()])

    def actions(self) -> list[dict]:
        return self.db.fetch_dicts(
            "SELECT seq, action, model_id, user_id, created_at FROM model_promotions ORDER BY seq"
        )
