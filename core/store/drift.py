"""Read-only queries over chat turns and ratings for drift monitoring (no tables of its own)."""

from __future__ import annotations

from core.store.database import Database


class DriftData:
    def __init__(self, db: Database) -> None:
        self.db = db

    def ratings(self, adapter_version: str | None, *, limit: int) -> list[dict]:
        """The latest `limit` ratings of turns served by one model version (None: the base
        weights), oldest first: one row per rater with its thumb and stars."""
        rows = self.db.fetch_dicts(
            """SELECT r.interaction_id, r.thumb, r.rating AS stars, i.created_at
               FROM ratings r JOIN interactions i ON i.id = r.interaction_id
               WHERE i.adapter_version IS NOT DISTINCT FROM ?
                 AND (r.thumb IS NOT NULL OR r.rating IS NOT NULL)
               ORDER BY i.created_at DESC, r.created_at DESC, i.id DESC, r.rater DESC
               LIMIT ?""",
            [adapter_version, limit],
        )
        return rows[::-1]

    def prompts(self, *, limit: int) -> list[dict]:
        """The latest `limit` prompts of every model (id, prompt, created_at), oldest first."""
        rows = self.db.fetch_dicts(
            """SELECT id, prompt, created_at FROM interactions
               ORDER BY created_at DESC, id DESC LIMIT ?""",
            [limit],
        )
        return rows[::-1]
