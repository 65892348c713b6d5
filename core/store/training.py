"""Training jobs and the events their workers report: tables, writes and reads."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "training",
        1,
        (
            """CREATE TABLE IF NOT EXISTS training_jobs (
                id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                spec JSON NOT NULL,
                kind VARCHAR NOT NULL,
                dataset_id VARCHAR,
                dataset_version VARCHAR,
                run_dir VARCHAR NOT NULL,
                pid INTEGER,
                created_at TIMESTAMP NOT NULL,
                started_at TIMESTAMP,
                finished_at TIMESTAMP,
                step INTEGER NOT NULL DEFAULT 0,
                total_steps INTEGER,
                progress DOUBLE NOT NULL DEFAULT 0,
                metrics JSON NOT NULL DEFAULT '{}',
                error VARCHAR,
                events_offset BIGINT NOT NULL DEFAULT 0,
                model_id VARCHAR,
                user_id VARCHAR NOT NULL DEFAULT 'anonymous'
            )""",
            """CREATE TABLE IF NOT EXISTS training_events (
                job_id VARCHAR NOT NULL,
                seq INTEGER NOT NULL,
                type VARCHAR NOT NULL,
                step INTEGER,
                created_at TIMESTAMP NOT NULL,
                payload JSON NOT NULL,
                PRIMARY KEY (job_id, seq)
            )""",
        ),
    ),
)

ACTIVE = ("queued", "running", "stopping")
FINAL = ("completed", "stopped", "failed")


@dataclass(frozen=True, kw_only=True)
class JobRecord:
    id: str
    name: str
    status: str
    spec: dict
    kind: str
    dataset_id: str | None
    dataset_version: str | None
    run_dir: str
    pid: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    step: int
    total_steps: int | None
    progress: float
    metrics: dict
    error: str | None
    events_offset: int
    model_id: str | None
    user_id: str


def _record(row: dict) -> JobRecord:
    row = dict(row)
    row["spec"] = json.loads(row["spec"])
    row["metrics"] = json.loads(row["metrics"])
    return JobRecord(**row)


class TrainingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, job: JobRecord) -> None:
        self.db.execute(
            "INSERT INTO training_jobs (id, name, status, spec, kind, dataset_id, dataset_version,"
            " run_dir, created_at, user_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [job.id, job.name, job.status, json.dumps(job.spec), job.kind, job.dataset_id,
             job.dataset_version, job.run_dir, job.created_at, job.user_id],
        )

    def get(self, job_id: str) -> JobRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM training_jobs WHERE id = ?", [job_id])
        return _record(rows[0]) if rows else None

    def list(self, *, statuses: tuple[str, ...] | None = None, limit: int = 200) -> list[JobRecord]:
        sql, params = "SELECT * FROM training_jobs", []
        if statuses:
            sql += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            params += list(statuses)
        rows = self.db.fetch_dicts(sql + " ORDER BY created_at DESC LIMIT ?", [*params, limit])
        return [_record(row) for row in rows]

    def update(self, job_id: str, **fields) -> None:
        if "metrics" in fields:
            fields["metrics"] = json.dumps(fields["metrics"])
        names = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(f"UPDATE training_jobs SET {names} WHERE id = ?",
                        [*fields.values(), job_id])

    def claim(self, job_id: str, *, from_status: str, to_status: str, **fields) -> bool:
        """Move a job from one status to another only if it is still in the first."""
        with self.db.transaction() as con:
            row = con.execute("SELECT status FROM training_jobs WHERE id = ?", [job_id]).fetchone()
            if row is None or row[0] != from_status:
                return False
            names = ", ".join(f"{name} = ?" for name in ["status", *fields])
            con.execute(f"UPDATE training_jobs SET {names} WHERE id = ?",
                        [to_status, *fields.values(), job_id])
            return True

    def append_events(self, job_id: str, events: list[dict], *, offset: int, **fields) -> None:
        """Store new events and the follower's new file offset in one transaction."""
        if "metrics" in fields:
            fields["metrics"] = json.dumps(fields["metrics"])
        with self.db.transaction() as con:
            row = con.execute("SELECT coalesce(max(seq), 0) FROM training_events WHERE job_id = ?",
                              [job_id]).fetchone()
            seq = int(row[0])
            for event in events:
                seq += 1
                con.execute(
                    "INSERT INTO training_events VALUES (?, ?, ?, ?, ?, ?)",
                    [job_id, seq, event.get("type", "log"), event.get("step"),
                     datetime.fromtimestamp(event.get("time", 0) or datetime.now().timestamp()),
                     json.dumps(event)],
                )
            names = ", ".join(f"{name} = ?" for name in ["events_offset", *fields])
            con.execute(f"UPDATE training_jobs SET {names} WHERE id = ?",
                        [offset, *fields.values(), job_id])

    def events(self, job_id: str, *, types: tuple[str, ...] | None = None,
               after_seq: int = 0) -> list[dict]:
        sql = "SELECT seq, payload FROM training_events WHERE job_id = ? AND seq > ?"
        params: list = [job_id, after_seq]
        if types:
            sql += f" AND type IN ({', '.join('?' * len(types))})"
            params += list(types)
        rows = self.db.fetch_all(sql + " ORDER BY seq", params)
        return [{"seq": seq, **json.loads(payload)} for seq, payload in rows]
