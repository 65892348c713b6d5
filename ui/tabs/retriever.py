"""Retriever tab: fine-tune the embedding model behind document search, compare its retrieval
before and after, and promote it (re-embedding the chunk store) or roll it back."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.documents.retrievers import EMBEDDING_DEFAULTS
from core.errors import InvalidInput
from core.services import Services
from core.training.spec import EMBEDDING_LOSSES
from ui.charts import evaluation_figure
from ui.errors import problem, shows_errors, warn
from ui.identity import user_name
from ui.job_panel import JobPanel, estimate_for, estimate_text
from ui.live import Live
from ui.readable import named


def dataset_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{d.name} v{d.version} · {d.train_count} train / {d.validation_count} val", d.id)
            for d in services.datasets.list() if d.kind == "embedding"]


def retriever_choices(services: Services) -> list[tuple[str, str]]:
    serving = services.retrievers.active().id
    return [(f"{'★ ' if r.id == serving else ''}{named(r.name, r.id)}", r.id)
            for r in services.retrievers.list()]


def served_text(services: Services) -> str:
    active = services.retrievers.active()
    return f"Document search is served by **{named(active.name, active.id)}**."


def evaluation_views(services: Services, retriever_id: str | None):
    """(table, chart) of a retriever's before/after figures on its held-out queries."""
    table = services.retrievers.evaluation_table(retriever_id) if retriever_id else []
    frame = pd.DataFrame(table, columns=["metric", "before", "after", "change"])
    return frame, evaluation_figure(table, ["before", "after"])


def build_retriever_tab(services: Services, live: Live, user: gr.Textbox) -> None:
    runner, retrievers = services.training, services.retrievers
    with gr.Tab("Retriever", id="retriever"):
        served = gr.Markdown(served_text(services))
        with gr.Row():
            dataset = gr.Dropdown(dataset_choices(services), label="Embedding dataset version",
                                  scale=3)
            loss = gr.Radio(list(EMBEDDING_LOSSES), value=EMBEDDING_LOSSES[0], label="Loss",
                            scale=3)
            epochs = gr.Number(EMBEDDING_DEFAULTS["epochs"], label="Epochs", scale=1)
        with gr.Accordion("Options", open=False), gr.Row():
            lr = gr.Number(EMBEDDING_DEFAULTS["learning_rate"], label="Learning rate")
            batch = gr.Number(EMBEDDING_DEFAULTS["batch_size"], label="Batch size", precision=0)
            patience = gr.Number(2, label="Early stopping patience (evaluations; 0 = off)",
                                 precision=0)
            every = gr.Number(0, label="Evaluate every (steps; 0 = ten times a run)",
                              precision=0)
        start = gr.Button("Train retriever", variant="primary")
        panel = JobPanel(services, live, kinds=("embedding",),
                         hint="Pick an embedding dataset version and press Train retriever.")
        gr.Markdown("### Retrievers")
        with gr.Row():
            retriever = gr.Dropdown(retriever_choices(services), label="Retriever", scale=3)
            promote = gr.Button("Promote (re-embed documents)", variant="primary")
            rollback = gr.Button("Roll back last promotion")
        outcome = gr.Markdown()
        with gr.Row(visible=False) as results:  # once a retriever is picked
            table = gr.Dataframe(label="Held-out retrieval, before → after", interactive=False)
            figure = gr.Plot(label="Before and after")

        def make_spec(dataset_id, loss_name, epoch_count, rate, batch_size, wait, each):
            if not dataset_id:
                raise InvalidInput("pick an embedding dataset version first")
            return retrievers.make_spec({
                "embedding_loss": loss_name, "epochs": epoch_count, "learning_rate": rate,
                "batch_size": int(batch_size or 0),
                "early_stopping_patience": int(wait or 0) or None,
                "eval_every": int(each or 0) or None,
            }, dataset_id=dataset_id)

        @shows_errors(problem)
        def estimated(*values):
            if not values[0]:
                return ""
            return estimate_text(estimate_for(services, make_spec(*values)))

        @shows_errors(panel.failed)
        def begin(request: gr.Request, name, *values):
            spec = make_spec(*values)
            dataset = services.datasets.get(spec.dataset_id)
            record = runner.submit(spec, name=f"retriever · {values[1]} · {dataset.name} "
                                   f"v{dataset.version}", user=user_name(name, request))
            return panel.started(record)

        @shows_errors(warn(gr.skip(), gr.skip(), gr.skip()))
        def pick(retriever_id):
            return *evaluation_views(services, retriever_id), gr.update(visible=True)

        @shows_errors(lambda m: (problem(m), served_text(services),
                                     gr.update(choices=retriever_choices(services))))
        def switch(action, retriever_id, name, progress):
            report = lambda f, text: progress(f, desc=text)  # noqa: E731
            if action == "promote":
                if not retriever_id:
                    raise InvalidInput("pick a retriever first")
                record = retrievers.promote(retriever_id, user=name, progress=report)
                message = f"✅ promoted **{record.id}**; the chunk store was re-embedded."
            else:
                record = retrievers.rollback(user=name, progress=report)
                message = f"✅ rolled back; **{record.id}** serves document search again."
            return (message, served_text(services),
                    gr.update(choices=retriever_choices(services)))

        def promote_with_progress(request: gr.Request, retriever_id, name,
                                  progress=gr.Progress()):  # noqa: B008
            return switch("promote", retriever_id, user_name(name, request), progress)

        def rollback_with_progress(request: gr.Request, name,
                                   progress=gr.Progress()):  # noqa: B008
            return switch("rollback", None, user_name(name, request), progress)

        inputs = [dataset, loss, epochs, lr, batch, patience, every]
        start.click(begin, [user, *inputs], panel.outputs)
        for box in (dataset, epochs, batch):
            box.change(estimated, inputs, panel.estimate, show_progress="hidden")
        retriever.input(pick, retriever, [table, figure, results])
        promote.click(promote_with_progress, [retriever, user], [outcome, served, retriever],
                      show_progress_on=outcome)
        rollback.click(rollback_with_progress, user, [outcome, served, retriever],
                       show_progress_on=outcome)
        live.on_change(lambda: (gr.update(choices=dataset_choices(services)),
                                gr.update(choices=retriever_choices(services)),
                                served_text(services)), None, [dataset, retriever, served])
