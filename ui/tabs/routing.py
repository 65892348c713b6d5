"""Routing tab: which adapter answers which prompts; add and remove routes, preview a prompt."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.services import Services
from core.serving.routing import RouteSpec
from ui.errors import problem, shows_errors
from ui.markup import as_text

COLUMNS = ["id", "adapter", "kind", "patterns", "threshold", "added"]


def routes_table(services: Services) -> pd.DataFrame:
    rows = [
        [r.id, r.model_id, r.kind, ", ".join(r.patterns),
         "" if r.threshold is None else f"{r.threshold:.2f}",
         r.created_at.strftime("%Y-%m-%d %H:%M")]
        for r in services.routing.list()
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def adapter_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{m.name} ({m.id})", m.id) for m in services.registry.list()]


def route_choices(services: Services) -> list[tuple[str, str]]:
    return [
        (f"{r.id}: {r.model_id} · {', '.join(r.patterns) or f'similarity ≥ {r.threshold:.2f}'}",
         r.id)
        for r in services.routing.list()
    ]


def parse_patterns(text: str) -> tuple[str, ...]:
    """One keyword or regular expression per line (commas may be part of a regex)."""
    return tuple(line.strip() for line in (text or "").splitlines() if line.strip())


def build_routing_tab(services: Services) -> None:
    with gr.Tab("Routing", id="routing") as tab:
        gr.Markdown(
            "Send each chat to the adapter made for it. **Rules** (keywords or regular "
            "expressions, case-insensitive) are tried in the order they were added; then "
            "**similarity** to each adapter's training prompts picks the closest one above its "
            "threshold; otherwise the served model answers. A model chosen in the Chat tab and a "
            "running A/B experiment come before any route."
        )
        table = gr.Dataframe(routes_table(services), interactive=False, wrap=True,
                             label="Routes")
        with gr.Row():
            with gr.Column():
                adapter = gr.Dropdown(adapter_choices(services), label="Adapter")
                kind = gr.Radio(["rule", "similarity"], value="rule", label="Kind")
                patterns = gr.Textbox(label="Keywords or regular expressions (one per line)",
                                      lines=3, placeholder="invoice\n\\bVAT\\b")
                threshold = gr.Slider(0.05, 0.95, value=0.5, step=0.01,
                                      label="Similarity threshold", visible=False)
                add = gr.Button("Add route", variant="primary")
            with gr.Column():
                chosen = gr.Dropdown(route_choices(services), label="Route to remove")
                remove = gr.Button("Remove route", variant="stop")
                prompt = gr.Textbox(label="Preview: where would this prompt go?", lines=2)
                preview = gr.Button("Preview")
        status = gr.Markdown()

    def refresh():
        return (routes_table(services), gr.update(choices=adapter_choices(services)),
                gr.update(choices=route_choices(services), value=None))

    @shows_errors(lambda m: (problem(m), *refresh()))
    def add_route(model_id, route_kind, pattern_text, level):
        record = services.routing.add(RouteSpec(
            model_id=model_id or "", kind=route_kind, patterns=parse_patterns(pattern_text),
            threshold=float(level),
        ))
        return f"✅ Added route {record.id} to {as_text(record.model_id)}.", *refresh()

    @shows_errors(lambda m: (problem(m), *refresh()))
    def remove_route(route_id):
        if not route_id:
            return "⚠️ Pick a route to remove.", *refresh()
        services.routing.remove(route_id)
        return f"✅ Removed route {route_id}.", *refresh()

    @shows_errors(problem)
    def show_preview(text):
        route = services.routing.preview(text)
        return f"→ **{as_text(route.model_id)}** (route: `{route.reason.replace('`', chr(39))}`)"

    outputs = [status, table, adapter, chosen]
    kind.change(lambda k: (gr.update(visible=k == "rule"), gr.update(visible=k == "similarity")),
                kind, [patterns, threshold])
    add.click(add_route, [adapter, kind, patterns, threshold], outputs)
    remove.click(remove_route, chosen, outputs)
    preview.click(show_preview, prompt, status)
    prompt.submit(show_preview, prompt, status)
    tab.select(refresh, None, [table, adapter, chosen])
    adapter.focus(lambda: gr.update(choices=adapter_choices(services)), None, adapter)
