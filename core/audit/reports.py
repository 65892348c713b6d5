"""Export a report as JSON and as one self-contained HTML file with its plotly figures inlined.

Figures arrive as plotly JSON (drawn by the UI from core's data), so core never imports
the UI; all text and tables are escaped, never inserted as live HTML.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } caption { text-align: left; font-weight: 600; padding: 0.3rem 0; }
pre { white-space: pre-wrap; background: #f7f7f7; padding: 0.6rem; }
"""


@dataclass(frozen=True, kw_only=True)
class Section:
    heading: str
    text: str = ""
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)  # plotly figure JSON


def plain(value):
    """JSON-safe values: numpy scalars and arrays, frames, dataclasses, times; NaN -> null."""
    if isinstance(value, pd.DataFrame):
        return [plain(r) for r in value.astype(object).to_dict(orient="records")]
    if isinstance(value, pd.Series):
        return plain(value.to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (pd.Timestamp, np.datetime64)) or hasattr(value, "isoformat"):
        return str(value)
    if value is pd.NA or value is pd.NaT:
        return None
    return value


def to_json(report) -> str:
    return json.dumps(plain(report), indent=2, ensure_ascii=False)


def to_html(title: str, sections: list[Section]) -> str:
    """One page; plotly.js is embedded once, with the first figure."""
    import plotly.io as pio

    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>Exported {html.escape(time.strftime('%Y-%m-%d %H:%M:%S'))}</p>"]
    plotly_included = False
    for section in sections:
        parts.append(f"<h2>{html.escape(section.heading)}</h2>")
        if section.text:
            parts.append(f"<pre>{html.escape(section.text)}</pre>")
        for figure_json in section.figures:
            figure = pio.from_json(figure_json)
            parts.append(figure.to_html(full_html=False, include_plotlyjs=not plotly_included))
            plotly_included = True
        for caption, frame in section.tables:
            table = frame.to_html(index=False, escape=True, na_rep="", float_format="{:.4g}".format)
            parts.append(table.replace(">", f"><caption>{html.escape(caption)}</caption>", 1))
    body = "\n".join(parts)
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>{body}</body></html>"
    )


def write_report(
    directory: Path, name: str, report, *, title: str, sections: list[Section]
) -> tuple[Path, Path]:
    """Write <name>-<time>.json and .html into directory; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"{re.sub(r'[^A-Za-z0-9_-]+', '-', name).strip('-') or 'report'}-"
    stem += time.strftime("%Y%m%d-%H%M%S")
    json_path, html_path = directory / f"{stem}.json", directory / f"{stem}.html"
    json_path.write_text(to_json(report), encoding="utf-8")
    html_path.write_text(to_html(title, sections), encoding="utf-8")
    return json_path, html_path
