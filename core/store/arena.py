"""Comparisons, votes, promotions, A/B experiments and evaluation runs: tables and queries."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "arena",
        1,
        (
            """CREATE TABLE IF NOT EXISTS comparisons (
                id VARCHAR PRIMARY KEY,
                created_at TIMESTAMP NOT NULL,
                user_id VARCHAR NOT NULL,
                prompt VARCHAR NOT NULL,
                blind BOOLEAN NOT NULL,
                left_model VARCHAR NOT NULL,
                left_version VARCHAR NOT NULL,
                right_model VARCHAR NOT NULL,
                right_version VARCHAR NOT NULL,
                left_interaction_id VARCHAR NOT NULL,
                right_interaction_id VARCHAR NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS votes (
                comparison_id VARCHAR NOT NULL,
                voter VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                prompt VARCHAR NOT NULL,
                left_model VARCHAR NOT NULL,
                left_version VARCHAR NOT NULL,
                right_model VARCHAR NOT NULL,
                right_version VARCHAR NOT NULL,
                vote VARCHAR NOT NULL CHECK (vote IN ('left', 'right', 'tie', 'both_bad')),
                PRIMARY KEY (comparison_id, voter)
            )""",
            """CREATE TABLE IF NOT EXISTS promotions (
                id VARCHAR PRIMARY KEY,
                created_at TIMESTAMP NOT NULL,
                action VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
                model VARCHAR NOT NULL,
                previous VARCHAR,
                user_id VARCHAR NOT NULL,
                evidence JSON
            )""",
            """CREATE TABLE IF NOT EXISTS experiments (
                id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                model_a VARCHAR NOT NULL,
                model_b VARCHAR NOT NULL,
                split_b DOUBLE NOT NULL,
                metric VARCHAR NOT NULL,
                alpha DOUBLE NOT NULL,
                end_rated_turns INTEGER,
                ends_at TIMESTAMP,
                status VARCHAR NOT NULL CHECK (status IN ('running', 'ended')),
                ended_at TIMESTAMP
            )""",
            """CREATE TABLE IF NOT EXISTS experiment_turns (
                interaction_id VARCHAR PRIMARY KEY,
                experiment_id VARCHAR NOT NULL,
                arm VARCHAR NOT NULL CHECK (arm IN ('A', 'B'))
            )""",
            """CREATE TABLE IF NOT EXISTS evaluations (
                id VARCHAR PRIMARY KEY,
                created_at TIMESTAMP NOT NULL,
                finished_at TIMESTAMP,
                model VARCHAR NOT NULL,
                model_version VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                status VARCHAR NOT NULL,
                done INTEGER NOT NULL DEFAULT 0,
                total INTEGER NOT NULL,
                metrics JSON,
                items JSON,
                error VARCHAR
            )""",
        ),
    ),
)


@dataclass(frozen=True, kw_only=True)
class ComparisonRecord:
    id: str
    created_at: datetime
    user_id: str
    prompt: str
    blind: bool
    left_model: str
    left_version: str
    right_model: str
    right_version: str
    left_interaction_id: str
    right_interaction_id: str


@dataclass(frozen=True, kw_only=True)
class ExperimentRecord:
    id: str
    name: str
    created_at: datetime
    model_a: str
    model_b: str
    split_b: float
    metric: str
    alpha: float
    end_rated_turns: int | None
    ends_at: datetime | None
    status: str
    ended_at: datetime | None


def _insert(db: Database, table: str, row: dict) -> None:
    names = ", ".join(row)
    marks = ", ".join("?" for _ in row)
    db.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(row.values()))


class ArenaStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # comparisons and votes
    def add_comparison(self, record: ComparisonRecord) -> None:
        _insert(self.db, "comparisons", asdict(record))

    def get_comparison(self, comparison_id: str) -> ComparisonRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM comparisons WHERE id = ?", [comparison_id])
        return ComparisonRecord(**rows[0]) if rows else None

    def add_vote(self, comparison: ComparisonRecord, voter: str, vote: str) -> bool:
        """Store one vote; False when this voter already voted on this comparison."""
        with self.db.transaction() as con:
            seen = con.execute(
                "SELECT 1 FROM votes WHERE comparison_id = ? AND voter = ?",
                [comparison.id, voter],
            ).fetchone()
            if seen:
                return False
            con.execute(
                """INSERT INTO votes (comparison_id, voter, created_at, prompt, left_model,
                       left_version, right_model, right_version, vote)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)""",
                [
                    comparison.id,
                    voter,
                    datetime.now(),
                    comparison.prompt,
                    comparison.left_model,
                    comparison.left_version,
                    comparison.right_model,
                    comparison.right_version,
                    vote,
                ],
            )
        return True

    def votes(self, models: list[str] | None = None) -> list[dict]:
        """All votes, or those between the given models only (either side)."""
        if not models:
            return self.db.fetch_dicts("SELECT * FROM votes ORDER BY created_at")
        marks = ", ".join("?" for _ in models)
        return self.db.fetch_dicts(
            f"""SELECT * FROM votes WHERE left_model IN ({marks}) AND right_model IN ({marks})
                ORDER BY created_at""",
            [*models, *models],
        )

    # promotions
    def add_promotion(self, row: dict) -> None:
        _insert(self.db, "promotions", {**row, "evidence": json.dumps(row.get("evidence"))})

    def promotions(self, limit: int = 50) -> list[dict]:
        rows = self.db.fetch_dicts(
            "SELECT * FROM promotions ORDER BY created_at DESC LIMIT ?", [limit]
        )
        for row in rows:
            row["evidence"] = json.loads(row["evidence"]) if row["evidence"] else None
        return rows

    # few-shot examples from the feedback log
    def well_rated_examples(self, *, limit: int = 500) -> list[dict]:
        """Recent single-turn answers rated 4-5 stars or thumbs up (corrections preferred)."""
        return self.db.fetch_dicts(
            """SELECT i.id, i.prompt, coalesce(max(r.correction), i.response) AS answer,
                      coalesce(avg(r.rating), 4.0) AS stars, max(i.created_at) AS created_at
               FROM interactions i JOIN ratings r ON r.interaction_id = i.id
               GROUP BY i.id, i.prompt, i.response
               HAVING bool_and(coalesce(r.rating, 5) >= 4 AND coalesce(r.thumb, 'up') = 'up')
               ORDER BY created_at DESC LIMIT ?""",
            [limit],
        )

    # experiments
    def add_experiment(self, record: ExperimentRecord) -> None:
        _insert(self.db, "experiments", asdict(record))

    def get_experiment(self, experiment_id: str) -> ExperimentRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM experiments WHERE id = ?", [experiment_id])
        return ExperimentRecord(**rows[0]) if rows else None

    def experiments(self, status: str | None = None) -> list[ExperimentRecord]:
        sql, params = "SELECT * FROM experiments", []
        if status:
            sql, params = sql + " WHERE status = ?", [status]
        rows = self.db.fetch_dicts(sql + " ORDER BY created_at DESC", params)
        return [ExperimentRecord(**row) for row in rows]

    def end_experiment(self, experiment_id: str) -> None:
        self.db.execute(
            "UPDATE experiments SET status = 'ended', ended_at = ? WHERE id = ? AND status = ?",
            [datetime.now(), experiment_id, "running"],
        )

    def add_experiment_turn(self, interaction_id: str, experiment_id: str, arm: str) -> None:
        _insert(
            self.db,
            "experiment_turns",
            {"interaction_id": interaction_id, "experiment_id": experiment_id, "arm": arm},
        )

    def experiment_turns(self, experiment_id: str) -> list[dict]:
        """One row per turn: arm, latency, mean stars and thumb (any rater's 'down' wins)."""
        return self.db.fetch_dicts(
            """SELECT e.arm, i.id, i.latency_ms, avg(r.rating) AS stars,
                      CASE WHEN bool_or(r.thumb = 'down') THEN 'down'
                           WHEN bool_or(r.thumb = 'up') THEN 'up' END AS thumb,
                      count(r.rater) > 0 AS rated
               FROM experiment_turns e JOIN interactions i ON i.id = e.interaction_id
               LEFT JOIN ratings r ON r.interaction_id = i.id
               WHERE e.experiment_id = ?
               GROUP BY e.arm, i.id, i.latency_ms""",
            [experiment_id],
        )

    # evaluations
    def add_evaluation(self, row: dict) -> None:
        _insert(self.db, "evaluations", row)

    def update_evaluation(self, evaluation_id: str, **fields) -> None:
        for key in ("metrics", "items"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(
            f"UPDATE evaluations SET {assignments} WHERE id = ?", [*fields.values(), evaluation_id]
        )

    def get_evaluation(self, evaluation_id: str) -> dict | None:
        rows = self.db.fetch_dicts("SELECT * FROM evaluations WHERE id = ?", [evaluation_id])
        return _decode_evaluation(rows[0]) if rows else None

    def evaluations(self, limit: int = 50) -> list[dict]:
        rows = self.db.fetch_dicts(
            "SELECT * FROM evaluations ORDER BY created_at DESC LIMIT ?", [limit]
        )
        return [_decode_evaluation(row) for row in rows]


    def interrupted_evaluations(self, message: str) -> int:
        """Mark runs a previous process left running as failed (their thread died with it)."""
        rows = self.db.fetch_all(
            "UPDATE evaluations SET status = 'failed', finished_at = now(), error = ?"
            " WHERE status = 'running' RETURNING id", [message])
        return len(rows)


def _decode_evaluation(row: dict) -> dict:
    for key in ("metrics", "items"):
        row[key] = json.loads(row[key]) if row[key] else None
    return row
