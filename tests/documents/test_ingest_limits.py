"""Hostile uploads fail alone with a reason code, in the parser's child process or before any
embedding; copies are never embedded; a query waits for one ingestion batch, not a whole file."""

from __future__ import annotations

import io
import json
import threading
import time

import pytest

from core.documents.chunking import ChunkSpec
from core.documents.parsing import DocumentError, DocumentParser, ParseLimits
from core.documents.retrieval import Embedder
from core.documents.service import DocumentService, IncomingFile
from core.store import open_database
from core.store.documents import DocumentStore

FACT = "The spare battery for the X200 drill costs 49 euros and charges in forty minutes."


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu")


@pytest.fixture(scope="module")
def parser() -> DocumentParser:
    return DocumentParser(ParseLimits())  # the app's defaults


class CountingEmbedder:
    """The real embedder, recording every text it is asked to embed."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.texts: list[str] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def embed(self, texts, **options):
        self.texts += texts
        return self.inner.embed(texts, **options)

    def embed_many(self, texts, **options):
        self.texts += texts
        return self.inner.embed_many(texts, **options)


@pytest.fixture
def counted(tmp_path, embedder):
    db = open_database(tmp_path / "docs.duckdb")
    service = DocumentService(
        DocumentStore(db), embedder, uploads_dir=tmp_path / "uploads", limits=ParseLimits(),
        spec=ChunkSpec(size=32, overlap=0), max_chunks=20,
    )
    service.retriever = CountingEmbedder(embedder)
    yield service
    db.close()


def parse_error(parser, tmp_path, name: str, data: bytes) -> DocumentError:
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DocumentError) as error:
        parser.parse(path, name)
    return error.value


def test_hostile_shapes_fail_in_the_child_with_a_reason_code(tmp_path, parser):
    wide = (",".join(f"c{i}" for i in range(60_000)) + "\n" + "1," * 59_999 + "1\n").encode()
    assert parse_error(parser, tmp_path, "wide.csv", wide).code == "too_many_columns"

    records = "".join(f'{{"id": {i}, "v": "x"}}\n' for i in range(200_000)).encode()
    assert parse_error(parser, tmp_path, "many.jsonl", records).code == "too_many_rows"

    deep = ("[" * 100_000 + "]" * 100_000 + "\n").encode()  # past the interpreter's recursion
    assert parse_error(parser, tmp_path, "deep.jsonl", deep).code == "too_deep"
    nested = json.dumps({"a": [[[[[[[[[[{"b": [[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]]}
                                  ]]]]]]]]]]}).encode()
    assert parse_error(parser, tmp_path, "nested.jsonl", nested).code == "too_deep"

    line = ("word " * 60_000).encode()  # 300,000 characters and no line break
    error = parse_error(parser, tmp_path, "line.txt", line)
    assert error.code == "line_too_long" and "299,999 characters" in error.message
    field = b'name,notes\nx,"' + b"y" * 300_000 + b'"\n'
    assert parse_error(parser, tmp_path, "field.csv", field).code == "line_too_long"

    cells = DocumentParser(ParseLimits(max_cells=100))
    table = "".join(",".join(str(i * 10 + j) for j in range(10)) + "\n" for i in range(30))
    assert parse_error(cells, tmp_path, "cells.csv", table.encode()).code == "too_many_cells"


def test_shapes_within_the_limits_parse(tmp_path, parser):
    path = tmp_path / "ok.jsonl"
    path.write_text('{"a": {"b": [1, {"c": "deep enough"}]}}\nnull\n', encoding="utf-8")
    assert parser.parse(path, "ok.jsonl")[0].text == "a.b: 1; a.b.c: deep enough\nNone"


def test_copies_are_not_embedded_and_a_file_over_the_chunk_limit_fails_alone(counted):
    paragraphs = [f"Paragraph {i}: the depot in town {i} opens at {i} o'clock sharp."
                  for i in range(4)]
    repeated = "\n\n".join(paragraphs + paragraphs + [paragraphs[0].upper()])
    big = "\n\n".join(f"Section {i} says the fee number {i} is {i * 7} euros in all cases."
                      for i in range(60))
    results = counted.ingest([
        IncomingFile("repeated.txt", io.BytesIO(repeated.encode())),
        IncomingFile("big.txt", io.BytesIO(big.encode())),
        IncomingFile("again.txt", io.BytesIO(repeated.lower().encode())),
    ])
    first, too_big, again = results
    assert (too_big.ok, too_big.error) == (False, "too_many_chunks")
    assert "limit is 20" in too_big.reason
    assert first.ok and again.ok
    chunks = counted.preview(first.document_id)
    originals = [c["text"] for c in chunks if c["duplicate_of"] is None]
    assert first.duplicates == len(chunks) - len(originals) > 0
    # Only the first file's distinct chunks were embedded: no copy, nothing of the big file,
    # and nothing of the third file (the first in lower case), whose chunks are all stored.
    assert sorted(counted.retriever.texts) == sorted(originals)
    assert again.duplicates == again.chunks
    hits = counted.search("when does the depot in town 2 open", k=3)
    assert hits and "town 2" in hits[0].text


def test_a_query_waits_for_one_ingestion_batch_not_the_whole_file():
    embedder = Embedder(device="cpu")
    model = embedder._get()
    real = model.encode
    order, started, go = [], threading.Event(), threading.Event()

    def encode(texts, **options):  # the real model, recording the order of its batches
        order.append("query" if texts == ["battery price"] else "ingest")
        if len(order) == 1:
            started.set()
            go.wait()
        return real(texts, **options)

    model.encode = encode
    bulk = threading.Thread(target=embedder.embed_many,
                            args=([f"chunk number {i}" for i in range(40)],), kwargs={"batch": 8})
    bulk.start()
    started.wait()
    query = threading.Thread(target=embedder.embed, args=(["battery price"],))
    query.start()
    while not embedder._urgent:  # the query is queued behind the running batch
        time.sleep(0.01)
    go.set()
    bulk.join()
    query.join()
    assert order == ["ingest", "query", "ingest", "ingest", "ingest", "ingest"]


def test_upload_parts_without_a_name_or_hostile_fail_alone_over_http(client):
    good = ("faq.md", b"# FAQ\n\n" + FACT.encode(), "text/markdown")
    wide = ("wide.csv", (",".join(f"c{i}" for i in range(60_000)) + "\n").encode(), "text/csv")
    response = client.post("/api/v1/documents", files=[
        ("files", ("", b"no name given", "text/plain")),  # sent without a filename at all
        ("files", wide),
        ("files", good),
    ])
    assert response.status_code == 200
    outcome = [(r["name"], r["error"]) for r in response.json()["results"]]
    assert outcome == [("unnamed", "no_filename"), ("wide.csv", "too_many_columns"),
                       ("faq.md", None)]
    boundary = "b0undary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename=""\r\n'
            "Content-Type: text/plain\r\n\r\nan empty file name\r\n"
            f"--{boundary}--\r\n").encode()
    raw = client.post("/api/v1/documents", content=body,
                      headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert raw.status_code == 200
    assert [r["error"] for r in raw.json()["results"]] == ["no_filename"]
    assert client.get("/api/v1/health").status_code == 200
    found = client.post("/api/v1/search", json={"query": "battery price", "k": 1}).json()
    assert found["results"][0]["source"] == "faq.md"


def test_the_chunk_limit_holds_when_only_the_split_exceeds_it(counted):
    """Overlapping chunks outnumber the token count's lower bound: the limit is checked again
    on the real split, still before any embedding."""
    from core.documents.parsing import Page

    text = "\n\n".join(f"Rule {i} says the fee number {i} is {i * 7} euros." for i in range(60))
    spec = ChunkSpec(size=32, overlap=8)
    fewest = counted.chunker.fewest_chunks([Page(None, text)], spec)
    made = len(counted.chunker.chunk([Page(None, text)], spec))
    assert fewest < made
    counted.max_chunks = fewest
    [result] = counted.ingest([IncomingFile("rules.txt", io.BytesIO(text.encode()))], spec=spec)
    assert (result.ok, result.error) == (False, "too_many_chunks")
    assert f"makes {made} chunks" in result.reason and counted.retriever.texts == []
