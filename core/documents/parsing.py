"""Parse uploaded files into clean UTF-8 pages, each file in a child process with bounded time
and memory, with a typed error a person can act on when a file cannot be read."""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import re
import resource
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput

SUFFIXES = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".markdown": "text",
    ".html": "html",
    ".htm": "html",
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


class DocumentError(InvalidInput):
    """One file could not be ingested; `code` names the reason for the API and the UI."""

    code = "invalid_document"


class UnsupportedType(DocumentError):
    code = "unsupported_type"


class NoFileName(DocumentError):
    code = "no_filename"


class EmptyFile(DocumentError):
    code = "empty_file"


class FileTooLarge(DocumentError):
    code = "too_large"


class CorruptFile(DocumentError):
    code = "corrupt_file"


class EncryptedFile(DocumentError):
    code = "encrypted"


class ZipBomb(DocumentError):
    code = "zip_bomb"


class BinaryFile(DocumentError):
    code = "binary_file"


class NoText(DocumentError):
    code = "no_text"


class ParseLimit(DocumentError):
    """The parser ran past its time or memory budget."""

    code = "parse_limit"


class TooManyColumns(DocumentError):
    code = "too_many_columns"


class TooManyRows(DocumentError):
    code = "too_many_rows"


class TooManyCells(DocumentError):
    code = "too_many_cells"


class LineTooLong(DocumentError):
    code = "line_too_long"


class TooDeep(DocumentError):
    code = "too_deep"


class TooManyChunks(DocumentError):
    """Raised by the document service after chunking, before anything is embedded."""

    code = "too_many_chunks"


ERRORS = {cls.__name__: cls for cls in (
    UnsupportedType, NoFileName, EmptyFile, FileTooLarge, CorruptFile, EncryptedFile, ZipBomb,
    BinaryFile, NoText, ParseLimit, TooManyColumns, TooManyRows, TooManyCells, LineTooLong,
    TooDeep, DocumentError,
)}  # fmt: skip


@dataclass(frozen=True)
class Page:
    """Normalised text of one page; `number` is None for formats without pages."""

    number: int | None
    text: str


@dataclass(frozen=True, kw_only=True)
class ParseLimits:
    max_bytes: int = 50 * 1024 * 1024
    max_unzipped_bytes: int = 200 * 1024 * 1024  # declared total inside a DOCX
    timeout_s: float = 120.0
    memory_bytes: int = 2 * 1024**3  # address space of the parsing process
    # Shape of the text, checked in the child as it is read: a hostile file stops there.
    max_columns: int = 1000  # CSV values per row
    max_rows: int = 100_000  # CSV rows, JSONL records
    max_cells: int = 2_000_000  # CSV values in all
    max_line_chars: int = 200_000  # a line of extracted text, a CSV value, a JSONL record
    max_json_depth: int = 32  # nesting of objects and arrays in a JSONL record

    def __post_init__(self) -> None:
        counts = (self.max_bytes, self.max_unzipped_bytes, self.memory_bytes, self.max_columns,
                  self.max_rows, self.max_cells, self.max_line_chars, self.max_json_depth)
        if min(counts) <= 0:
            raise ValueError("parse limits must be positive")
        if self.timeout_s <= 0:
            raise ValueError("timeout_s must be positive")


def kind_of(name: str) -> str:
    kind = SUFFIXES.get(Path(name).suffix.lower())
    if kind is None:
        raise UnsupportedType(
            f"unsupported file type {Path(name).suffix or '(none)'!r}; "
            f"use one of {', '.join(sorted(SUFFIXES))}"
        )
    return kind


