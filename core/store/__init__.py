"""Persistence. Only this package imports duckdb; each module owns its tables."""

from core.store import chatlog
from core.store.database import Database, Migration

MIGRATIONS: tuple[Migration, ...] = (*chatlog.MIGRATIONS,)


def open_database(path) -> Database:
    """Open (creating if needed) the studio's DuckDB file and bring its schema up to date."""
    db = Database(path)
    db.migrate(MIGRATIONS)
    return db
