"""Logs tab: every logged turn with its ratings; filter, page and download."""

from __future__ import annotations

import time

import gradio as gr

from core.feedback.turn_filter import TurnFilter
from core.services import Services
from ui.cards import answer_cards
from ui.errors import problem, shows_errors
from ui.live import Live
from ui.readable import cell, to_datetime

PAGE_SIZE = 50
THUMBS = {"any": None, "up": "up", "down": "down", "no thumb": "none"}
SHOWN = [
    "prompt",
    "response",
    "rating",
    "thumb",
    "tags",
    "correction",
    "rater",
    "model_id",
    "route",
    "latency_ms",
    "tokens_per_s",
    "confidence",
    "created_at",
    "conversation_id",
    "response_id",
]


def make_filter(text, min_rating, max_rating, thumb, date_from, date_to, page=1) -> TurnFilter:
    """The filter of the tab's fields (the page is read by the caller)."""
    low, high = int(min_rating), int(max_rating)
    return TurnFilter(
        text=text or None,
        min_rating=low if low > 1 else None,
        max_rating=high if high < 5 else None,
        thumb=THUMBS[thumb],
        date_from=to_datetime(date_from),
        date_to=to_datetime(date_to),
    )


def build_logs_tab(services: Services, live: Live) -> None:
    with gr.Tab("Logs", id="logs") as tab:
        with gr.Row():
            text = gr.Textbox(label="Text in prompt, answer or correction", scale=3)
            thumb = gr.Dropdown(list(THUMBS), value="any", label="Thumb", scale=1)
            min_rating = gr.Slider(1, 5, value=1, step=1, label="Min stars", scale=1)
            max_rating = gr.Slider(1, 5, value=5, step=1, label="Max stars", scale=1)
        with gr.Row():
            date_from = gr.DateTime(label="From", include_time=True, type="datetime")
            date_to = gr.DateTime(label="To", include_time=True, type="datetime")
            page = gr.Number(value=1, minimum=1, precision=0, label="Page")
            refresh = gr.Button("Apply filters", variant="primary")
        summary = gr.Markdown()
        with gr.Accordion("Answers", open=True):
            cards = gr.Markdown()
        table = gr.Dataframe(interactive=False, wrap=True, max_height=520, show_search="search",
                             visible=False)  # until there are rows (no "1 2 3" placeholder)
        with gr.Row():
            csv_button = gr.Button("Download CSV")
            parquet_button = gr.Button("Download Parquet")
        download = gr.File(label="Export", interactive=False, visible=False)

    filters = [text, min_rating, max_rating, thumb, date_from, date_to, page]

    @shows_errors(lambda m: (problem(m), None, gr.update(visible=False)), expected=(ValueError,))
    def show(*values):
        flt = make_filter(*values)
        total = services.feedback.count_turns(flt)
        offset = (max(int(values[-1] or 1), 1) - 1) * PAGE_SIZE
        rows = services.feedback.turns(flt, limit=PAGE_SIZE, offset=offset)
        frame = rows[[c for c in SHOWN if c in rows.columns]].map(cell)
        pages = max(1, -(-total // PAGE_SIZE))
        return (f"{total:,} row(s) · page {int(values[-1] or 1)} of {pages}",
                answer_cards(rows), gr.update(value=frame, visible=not frame.empty))

    def export(fmt: str):
        def run(*values):
            flt = make_filter(*values)
            name = f"interactions-{time.strftime('%Y%m%d-%H%M%S')}.{fmt}"
            folder = services.settings.data_dir / "exports"
            path = services.feedback.export_turns(flt, folder / name, fmt)
            return gr.update(value=str(path), visible=True)

        return run

    for trigger in (refresh.click, text.submit, tab.select):
        trigger(show, filters, [summary, cards, table])
    live.on_change(show, filters, [summary, cards, table])  # new turns show at once
    csv_button.click(export("csv"), filters, download)
    parquet_button.click(export("parquet"), filters, download)
