"""The registry: registered models of each kind (LoRA adapters, fine-tuned retrievers) and
one log of their promotions and rollbacks."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime

from core.store.database import Database, Migration

# The tables before adapters and retrievers shared one registry; created here when missing so
# the fold below reads them whatever the store held.
_OLD_TABLES = (
    """CREATE TABLE IF NOT EXISTS registered_models (
        id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, base_model VARCHAR NOT NULL,
        adapter_dir VARCHAR NOT NULL, job_id VARCHAR, config JSON NOT NULL,
        dataset_id VARCHAR, dataset_version VARCHAR, metrics JSON NOT NULL,
        duration_s DOUBLE, lineage JSON NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS model_promotions (
        seq INTEGER PRIMARY KEY, action VARCHAR NOT NULL, model_id VARCHAR,
        user_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS retrievers (
        id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, model_dir VARCHAR NOT NULL,
        base_model VARCHAR NOT NULL, job_id VARCHAR, dataset_id VARCHAR,
        dataset_version VARCHAR, loss_function VARCHAR NOT NULL, config JSON NOT NULL,
        metrics JSON NOT NULL, evaluation JSON NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS retriever_actions (
        seq INTEGER PRIMARY KEY, action VARCHAR NOT NULL, retriever_id VARCHAR NOT NULL,
        chunks INTEGER NOT NULL, user_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)""",
)

MIGRATIONS = (
    Migration(
        "registry",
        2,
        (
            *_OLD_TABLES,
            """CREATE TABLE IF NOT EXISTS registry_entries (
                kind VARCHAR NOT NULL CHECK (kind IN ('adapter', 'retriever')),
                id VARCHAR NOT NULL,
                name VARCHAR NOT NULL,
                base_model VARCHAR NOT NULL,
                path VARCHAR NOT NULL,  -- the adapter or model folder
                job_id VARCHAR,
                dataset_id VARCHAR,
                dataset_version VARCHAR,
                config JSON NOT NULL,
                metrics JSON NOT NULL,
                duration_s DOUBLE,  -- adapters
                lineage JSON,  -- adapters
                loss_function VARCHAR,  -- retrievers
                evaluation JSON,  -- retrievers: held-out retrieval before and after
                created_at TIMESTAMP NOT NULL,
                PRIMARY KEY (kind, id)
            )""",
            """CREATE TABLE IF NOT EXISTS registry_actions (
                seq INTEGER PRIMARY KEY,
                kind VARCHAR NOT NULL CHECK (kind IN ('adapter', 'retriever')),
                action VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
                entry_id VARCHAR,
                chunks INTEGER,  -- retrievers: the chunks re-embedded
                user_id VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            """INSERT INTO registry_entries
               SELECT 'adapter', id, name, base_model, adapter_dir, job_id, dataset_id,
                      dataset_version, config, metrics, duration_s, lineage, NULL, NULL,
                      created_at
               FROM registered_models""",
            """INSERT INTO registry_entries
               SELECT 'retriever', id, name, base_model, model_dir, job_id, dataset_id,
                      dataset_version, config, metrics, NULL, NULL, loss_function, evaluation,
                      created_at
               FROM retrievers""",
            """INSERT INTO registry_actions
               SELECT seq, 'adapter', action, model_id, NULL, user_id, created_at
               FROM model_promotions""",
            """INSERT INTO registry_actions
               SELECT seq + (SELECT coalesce(max(seq), 0) FROM model_promotions), 'retriever',
                      action, retriever_id, chunks, user_id, created_at
               FROM retriever_actions""",
            "DROP TABLE registered_models",
            "DROP TABLE model_promotions",
            "DROP TABLE retrievers",
            "DROP TABLE retriever_actions",
        ),
    ),
)


@dataclass(frozen=True, kw_only=True)
class ModelRecord:
    """A registered LoRA adapter."""

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


@dataclass(frozen=True, kw_only=True)
class RetrieverRecord:
    """A fine-tuned retriever (embedding model)."""

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


@dataclass(frozen=True)
class Kind:
    """How one kind of registered model maps onto the shared tables."""

    name: str
    record: type
    path: str  # the record's field stored in the `path` column
    history_id: str  # what the history calls the entry id
    history_extra: tuple[str, ...] = ()  # further action columns the history shows


ADAPTER = Kind("adapter", ModelRecord, "adapter_dir", "model_id")
RETRIEVER = Kind("retriever", RetrieverRecord, "model_dir", "retriever_id", ("chunks",))
_JSON = ("config", "metrics", "lineage", "evaluation")


class RegistryStore:
    """The entries and actions of one kind."""

    def __init__(self, db: Database, kind: Kind) -> None:
        self.db = db
        self.kind = kind

    def _record(self, row: dict):
        values = {f.name: row["path" if f.name == self.kind.path else f.name]
                  for f in fields(self.kind.record)}
        for key in _JSON:
            if key in values:
                values[key] = json.loads(values[key])
        return self.kind.record(**values)

    def _select(self, condition: str, params: list, order: str = "") -> list:
        rows = self.db.fetch_dicts(
            f"SELECT * FROM registry_entries WHERE kind = ? AND {condition} {order}",
            [self.kind.name, *params],
        )
        return [self._record(row) for row in rows]

    def add(self, record) -> None:
        row = {f.name: getattr(record, f.name) for f in fields(record)}
        row["path"] = row.pop(self.kind.path)
        for key in _JSON:
            if key in row:
                row[key] = json.dumps(row[key])
        names = ", ".join(["kind", *row])
        marks = ", ".join("?" for _ in range(len(row) + 1))
        self.db.execute(f"INSERT INTO registry_entries ({names}) VALUES ({marks})",
                        [self.kind.name, *row.values()])

    def get(self, entry_id: str):
        found = self._select("id = ?", [entry_id])
        return found[0] if found else None

    def by_job(self, job_id: str):
        found = self._select("job_id = ?", [job_id])
        return found[0] if found else None

    def list(self) -> list:
        return self._select("TRUE", [], "ORDER BY created_at DESC, id")

    def rename(self, entry_id: str, name: str) -> None:
        self.db.execute("UPDATE registry_entries SET name = ? WHERE kind = ? AND id = ?",
                        [name, self.kind.name, entry_id])

    def delete(self, entry_id: str) -> None:
        self.db.execute("DELETE FROM registry_entries WHERE kind = ? AND id = ?",
                        [self.kind.name, entry_id])

    def log_action(self, action: str, entry_id: str | None, user: str, *, con=None,
                   chunks: int | None = None) -> None:
        """Append to the log; on `con` inside the caller's transaction when given."""
        if con is None:
            with self.db.transaction() as own:
                self.log_action(action, entry_id, user, con=own, chunks=chunks)
            return
        row = con.execute("SELECT coalesce(max(seq), 0) FROM registry_actions").fetchone()
        con.execute("INSERT INTO registry_actions VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [int(row[0]) + 1, self.kind.name, action, entry_id, chunks, user,
                     datetime.now()])

    def actions(self) -> list[dict]:
        """The kind's promotions and rollbacks, oldest first."""
        extra = "".join(f"{name}, " for name in self.kind.history_extra)
        return self.db.fetch_dicts(
            f"""SELECT seq, action, entry_id AS {self.kind.history_id}, {extra}user_id, created_at
                FROM registry_actions WHERE kind = ? ORDER BY seq""",
            [self.kind.name],
        )
