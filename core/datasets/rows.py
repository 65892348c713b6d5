"""Dataset rows: their shapes per kind, stable content ids, seeded splits and statistics."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable

import numpy as np

from core.errors import InvalidInput

KINDS = ("sft", "text", "preference", "embedding")
CONTENT = {
    "sft": ("messages",),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected"),
    "embedding": ("query", "positive", "negatives"),
}
ROLES = ("system", "user", "assistant")


def check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def content_id(kind: str, row: dict) -> str:
    """A stable hash of what the example teaches (not of its metadata)."""
    payload = json.dumps([kind, [row[key] for key in CONTENT[kind]]], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def _text(value, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be non-empty text")
    return value


def normalise_row(kind: str, row: dict, index: int) -> dict:
    """Validate one row's shape; return it with its content id and a `meta` dict."""
    check_kind(kind)
    if not isinstance(row, dict):
        raise InvalidInput(f"row {index}: expected an object, got {type(row).__name__}")
    missing = [key for key in CONTENT[kind] if key not in row]
    if missing:
        raise InvalidInput(f"row {index}: a {kind} row needs {', '.join(missing)}")
    try:
        clean = _shape(kind, row)
    except InvalidInput as error:
        raise InvalidInput(f"row {index}: {error.message}") from None
    meta = row.get("meta") or {}
    if not isinstance(meta, dict):
        raise InvalidInput(f"row {index}: meta must be an object")
    return {"id": content_id(kind, clean), **clean, "meta": meta}


def _shape(kind: str, row: dict) -> dict:
    if kind == "sft":
        messages = row["messages"]
        if not isinstance(messages, list) or len(messages) < 2:
            raise InvalidInput("messages must be a list of at least a user and an assistant turn")
        clean = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ROLES:
                raise InvalidInput(f"each message needs a role ({', '.join(ROLES)})")
            clean.append(
                {"role": message["role"], "content": _text(message.get("content"), "content")}
            )
        if clean[-1]["role"] != "assistant":
            raise InvalidInput("the last message must be the assistant's answer")
        if not any(m["role"] == "user" for m in clean):
            raise InvalidInput("messages need at least one user turn")
        return {"messages": clean}
    if kind == "embedding":
        negatives = row["negatives"]
        if not isinstance(negatives, list):
            raise InvalidInput("negatives must be a list of texts")
        return {
            "query": _text(row["query"], "query"),
            "positive": _text(row["positive"], "positive"),
            "negatives": [_text(n, "a negative") for n in negatives],
        }
    return {key: _text(row[key], key) for key in CONTENT[kind]}


def group_key(kind: str, row: dict) -> str:
    """Rows that share this key stay on one side of the split (no prompt leaks across)."""
    if kind == "sft":
        text = next(m["content"] for m in reversed(row["messages"]) if m["role"] == "user")
    else:
        text = row[{"text": "text", "preference": "prompt", "embedding": "query"}[kind]]
    return re.sub(r"\s+", " ", text.lower()).strip()


def split_rows(
    kind: str, rows: list[dict], *, seed: int, validation_fraction: float
) -> tuple[list[dict], list[dict]]:
    """Order groups by a seeded hash and fill validation up to its share; input order is moot."""
    if not 0.0 <= validation_fraction < 1.0:
        raise InvalidInput(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_key(kind, row), []).append(row)

    def rank(key: str) -> str:
        return hashlib.sha256(f"{seed}\x00{key}".encode()).hexdigest()

    ordered = sorted(groups, key=rank)
    want = round(len(rows) * validation_fraction)
    if validation_fraction > 0 and len(groups) > 1:
        want = max(want, 1)
    validation: list[dict] = []
    for key in ordered:
        if len(validation) >= want:
            break
        size = len(groups[key])
        overshoots = bool(validation) and len(validation) + size > want
        if overshoots or len(validation) + size >= len(rows):  # train must keep a row
            continue
        validation.extend(groups[key])
    chosen = {row["id"] for row in validation}
    train = [row for row in rows if row["id"] not in chosen]
    return train, sorted(validation, key=lambda r: rank(group_key(kind, r)))


def row_text(kind: str, row: dict) -> str:
    if kind == "sft":
        return "\n".join(m["content"] for m in row["messages"])
    if kind == "preference":
        return f"{row['prompt']}\n{row['chosen']}"
    if kind == "embedding":
        return f"{row['query']}\n{row['positive']}"
    return row["text"]


def statistics(
    kind: str, splits: dict[str, list[dict]], count_tokens: Callable[[list[str]], list[int]]
) -> dict:
    """Counts, token lengths (with a histogram) and label balance per split."""
    stats: dict = {"counts": {}, "labels": {}, "token_lengths": {}, "marked": {}}
    every = []
    for split, rows in splits.items():
        lengths = count_tokens([row_text(kind, row) for row in rows]) if rows else []
        every.extend(lengths)
        stats["counts"][split] = len(rows)
        labels = Counter(row["meta"].get("label", "unlabelled") for row in rows)
        stats["labels"][split] = dict(labels)
        stats["token_lengths"][split] = _summary(lengths)
        stats["marked"][split] = {
            "synthetic": sum(bool(row["meta"].get("synthetic")) for row in rows),
            "augmented": sum(bool(row["meta"].get("augmented")) for row in rows),
        }
    stats["counts"]["total"] = sum(stats["counts"].values())
    if every:
        counts, edges = np.histogram(every, bins=min(20, max(1, len(set(every)))))
        stats["token_histogram"] = {"counts": counts.tolist(), "edges": edges.tolist()}
    return stats


def _summary(lengths: list[int]) -> dict:
    if not lengths:
        return {"min": 0, "mean": 0.0, "p50": 0.0, "p95": 0.0, "max": 0, "total": 0}
    values = np.asarray(lengths)
    return {
        "min": int(values.min()),
        "mean": round(float(values.mean()), 1),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "max": int(values.max()),
        "total": int(values.sum()),
    }
