"""Automated retraining: the policy, its cycles, the examples they consumed, the action log."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "retraining",
        1,
        (
            """CREATE TABLE IF NOT EXISTS retraining_policy (
                id INTEGER PRIMARY KEY,
                policy JSON NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                updated_by VARCHAR NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS retraining_cycles (
                id VARCHAR PRIMARY KEY,
                created_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                state VARCHAR NOT NULL,
                reason VARCHAR NOT NULL,
                follow_up VARCHAR NOT NULL,
                incumbent VARCHAR NOT NULL,
                parent_adapter VARCHAR,
                dataset_id VARCHAR,
                job_id VARCHAR,
                model_id VARCHAR,
                evaluations JSON NOT NULL DEFAULT '{}',
                comparison_ids JSON NOT NULL DEFAULT '[]',
                experiment_id VARCHAR,
                error VARCHAR
            )""",
            """CREATE TABLE IF NOT EXISTS retraining_examples (
                example_id VARCHAR PRIMARY KEY,
                cycle_id VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS retraining_actions (
                seq INTEGER PRIMARY KEY,
                created_at TIMESTAMP NOT NULL,
                cycle_id VARCHAR,
                action VARCHAR NOT NULL,
                reason VARCHAR NOT NULL,
                detail JSON NOT NULL
            )""",
        ),
    ),
)

FINAL_STATES = ("comparison_opened", "failed", "cancelled")


@dataclass(frozen=True, kw_only=True)
class CycleRecord:
    id: str
    created_at: datetime
    updated_at: datetime
    state: str
    reason: str
    follow_up: str
    incumbent: str
    parent_adapter: str | None
    dataset_id: str | None
    job_id: str | None
    model_id: str | None
    evaluations: dict
    comparison_ids: list[str]
    experiment_id: str | None
    error: str | None

    @property
    def open(self) -> bool:
        return self.state not in FINAL_STATES


def _cycle(row: dict) -> CycleRecord:
    row = dict(row)
    row["evaluations"] = json.loads(row["evaluations"])
    row["comparison_ids"] = json.loads(row["comparison_ids"])
    return CycleRecord(**row)


class RetrainingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # policy
    def policy(self) -> dict | None:
        row = self.db.fetch_one("SELECT policy::VARCHAR FROM retraining_policy WHERE id = 1")
        return json.loads(row[0]) if row else None

    def put_policy(self, policy: dict, user: str) -> None:
        self.db.execute(
            """INSERT INTO retraining_policy VALUES (1, ?, ?, ?)
               ON CONFLICT (id) DO UPDATE SET policy = excluded.policy,
                 updated_at = excluded.updated_at, updated_by = excluded.updated_by""",
            [json.dumps(policy), datetime.now(), user],
        )

    # cycles
    def add_cycle(self, cycle: CycleRecord) -> None:
        self.db.execute(
            """INSERT INTO retraining_cycles (id, created_at, updated_at, state, reason, follow_up,
                   incumbent, parent_adapter) VALUES (?, ?, ?, ?, ?, ?, ?, ?)""",
            [cycle.id, cycle.created_at, cycle.updated_at, cycle.state, cycle.reason,
             cycle.follow_up, cycle.incumbent, cycle.parent_adapter],
        )

    def get_cycle(self, cycle_id: str) -> CycleRecord | None:
        rows = self.db.fetch_dicts(
            f"SELECT {_CYCLE_COLUMNS} FROM retraining_cycles WHERE id = ?", [cycle_id]
        )
        return _cycle(rows[0]) if rows else None

    def cycles(self, *, limit: int = 50) -> list[CycleRecord]:
        rows = self.db.fetch_dicts(
            f"SELECT {_CYCLE_COLUMNS} FROM retraining_cycles ORDER BY created_at DESC, id LIMIT ?",
            [limit],
        )
        return [_cycle(row) for row in rows]

    def open_cycle(self) -> CycleRecord | None:
        marks = ", ".join("?" for _ in FINAL_STATES)
        rows = self.db.fetch_dicts(
            f"""SELECT {_CYCLE_COLUMNS} FROM retraining_cycles WHERE state NOT IN ({marks})
                ORDER BY created_at LIMIT 1""",
            list(FINAL_STATES),
        )
        return _cycle(rows[0]) if rows else None

    def update_cycle(self, cycle_id: str, **fields) -> bool:
        """Change an open cycle; a settled one (done, failed, cancelled) never changes again, so
        a step that ends after its cycle was cancelled writes nothing. False: nothing changed."""
        with self.db.transaction() as con:
            return self._update_open(con, cycle_id, fields)

    def consume(self, cycle_id: str, example_ids: list[str], **fields) -> None:
        """Record the examples an open cycle used and move it on, in one transaction."""
        with self.db.transaction() as con:
            if self._update_open(con, cycle_id, fields):
                con.execute(
                    """INSERT INTO retraining_examples
                       SELECT unnest(?::VARCHAR[]), ?, ? ON CONFLICT DO NOTHING""",
                    [example_ids, cycle_id, datetime.now()],
                )

    def release(self, cycle_id: str) -> None:
        """The examples a cancelled cycle used count as new again."""
        self.db.execute("DELETE FROM retraining_examples WHERE cycle_id = ?", [cycle_id])

    @staticmethod
    def _update_open(con, cycle_id: str, fields: dict) -> bool:
        marks = ", ".join("?" for _ in FINAL_STATES)
        state = con.execute(f"SELECT state NOT IN ({marks}) FROM retraining_cycles WHERE id = ?",
                            [*FINAL_STATES, cycle_id]).fetchone()
        if not (state and state[0]):
            return False
        values = {**fields, "updated_at": datetime.now()}
        for key in ("evaluations", "comparison_ids"):
            if key in values:
                values[key] = json.dumps(values[key])
        names = ", ".join(f"{name} = ?" for name in values)
        con.execute(f"UPDATE retraining_cycles SET {names} WHERE id = ?",
                    [*values.values(), cycle_id])
        return True

    def feedback_fingerprint(self) -> tuple:
        """Changes whenever a rating (tags included) or a curation label is added or changed."""
        return self.db.fetch_one(
            """SELECT (SELECT count(*) FROM ratings),
                      (SELECT bit_xor(hash(interaction_id, rater, rating, thumb, correction,
                                           tags, updated_at)) FROM ratings),
                      (SELECT count(*) FROM curation_labels),
                      (SELECT bit_xor(hash(interaction_id, label, include))
                       FROM curation_labels)"""
        )

    def consumed(self) -> set[str]:
        return {row[0] for row in self.db.fetch_all("SELECT example_id FROM retraining_examples")}

    # action log
    def log(self, cycle_id: str | None, action: str, reason: str, detail: dict) -> None:
        with self.db.transaction() as con:
            row = con.execute("SELECT coalesce(max(seq), 0) FROM retraining_actions").fetchone()
            con.execute(
                "INSERT INTO retraining_actions VALUES (?, ?, ?, ?, ?, ?)",
                [int(row[0]) + 1, datetime.now(), cycle_id, action, reason,
                 json.dumps(detail, default=str)],
            )

    def actions(self, *, limit: int = 50) -> list[dict]:
        rows = self.db.fetch_dicts(
            """SELECT seq, created_at, cycle_id, action, reason, detail::VARCHAR AS detail
               FROM retraining_actions ORDER BY seq DESC LIMIT ?""",
            [limit],
        )
        return [{**row, "detail": json.loads(row["detail"])} for row in rows]


_CYCLE_COLUMNS = (
    "id, created_at, updated_at, state, reason, follow_up, incumbent, parent_adapter, dataset_id,"
    " job_id, model_id, evaluations::VARCHAR AS evaluations,"
    " comparison_ids::VARCHAR AS comparison_ids, experiment_id, error"
)
