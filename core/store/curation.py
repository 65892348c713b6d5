"""Curation of rated turns: labels and training inclusion, filtered and paged reads, bulk writes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import pandas as pd

from core.errors import InvalidInput
from core.store.chatlog import SEARCHED
from core.store.database import Database, Migration, text_search

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

THUMBS = ("up", "down", "none")
MODEL_VERSION = (
    "CASE WHEN i.adapter_version IS NULL THEN i.model_id"
    " ELSE i.model_id || '+' || i.adapter_version END"
)
ORDER = "ORDER BY r.updated_at DESC, r.interaction_id, r.rater"
GROUNDED = "coalesce(json_array_length(i.retrieved_chunk_ids), 0) > 0"
FROM = """FROM ratings r
    JOIN interactions i ON i.id = r.interaction_id
    LEFT JOIN curation_labels c ON c.interaction_id = r.interaction_id"""
COLUMNS = f"""
    r.interaction_id AS response_id, r.rater, r.rating, r.thumb, r.tags, r.correction,
    c.label, coalesce(c.include, TRUE) AS include, c.updated_by AS curated_by,
    {GROUNDED} AS grounded,
    i.prompt, i.response, {MODEL_VERSION} AS model_version, i.model_id, i.adapter_version,
    i.created_at, r.updated_at AS rated_at, i.conversation_id, i.confidence,
    i.completion_tokens
