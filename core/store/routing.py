"""Routes from prompts to adapters: the routes table and its reads and writes."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "routing",
        1,
        (
            """CREATE TABLE IF NOT EXISTS routes (
                id VARCHAR PRIMARY KEY,
                model_id VARCHAR NOT NULL,
                kind VARCHAR NOT NULL CHECK (kind IN ('rule', 'similarity')),
                patterns VARCHAR[] NOT NULL DEFAULT [],
                threshold DOUBLE,
                created_at TIMESTAMP NOT NULL
            )""",
        ),
    ),
)


@dataclass(frozen=True, kw_only=True)
class RouteRecord:
    id: str
    model_id: str  # a registered adapter
    kind: str  # 'rule' (patterns) or 'similarity' (threshold)
    patterns: list[str]
    threshold: float | None
    created_at: datetime


class RoutingStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, route: RouteRecord) -> None:
        self.db.execute(
            "INSERT INTO routes (id, model_id, kind, patterns, threshold, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            [route.id, route.model_id, route.kind, route.patterns, route.threshold,
             route.created_at],
        )

    def list(self) -> list[RouteRecord]:
        """In the order they were added: the order in which rules are tried."""
        rows = self.db.fetch_dicts("SELECT * FROM routes ORDER BY created_at, id")
        return [RouteRecord(**row) for row in rows]

    def get(self, route_id: str) -> RouteRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM routes WHERE id = ?", [route_id])
        return RouteRecord(**rows[0]) if rows else None

    def delete(self, route_id: str) -> None:
        self.db.execute("DELETE FROM routes WHERE id = ?", [route_id])
