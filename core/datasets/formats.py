"""Dataset files in and out: OpenAI chat JSONL, Alpaca JSON, CSV, Parquet."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.datasets.rows import CONTENT
from core.errors import InvalidInput

EXPORT_FORMATS = ("jsonl", "csv", "parquet")
IMPORT_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")
MAX_IMPORT_BYTES = 200 * 1024 * 1024
JSON_COLUMNS = ("messages", "negatives", "meta")  # nested fields, JSON text in CSV cells


def record_to_row(record: dict) -> tuple[str, dict]:
    """Recognise one record's format; return (kind, row)."""
    keys = set(record)
    if "messages" in keys:
        return "sft", {"messages": record["messages"]}
    if {"instruction", "output"} <= keys:  # Alpaca
        extra = str(record.get("input") or "").strip()
        prompt = str(record["instruction"]) + (f"\n\n{extra}" if extra else "")
        return "sft", _chat(prompt, record["output"], record.get("system"))
    if {"prompt", "chosen", "rejected"} <= keys:
        return "preference", {k: record[k] for k in CONTENT["preference"]}
    if {"query", "positive"} <= keys:
        return "embedding", {
            "query": record["query"],
            "positive": record["positive"],
            "negatives": record.get("negatives") or [],
        }
    for answer in ("response", "completion", "output"):
        if {"prompt", answer} <= keys:
            return "sft", _chat(record["prompt"], record[answer], record.get("system"))
    if "text" in keys:
        return "text", {"text": record["text"]}
    raise InvalidInput(
        "unrecognised row: expected messages (OpenAI chat), instruction/output (Alpaca), "
        f"prompt/response, prompt/chosen/rejected, query/positive or text; got {sorted(keys)}"
    )


def _chat(prompt, answer, system=None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return {
        "messages": [
            *messages,
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": answer},
        ]
    }


def read_records(data: bytes, filename: str) -> list[dict]:
    """Parse a file into plain records; errors name the line or row."""
    suffix = Path(filename).suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise InvalidInput(f"cannot import {filename!r}: use {', '.join(IMPORT_SUFFIXES)}")
    if not data.strip():
        raise InvalidInput(f"{filename!r} is empty")
    if len(data) > MAX_IMPORT_BYTES:
        raise InvalidInput(f"{filename!r} is over the {MAX_IMPORT_BYTES // 2**20} MB import limit")
    if suffix == ".jsonl":
        return [_json_line(line, n) for n, line in enumerate(_lines(data), 1) if line.strip()]
    if suffix == ".json":
        try:
            value = json.loads(_decode(data))
        except json.JSONDecodeError as error:
            raise InvalidInput(f"{filename!r} is not valid JSON: {error}") from None
        if not isinstance(value, list):
            raise InvalidInput("a JSON import must be a list of records (Alpaca format)")
        return value
    try:
        frame = (
            pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
            if suffix == ".csv"
            else pd.read_parquet(io.BytesIO(data))
        )
    except Exception as error:  # pandas raises many kinds for a broken file
        raise InvalidInput(f"cannot read {filename!r}: {error}") from None
    return [_unflatten(record) for record in frame.to_dict(orient="records")]


def _decode(data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput("the file is not UTF-8 text") from None


def _lines(data: bytes) -> list[str]:
    return _decode(data).splitlines()


def _json_line(line: str, number: int) -> dict:
    try:
        return json.loads(line)
    except json.JSONDecodeError as error:
        raise InvalidInput(f"line {number} is not valid JSON: {error.msg}") from None


def _unflatten(record: dict) -> dict:
    out = {}
    for key, value in record.items():
        if key in JSON_COLUMNS and isinstance(value, str):
            try:
                value = json.loads(value) if value.strip() else None
            except json.JSONDecodeError:
                raise InvalidInput(f"column {key!r} must hold JSON, got {value[:40]!r}") from None
        elif hasattr(value, "tolist"):  # parquet lists arrive as numpy arrays
            value = value.tolist()
        if value is not None and value != "":
            out[key] = value
    return out


def records_to_rows(records: list[dict], *, source: str) -> tuple[str, list[dict]]:
    """All records must be of one kind; each row remembers its source and line."""
    if not records:
        raise InvalidInput(f"{source!r} holds no rows")
    kind, rows = None, []
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise InvalidInput(f"row {number}: expected an object, got {type(record).__name__}")
        try:
            this, row = record_to_row(record)
        except InvalidInput as error:
            raise InvalidInput(f"row {number}: {error.message}") from None
        if kind is not None and this != kind:
            raise InvalidInput(f"row {number} is a {this} row but earlier rows are {kind}")
        kind = this
        meta = record.get("meta") if isinstance(record.get("meta"), dict) else {}
        rows.append(
            {**row, "meta": {"label": "imported", **meta, "source": source, "line": number}}
        )
    return kind, rows


def write_export(kind: str, splits: dict[str, list[dict]], path: Path, fmt: str) -> Path:
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": row["id"],
            "split": split,
            **{k: row[k] for k in CONTENT[kind]},
            "meta": row.get("meta", {}),
        }
        for split, items in splits.items()
        for row in items
    ]
    if fmt == "jsonl":
        with path.open("w", encoding="utf-8") as out:
            for row in rows:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        flat = [
            {
                k: json.dumps(v, ensure_ascii=False) if k in JSON_COLUMNS else v
                for k, v in row.items()
            }
            for row in rows
        ]
        pd.DataFrame(flat, columns=["id", "split", *CONTENT[kind], "meta"]).to_csv(
            path, index=False
        )
    else:
        table = pa.Table.from_pylist(
            [{**row, "meta": json.dumps(row["meta"], ensure_ascii=False)} for row in rows]
        )
        pq.write_table(table, path)
    return path
