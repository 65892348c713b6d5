"""Embedding search over stored chunks: right answers, fresh after changes, re-chunking."""

from __future__ import annotations

import io

import numpy as np
import pytest

from core.documents.chunking import ChunkSpec
from core.documents.parsing import ParseLimits
from core.documents.retrieval import Embedder, VectorIndex
from core.documents.service import DocumentService, IncomingFile
from core.errors import InvalidInput, NotFound
from core.store import open_database
from core.store.documents import DocumentStore
from tests.sample_files import make_pdf

FACTS = [
    "The museum opens at nine in the morning and closes at six in the evening.",
    "Dogs must be kept on a lead in the botanical garden at all times.",
    "The library lends up to twelve books per card for three weeks.",
]


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu")


@pytest.fixture
def service(tmp_path, embedder) -> DocumentService:
    db = open_database(tmp_path / "docs.duckdb")
    yield DocumentService(
        DocumentStore(db),
        embedder,
        uploads_dir=tmp_path / "uploads",
        limits=ParseLimits(),
        spec=ChunkSpec(size=24, overlap=4),
    )
    db.close()


def ingest_pdf(service: DocumentService) -> str:
    result = service.ingest([IncomingFile("guide.pdf", io.BytesIO(make_pdf(FACTS)))])[0]
    assert result.ok, result.reason
    return result.document_id


def test_embeddings_are_unit_vectors(embedder):
    vectors = embedder.embed(["a cat", "a dog"])
    assert vectors.shape == (2, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_search_finds_the_right_page(service):
    ingest_pdf(service)
    hits = service.search("How many books can I borrow?", k=3)
    assert hits[0].page == 3 and "twelve books" in hits[0].text
    assert hits[0].source == "guide.pdf"
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert service.search("when does the museum close", k=1)[0].page == 1


def test_index_follows_adds_and_deletes(service):
    document_id = ingest_pdf(service)
    assert len(service.search("garden rules for dogs", k=10)) == 3
    extra = service.ingest(
        [IncomingFile("pool.md", io.BytesIO(b"The swimming pool is heated to 28 degrees."))]
    )[0]
    assert service.search("how warm is the pool water", k=1)[0].document_id == extra.document_id
    service.delete(document_id)
    hits = service.search("garden rules for dogs", k=10)
    assert [h.document_id for h in hits] == [extra.document_id]
    with pytest.raises(NotFound):
        service.delete(document_id)


def test_rechunk_changes_sizes_and_keeps_pages(service):
    text = " ".join(f"Sentence number {i} talks about topic {i % 7}." for i in range(60))
    result = service.ingest([IncomingFile("long.txt", io.BytesIO(text.encode()))])[0]
    before = service.preview(result.document_id)
    count = service.rechunk(result.document_id, ChunkSpec(size=128, overlap=16))
    after = service.preview(result.document_id)
    assert count == len(after) < len(before)
    assert all(c["token_count"] <= 128 for c in after)
    assert {d["chunk_tokens"] for d in service.list()} == {128}
    assert service.search("topic 3", k=1)[0].chunk_id in {c["id"] for c in after}


def test_get_chunks_keeps_order_and_sources(service):
    ingest_pdf(service)
    hits = service.search("museum opening hours", k=3)
    ids = [h.chunk_id for h in reversed(hits)]
    rows = service.get_chunks(ids)
    assert [r["id"] for r in rows] == ids
    assert {r["source"] for r in rows} == {"guide.pdf"}
    assert all(r["page"] in (1, 2, 3) for r in rows)


@pytest.mark.parametrize(("query", "k"), [("", 3), ("   ", 3), ("museum", 0), ("museum", 1000)])
def test_search_rejects_bad_requests(service, query, k):
    with pytest.raises(InvalidInput):
        service.search(query, k=k)


def test_vector_index_exact_top_k(tmp_path):
    db = open_database(tmp_path / "v.duckdb")
    store = DocumentStore(db)
    rng = np.random.default_rng(0)
    ids, matrix = store.load_vectors()
    assert len(ids) == 0 and matrix.shape == (0, 384)
    index = VectorIndex(store)
    assert index.nearest(rng.standard_normal(384).astype(np.float32), 3) == []
    db.close()
