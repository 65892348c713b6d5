"""The studio's page: one tab per concept, each built by its own module."""

from __future__ import annotations

import gradio as gr

from core.services import Services
from ui.tabs.chat import build_chat_tab
from ui.tabs.logs import build_logs_tab

TITLE = "Refinery"


def build_app(services: Services) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as blocks:
        gr.Markdown(
            f"# {TITLE}\nChat with **{services.models.name}**, rate its answers, "
            "and find every turn in the log."
        )
        with gr.Tabs():
            build_chat_tab(services)
            build_logs_tab(services)
    return blocks
