"""Curation of rated turns: labels and training inclusion, filtered and paged reads, bulk writes."""

from __future__ import annotations

import pandas as pd

from core.feedback.turn_filter import TurnFilter
from core.store.database import Database, Migration
from core.store.turns import GROUNDED, LABELS, MODEL_VERSION, where

MIGRATIONS = (
    Migration(
        "curation",
        1,
        (
            """CREATE TABLE IF NOT EXISTS curation_labels (
                interaction_id VARCHAR PRIMARY KEY,
                label VARCHAR,
                include BOOLEAN,
                updated_at TIMESTAMP NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS ratings_updated ON ratings (updated_at)",
        ),
    ),
    Migration(  # who last set the turn's label or training inclusion
        "curation", 2, ("ALTER TABLE curation_labels ADD COLUMN IF NOT EXISTS updated_by VARCHAR",)
    ),
)

ORDER = "ORDER BY r.updated_at DESC, r.interaction_id, r.rater"
FROM = f"FROM ratings r JOIN interactions i ON i.id = r.interaction_id {LABELS}"
COLUMNS = f"""
    r.interaction_id AS response_id, r.rater, r.rating, r.thumb, r.tags, r.correction,
    c.label, coalesce(c.include, TRUE) AS include, c.updated_by AS curated_by,
    {GROUNDED} AS grounded,
    i.prompt, i.response, {MODEL_VERSION} AS model_version, i.model_id, i.adapter_version,
    i.created_at, r.updated_at AS rated_at, i.conversation_id, i.confidence,
    i.completion_tokens
"""


class CurationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, flt: TurnFilter, *, limit: int, offset: int) -> pd.DataFrame:
        """One page of matching rows, newest rating first (LIMIT/OFFSET in SQL).

        The page's keys are found first and only those rows are widened with the long
        text columns: at 100,000 turns this halves the time of a deep page."""
        condition, params = where(flt)
        return self.db.fetch_df(
            f"""WITH keys AS MATERIALIZED (
                    SELECT r.interaction_id, r.rater {FROM} WHERE {condition}
                    {ORDER} LIMIT ? OFFSET ?)
                SELECT {COLUMNS} FROM keys k
                JOIN ratings r ON r.interaction_id = k.interaction_id AND r.rater = k.rater
                JOIN interactions i ON i.id = r.interaction_id
                LEFT JOIN curation_labels c ON c.interaction_id = r.interaction_id
                {ORDER}""",
            [*params, limit, offset],
        )

    def count(self, flt: TurnFilter) -> int:
        condition, params = where(flt)
        return int(self.db.fetch_one(f"SELECT count(*) {FROM} WHERE {condition}", params)[0])

    def all_rows(self, flt: TurnFilter) -> pd.DataFrame:
        """Every matching row with the turn's logged context and retrieved chunks."""
        condition, params = where(flt)
        return self.db.fetch_df(
            f"""SELECT {COLUMNS}, i.context::VARCHAR AS context,
                       i.retrieved_chunk_ids::VARCHAR AS retrieved_chunk_ids
                {FROM} WHERE {condition}
                ORDER BY i.created_at, r.interaction_id, r.rater""",
            params,
        )

    def choices(self) -> dict[str, list[str]]:
        """Distinct values for the filter menus."""

        def distinct(sql: str) -> list[str]:
            return [row[0] for row in self.db.fetch_all(sql) if row[0] is not None]

        return {
            "raters": distinct("SELECT DISTINCT rater FROM ratings ORDER BY 1"),
            "tags": distinct("SELECT DISTINCT unnest(tags) FROM ratings ORDER BY 1"),
            "labels": distinct("SELECT DISTINCT label FROM curation_labels ORDER BY 1"),
            "model_versions": distinct(
                f"SELECT DISTINCT {MODEL_VERSION} FROM interactions i ORDER BY 1"
            ),
        }

    def add_tags(self, flt: TurnFilter, tags: list[str]) -> int:
        return self._update_tags(
            flt,
            "list_concat(ratings.tags, list_filter(?::VARCHAR[],"
            " lambda x: NOT list_contains(ratings.tags, x)))",
            tags,
        )

    def remove_tags(self, flt: TurnFilter, tags: list[str]) -> int:
        return self._update_tags(
            flt, "list_filter(ratings.tags, lambda x: NOT list_contains(?::VARCHAR[], x))", tags
        )

    def _update_tags(self, flt: TurnFilter, expression: str, tags: list[str]) -> int:
        condition, params = where(flt)
        with self.db.transaction() as con:
            selected = f"SELECT r.interaction_id, r.rater {FROM} WHERE {condition}"
            count = con.execute(f"SELECT count(*) FROM ({selected})", params).fetchone()[0]
            con.execute(
                f"""UPDATE ratings SET tags = {expression}
                    FROM ({selected}) s
                    WHERE ratings.interaction_id = s.interaction_id AND ratings.rater = s.rater""",
                [tags, *params],
            )
        return int(count)

    def set_label(self, flt: TurnFilter, label: str | None, *, user: str | None = None) -> int:
        return self._upsert_turns(flt, "label", label, user)

    def set_include(self, flt: TurnFilter, include: bool, *, user: str | None = None) -> int:
        return self._upsert_turns(flt, "include", include, user)

    def _upsert_turns(self, flt: TurnFilter, column: str, value, user: str | None) -> int:
        """Set one per-turn column on every turn that has a matching row."""
        condition, params = where(flt)
        other = "include" if column == "label" else "label"
        with self.db.transaction() as con:
            ids = f"SELECT DISTINCT r.interaction_id {FROM} WHERE {condition}"
            count = con.execute(f"SELECT count(*) FROM ({ids})", params).fetchone()[0]
            con.execute(
                f"""INSERT INTO curation_labels
                      (interaction_id, {column}, {other}, updated_at, updated_by)
                    SELECT interaction_id, ?, NULL, now(), ? FROM ({ids})
                    ON CONFLICT (interaction_id) DO UPDATE SET
                      {column} = excluded.{column}, updated_at = excluded.updated_at,
                      updated_by = excluded.updated_by""",
                [value, user, *params],
            )
        return int(count)
