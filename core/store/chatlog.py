"""Chat turns and their ratings: tables, writes and filtered reads."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.feedback.turn_filter import TurnFilter
from core.store.database import Database, Migration
from core.store.turns import LABELS, where

MIGRATIONS = (
    Migration(
        "chatlog",
        1,
        (
            """CREATE TABLE IF NOT EXISTS interactions (
                id VARCHAR PRIMARY KEY,
                conversation_id VARCHAR NOT NULL,
                turn_index INTEGER NOT NULL,
                created_at TIMESTAMP NOT NULL,
                user_id VARCHAR NOT NULL,
                prompt VARCHAR NOT NULL,
                context JSON NOT NULL,
                response VARCHAR NOT NULL,
                model_id VARCHAR NOT NULL,
                adapter_version VARCHAR,
                settings JSON NOT NULL,
                latency_ms DOUBLE NOT NULL,
                ttft_ms DOUBLE,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                tokens_per_s DOUBLE NOT NULL,
                confidence DOUBLE,
                truncated_turns INTEGER NOT NULL DEFAULT 0,
                finish_reason VARCHAR NOT NULL,
                retrieved_chunk_ids JSON
            )""",
            "CREATE INDEX IF NOT EXISTS interactions_created ON interactions (created_at)",
            """CREATE TABLE IF NOT EXISTS ratings (
                interaction_id VARCHAR NOT NULL,
                rater VARCHAR NOT NULL,
                rating INTEGER CHECK (rating BETWEEN 1 AND 5),
                thumb VARCHAR CHECK (thumb IN ('up', 'down')),
                correction VARCHAR,
                tags VARCHAR[] NOT NULL DEFAULT [],
                created_at TIMESTAMP NOT NULL,
                updated_at TIMESTAMP NOT NULL,
                PRIMARY KEY (interaction_id, rater)
            )""",
        ),
    ),
    Migration(
        "chatlog",
        2,
        ("ALTER TABLE interactions ADD COLUMN IF NOT EXISTS route VARCHAR",),  # why this model
    ),
)


@dataclass(frozen=True, kw_only=True)
class TurnRecord:
    id: str
    conversation_id: str
    turn_index: int
    created_at: datetime
    user_id: str
    prompt: str
    context: list[dict]
    response: str
    model_id: str
    adapter_version: str | None
    settings: dict
    latency_ms: float
    ttft_ms: float | None
    prompt_tokens: int
    completion_tokens: int
    tokens_per_s: float
    confidence: float | None
    truncated_turns: int
    finish_reason: str
    retrieved_chunk_ids: list[str] | None = None
    route: str | None = None  # why this model answered: explicit, experiment, rule, similarity


@dataclass(frozen=True, kw_only=True)
class RatingRecord:
    interaction_id: str
    rater: str
    rating: int | None
    thumb: str | None
    correction: str | None
    tags: list[str] | None  # None on a write keeps the stored tags
    created_at: datetime
    updated_at: datetime


_LOG_COLUMNS = """
    i.id AS response_id, i.created_at, i.conversation_id, i.turn_index, i.user_id,
    i.prompt, i.response, i.model_id, i.adapter_version, i.latency_ms, i.ttft_ms,
    i.prompt_tokens, i.completion_tokens, i.tokens_per_s, i.confidence,
    i.truncated_turns, i.finish_reason, i.route,
    r.rater, r.rating, r.thumb, r.correction, r.tags, r.updated_at AS rated_at
"""
_LOG_FROM = f"FROM interactions i LEFT JOIN ratings r ON r.interaction_id = i.id {LABELS}"


class ChatLog:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add_turn(self, turn: TurnRecord) -> None:
        row = asdict(turn)
        for key in ("context", "settings", "retrieved_chunk_ids"):
            row[key] = json.dumps(row[key]) if row[key] is not None else None
        names = ", ".join(row)
        marks = ", ".join("?" for _ in row)
        self.db.execute(f"INSERT INTO interactions ({names}) VALUES ({marks})", list(row.values()))

    def turn_exists(self, interaction_id: str) -> bool:
        return (
            self.db.fetch_one("SELECT 1 FROM interactions WHERE id = ?", [interaction_id])
            is not None
        )

    def get_turn(self, interaction_id: str) -> dict | None:
        rows = self.db.fetch_dicts("SELECT * FROM interactions WHERE id = ?", [interaction_id])
        if not rows:
            return None
        row = rows[0]
        for key in ("context", "settings", "retrieved_chunk_ids"):
            row[key] = json.loads(row[key]) if row[key] is not None else None
        return row

    def next_turn_index(self, conversation_id: str) -> int:
        row = self.db.fetch_one(
            "SELECT coalesce(max(turn_index) + 1, 0) FROM interactions WHERE conversation_id = ?",
            [conversation_id],
        )
        return int(row[0])

    def upsert_rating(self, rating: RatingRecord) -> RatingRecord:
        """Insert or change one rater's rating; fields left None keep their stored value."""
        self.db.execute(
            """INSERT INTO ratings AS old (interaction_id, rater, rating, thumb, correction, tags,
                                  created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, coalesce(?, []::VARCHAR[]), ?, ?)
               ON CONFLICT (interaction_id, rater) DO UPDATE SET
                 rating = coalesce(excluded.rating, old.rating),
                 thumb = coalesce(excluded.thumb, old.thumb),
                 correction = coalesce(excluded.correction, old.correction),
                 tags = CASE WHEN ? THEN old.tags ELSE excluded.tags END,
                 updated_at = excluded.updated_at""",
            [
                rating.interaction_id,
                rating.rater,
                rating.rating,
                rating.thumb,
                rating.correction,
                rating.tags,
                rating.created_at,
                rating.updated_at,
                rating.tags is None,
            ],
        )
        return self.get_rating(rating.interaction_id, rating.rater)

    def get_rating(self, interaction_id: str, rater: str) -> RatingRecord | None:
        rows = self.db.fetch_dicts(
            "SELECT * FROM ratings WHERE interaction_id = ? AND rater = ?", [interaction_id, rater]
        )
        return RatingRecord(**rows[0]) if rows else None

    def ratings_for(self, interaction_id: str) -> list[RatingRecord]:
        rows = self.db.fetch_dicts(
            "SELECT * FROM ratings WHERE interaction_id = ? ORDER BY updated_at", [interaction_id]
        )
        return [RatingRecord(**row) for row in rows]

    def query(self, flt: TurnFilter, *, limit: int | None = 100, offset: int = 0
              ) -> pd.DataFrame:
        """Turns joined with their ratings (one row per turn and rater), newest first;
        limit None reads every match."""
        condition, params = where(flt)
        return self.db.fetch_df(
            f"""SELECT {_LOG_COLUMNS} {_LOG_FROM} WHERE {condition}
                ORDER BY i.created_at DESC, i.id
                LIMIT ? OFFSET ?""",
            [*params, limit, offset],
        )

    def count(self, flt: TurnFilter) -> int:
        condition, params = where(flt)
        return int(self.db.fetch_one(f"SELECT count(*) {_LOG_FROM} WHERE {condition}", params)[0])

    def export(self, flt: TurnFilter, path: Path, fmt: str) -> Path:
        """Write every row matching the filter (no paging) as CSV or Parquet."""
        frame = self.query(flt, limit=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        if fmt == "csv":
            frame.to_csv(path, index=False)
        elif fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(f"unknown export format {fmt!r}")
        return path
