"""The one place that opens DuckDB: a locked connection, transactions and migrations."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from core.errors import disk_full


@contextmanager
def _disk_errors() -> Iterator[None]:
    """A full disk surfaces as DiskFull, a message a person can act on, not a DuckDB error."""
    try:
        yield
    except duckdb.Error as error:
        full = disk_full(error)
        if full is None:
            raise
        raise full from error


def text_search(columns: Sequence[str], text: str) -> tuple[str, list[str]]:
    """A case-insensitive, literal substring match over `columns`: (SQL, params).

    The user's text is escaped, so '%', '_' and '\\' match themselves, never "anything".
    """
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    sql = " OR ".join(f"{column} ILIKE ? ESCAPE '\\'" for column in columns)
    return f"({sql})", [f"%{escaped}%"] * len(columns)


def _literal(path: Path) -> str:
    """A quoted SQL string for a path (EXPORT/IMPORT DATABASE take no parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


@dataclass(frozen=True)
class Migration:
    """One schema step of one component; applied once, in version order."""

    component: str
    version: int
    statements: tuple[str, ...]


class Database:
    """A single DuckDB connection shared by the app's threads under a lock.

    DuckDB allows one writing process per file; every thread of the app goes
    through this object, and each statement commits before the call returns,
    so an acknowledged write survives a crash of the process.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = duckdb.connect(str(self.path) if self.path else ":memory:")
        self._lock = threading.RLock()
        self._con.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " component VARCHAR NOT NULL, version INTEGER NOT NULL,"
            " applied_at TIMESTAMP NOT NULL DEFAULT now(),"
            " PRIMARY KEY (component, version))"
        )

    def close(self) -> None:
        with self._lock:
            self._con.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock, _disk_errors():
            self._con.execute("BEGIN TRANSACTION")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        with self._lock, _disk_errors():
            self._con.execute(sql, params or [])

    def fetch_all(self, sql: str, params: Sequence[Any] | None = None) -> list[tuple]:
        with self._lock, _disk_errors():
            return self._con.execute(sql, params or []).fetchall()

    def fetch_one(self, sql: str, params: Sequence[Any] | None = None) -> tuple | None:
        with self._lock, _disk_errors():
            return self._con.execute(sql, params or []).fetchone()

    def fetch_dicts(self, sql: str, params: Sequence[Any] | None = None) -> list[dict]:
        with self._lock, _disk_errors():
            cursor = self._con.execute(sql, params or [])
            names = [column[0] for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def fetch_df(self, sql: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        with self._lock, _disk_errors():
            return self._con.execute(sql, params or []).df()

    def export_to(self, folder: Path) -> None:
        """DuckDB `EXPORT DATABASE`: schema.sql, load.sql and one Parquet file per table."""
        with self._lock, _disk_errors():
            self._con.execute(f"EXPORT DATABASE {_literal(folder)} (FORMAT parquet)")

    @staticmethod
    def import_into(path: Path, folder: Path) -> None:
        """Create the DuckDB file `path` from an `export_to` folder (the file must not exist)."""
        if path.exists():
            raise FileExistsError(path)
        con = duckdb.connect(str(path))
        try:
            con.execute(f"IMPORT DATABASE {_literal(folder)}")
        finally:
            con.close()

    def schema_version(self, component: str) -> int:
        row = self.fetch_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations WHERE component = ?",
            [component],
        )
        return int(row[0])

    def migrate(self, migrations: Sequence[Migration]) -> list[Migration]:
        """Apply the missing steps, each in its own transaction; return what ran."""
        applied = []
        for migration in sorted(migrations, key=lambda m: (m.component, m.version)):
            if migration.version <= self.schema_version(migration.component):
                continue
            with self.transaction() as con:
                for statement in migration.statements:
                    con.execute(statement)
                con.execute(
                    "INSERT INTO schema_migrations (component, version) VALUES (?, ?)",
                    [migration.component, migration.version],
                )
            applied.append(migration)
        return applied