def normalise(text: str) -> str:
    """NFC, valid UTF-8, no control characters, single spaces, at most one blank line."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = "".join(c if c in "\n\t" or unicodedata.category(c)[0] != "C" else " " for c in text)
    text = re.sub(r"[ \t\u00a0\u2000-\u200b\u3000]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def decode_text(data: bytes) -> str:
    """Bytes in any common encoding -> str; binary content is refused."""
    from charset_normalizer import from_bytes

    try:
        text = data.decode("utf-8-sig")  # the common case, and unambiguous when it decodes
    except UnicodeDecodeError:
        matches = from_bytes(data)
        best = matches.best()
        if best is None:
            raise BinaryFile(
                "the file is binary, not text (no text encoding fits its bytes)"
            ) from None
        # On short texts the ranking cannot tell Western from Baltic or Central European
        # code pages; prefer the far more common Windows-1252 when it reads as well.
        western = [m for m in matches if m.encoding == "cp1252" and m.chaos <= best.chaos + 0.1]
        text = str(western[0] if western else best)
    controls = sum(1 for c in text if unicodedata.category(c) == "Cc" and c not in "\n\r\t\f")
    if controls > max(1, len(text) // 100):
        raise BinaryFile("the file is binary, not text (it is full of control characters)")
    return text


def parse_pdf(path: Path) -> list[Page]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise EncryptedFile("the PDF is encrypted with a password; upload an unlocked copy")
        return [
            Page(number, normalise(page.extract_text() or ""))
            for number, page in enumerate(reader.pages, start=1)
        ]
    except DocumentError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError) as error:
        raise CorruptFile(f"the PDF is corrupt or unreadable ({error})") from error
    except NotImplementedError as error:  # e.g. an encryption scheme pypdf cannot open
        raise EncryptedFile(f"the PDF cannot be opened ({error})") from error


def check_zip(path: Path, limits: ParseLimits) -> None:
    """Refuse a zip whose declared uncompressed size is beyond the limit, before inflating it."""
    try:
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except zipfile.BadZipFile as error:
        raise CorruptFile("the DOCX is corrupt (not a valid zip archive)") from error
    if declared > limits.max_unzipped_bytes:
        raise ZipBomb(
            f"the DOCX declares {declared:,} bytes uncompressed, beyond the limit of "
            f"{limits.max_unzipped_bytes:,} bytes (a zip bomb?)"
        )


def parse_docx(path: Path, limits: ParseLimits) -> list[Page]:
    import docx

    check_zip(path, limits)
    try:
        document = docx.Document(str(path))
    except Exception as error:  # python-docx raises many kinds for a broken package
        raise CorruptFile(f"the DOCX is corrupt or unreadable ({error})") from error
    parts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for row in table.rows:
            parts.append(" | ".join(cell.text.strip() for cell in row.cells))
    return [Page(None, normalise("\n".join(parts)))]


def parse_html(text: str) -> list[Page]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    return [Page(None, normalise(soup.get_text("\n")))]


def parse_csv(text: str, limits: ParseLimits) -> list[Page]:
    """One line per row, each value labelled with its column, so a chunk stands on its own."""
    try:
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    csv.field_size_limit(limits.max_line_chars)
    header, lines, cells_seen = None, [], 0
    try:
        for number, row in enumerate(csv.reader(io.StringIO(text), dialect), start=1):
            if len(row) > limits.max_columns:
                raise TooManyColumns(f"row {number} has {len(row):,} columns; the limit is "
                                     f"{limits.max_columns:,}")
            if number > limits.max_rows + 1:  # the header is not a record
                raise TooManyRows(f"the CSV has more than {limits.max_rows:,} rows")
            cells_seen += len(row)
            if cells_seen > limits.max_cells:
                raise TooManyCells(f"the CSV has more than {limits.max_cells:,} values")
            if header is None:
                header = row
                continue
            cells = [f"{name}: {value}" for name, value in zip(header, row, strict=False) if value]
            lines.append("; ".join(cells))
    except csv.Error as error:
        if "field limit" in str(error):
            raise LineTooLong(f"a CSV value is longer than {limits.max_line_chars:,} "
                              "characters") from None
        raise CorruptFile(f"the CSV is malformed ({error})") from None
    if header is None:
        return [Page(None, "")]
    return [Page(None, normalise("\n".join(lines) if lines else " ".join(header)))]


def flatten(value, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [line for key, item in value.items() for line in flatten(item, f"{prefix}{key}.")]
    if isinstance(value, list):
        return [line for item in value for line in flatten(item, prefix)]
    return [f"{prefix.rstrip('.')}: {value}" if prefix else str(value)]


def depth(value) -> int:
    """Nesting of dicts and lists, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            stack += [(child, level + 1) for child in (
                item.values() if isinstance(item, dict) else item)]
    return deepest


