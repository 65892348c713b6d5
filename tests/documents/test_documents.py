"""Parsing, bad inputs, chunking and dedupe on small real files made here."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from core.documents.chunking import Chunker, ChunkSpec
from core.documents.parsing import (
    BinaryFile,
    CorruptFile,
    DocumentParser,
    EmptyFile,
    EncryptedFile,
    FileTooLarge,
    Page,
    ParseLimit,
    ParseLimits,
    UnsupportedType,
    ZipBomb,
    normalise,
)
from core.documents.retrieval import Embedder
from core.documents.service import DocumentService, IncomingFile
from core.errors import InvalidInput
from core.store import open_database
from core.store.documents import DocumentStore
from tests.sample_files import make_docx, make_encrypted_pdf, make_pdf, make_zip_bomb_docx

LIMITS = ParseLimits(max_bytes=1 << 20, max_unzipped_bytes=8 << 20)


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder(device="cpu")


@pytest.fixture(scope="module")
def parser() -> DocumentParser:
    return DocumentParser(LIMITS)


@pytest.fixture
def service(tmp_path, embedder) -> DocumentService:
    db = open_database(tmp_path / "docs.duckdb")
    yield DocumentService(
        DocumentStore(db),
        embedder,
        uploads_dir=tmp_path / "uploads",
        limits=LIMITS,
        spec=ChunkSpec(size=32, overlap=8),
    )
    db.close()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def test_pdf_pages_keep_their_numbers(tmp_path, parser):
    path = write(tmp_path, "a.pdf", make_pdf(["First page text", "Second (page) text"]))
    pages = parser.parse(path, "a.pdf")
    expected = [(1, "First page text"), (2, "Second (page) text")]
    assert [(p.number, p.text) for p in pages] == expected


def test_docx_paragraphs_and_tables(tmp_path, parser):
    path = make_docx(["Llamas live in Peru.", "They  hum."], tmp_path / "a.docx")
    (page,) = parser.parse(path, "a.docx")
    assert page.number is None
    assert page.text == "Llamas live in Peru.\nThey hum.\nWarranty | two years"


@pytest.mark.parametrize("encoding", ["latin-1", "utf-16", "cp1252", "utf-8-sig"])
def test_text_in_any_common_encoding_becomes_utf8(tmp_path, parser, encoding):
    text = "Crème brûlée für Jürgen, s'il vous plaît: déjà vu à la française."
    path = write(tmp_path, "a.txt", text.encode(encoding))
    (page,) = parser.parse(path, "a.txt")
    assert page.text == text
    page.text.encode("utf-8")


def test_markdown_html_csv_jsonl(tmp_path, parser):
    md = write(tmp_path, "a.md", "# Title\r\n\r\n\r\n\r\nSome   *text*\t here.  \n")
    assert parser.parse(md, "a.md")[0].text == "# Title\n\nSome *text* here."
    html = write(
        tmp_path,
        "a.html",
        "<html><head><style>p{}</style><script>alert(1)</script></head>"
        "<body><h1>Head</h1><p>Body &amp; <b>bold</b></p></body></html>",
    )
    assert parser.parse(html, "a.html")[0].text == "Head\nBody &\nbold"
    csv_file = write(tmp_path, "a.csv", "name,city\nAda,London\nBob,\n")
    assert parser.parse(csv_file, "a.csv")[0].text == "name: Ada; city: London\nname: Bob"
    rows = [{"q": "hi", "meta": {"lang": "en"}}, {"q": "bye", "tags": ["a", "b"]}]
    jsonl = write(tmp_path, "a.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n\n")
    expected = "q: hi; meta.lang: en\nq: bye; tags: a; tags: b"
    assert parser.parse(jsonl, "a.jsonl")[0].text == expected


def test_normalise_removes_control_characters_and_extra_space():
    assert normalise("a\x00b  c\u00a0d\r\n\n\n\ne \n") == "a b c d\n\ne"


@pytest.mark.parametrize(
    ("name", "data", "error"),
    [
        ("corrupt.pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog", CorruptFile),
        ("binary.txt", bytes(range(256)) * 64, BinaryFile),
        ("empty.md", b"", EmptyFile),
        ("big.txt", b"word " * (LIMITS.max_bytes // 5 + 1), FileTooLarge),
        ("bad.jsonl", b'{"a": 1}\n{"a": \n', CorruptFile),
        ("notes.exe", b"MZ", UnsupportedType),
        ("fake.docx", b"not a zip at all", CorruptFile),
    ],
)
def test_bad_inputs_raise_typed_errors(tmp_path, parser, name, data, error):
    path = write(tmp_path, name, data)
    with pytest.raises(error) as raised:
        parser.parse(path, name)
    assert raised.value.message


def test_encrypted_pdf_is_refused(tmp_path, parser):
    path = write(tmp_path, "locked.pdf", make_encrypted_pdf(["secret plans"]))
    with pytest.raises(EncryptedFile, match="password"):
        parser.parse(path, "locked.pdf")


def test_zip_bomb_docx_is_refused_before_inflating(tmp_path, parser):
    path = make_zip_bomb_docx(tmp_path / "bomb.docx", 32 << 20)
    assert path.stat().st_size < LIMITS.max_bytes
    with pytest.raises(ZipBomb, match="declares"):
        parser.parse(path, "bomb.docx")


def test_parser_time_and_memory_are_bounded(tmp_path):
    # A microsecond: the child cannot even unpickle its arguments before the parent gives up
    # (a millisecond was sometimes enough for a warm fork server to parse a small file).
    quick = DocumentParser(ParseLimits(timeout_s=1e-6))
    path = write(tmp_path, "a.txt", "some text " * 100_000)
    with pytest.raises(ParseLimit, match="longer than"):
        quick.parse(path, "a.txt")
    small = DocumentParser(ParseLimits(memory_bytes=1 << 20))  # far below what it needs
    with pytest.raises(ParseLimit):
        small.parse(path, "a.txt")


def test_chunks_keep_whole_sentences_page_numbers_and_exact_offsets(embedder):
    chunker = Chunker(embedder.tokenizer_file)
    sentences = [f"Rule {i}: the café in Zürich nº {i} opens at {i} o’clock — “sharp”."
                 for i in range(60)]
    pages = [Page(1, " ".join(sentences[:30])), Page(2, "\n\n".join(sentences[30:]))]
    chunks = chunker.chunk(pages, ChunkSpec())  # the defaults: 200 tokens, 40 shared
    assert {c.page for c in chunks} == {1, 2} and len(chunks) > 4
    for chunk in chunks:
        page = pages[chunk.page - 1]
        assert page.text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text.startswith("Rule ") and chunk.text.endswith("”.")
        assert chunker.count_tokens(chunk.text) == chunk.token_count <= 200
    for page, own_sentences in ((1, sentences[:30]), (2, sentences[30:])):
        own = [c for c in chunks if c.page == page]
        assert all(b.char_start < a.char_end for a, b in zip(own, own[1:], strict=False))
        assert all(any(sentence in c.text for c in own) for sentence in own_sentences)


def test_text_without_sentences_is_cut_between_words(embedder):
    chunker = Chunker(embedder.tokenizer_file)
    text = " ".join(f"word{i}" for i in range(200))
    chunks = chunker.chunk([Page(3, text)], ChunkSpec(size=40, overlap=10))
    assert len(chunks) > 3
    for chunk in chunks:
        assert chunk.page == 3
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.token_count <= 40
        assert chunker.count_tokens(chunk.text) == chunk.token_count
    first, second = chunks[0], chunks[1]
    assert second.char_start < first.char_end  # the overlap


@pytest.mark.parametrize(("size", "overlap"), [(8, 0), (2000, 10), (64, 40), (64, -1)])
def test_chunk_spec_rejects_bad_sizes(size, overlap):
    with pytest.raises(InvalidInput):
        ChunkSpec(size=size, overlap=overlap)


def test_one_bad_file_fails_alone(tmp_path, service):
    files = [
        IncomingFile("good.pdf", io.BytesIO(make_pdf(["The warranty lasts two years."]))),
        IncomingFile("corrupt.pdf", io.BytesIO(b"%PDF-1.7 broken")),
        IncomingFile("locked.pdf", io.BytesIO(make_encrypted_pdf(["hidden"]))),
        IncomingFile("bomb.docx", make_zip_bomb_docx(tmp_path / "bomb.docx", 32 << 20)),
        IncomingFile("binary.txt", io.BytesIO(bytes(range(256)) * 64)),
        IncomingFile("empty.txt", io.BytesIO(b"")),
        IncomingFile("huge.txt", io.BytesIO(b"x" * (LIMITS.max_bytes + 1))),
        IncomingFile("../../etc/notes.md", io.BytesIO(b"# Notes\nShipping takes a week.")),
    ]
    seen = []
    results = service.ingest(files, progress=lambda fraction, _: seen.append(fraction))
    assert [r.ok for r in results] == [True, False, False, False, False, False, False, True]
    assert [r.error for r in results[1:7]] == [
        "corrupt_file", "encrypted", "zip_bomb", "binary_file", "empty_file", "too_large",
    ]  # fmt: skip
    assert all(r.reason for r in results[1:7])
    assert seen[-1] == 1.0 and seen == sorted(seen)
    assert results[-1].name == "notes.md"
    names = {d["name"] for d in service.list()}
    assert names == {"good.pdf", "notes.md"}
    stored = sorted(p.name for p in (tmp_path / "uploads").iterdir())
    assert len(stored) == 2 and "notes.md" not in stored  # generated names, failures removed


def test_exact_and_near_duplicates_are_marked(service):
    text = (
        "Refunds are paid within fourteen days of the returned parcel reaching our warehouse "
        "in Leeds, provided the goods are unused and in their original packaging."
    )
    near = text.replace("fourteen", "fifteen")
    other = "Our office cat is called Biscuit and sleeps on the printer every afternoon."
    first = service.ingest([IncomingFile("a.txt", io.BytesIO(text.encode()))])[0]
    results = service.ingest(
        [
            IncomingFile("copy.txt", io.BytesIO(text.upper().encode())),
            IncomingFile("near.txt", io.BytesIO(near.encode())),
            IncomingFile("other.txt", io.BytesIO(other.encode())),
        ]
    )
    assert [r.duplicates for r in results] == [1, 1, 0]
    original = service.preview(first.document_id)[0]["id"]
    for result in results[:2]:
        assert service.preview(result.document_id)[0]["duplicate_of"] == original
    hits = service.search("when are refunds paid", k=3)
    assert [h.chunk_id for h in hits].count(original) == 1
    assert len(hits) == 2  # duplicates are not returned twice
    service.delete(first.document_id)  # the first copy inherits the original's place
    heir = service.preview(results[0].document_id)[0]
    assert heir["duplicate_of"] is None
    assert service.preview(results[1].document_id)[0]["duplicate_of"] == heir["id"]


def test_repeated_page_inside_one_document_is_a_duplicate(service):
    boilerplate = "Confidential. Do not copy or forward this page without written permission."
    pdf = make_pdf([boilerplate, "Quarterly sales rose by four percent.", boilerplate.lower()])
    result = service.ingest([IncomingFile("report.pdf", io.BytesIO(pdf))])[0]
    chunks = service.preview(result.document_id)
    assert [c["page"] for c in chunks] == [1, 2, 3]
    assert [c["duplicate_of"] for c in chunks] == [None, None, chunks[0]["id"]]
    assert result.duplicates == 1
