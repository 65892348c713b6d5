"""Answers as wrapped text cards (prompt, answer, correction, who rated what), for the tabs
where people read answers rather than scan columns. Shown in a gr.Markdown (which sanitizes
HTML); every text is escaped and its line breaks become <br>, so no blank line ends the card's
HTML block and nothing in an answer is read as markup."""

from __future__ import annotations

import html

import pandas as pd

from ui.readable import cell, when

MAX_CARDS = 20


def _text(value) -> str:
    value = cell(value)
    text = html.escape("" if value is None else str(value))
    return text.replace("\r", "").replace("\n", "<br>")


def answer_cards(rows: pd.DataFrame, *, limit: int = MAX_CARDS) -> str:
    if rows is None or rows.empty:
        return "<p>No rows.</p>"
    cards = []
    for row in rows.head(limit).to_dict("records"):
        stars = cell(row.get("rating"))
        meta = ["★" * int(stars) if stars else "",
                {"up": "👍", "down": "👎"}.get(row.get("thumb") or "", ""),
                _text(row.get("rater")), _text(row.get("tags")),
                _text(row.get("model_version") or row.get("model_id") or ""),
                when(next((stamp for stamp in (row.get("rated_at"), row.get("created_at"))
                           if not pd.isna(stamp)), None))]  # an unrated turn: when it was asked
        if row.get("label"):
            by = row.get("curated_by")
            meta.append(f"label <b>{_text(row['label'])}</b>" + (f" by {_text(by)}" if by else ""))
        correction = row.get("correction")
        fixed = (f'<div class="text"><b>Correction:</b> {_text(correction)}</div>'
                 if isinstance(correction, str) and correction.strip() else "")
        cards.append(
            f'<div class="answer-card"><div class="meta">'
            f'{" · ".join(part for part in meta if part)}</div>'
            f'<div class="text"><b>Q:</b> {_text(row.get("prompt"))}</div>'
            f'<div class="text"><b>A:</b> {_text(row.get("response"))}</div>{fixed}</div>')
    more = (f"<p>Showing {limit} of {len(rows)} rows on this page; the table below has all."
            "</p>" if len(rows) > limit else "")
    return "\n".join(cards) + more
