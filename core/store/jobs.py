"""Background jobs of every kind (training, search, evaluation, ...): one table, one row each."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "jobs",
        1,
        (
            """CREATE TABLE IF NOT EXISTS jobs (
                id VARCHAR PRIMARY KEY,
                kind VARCHAR NOT NULL,
                name VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                user_id VARCHAR NOT NULL DEFAULT 'anonymous',
                progress DOUBLE NOT NULL DEFAULT 0,
                eta_s DOUBLE,
                message VARCHAR NOT NULL DEFAULT '',
                error VARCHAR,
                interrupted BOOLEAN NOT NULL DEFAULT false,
                detail JSON NOT NULL DEFAULT '{}',
                result JSON NOT NULL DEFAULT '{}',
                created_at TIMESTAMP NOT NULL,
                started_at TIMESTAMP,
                finished_at TIMESTAMP,
                updated_at TIMESTAMP NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS jobs_kind ON jobs (kind, created_at)",
        ),
    ),
)

JSON_FIELDS = ("detail", "result")


def _decode(row: dict) -> dict:
    return {**row, **{name: json.loads(row[name]) for name in JSON_FIELDS}}


def _encode(fields: dict) -> dict:
    return {k: json.dumps(v) if k in JSON_FIELDS else v for k, v in fields.items()}


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, row: dict) -> None:
        row = _encode({**row, "updated_at": datetime.now()})
        names = ", ".join(row)
        self.db.execute(f"INSERT INTO jobs ({names}) VALUES ({', '.join('?' * len(row))})",
                        list(row.values()))

    def get(self, job_id: str) -> dict | None:
        rows = self.db.fetch_dicts("SELECT * FROM jobs WHERE id = ?", [job_id])
        return _decode(rows[0]) if rows else None

    def list(self, *, kinds: Sequence[str] = (), statuses: Sequence[str] = (),
             limit: int = 200) -> list[dict]:
        sql, params = "SELECT * FROM jobs WHERE true", []
        for column, values in (("kind", kinds), ("status", statuses)):
            if values:
                sql += f" AND {column} IN ({', '.join('?' * len(values))})"
                params += list(values)
        rows = self.db.fetch_dicts(sql + " ORDER BY created_at DESC LIMIT ?", [*params, limit])
        return [_decode(row) for row in rows]

    def update(self, job_id: str, **fields) -> None:
        fields = _encode({**fields, "updated_at": datetime.now()})
        names = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(f"UPDATE jobs SET {names} WHERE id = ?", [*fields.values(), job_id])

    def interrupt(self, *, kinds: Sequence[str], message: str) -> list[str]:
        """Mark the queued and running jobs of `kinds` (left by a dead process) failed."""
        if not kinds:
            return []
        marks = ", ".join("?" * len(kinds))
        rows = self.db.fetch_all(
            "UPDATE jobs SET status = 'failed', interrupted = true, error = ?, eta_s = NULL,"
            f" finished_at = now(), updated_at = now() WHERE kind IN ({marks})"
            " AND status IN ('queued', 'running') RETURNING id",
            [message, *kinds],
        )
        return [row[0] for row in rows]
