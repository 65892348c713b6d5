"""Cache of computed explanations, keyed by model version, prompt, answer and settings."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "explain",
        1,
        (
            """CREATE TABLE IF NOT EXISTS explanations (
                key VARCHAR PRIMARY KEY,
                model_version VARCHAR NOT NULL,
                prompt VARCHAR NOT NULL,
                answer VARCHAR NOT NULL,
                settings JSON NOT NULL,
                result JSON NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
        ),
    ),
)


def cache_key(model_version: str, prompt: str, answer: str, settings: dict) -> str:
    material = json.dumps([model_version, prompt, answer, settings], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()


class ExplanationCache:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self, model_version: str, prompt: str, answer: str, settings: dict) -> dict | None:
        row = self.db.fetch_one(
            "SELECT result FROM explanations WHERE key = ?",
            [cache_key(model_version, prompt, answer, settings)],
        )
        return json.loads(row[0]) if row else None

    def put(self, model_version: str, prompt: str, answer: str, settings: dict, result: dict):
        self.db.execute(
            """INSERT INTO explanations (key, model_version, prompt, answer, settings, result,
                                         created_at)
               VALUES (?, ?, ?, ?, ?, ?, ?)
               ON CONFLICT (key) DO UPDATE SET result = excluded.result,
                                               created_at = excluded.created_at""",
            [
                cache_key(model_version, prompt, answer, settings),
                model_version,
                prompt,
                answer,
                json.dumps(settings, sort_keys=True),
                json.dumps(result),
                datetime.now(),
            ],
        )

    def count(self) -> int:
        return int(self.db.fetch_one("SELECT count(*) FROM explanations")[0])
