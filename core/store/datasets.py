"""Versioned datasets: one header row per version and its rows; written once, never changed."""

from __future__ import annotations

import json
from datetime import datetime

import pyarrow as pa

from core.store.database import Database, Migration

MIGRATIONS = (
    Migration(
        "datasets",
        1,
        (
            """CREATE TABLE IF NOT EXISTS datasets (
                id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                version INTEGER NOT NULL,
                kind VARCHAR NOT NULL,
                created_at TIMESTAMP NOT NULL,
                train_count INTEGER NOT NULL,
                validation_count INTEGER NOT NULL,
                lineage JSON NOT NULL,
                stats JSON NOT NULL,
                UNIQUE (name, version)
            )""",
            """CREATE TABLE IF NOT EXISTS dataset_rows (
                dataset_id VARCHAR NOT NULL,
                split VARCHAR NOT NULL CHECK (split IN ('train', 'validation')),
                position INTEGER NOT NULL,
                row_id VARCHAR NOT NULL,
                data JSON NOT NULL,
                PRIMARY KEY (dataset_id, split, position)
            )""",
        ),
    ),
)

HEADER = (
    "id, name, version, kind, created_at, train_count, validation_count,"
    " lineage::VARCHAR AS lineage, stats::VARCHAR AS stats"
)


class DatasetStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def insert(
        self,
        *,
        make_id,
        name: str,
        kind: str,
        created_at: datetime,
        splits: dict[str, list[dict]],
        lineage: dict,
        stats: dict,
    ) -> dict:
        """Store a new version of `name` (the next number, chosen inside the transaction)."""
        with self.db.transaction() as con:
            version = con.execute(
                "SELECT coalesce(max(version), 0) + 1 FROM datasets WHERE name = ?", [name]
            ).fetchone()[0]
            dataset_id = make_id(name, version)
            con.execute(
                "INSERT INTO datasets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    dataset_id,
                    name,
                    version,
                    kind,
                    created_at,
                    len(splits["train"]),
                    len(splits["validation"]),
                    json.dumps(lineage),
                    json.dumps(stats),
                ],
            )
            rows = [
                {"split": split, "position": n, "row_id": row["id"], "data": json.dumps(row)}
                for split, items in splits.items()
                for n, row in enumerate(items)
            ]
            if rows:  # one columnar insert: executemany costs a round trip per row
                con.register("incoming_rows", pa.Table.from_pylist(rows))
                con.execute(
                    "INSERT INTO dataset_rows SELECT ?, split, position, row_id, data::JSON"
                    " FROM incoming_rows",
                    [dataset_id],
                )
                con.unregister("incoming_rows")
        return self.header(dataset_id)

    def header(self, dataset_id: str) -> dict | None:
        rows = self.db.fetch_dicts(f"SELECT {HEADER} FROM datasets WHERE id = ?", [dataset_id])
        return _decode(rows[0]) if rows else None

    def headers(self) -> list[dict]:
        rows = self.db.fetch_dicts(f"SELECT {HEADER} FROM datasets ORDER BY name, version DESC")
        return [_decode(row) for row in rows]

    def rows(self, dataset_id: str) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {"train": [], "validation": []}
        for split, data in self.db.fetch_all(
            "SELECT split, data::VARCHAR FROM dataset_rows WHERE dataset_id = ?"
            " ORDER BY split, position",
            [dataset_id],
        ):
            out[split].append(json.loads(data))
        return out

    def delete(self, dataset_id: str) -> None:
        with self.db.transaction() as con:
            con.execute("DELETE FROM dataset_rows WHERE dataset_id = ?", [dataset_id])
            con.execute("DELETE FROM datasets WHERE id = ?", [dataset_id])


def _decode(row: dict) -> dict:
    return {**row, "lineage": json.loads(row["lineage"]), "stats": json.loads(row["stats"])}
