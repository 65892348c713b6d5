"""Knowledge checks (versioned sets of question / reference fact / source chunk) and their runs."""

from __future__ import annotations

import json
from datetime import datetime

from core.store.database import Database, Migration

RUN_STATUSES_V1 = ("queued", "running", "done", "failed")


def runs_table(name: str, statuses: tuple[str, ...]) -> str:
    allowed = ", ".join(f"'{status}'" for status in statuses)
    return f"""CREATE TABLE IF NOT EXISTS {name} (
        id VARCHAR PRIMARY KEY,
        kind VARCHAR NOT NULL CHECK (kind IN ('knowledge', 'general')),
        check_id VARCHAR,
        model VARCHAR NOT NULL,
        grounded BOOLEAN NOT NULL,
        status VARCHAR NOT NULL CHECK (status IN ({allowed})),
        done INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP,
        trigger VARCHAR NOT NULL,
        summary JSON,
        items JSON,
        error VARCHAR
    )"""


MIGRATIONS = (
    Migration(
        "knowledge",
        1,
        (
            """CREATE TABLE IF NOT EXISTS knowledge_checks (
                id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                version INTEGER NOT NULL,
                created_at TIMESTAMP NOT NULL,
                status VARCHAR NOT NULL CHECK (status IN ('building', 'ready', 'failed')),
                progress DOUBLE NOT NULL DEFAULT 0,
                message VARCHAR,
                lineage JSON NOT NULL,
                UNIQUE (name, version)
            )""",
            """CREATE TABLE IF NOT EXISTS knowledge_items (
                check_id VARCHAR NOT NULL,
                position INTEGER NOT NULL,
                id VARCHAR NOT NULL,
                question VARCHAR NOT NULL,
                reference VARCHAR NOT NULL,
                chunk_id VARCHAR,
                document_id VARCHAR,
                source VARCHAR,
                origin VARCHAR NOT NULL CHECK (origin IN ('generated', 'manual', 'imported')),
                PRIMARY KEY (check_id, id)
            )""",
            runs_table("knowledge_runs", RUN_STATUSES_V1),
        ),
    ),
    Migration(  # a run can be cancelled; DuckDB cannot change a CHECK in place
        "knowledge",
        2,
        (
            runs_table("knowledge_runs_v2", (*RUN_STATUSES_V1, "cancelled")),
            "INSERT INTO knowledge_runs_v2 SELECT * FROM knowledge_runs",
            "DROP TABLE knowledge_runs",
            "ALTER TABLE knowledge_runs_v2 RENAME TO knowledge_runs",
        ),
    ),
)

ITEM_COLUMNS = ("id", "question", "reference", "chunk_id", "document_id", "source", "origin")
CHECK_HEADER = (
    "id, name, version, created_at, status, progress, message, lineage::VARCHAR AS lineage"
)
RUN_COLUMNS = (
    "id, kind, check_id, model, grounded, status, done, total, created_at, finished_at,"
    " trigger, summary::VARCHAR AS summary, error"
)


def _check(row: dict, count: int) -> dict:
    return {**row, "lineage": json.loads(row["lineage"]), "item_count": count}


def _run(row: dict) -> dict:
    return {**row, "summary": json.loads(row["summary"]) if row["summary"] else None}


class KnowledgeStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # checks and items

    def create_check(
        self, *, make_id, name: str, status: str, lineage: dict, items: list[dict]
    ) -> dict:
        """A new version of `name` (the next number, chosen inside the transaction)."""
        with self.db.transaction() as con:
            version = con.execute(
                "SELECT coalesce(max(version), 0) + 1 FROM knowledge_checks WHERE name = ?",
                [name],
            ).fetchone()[0]
            check_id = make_id()
            con.execute(
                "INSERT INTO knowledge_checks (id, name, version, created_at, status, progress,"
                " lineage) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [check_id, name, version, datetime.now(), status,
                 1.0 if status == "ready" else 0.0, json.dumps(lineage)],
            )
            self._insert_items(con, check_id, items, start=0)
        return self.check(check_id)

    @staticmethod
    def _insert_items(con, check_id: str, items: list[dict], *, start: int) -> None:
        for position, item in enumerate(items, start=start):
            con.execute(
                "INSERT INTO knowledge_items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [check_id, position, *(item.get(column) for column in ITEM_COLUMNS)],
            )

    def set_items(self, check_id: str, items: list[dict]) -> None:
        with self.db.transaction() as con:
            con.execute("DELETE FROM knowledge_items WHERE check_id = ?", [check_id])
            self._insert_items(con, check_id, items, start=0)

    def update_check(self, check_id: str, **fields) -> None:
        if "lineage" in fields:
            fields["lineage"] = json.dumps(fields["lineage"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(
            f"UPDATE knowledge_checks SET {assignments} WHERE id = ?", [*fields.values(), check_id]
        )

    def check(self, check_id: str) -> dict | None:
        rows = self.db.fetch_dicts(
            f"SELECT {CHECK_HEADER} FROM knowledge_checks WHERE id = ?", [check_id]
        )
        return _check(rows[0], self._count(check_id)) if rows else None

    def _count(self, check_id: str) -> int:
        row = self.db.fetch_one(
            "SELECT count(*) FROM knowledge_items WHERE check_id = ?", [check_id]
        )
        return int(row[0])

    def checks(self) -> list[dict]:
        rows = self.db.fetch_dicts(
            f"SELECT {CHECK_HEADER} FROM knowledge_checks ORDER BY created_at DESC, version DESC"
        )
        return [_check(row, self._count(row["id"])) for row in rows]

    def items(self, check_id: str) -> list[dict]:
        return self.db.fetch_dicts(
            f"SELECT {', '.join(ITEM_COLUMNS)} FROM knowledge_items WHERE check_id = ?"
            " ORDER BY position",
            [check_id],
        )

    def questions(self) -> list[str]:
        """Every question of every check version (the held-out set)."""
        return [row[0] for row in self.db.fetch_all("SELECT question FROM knowledge_items")]

    def delete_check(self, check_id: str) -> None:
        with self.db.transaction() as con:
            con.execute("DELETE FROM knowledge_runs WHERE check_id = ?", [check_id])
            con.execute("DELETE FROM knowledge_items WHERE check_id = ?", [check_id])
            con.execute("DELETE FROM knowledge_checks WHERE id = ?", [check_id])

    # runs

    def add_run(self, run: dict) -> None:
        columns = ", ".join(run)
        self.db.execute(
            f"INSERT INTO knowledge_runs ({columns}) VALUES ({', '.join('?' * len(run))})",
            list(run.values()),
        )

    def update_run(self, run_id: str, **fields) -> None:
        for key in ("summary", "items"):
            if key in fields:
                fields[key] = json.dumps(fields[key])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        self.db.execute(
            f"UPDATE knowledge_runs SET {assignments} WHERE id = ?", [*fields.values(), run_id]
        )

    def run(self, run_id: str, *, with_items: bool = True) -> dict | None:
        rows = self.db.fetch_dicts(
            f"SELECT {RUN_COLUMNS}, items::VARCHAR AS items FROM knowledge_runs WHERE id = ?",
            [run_id],
        )
        if not rows:
            return None
        run = _run(rows[0])
        run["items"] = json.loads(run["items"]) if with_items and run["items"] else None
        return run

    def runs(self, *, check_id: str | None = None, kind: str | None = None) -> list[dict]:
        """Runs without their per-item answers, newest first."""
        where, params = [], []
        if check_id is not None:
            where.append("check_id = ?")
            params.append(check_id)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self.db.fetch_dicts(
            f"SELECT {RUN_COLUMNS} FROM knowledge_runs {clause} ORDER BY created_at DESC", params
        )
        return [_run(row) for row in rows]

    def has_runs(self, check_id: str) -> bool:
        row = self.db.fetch_one(
            "SELECT count(*) FROM knowledge_runs WHERE check_id = ?", [check_id]
        )
        return row[0] > 0

    def interrupted(self) -> int:
        """Mark builds and runs left unfinished by a previous process as failed."""
        with self.db.transaction() as con:
            builds = con.execute(
                "UPDATE knowledge_checks SET status = 'failed',"
                " message = 'interrupted by a restart' WHERE status = 'building' RETURNING id"
            ).fetchall()
            runs = con.execute(
                "UPDATE knowledge_runs SET status = 'failed', finished_at = now(),"
                " error = 'interrupted by a restart' WHERE status IN ('queued', 'running')"
                " RETURNING id"
            ).fetchall()
        return len(builds) + len(runs)
