"""Persistence. Only this package imports duckdb; each module owns its tables."""

from core.store import (
    arena,
    chatlog,
    curation,
    datasets,
    documents,
    explain,
    jobs,
    knowledge,
    registry,
    retraining,
    routing,
    training,
)
from core.store.database import Database, Migration

MIGRATIONS: tuple[Migration, ...] = (
    *arena.MIGRATIONS,
    *chatlog.MIGRATIONS,
    *curation.MIGRATIONS,
    *datasets.MIGRATIONS,
    *documents.MIGRATIONS,
    *explain.MIGRATIONS,
    *jobs.MIGRATIONS,
    *knowledge.MIGRATIONS,
    *registry.MIGRATIONS,
    *retraining.MIGRATIONS,
    *routing.MIGRATIONS,
    *training.MIGRATIONS,
)


def open_database(path) -> Database:
    """Open (creating if needed) the studio's DuckDB file and bring its schema up to date."""
    db = Database(path)
    db.migrate(MIGRATIONS)
    return db
