"""The document store as a service: ingest many files, list, preview, re-chunk, delete, search."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.documents.chunking import (
    NEAR_DUPLICATE_JACCARD,
    Chunk,
    Chunker,
    ChunkSpec,
    jaccard,
    shingles,
)
from core.documents.parsing import (
    DocumentError,
    DocumentParser,
    EmptyFile,
    FileTooLarge,
    NoFileName,
    Page,
    ParseLimits,
    TooManyChunks,
    kind_of,
)
from core.documents.retrieval import Embedder, VectorIndex
from core.errors import InvalidInput, NotFound, RefineryError, disk_full
from core.store.documents import DIMENSIONS, ChunkRecord, DocumentRecord, DocumentStore

NEAR_DUPLICATE_COSINE = 0.9  # embedding candidates, confirmed by word-shingle overlap
MAX_SEARCH_K = 100
MAX_CHUNKS = 5000  # per file: about a million tokens, a few minutes of embedding on a CPU

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class IncomingFile:
    """An upload: the name the person gave it (for display only) and where its bytes are."""

    name: str
    source: Path | BinaryIO

    @property
    def display_name(self) -> str:
        return self.name.replace("\\", "/").rsplit("/", 1)[-1][:255] or "unnamed"


@dataclass(frozen=True, kw_only=True)
class IngestResult:
    name: str
    ok: bool
    document_id: str | None = None
    pages: int = 0
    chunks: int = 0
    duplicates: int = 0
    error: str | None = None  # a DocumentError code
    reason: str | None = None

    def line(self) -> str:
        if self.ok:
            return (
                f"✅ {self.name}: {self.pages} page(s), {self.chunks} chunk(s), "
                f"{self.duplicates} duplicate(s)"
            )
        return f"⚠️ {self.name}: {self.reason}"


@dataclass(frozen=True, kw_only=True)
class SearchHit:
    chunk_id: str
    document_id: str
    source: str
    page: int | None
    score: float
    text: str


class DocumentService:
    def __init__(
        self,
        store: DocumentStore,
        embedder: Embedder,
        *,
        uploads_dir: Path,
        limits: ParseLimits,
        spec: ChunkSpec,
        max_chunks: int = MAX_CHUNKS,
    ) -> None:
        self.store = store
        self.max_chunks = max_chunks
        # `embedder` stays the bundled model (other services embed prompts with it, and their
        # caches must not change meaning); `retriever` embeds chunks and queries, and a
        # promoted retriever replaces it.
        self.embedder = embedder
        self.retriever = embedder
        self.index = VectorIndex(store)
        self.parser = DocumentParser(limits)
        self.uploads_dir = uploads_dir
        self.limits = limits
        self.spec = spec
        self._chunker: Chunker | None = None
        self._writing = threading.RLock()  # ingest, re-chunk, re-embed, delete

    @property
    def chunker(self) -> Chunker:
        if self._chunker is None:
            self._chunker = Chunker(self.retriever.tokenizer_file)
        return self._chunker

    # ingestion

    def ingest(
        self,
        files: Sequence[IncomingFile],
        *,
        spec: ChunkSpec | None = None,
        progress: Progress | None = None,
    ) -> list[IngestResult]:
        """Each file succeeds or fails alone; the result list follows the input order."""
        if not files:
            raise InvalidInput("no files to ingest")
        results = []
        for number, file in enumerate(files):
            if progress:
                progress(number / len(files), f"{file.display_name} ({number + 1}/{len(files)})")
            with self._writing:
                results.append(self.ingest_one(file, spec=spec or self.spec))
        if progress:
            progress(1.0, "done")
        return results

    def ingest_one(self, file: IncomingFile, *, spec: ChunkSpec) -> IngestResult:
        name = file.display_name
        stored: Path | None = None
        try:
            if not file.name.strip():
                raise NoFileName("the part has no file name; the name gives the file its type")
            kind = kind_of(name)
            stored, size, digest = self._store_upload(file, Path(name).suffix.lower())
            pages = self.parser.parse(stored, name)
            document_id = uuid.uuid4().hex
            records, vectors = self._prepare(document_id, name, pages, spec)
            version = self.store.version
            self.store.add(
                DocumentRecord(
                    id=document_id,
                    name=name,
                    kind=kind,
                    stored_name=stored.name,
                    size_bytes=size,
                    sha256=digest,
                    pages=len(pages),
                    chunk_tokens=spec.size,
                    chunk_overlap=spec.overlap,
                    created_at=datetime.now(),
                ),
                [(page.number, page.text) for page in pages],
                records,
                vectors,
            )
            originals = [i for i, record in enumerate(records) if record.duplicate_of is None]
            self.index.added(
                [records[i].id for i in originals], vectors[originals], version_before=version
            )
        except RefineryError as error:
            if stored is not None:
                stored.unlink(missing_ok=True)
            code = error.code if isinstance(error, DocumentError) else "error"
            return IngestResult(name=name, ok=False, error=code, reason=error.message)
        return IngestResult(
            name=name,
            ok=True,
            document_id=document_id,
            pages=len(pages),
            chunks=len(records),
            duplicates=sum(r.duplicate_of is not None for r in records),
        )

    def _store_upload(self, file: IncomingFile, suffix: str) -> tuple[Path, int, str]:
        """Copy the bytes under a generated name, stopping as soon as the size limit is passed."""
        self.uploads_dir.mkdir(parents=True, exist_ok=True)
        target = self.uploads_dir / f"{uuid.uuid4().hex}{suffix}"
        digest, size = hashlib.sha256(), 0
        source = open(file.source, "rb") if isinstance(file.source, Path) else file.source
        try:
            with open(target, "wb") as out:
                while block := source.read(1 << 20):
                    size += len(block)
                    if size > self.limits.max_bytes:
                        raise FileTooLarge(
                            f"the file is larger than the limit of {self.limits.max_bytes:,} bytes"
                        )
                    digest.update(block)
                    out.write(block)
            if size == 0:
                raise EmptyFile("the file is empty")
        except (RefineryError, OSError) as error:
            target.unlink(missing_ok=True)
            if full := disk_full(error):
                raise full from error
            raise
        finally:
            if isinstance(file.source, Path):
                source.close()
        return target, size, digest.hexdigest()

    def _prepare(
        self, document_id: str, name: str, pages, spec: ChunkSpec
    ) -> tuple[list[ChunkRecord], np.ndarray]:
        fewest = self.chunker.fewest_chunks(pages, spec)
        chunks = self.chunker.chunk(pages, spec) if fewest <= self.max_chunks else []
        if max(fewest, len(chunks)) > self.max_chunks:
            raise TooManyChunks(
                f"the file makes {'at least ' if not chunks else ''}"
                f"{max(fewest, len(chunks)):,} chunks of {spec.size} tokens; the limit is "
                f"{self.max_chunks:,} per file (split the file or use larger chunks)"
            )
        exact = self._exact_duplicates(document_id, chunks)
        vectors = self._vectors(chunks, exact)
        duplicates = self._find_duplicates(document_id, chunks, vectors, exact)
        records = [
            ChunkRecord(
                id=uuid.uuid4().hex,
                document_id=document_id,
                seq=seq,
                source=name,
                page=chunk.page,
                char_start=chunk.char_start,
                char_end=chunk.char_end,
                token_count=chunk.token_count,
                text=chunk.text,
                content_hash=chunk.content_hash,
                duplicate_of=None,
            )
            for seq, chunk in enumerate(chunks)
        ]
        ids = [record.id for record in records]
        for seq, target in duplicates.items():
            original = ids[target] if isinstance(target, int) else target
            records[seq] = ChunkRecord(**{**vars(records[seq]), "duplicate_of": original})
        return records, vectors

    def _exact_duplicates(self, document_id: str, chunks: list[Chunk]) -> dict[int, int | str]:
        """seq -> the earlier seq in this document, or the stored chunk id, with the same
        normalised text: known before embedding, so copies cost no model time."""
        stored = self.store.originals_by_hash(
            [c.content_hash for c in chunks], exclude_document=document_id
        )
        found: dict[int, int | str] = {}
        first_by_hash: dict[str, int] = {}
        for seq, chunk in enumerate(chunks):
            digest = chunk.content_hash
            if digest in stored:
                found[seq] = stored[digest]
            elif digest in first_by_hash:
                found[seq] = first_by_hash[digest]
            else:
                first_by_hash[digest] = seq
        return found

    def _vectors(self, chunks: list[Chunk], exact: dict[int, int | str]) -> np.ndarray:
        """Embed the chunks that are no exact copy; a copy takes its original's vector."""
        todo = [seq for seq in range(len(chunks)) if seq not in exact]
        vectors = np.zeros((len(chunks), DIMENSIONS), dtype=np.float32)
        if todo:
            vectors[todo] = self.retriever.embed_many([chunks[seq].text for seq in todo])
        stored = self.store.embeddings_of([t for t in exact.values() if isinstance(t, str)])
        for seq, target in exact.items():
            vectors[seq] = stored[target] if isinstance(target, str) else vectors[target]
        return vectors

    def _find_duplicates(
        self, document_id: str, chunks: list[Chunk], vectors: np.ndarray, exact: dict
    ) -> dict[int, int | str]:
        """seq -> the earlier seq in this document, or the stored chunk id, it duplicates:
        the exact copies, then near copies (embedding neighbours, confirmed by shingles)."""
        own = set(self.store.chunk_ids_of(document_id))
        rest = [seq for seq in range(len(chunks)) if seq not in exact]
        stored_near = dict(zip(rest, self.index.nearest_many(vectors[rest], 3, exclude=own),
                               strict=True)) if rest else {}
        found: dict[int, int | str] = dict(exact)
        originals: list[int] = []
        for seq in rest:
            near = self._near_duplicate(chunks, vectors, seq, originals, stored_near[seq])
            if near is not None:
                found[seq] = near
            else:
                originals.append(seq)
        return found

    def _near_duplicate(
        self, chunks: list[Chunk], vectors: np.ndarray, seq: int, originals: list[int], stored
    ) -> int | str | None:
        words = shingles(chunks[seq].text)
        if originals:
            scores = vectors[originals] @ vectors[seq]
            for position in np.flatnonzero(scores >= NEAR_DUPLICATE_COSINE):
                earlier = originals[position]
                if jaccard(words, shingles(chunks[earlier].text)) >= NEAR_DUPLICATE_JACCARD:
                    return earlier
        candidates = [n for n in stored if n.score >= NEAR_DUPLICATE_COSINE]
        for row in self.store.get_chunks([n.chunk_id for n in candidates]):
            if jaccard(words, shingles(row["text"])) >= NEAR_DUPLICATE_JACCARD:
                return row["id"]
        return None

    # reading and changing

    def list(self) -> list[dict]:
        return self.store.list()

    def get(self, document_id: str) -> DocumentRecord:
        document = self.store.get(document_id)
        if document is None:
            raise NotFound(f"no document with id {document_id!r}")
        return document

    def preview(self, document_id: str, *, limit: int = 200, offset: int = 0) -> list[dict]:
        self.get(document_id)
        return self.store.chunks_of(document_id, limit=limit, offset=offset)

    def rechunk(self, document_id: str, spec: ChunkSpec) -> int:
        """Split the stored pages again with new sizes; returns the new chunk count."""
        document = self.get(document_id)
        pages = [Page(number, text) for number, text in self.store.pages(document_id)]
        with self._writing:
            records, vectors = self._prepare(document_id, document.name, pages, spec)
            self.store.replace_chunks(
                document_id, records, vectors, chunk_tokens=spec.size, chunk_overlap=spec.overlap
            )
        return len(records)

    def reembed(self, model_dir: Path, *, then=None, progress: Progress | None = None) -> int:
        """Embed every stored chunk with the model in `model_dir`, store the vectors in one
        transaction (running `then(con, chunk_count)` inside it) and serve that model after.
        Returns the number of chunks. The old model keeps serving until the switch."""
        embedder = self.embedder_for(model_dir)
        probe = embedder.embed(["probe"])
        if probe.shape[1] != DIMENSIONS:
            raise InvalidInput(
                f"that model makes {probe.shape[1]}-dimensional vectors; the chunk store "
                f"holds {DIMENSIONS}"
            )
        done = self._embed_chunks(embedder, {}, progress)
        with self._writing:  # chunks written meanwhile are embedded here, then all swap at once
            done = self._embed_chunks(embedder, done, None)
            ids = sorted(done)
            vectors = np.stack([done[i] for i in ids]) if ids else np.zeros((0, DIMENSIONS))
            self.store.set_embeddings(
                ids, vectors, then=(lambda con: then(con, len(ids))) if then else None
            )
            self.retriever, self._chunker = embedder, None  # it may split text differently
        if progress:
            progress(1.0, f"re-embedded {len(ids)} chunks")
        return len(ids)

    def serve(self, model_dir: Path) -> None:
        """Embed chunks and queries with the model in `model_dir` (whose vectors are stored)."""
        self.retriever, self._chunker = self.embedder_for(model_dir), None

    def embedder_for(self, model_dir: Path) -> Embedder:
        """An embedder of the model in `model_dir` (loaded on first use)."""
        if Path(model_dir) == self.embedder.model_dir:
            return self.embedder  # the bundled model, loaded once
        return Embedder(Path(model_dir), device=self.embedder.device)

    def _embed_chunks(
        self, embedder: Embedder, done: dict, progress: Progress | None, *, batch: int = 256
    ) -> dict[str, np.ndarray]:
        """id -> vector for every stored chunk, reusing `done` (keyed by id, text unchanged)."""
        rows = self.store.chunk_texts()
        todo = [(i, text) for i, text in rows if i not in done]
        out = {i: done[i] for i, _ in rows if i in done}
        for start in range(0, len(todo), batch):
            if progress:
                progress(start / len(todo), f"re-embedding chunks {start + 1}-"
                                            f"{min(start + batch, len(todo))} of {len(todo)}")
            part = todo[start : start + batch]
            out.update(zip([i for i, _ in part], embedder.embed_many([t for _, t in part]),
                           strict=True))
        return out

    def delete(self, document_id: str) -> None:
        document = self.get(document_id)
        with self._writing:  # an ingest in flight may have taken a vector of these chunks
            self.store.delete(document_id)
        (self.uploads_dir / document.stored_name).unlink(missing_ok=True)

    def get_chunks(self, ids: Sequence[str]) -> list[dict]:
        return self.store.get_chunks(ids)

    def search(self, query: str, *, k: int = 5) -> list[SearchHit]:
        if not query or not query.strip():
            raise InvalidInput("the search query is empty")
        if not 1 <= k <= MAX_SEARCH_K:
            raise InvalidInput(f"k must be 1-{MAX_SEARCH_K}, got {k}")
        vector = self.retriever.embed([query])[0]
        neighbours = self.index.nearest(vector, k)
        rows = {row["id"]: row for row in self.store.get_chunks([n.chunk_id for n in neighbours])}
        return [
            SearchHit(
                chunk_id=n.chunk_id,
                document_id=rows[n.chunk_id]["document_id"],
                source=rows[n.chunk_id]["source"],
                page=rows[n.chunk_id]["page"],
                score=round(n.score, 4),
                text=rows[n.chunk_id]["text"],
            )
            for n in neighbours
            if n.chunk_id in rows
        ]


def build_document_service(db, settings) -> DocumentService:
    """The service with the limits and chunk sizes of `settings` (a core.settings.Settings)."""
    return DocumentService(
        DocumentStore(db),
        Embedder(device=settings.device),
        uploads_dir=settings.data_dir / "uploads",
        limits=ParseLimits(
            max_bytes=settings.max_upload_bytes,
            max_unzipped_bytes=10 * settings.max_upload_bytes,
        ),
        spec=ChunkSpec(size=settings.chunk_tokens, overlap=settings.chunk_overlap),
        max_chunks=settings.max_chunks_per_file,
    )
