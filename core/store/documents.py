"""Documents, their parsed pages and their chunks with embeddings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pyarrow as pa

from core.store.database import Database, Migration

DIMENSIONS = 384  # all-MiniLM-L6-v2

MIGRATIONS = (
    Migration(
        "documents",
        1,
        (
            """CREATE TABLE IF NOT EXISTS documents (
                id VARCHAR PRIMARY KEY,
                name VARCHAR NOT NULL,
                kind VARCHAR NOT NULL,
                stored_name VARCHAR NOT NULL,
                size_bytes BIGINT NOT NULL,
                sha256 VARCHAR NOT NULL,
                pages INTEGER NOT NULL,
                chunk_tokens INTEGER NOT NULL,
                chunk_overlap INTEGER NOT NULL,
                created_at TIMESTAMP NOT NULL
            )""",
            """CREATE TABLE IF NOT EXISTS document_pages (
                document_id VARCHAR NOT NULL,
                page_index INTEGER NOT NULL,
                page INTEGER,
                text VARCHAR NOT NULL,
                PRIMARY KEY (document_id, page_index)
            )""",
            f"""CREATE TABLE IF NOT EXISTS chunks (
                id VARCHAR PRIMARY KEY,
                document_id VARCHAR NOT NULL,
                seq INTEGER NOT NULL,
                source VARCHAR NOT NULL,
                page INTEGER,
                char_start INTEGER NOT NULL,
                char_end INTEGER NOT NULL,
                token_count INTEGER NOT NULL,
                text VARCHAR NOT NULL,
                content_hash VARCHAR NOT NULL,
                duplicate_of VARCHAR,
                embedding FLOAT[{DIMENSIONS}] NOT NULL
            )""",
            "CREATE INDEX IF NOT EXISTS chunks_document ON chunks (document_id)",
            "CREATE INDEX IF NOT EXISTS chunks_hash ON chunks (content_hash)",
        ),
    ),
)


@dataclass(frozen=True, kw_only=True)
class DocumentRecord:
    id: str
    name: str
    kind: str
    stored_name: str
    size_bytes: int
    sha256: str
    pages: int
    chunk_tokens: int
    chunk_overlap: int
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class ChunkRecord:
    id: str
    document_id: str
    seq: int
    source: str
    page: int | None
    char_start: int
    char_end: int
    token_count: int
    text: str
    content_hash: str
    duplicate_of: str | None


_CHUNK_COLUMNS = (
    "id, document_id, seq, source, page, char_start, char_end, token_count, text,"
    " content_hash, duplicate_of"
)


class DocumentStore:
    """Owns the document tables; `version` changes on every write so caches can follow."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.version = 0

    def _changed(self) -> None:
        """Called inside the write's transaction, under the database lock, which readers of
        the vectors take too: a cache never sees new rows with an old version."""
        self.version += 1

    def add(
        self,
        document: DocumentRecord,
        pages: Sequence[tuple[int | None, str]],
        chunks: Sequence[ChunkRecord],
        embeddings: np.ndarray,
    ) -> None:
        """Write a document with its pages and chunks in one transaction."""
        with self.db.transaction() as con:
            row = vars(document)
            con.execute(
                f"INSERT INTO documents ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                list(row.values()),
            )
            self._insert_pages(con, document.id, pages)
            self._insert_chunks(con, chunks, embeddings)
            self._changed()

    def replace_chunks(
        self,
        document_id: str,
        chunks: Sequence[ChunkRecord],
        embeddings: np.ndarray,
        *,
        chunk_tokens: int,
        chunk_overlap: int,
    ) -> None:
        with self.db.transaction() as con:
            self._release_duplicates(con, document_id)
            con.execute("DELETE FROM chunks WHERE document_id = ?", [document_id])
            self._insert_chunks(con, chunks, embeddings)
            con.execute(
                "UPDATE documents SET chunk_tokens = ?, chunk_overlap = ? WHERE id = ?",
                [chunk_tokens, chunk_overlap, document_id],
            )
            self._changed()

    def delete(self, document_id: str) -> None:
        with self.db.transaction() as con:
            self._release_duplicates(con, document_id)
            con.execute("DELETE FROM chunks WHERE document_id = ?", [document_id])
            con.execute("DELETE FROM document_pages WHERE document_id = ?", [document_id])
            con.execute("DELETE FROM documents WHERE id = ?", [document_id])
            self._changed()

    @staticmethod
    def _insert_pages(con, document_id: str, pages: Sequence[tuple[int | None, str]]) -> None:
        frame = pa.table(
            {
                "document_id": [document_id] * len(pages),
                "page_index": list(range(len(pages))),
                "page": pa.array([number for number, _ in pages], pa.int32()),
                "text": [text for _, text in pages],
            }
        )
        con.register("new_pages", frame)
        con.execute("INSERT INTO document_pages SELECT * FROM new_pages")
        con.unregister("new_pages")

    @staticmethod
    def _insert_chunks(con, chunks: Sequence[ChunkRecord], embeddings: np.ndarray) -> None:
        if not chunks:
            return
        columns = {name: [getattr(c, name) for c in chunks] for name in _CHUNK_COLUMNS.split(", ")}
        columns["page"] = pa.array(columns["page"], pa.int32())
        columns["duplicate_of"] = pa.array(columns["duplicate_of"], pa.string())
        flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).ravel())
        columns["embedding"] = pa.FixedSizeListArray.from_arrays(flat, DIMENSIONS)
        con.register("new_chunks", pa.table(columns))
        con.execute(f"INSERT INTO chunks SELECT {_CHUNK_COLUMNS}, embedding FROM new_chunks")
        con.unregister("new_chunks")

    @staticmethod
    def _release_duplicates(con, document_id: str) -> None:
        """Chunks of other documents that pointed at this one's: the first becomes the original."""
        rows = con.execute(
            """SELECT c.id, c.duplicate_of FROM chunks c
               JOIN chunks o ON c.duplicate_of = o.id
               JOIN documents d ON d.id = c.document_id
               WHERE o.document_id = ? AND c.document_id <> ?
               ORDER BY c.duplicate_of, d.created_at, c.seq""",
            [document_id, document_id],
        ).fetchall()
        heirs: dict[str, str] = {}
        for chunk_id, original in rows:
            heir = heirs.setdefault(original, chunk_id)
            con.execute(
                "UPDATE chunks SET duplicate_of = ? WHERE id = ?",
                [None if heir == chunk_id else heir, chunk_id],
            )

    def get(self, document_id: str) -> DocumentRecord | None:
        rows = self.db.fetch_dicts("SELECT * FROM documents WHERE id = ?", [document_id])
        return DocumentRecord(**rows[0]) if rows else None

    def list(self) -> list[dict]:
        """Documents with their chunk counts, newest first."""
        return self.db.fetch_dicts(
            """SELECT d.id, d.name, d.kind, d.size_bytes, d.pages, d.chunk_tokens,
                      d.chunk_overlap, d.created_at,
                      count(c.id) AS chunks, count(c.duplicate_of) AS duplicates
               FROM documents d LEFT JOIN chunks c ON c.document_id = d.id
               GROUP BY ALL ORDER BY d.created_at DESC, d.id"""
        )

    def pages(self, document_id: str) -> list[tuple[int | None, str]]:
        return self.db.fetch_all(
            "SELECT page, text FROM document_pages WHERE document_id = ? ORDER BY page_index",
            [document_id],
        )

    def chunks_of(self, document_id: str, *, limit: int = 1000, offset: int = 0) -> list[dict]:
        return self.db.fetch_dicts(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE document_id = ? ORDER BY seq"
            " LIMIT ? OFFSET ?",
            [document_id, limit, offset],
        )

    def get_chunks(self, ids: Sequence[str]) -> list[dict]:
        """Chunk text with its source file, page and document, in the order of `ids`."""
        if not ids:
            return []
        rows = self.db.fetch_dicts(
            f"SELECT {_CHUNK_COLUMNS} FROM chunks WHERE id IN ({', '.join('?' * len(ids))})",
            list(ids),
        )
        by_id = {row["id"]: row for row in rows}
        return [by_id[i] for i in ids if i in by_id]

    def originals_by_hash(self, hashes: Sequence[str], *, exclude_document: str) -> dict[str, str]:
        """content_hash -> id of a stored chunk of another document that is no duplicate."""
        if not hashes:
            return {}
        rows = self.db.fetch_all(
            f"""SELECT content_hash, min(id) FROM chunks
                WHERE duplicate_of IS NULL AND document_id <> ?
                  AND content_hash IN ({', '.join('?' * len(hashes))})
                GROUP BY content_hash""",
            [exclude_document, *hashes],
        )
        return dict(rows)

    def embeddings_of(self, ids: Sequence[str]) -> dict[str, np.ndarray]:
        """id -> stored vector of these chunks."""
        if not ids:
            return {}
        with self.db.transaction() as con:
            table = con.execute(
                f"SELECT id, embedding FROM chunks WHERE id IN ({', '.join('?' * len(ids))})",
                list(ids),
            ).to_arrow_table()
        vectors = table.column("embedding").combine_chunks().flatten().to_numpy()
        vectors = vectors.astype(np.float32, copy=False).reshape(-1, DIMENSIONS)
        return dict(zip(table.column("id").to_pylist(), vectors, strict=True))

    def chunk_ids_of(self, document_id: str) -> list[str]:
        rows = self.db.fetch_all("SELECT id FROM chunks WHERE document_id = ?", [document_id])
        return [row[0] for row in rows]

    def count_chunks(self) -> int:
        return int(self.db.fetch_one("SELECT count(*) FROM chunks")[0])

    def load_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, float32 matrix) of every chunk that is not a duplicate."""
        with self.db.transaction() as con:
            table = con.sql(
                "SELECT id, embedding FROM chunks WHERE duplicate_of IS NULL ORDER BY id"
            ).to_arrow_table()
        ids = table.column("id").to_numpy()
        vectors = table.column("embedding").combine_chunks().flatten().to_numpy()
        return ids, vectors.astype(np.float32, copy=False).reshape(-1, DIMENSIONS)

    def chunk_texts(self) -> list[tuple[str, str]]:
        """(id, text) of every chunk, duplicates included: what re-embedding covers."""
        return self.db.fetch_all("SELECT id, text FROM chunks ORDER BY id")

    def set_embeddings(self, ids: Sequence[str], embeddings: np.ndarray, *, then=None) -> None:
        """Replace the vectors of these chunks in one transaction; `then(con)` runs inside it
        (e.g. to log which model made them, so vectors and log never disagree)."""
        flat = pa.array(np.ascontiguousarray(embeddings, dtype=np.float32).ravel())
        table = pa.table({"id": list(ids),
                          "embedding": pa.FixedSizeListArray.from_arrays(flat, DIMENSIONS)})
        with self.db.transaction() as con:
            con.register("new_vectors", table)
            con.execute("UPDATE chunks SET embedding = new_vectors.embedding"
                        " FROM new_vectors WHERE chunks.id = new_vectors.id")
            con.unregister("new_vectors")
            if then is not None:
                then(con)
            self._changed()
