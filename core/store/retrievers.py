"""Fine-tuned retrievers (embedding models) and the log of their promotions and rollbacks."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "retrievers",
        1,
        (
            """CREATE TABLE IF NOT EXISTS retrievers (
                id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                model_dir VARCHAR NOT NULL,
                base_model VARCHAR NOT NULL,
                job_id VARCHAR,
                dataset_id VARCHAR,
                dataset_version VARCHAR,
                loss_function VARCHAR NOT NULL,
                config JSON NOT NULL,
                metrics JSON NOT NULL,
                evaluation JSON NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS retriever_actions (
                seq INTEGER PRIMARY KEY,
                action VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
                retriever_id VARCHAR NOT NULL,
                chunks INTEGER NOT NULL,
                user_id VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
        ),
    ),
)


@dataclass(frozen=True, kw_only=True)
class RetrieverRecord:
    id: str
    name: str
    model_dir: str
    base_model: str
    job_id: str | None
    dataset_id: str | None
    dataset_version: str | None
    loss_function: str
    config: dict
    metrics: dict
    evaluation: dict  # {"before": {...} | None, "after": {...} | None} on held-out queries
    created_at: datetime


def _record(row: dict) -> RetrieverRecord:
    row = dict(row)
    for key in ("config", "metrics", "evaluation"):
        row[key] = json.loads(row[key])
    return RetrieverRecord(**row)


class RetrieverStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, record: RetrieverRecord) -> None:
        self.db.execute(
            "INSERT INTO retrievers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [record.id, record.name, record.model_dir, record.base_model, record.job_id,
             record.dataset_id, record.dataset_version, record.loss_function,
             json.dumps(record.config), json.dumps(record.metrics),
             json.dumps(record.evaluation), record.created_at],
        )

    def get(self, retriever_id: str) -> RetrieverRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM retrievers WHERE id = ?", [retriever_id])
        return _record(rows[0]) if rows else None

    def list(self) -> list[RetrieverRecord]:
        rows = self.db.fetch_dicts("SELECT * FROM retrievers ORDER BY created_at DESC, id")
        return [_record(row) for row in rows]

    @staticmethod
    def log_action(con, action: str, retriever_id: str, chunks: int, user: str) -> None:
        """Append to the log on `con`, inside the caller's transaction (the re-embedding's)."""
        row = con.execute("SELECT coalesce(max(seq), 0) FROM retriever_actions").fetchone()
        con.execute("INSERT INTO retriever_actions VALUES (?, ?, ?, ?, ?, ?)",
                    [int(row[0]) + 1, action, retriever_id, chunks, user, datetime.now()])

    def actions(self) -> list[dict]:
        return self.db.fetch_dicts(
            "SELECT seq, action, retriever_id, chunks, user_id, created_at"
            " FROM retriever_actions ORDER BY seq"
        )