TOO_DEEP = object()


def parse_jsonl(text: str, limits: ParseLimits) -> list[Page]:
    lines, records = [], 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        records += 1
        if records > limits.max_rows:
            raise TooManyRows(f"the file has more than {limits.max_rows:,} JSON records")
        if len(line) > limits.max_line_chars:
            raise LineTooLong(f"line {number} has {len(line):,} characters; the limit is "
                              f"{limits.max_line_chars:,}")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorruptFile(f"line {number} is not valid JSON ({error.msg})") from error
        except RecursionError:  # nested past the interpreter's own limit
            record = TOO_DEEP
        if record is TOO_DEEP or depth(record) > limits.max_json_depth:
            raise TooDeep(f"line {number} nests objects or arrays deeper than "
                          f"{limits.max_json_depth} levels")
        lines.append("; ".join(flatten(record)))
    return [Page(None, normalise("\n".join(lines)))]


def check_lines(pages: list[Page], limits: ParseLimits) -> None:
    """A page line longer than the limit is a text without structure (or an attack)."""
    for page in pages:
        longest = max(map(len, page.text.split("\n")), default=0)
        if longest > limits.max_line_chars:
            where = f"page {page.number} has" if page.number else "the text has"
            raise LineTooLong(f"{where} a line of {longest:,} characters without a break; the "
                              f"limit is {limits.max_line_chars:,}")


def parse_path(path: Path, kind: str, limits: ParseLimits) -> list[Page]:
    """Parse in this process; `parse_file` wraps this with the time and memory bounds."""
    if kind == "pdf":
        pages = parse_pdf(path)
    elif kind == "docx":
        pages = parse_docx(path, limits)
    else:
        text = decode_text(path.read_bytes())
        parsers = {
            "text": lambda t: [Page(None, normalise(t))],
            "html": parse_html,
            "csv": lambda t: parse_csv(t, limits),
            "jsonl": lambda t: parse_jsonl(t, limits),
        }
        pages = parsers[kind](text)
    if not any(page.text for page in pages):
        raise NoText("the file contains no extractable text (a scanned PDF needs OCR first)")
    check_lines(pages, limits)
    return pages


def check_size(size: int, limits: ParseLimits) -> None:
    if size == 0:
        raise EmptyFile("the file is empty")
    if size > limits.max_bytes:
        raise FileTooLarge(
            f"the file has {size:,} bytes; the limit is {limits.max_bytes:,} bytes"
        )


def _child(path: str, kind: str, limits: ParseLimits, conn) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
    try:
        pages = parse_path(Path(path), kind, limits)
        conn.send(("ok", [(page.number, page.text) for page in pages]))
    except DocumentError as error:
        conn.send(("error", type(error).__name__, error.message))
    except MemoryError:
        conn.send(("error", "ParseLimit", "parsing the file needs more memory than allowed"))
    except Exception as error:  # an unknown parser failure is still this file's problem only
        conn.send(("error", "CorruptFile", f"the file could not be parsed ({error})"))
    finally:
        conn.close()


class DocumentParser:
    """Runs each parse in a fresh child of a fork server: a hang or a memory blow-up in a
    parser library costs that one file, never the app."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload(
            ["core.documents.parsing", "pypdf", "docx", "bs4", "charset_normalizer"]
        )

    def parse(self, path: Path, name: str) -> list[Page]:
        kind = kind_of(name)
        check_size(path.stat().st_size, self.limits)
        receiver, sender = self._context.Pipe(duplex=False)
        child = self._context.Process(
            target=_child, args=(str(path), kind, self.limits, sender), daemon=True
        )
        child.start()
        sender.close()
        try:
            if not receiver.poll(self.limits.timeout_s):
                raise ParseLimit(f"parsing took longer than {self.limits.timeout_s:g} s")
            message = receiver.recv()
        except EOFError as error:
            raise ParseLimit("the parser stopped (out of memory?) before it finished") from error
        finally:
            receiver.close()
            child.kill()
            child.join()
        if message[0] == "error":
            raise ERRORS[message[1]](message[2])
        return [Page(number, text) for number, text in message[1]]
