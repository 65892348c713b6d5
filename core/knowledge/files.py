"""Knowledge check items as JSONL or CSV: one item per line/row, the same columns both ways."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from core.errors import InvalidInput

COLUMNS = ("question", "reference", "chunk_id", "document_id", "source")
FORMATS = ("jsonl", "csv")
REFERENCE_ALIASES = ("reference", "answer")


def export_items(items: list[dict], fmt: str) -> str:
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    rows = [{column: item.get(column) for column in COLUMNS} for item in items]
    if fmt == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
    return out.getvalue()


def read_items(data: bytes, filename: str) -> list[dict]:
    """Rows with a question and a reference (or answer); the optional columns may be empty."""
    suffix = Path(filename).suffix.lower()
    if suffix not in (".jsonl", ".csv"):
        raise InvalidInput(f"{filename}: use a .jsonl or .csv file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"{filename}: not UTF-8 text ({error})") from error
    if suffix == ".csv":
        records = list(csv.DictReader(io.StringIO(text)))
    else:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise InvalidInput(f"{filename} line {number}: not JSON ({error.msg})") from None
    items = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise InvalidInput(f"{filename} item {number}: expected an object")
        reference = next((record[k] for k in REFERENCE_ALIASES if record.get(k)), None)
        item = {
            "question": record.get("question"),
            "reference": reference,
            **{k: record.get(k) or None for k in COLUMNS[2:]},
        }
        if not isinstance(item["question"], str) or not isinstance(reference, str):
            raise InvalidInput(f"{filename} item {number}: needs a question and a reference")
        items.append(item)
    if not items:
        raise InvalidInput(f"{filename}: no items")
    return items
