"""Lists and panels that follow the store: one timer per page polls cheap row counts and each
listener re-reads its data only when they changed (a new job, dataset, adapter, vote ...)."""

from __future__ import annotations

import json

import gradio as gr

from core.services import Services

POLL_S = 2.0


class Live:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.version = gr.State("")
        self.timer = gr.Timer(POLL_S)

        def poll():
            return json.dumps(services.dashboard.queries.loop_counts(), sort_keys=True)

        self.timer.tick(poll, None, self.version, show_progress="hidden")

    def on_change(self, fn, inputs=None, outputs=None) -> None:
        """Run `fn` whenever the stored state changes (and once when the page loads)."""
        self.version.change(fn, inputs, outputs, show_progress="hidden")
