"""Feedback tab: filter and page rated turns, bulk-label them, and run the quality checks."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.feedback.ratings import BulkAction, parse_tags
from core.feedback.turn_filter import TurnFilter
from core.services import Services
from ui.cards import answer_cards
from ui.errors import problem, shows_errors
from ui.identity import user_name
from ui.live import Live
from ui.readable import cell, to_datetime

PAGE_SIZE = 50
ANY = "any"
THUMBS = {ANY: None, "up": "up", "down": "down", "no thumb": "none"}
YES_NO = {ANY: None, "yes": True, "no": False}
SHOWN = [
    "prompt", "response", "correction", "rating", "thumb", "tags", "label", "include",
    "curated_by", "grounded", "rater", "model_version", "created_at", "rated_at", "response_id",
]  # fmt: skip
ACTIONS = {
    "add tags": "add_tags",
    "remove tags": "remove_tags",
    "set label": "set_label",
    "include in training": "include",
    "exclude from training": "exclude",
}


def make_filter(
    text, rater, model_version, label, min_rating, max_rating, thumb, tags,
    has_correction, grounded, included, date_from, date_to,
) -> TurnFilter:  # fmt: skip
    low, high = int(min_rating), int(max_rating)
    return TurnFilter(
        text=text or None,
        rater=None if rater in (None, ANY) else rater,
        model_version=None if model_version in (None, ANY) else model_version,
        label=None if label in (None, ANY) else label,
        min_rating=low if low > 1 else None,
        max_rating=high if high < 5 else None,
        thumb=THUMBS[thumb],
        tags=tuple(tags or ()),
        has_correction=YES_NO[has_correction],
        grounded=YES_NO[grounded],
        include=YES_NO[included],
        date_from=to_datetime(date_from),
        date_to=to_datetime(date_to),
    )


def selected_ids(text: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(part for part in text.replace(",", " ").split() if part))


def agreement_text(agreement) -> str:
    if agreement is None or (agreement.kappa is None and agreement.alpha is None):
        return f"**Agreement:** {agreement.note if agreement else 'no ratings'}"
    parts = [f"{len(agreement.raters)} raters, {agreement.items} shared answers"]
    if agreement.kappa is not None:
        parts.append(f"Cohen's κ = {agreement.kappa:.3f}")
    if agreement.alpha is not None:
        parts.append(f"Krippendorff's α = {agreement.alpha:.3f}")
    return (f"**Agreement on {agreement.field}:** " + " · ".join(parts) + "\n\n"
            "Both are 0 at chance and 1 when raters always agree. κ counts only exact matches "
            "between two raters; α weighs how far apart star ratings are, so ratings one star "
            "apart keep α high while κ drops.")


def build_feedback_tab(services: Services, live: Live, user: gr.Textbox) -> gr.State:
    """Returns the current selection (a TurnFilter) for the Datasets tab."""
    choices = services.feedback.choices()
    with gr.Tab("Feedback", id="feedback") as tab:
        with gr.Row():
            text = gr.Textbox(label="Text in prompt, answer or correction", scale=3)
            rater = gr.Dropdown([ANY, *choices["raters"]], value=ANY, label="Rater")
            model_version = gr.Dropdown(
                [ANY, *choices["model_versions"]], value=ANY, label="Model version"
            )
            label = gr.Dropdown([ANY, *choices["labels"]], value=ANY, label="Label")
        with gr.Row():
            min_rating = gr.Slider(1, 5, value=1, step=1, label="Min stars")
            max_rating = gr.Slider(1, 5, value=5, step=1, label="Max stars")
            thumb = gr.Dropdown(list(THUMBS), value=ANY, label="Thumb")
            tags = gr.Dropdown(choices["tags"], multiselect=True, label="Any of these tags")
        with gr.Row():
            has_correction = gr.Radio(list(YES_NO), value=ANY, label="Has correction")
            grounded = gr.Radio(list(YES_NO), value=ANY, label="Grounded on documents")
            included = gr.Radio(list(YES_NO), value=ANY, label="In training")
        with gr.Row():
            date_from = gr.DateTime(label="From", include_time=True, type="datetime")
            date_to = gr.DateTime(label="To", include_time=True, type="datetime")
            page = gr.Number(value=1, minimum=1, precision=0, label="Page")
            apply = gr.Button("Apply filters", variant="primary")
        summary = gr.Markdown()
        with gr.Accordion("Answers", open=True):
            cards = gr.Markdown()
        table = gr.Dataframe(interactive=False, wrap=True, max_height=520,
                             label="Rated turns (click a row to select it for bulk actions)")
        with gr.Accordion("Bulk actions", open=False):
            selection = gr.Textbox(label="Selected response ids (click a row to add it)", lines=2)
            with gr.Row():
                scope = gr.Radio(
                    ["selected rows", "all filtered rows"], value="selected rows", label="Apply to"
                )
                action = gr.Dropdown(list(ACTIONS), value="add tags", label="Action")
                value = gr.Textbox(label="Tags (comma-separated) or label")
                run = gr.Button("Apply action")
            outcome = gr.Markdown()
        with gr.Accordion("Quality checks", open=False):
            with gr.Row():
                field = gr.Radio(["rating", "thumb"], value="rating", label="Agreement on")
                check_button = gr.Button("Run checks on the filtered rows")
            agreement = gr.Markdown()
            verdicts = gr.Markdown()
            which = gr.Dropdown([], label="Show the rows flagged by")
            flagged = gr.Dataframe(interactive=False, wrap=True, max_height=400)
        current = gr.State(TurnFilter())
        report = gr.State(None)

    filters = [
        text, rater, model_version, label, min_rating, max_rating, thumb, tags,
        has_correction, grounded, included, date_from, date_to,
    ]  # fmt: skip

    @shows_errors(lambda m: (problem(m), None, None, *[gr.skip()] * 5), expected=(ValueError,))
    def show(*values):
        *fields, page_number = values
        flt = make_filter(*fields)
        result = services.feedback.page(
            flt, page=max(int(page_number or 1), 1), page_size=PAGE_SIZE
        )
        frame = result.rows[[c for c in SHOWN if c in result.rows.columns]].map(cell)
        text_ = f"{result.total:,} rated row(s) · page {result.page} of {result.pages}"
        fresh = services.feedback.choices()
        menus = [
            gr.update(choices=[ANY, *fresh[key]]) for key in ("raters", "model_versions", "labels")
        ]
        return (text_, answer_cards(result.rows), frame, flt, *menus,
                gr.update(choices=fresh["tags"]))

    def pick(chosen: str, event: gr.SelectData) -> str:
        row = event.row_value or []
        if not row:
            return chosen
        return " ".join(dict.fromkeys([*selected_ids(chosen), str(row[-1])]))

    @shows_errors(problem)
    def act(name_: str, flt: TurnFilter, chosen: str, scope_: str, action_: str,
            value_: str, request: gr.Request):
        ids = selected_ids(chosen)
        if scope_ == "selected rows":
            if not ids:
                return "⚠️ select rows first (click them in the table)"
            flt = TurnFilter(response_ids=ids)
        name = ACTIONS[action_]
        bulk = BulkAction(
            action=name,
            tags=parse_tags(value_) if name.endswith("tags") else None,
            label=value_ if name == "set_label" else None,
            user=user_name(name_, request),
        )
        rows = services.feedback.bulk(bulk, flt)
        return f"✅ {action_}: {rows:,} row(s) changed."

    @shows_errors(lambda m: (problem(m), "", gr.update(choices=[]), None, None))
    def check(flt: TurnFilter, field_: str):
        result = services.quality.report(flt, field=field_)
        lines = [
            f"Checked {result.rows_checked:,} row(s)"
            + (" (the newest only)" if result.truncated else "")
            + "."
        ]
        lines += [f"- **{c.name}**: {c.summary}" for c in result.checks]
        names = [c.name for c in result.checks]
        first = result.checks[0].rows if result.checks else None
        return (
            agreement_text(result.agreement),
            "\n".join(lines),
            gr.update(choices=names, value=names[0] if names else None),
            first,
            result,
        )

    def show_check(name: str, result):
        if result is None or not name:
            return None
        rows = next(c.rows for c in result.checks if c.name == name)
        return rows if not rows.empty else pd.DataFrame({"result": ["nothing flagged"]})

    shown = [summary, cards, table, current, rater, model_version, label, tags]
    for trigger in (apply.click, text.submit, tab.select):
        trigger(show, [*filters, page], shown)
    live.on_change(show, [*filters, page], shown)  # new ratings and labels show at once
    table.select(pick, selection, selection)
    run.click(act, [user, current, selection, scope, action, value], outcome).then(
        show, [*filters, page], shown)
    check_button.click(check, [current, field], [agreement, verdicts, which, flagged, report])
    which.change(show_check, [which, report], flagged)
    return current