"""


@dataclass(frozen=True, kw_only=True)
class CurationFilter:
    """A selection of rated turns (one row per turn and rater); None means any."""

    min_rating: int | None = None
    max_rating: int | None = None
    thumb: str | None = None  # 'up', 'down' or 'none'
    tags: tuple[str, ...] = ()  # rows carrying any of these tags
    model_version: str | None = None
    rater: str | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    text: str | None = None
    has_correction: bool | None = None
    grounded: bool | None = None
    label: str | None = None
    include: bool | None = None  # True: in training (the default); False: excluded
    response_ids: tuple[str, ...] = ()  # an explicit selection, narrowed by the other fields

    def __post_init__(self) -> None:
        for name in ("min_rating", "max_rating"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value not in range(1, 6)):
                raise InvalidInput(f"{name} must be a whole number from 1 to 5, got {value!r}")
        if self.min_rating and self.max_rating and self.min_rating > self.max_rating:
            raise InvalidInput("min_rating is above max_rating")
        if self.thumb is not None and self.thumb not in THUMBS:
            raise InvalidInput(f"thumb must be one of {', '.join(THUMBS)}, got {self.thumb!r}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidInput("the date range ends before it starts")
        object.__setattr__(self, "tags", tuple(t.strip() for t in self.tags if t.strip()))
        object.__setattr__(self, "response_ids", tuple(self.response_ids))

    def where(self) -> tuple[str, list]:
        clauses, params = ["TRUE"], []

        def add(clause: str, *values) -> None:
            clauses.append(clause)
            params.extend(values)

        if self.min_rating is not None:
            add("r.rating >= ?", self.min_rating)
        if self.max_rating is not None:
            add("r.rating <= ?", self.max_rating)
        if self.thumb in ("up", "down"):
            add("r.thumb = ?", self.thumb)
        elif self.thumb == "none":
            add("r.thumb IS NULL")
        if self.tags:
            add("list_has_any(r.tags, ?::VARCHAR[])", list(self.tags))
        if self.model_version:
            add(f"{MODEL_VERSION} = ?", self.model_version)
        if self.rater:
            add("r.rater = ?", self.rater)
        if self.date_from is not None:
            add("i.created_at >= ?", self.date_from)
        if self.date_to is not None:
            add("i.created_at <= ?", self.date_to)
        if self.text:
            sql, patterns = text_search(SEARCHED, self.text)
            add(sql, *patterns)
        if self.has_correction is not None:
            has = "coalesce(trim(r.correction), '') <> ''"
            add(has if self.has_correction else f"NOT ({has})")
        if self.grounded is not None:
            add(GROUNDED if self.grounded else f"NOT ({GROUNDED})")
        if self.label:
            add("c.label = ?", self.label)
        if self.include is not None:
            add("coalesce(c.include, TRUE) = ?", self.include)
        if self.response_ids:
            add("r.interaction_id IN (SELECT unnest(?::VARCHAR[]))", list(self.response_ids))
        return " AND ".join(clauses), params

    def describe(self) -> dict:
        """The filter as plain JSON-able data (for lineage)."""
        out = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value in (None, (), {}):
                continue
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        return json.loads(json.dumps(out, default=list))


class CurationStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def page(self, flt: CurationFilter, *, limit: int, offset: int) -> pd.DataFrame:
        """One page of matching rows, newest rating first (LIMIT/OFFSET in SQL).

        The page's keys are found first and only those rows are widened with the long
        text columns: at 100,000 turns this halves the time of a deep page."""
        where, params = flt.where()
        return self.db.fetch_df(
            f"""WITH keys AS MATERIALIZED (
                    SELECT r.interaction_id, r.rater {FROM} WHERE {where}
                    {ORDER} LIMIT ? OFFSET ?)
                SELECT {COLUMNS} FROM keys k
                JOIN ratings r ON r.interaction_id = k.interaction_id AND r.rater = k.rater
                JOIN interactions i ON i.id = r.interaction_id
                LEFT JOIN curation_labels c ON c.interaction_id = r.interaction_id
                {ORDER}""",
            [*params, limit, offset],
        )

    def count(self, flt: CurationFilter) -> int:
        where, params = flt.where()
        return int(self.db.fetch_one(f"SELECT count(*) {FROM} WHERE {where}", params)[0])

    def all_rows(self, flt: CurationFilter) -> pd.DataFrame:
        """Every matching row with the turn's logged context and retrieved chunks."""
        where, params = flt.where()
        return self.db.fetch_df(
            f"""SELECT {COLUMNS}, i.context::VARCHAR AS context,
                       i.retrieved_chunk_ids::VARCHAR AS retrieved_chunk_ids
                {FROM} WHERE {where}
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

    def add_tags(self, flt: CurationFilter, tags: list[str]) -> int:
        return self._update_tags(
            flt,
            "list_concat(ratings.tags, list_filter(?::VARCHAR[],"
            " lambda x: NOT list_contains(ratings.tags, x)))",
            tags,
        )

    def remove_tags(self, flt: CurationFilter, tags: list[str]) -> int:
        return self._update_tags(
            flt, "list_filter(ratings.tags, lambda x: NOT list_contains(?::VARCHAR[], x))", tags
        )

    def _update_tags(self, flt: CurationFilter, expression: str, tags: list[str]) -> int:
        where, params = flt.where()
        with self.db.transaction() as con:
            selected = f"SELECT r.interaction_id, r.rater {FROM} WHERE {where}"
            count = con.execute(f"SELECT count(*) FROM ({selected})", params).fetchone()[0]
            con.execute(
                f"""UPDATE ratings SET tags = {expression}
                    FROM ({selected}) s
                    WHERE ratings.interaction_id = s.interaction_id AND ratings.rater = s.rater""",
                [tags, *params],
            )
        return int(count)

    def set_label(self, flt: CurationFilter, label: str | None, *, user: str | None = None) -> int:
        return self._upsert_turns(flt, "label", label, user)

    def set_include(self, flt: CurationFilter, include: bool, *, user: str | None = None) -> int:
        return self._upsert_turns(flt, "include", include, user)

    def _upsert_turns(self, flt: CurationFilter, column: str, value, user: str | None) -> int:
        """Set one per-turn column on every turn that has a matching row."""
        where, params = flt.where()
        other = "include" if column == "label" else "label"
        with self.db.transaction() as con:
            ids = f"SELECT DISTINCT r.interaction_id {FROM} WHERE {where}"
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
