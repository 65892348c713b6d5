"""Start page: the loop's state in numbers and its next step as a sentence with a button that
opens the stage where that step is done."""

from __future__ import annotations

import gradio as gr

from core.operations.loop_state import plural
from core.services import Services
from ui.errors import problem, shows_errors
from ui.live import Live

COUNTS = (("documents", "document"), ("chunks", "chunk"), ("turns", "chat turn"),
          ("rated_turns", "rated turn"), ("datasets", "dataset"), ("runs", "training run"),
          ("adapters", "adapter"), ("votes", "vote"))
STAGES = """
| Stage | What you do there |
|---|---|
| **Documents** | upload the files the model should answer from |
| **Chat** | ask questions (grounded on the documents), rate answers, correct them |
| **Curate** | filter and label rated turns, build a dataset version, read the logs |
| **Training** | train a LoRA adapter, tune its settings, fine-tune the retriever |
| **Compare & evaluate** | blind votes base vs adapter, held-out metrics, A/B experiments |
| **Audit** | explain answers, check bias per group, watch drift |
| **Operate** | promote or roll back models, routing, automated retraining, dashboard |
"""


def counts_markdown(counts: dict) -> str:
    return " · ".join(plural(counts[key], label) for key, label in COUNTS)


@shows_errors(lambda m: (problem(m), gr.skip(), gr.skip(), gr.skip()))
def views(services: Services):
    """(counts, next-step sentence, button, stage key) from the store's counts."""
    state = services.dashboard.loop()
    step = state["next"]
    return (counts_markdown(state["counts"]), f"### Next: {step['sentence']}",
            gr.update(value=f"{step['action']} →"), step["stage"])


def build_start_tab(services: Services, live: Live, page: gr.Blocks):
    """Returns (button, stage state): the layout wires the button to select the stage's tab."""
    with gr.Tab("Start", id="start"):
        gr.Markdown("Refinery turns your team's ratings into a better model. Work through the "
                    "stages left to right; this page says what to do next.")
        counts = gr.Markdown(elem_id="loop-counts")
        with gr.Row(equal_height=True):
            sentence = gr.Markdown(elem_id="next-step")
            go = gr.Button("…", variant="primary", scale=0, min_width=280, elem_id="next-step-go")
        gr.Markdown(STAGES)
        stage = gr.State("documents")
    outputs = [counts, sentence, go, stage]
    page.load(lambda: views(services), None, outputs)
    live.on_change(lambda: views(services), None, outputs)
    return go, stage
