"""Table cells people can read: names before short ids, rounded numbers, dates as dates, no
raw lists or dicts. Every tab's tables go through here."""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

ID_CHARS = 8


def short_id(value: str | None) -> str:
    """The distinctive part of an id: "adapter-5ad0379159d6" -> "5ad03791"."""
    tail = (value or "").rsplit("-", 1)[-1]
    return tail[:ID_CHARS]


def named(name: str | None, ident: str | None) -> str:
    """"name · 1a2b3c4d": what people recognise first, the id to tell twins apart last."""
    if not ident:
        return name or ""
    return f"{name} · {short_id(ident)}" if name and name != ident else short_id(ident)


def when(value) -> str:
    """A minute-precision local date and time from a datetime or ISO text."""
    if value is None or value is pd.NaT or value == "":  # NaT is a datetime without strftime
        return ""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def number(value, digits: int = 3):
    """Floats to `digits` significant figures (ints and text as they are)."""
    if isinstance(value, bool) or not isinstance(value, float):
        return value
    if value != value:  # NaN
        return None
    return float(f"{value:.{digits}g}")


def cell(value):
    """One table cell: lists joined, dicts as `key: value`, dates as dates, floats rounded."""
    if hasattr(value, "tolist") and not isinstance(value, (str, datetime)):
        value = value.tolist()  # numpy arrays and scalars from DataFrames
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return None
    if isinstance(value, (datetime, date)):
        return when(value)
    if isinstance(value, dict):
        return ", ".join(f"{key}: {cell(item)}" for key, item in value.items())
    if isinstance(value, (list, tuple, set)):
        return ", ".join(str(cell(item)) for item in value)
    return number(value)


def frame(rows: list[dict], columns: list[str], *, ids: tuple[str, ...] = ()) -> pd.DataFrame:
    """A DataFrame of readable cells in `columns` order; `ids` columns shortened."""
    data = [{column: short_id(row.get(column)) if column in ids else cell(row.get(column))
             for column in columns} for row in rows]
    return pd.DataFrame(data, columns=columns)


def to_datetime(value) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value)
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
