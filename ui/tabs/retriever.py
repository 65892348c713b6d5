"""Retriever tab: fine-tune the embedding model behind document search, compare its retrieval
before and after, and promote it (re-embedding the chunk store) or roll it back."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.errors import InvalidInput, RefineryError
from core.retrievers import EMBEDDING_DEFAULTS
from core.services import Services
from core.store.training import ACTIVE
from core.training.spec import EMBEDDING_LOSSES
from ui.charts import evaluation_figure, loss_figure
from ui.tabs.train import duration

REFRESH_S = 2.0


def dataset_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{d.name} v{d.version} · {d.train_count} train / {d.validation_count} val", d.id)
            for d in services.datasets.list() if d.kind == "embedding"]


def job_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{j.id} · {j.status} · {j.name}", j.id)
            for j in services.training.list() if j.kind == "embedding"]


def retriever_choices(services: Services) -> list[tuple[str, str]]:
    serving = services.retrievers.active().id
    return [(f"{'★ ' if r.id == serving else ''}{r.name} ({r.id})", r.id)
            for r in services.retrievers.list()]


def served_text(services: Services) -> str:
    active = services.retrievers.active()
    return f"Document search is served by **{active.name}** (`{active.id}`)."


def status_text(job) -> str:
    m = job.metrics
    filled = int(job.progress * 20)
    lines = [
        f"**{job.name}** · `{job.id}` · **{job.status}**",
        f"`{'█' * filled}{'░' * (20 - filled)}` {job.progress:.0%} · step {job.step}/"
        f"{job.total_steps or '?'} · ETA "
        f"{duration(m.get('eta_s')) if job.status == 'running' else '–'}",
        " · ".join(f"{label} {m[key]:.4f}" for key, label in (("loss", "loss"),
                   ("val_loss", "val loss")) if m.get(key) is not None)
        or "waiting for the first step",
    ]
    if m.get("stopped_early"):
        lines.append(f"Stopped early; kept the weights of step {m.get('best_step')}.")
    if job.model_id:
        lines.append(f"Registered as retriever **{job.model_id}**: see its evaluation below.")
    if job.error:
        lines.append(f"⚠️ {job.error}")
    return "\n\n".join(lines)


def evaluation_views(services: Services, retriever_id: str | None):
    """(table, chart) of a retriever's before/after figures on its held-out queries."""
    table = services.retrievers.evaluation_table(retriever_id) if retriever_id else []
    frame = pd.DataFrame(table, columns=["metric", "before", "after", "change"])
    return frame, evaluation_figure(table, ["before", "after"])


def build_retriever_tab(services: Services) -> None:
    runner, retrievers = services.training, services.retrievers
    with gr.Tab("Retriever", id="retriever"):
        served = gr.Markdown(served_text(services))
        with gr.Row():
            dataset = gr.Dropdown(dataset_choices(services), label="Embedding dataset version",
                                  scale=3)
            loss = gr.Radio(list(EMBEDDING_LOSSES), value=EMBEDDING_LOSSES[0], label="Loss",
                            scale=3)
            epochs = gr.Number(EMBEDDING_DEFAULTS["epochs"], label="Epochs", scale=1)
            refresh = gr.Button("↻ Refresh lists", scale=0)
        with gr.Accordion("Options", open=False), gr.Row():
            lr = gr.Number(EMBEDDING_DEFAULTS["learning_rate"], label="Learning rate")
            batch = gr.Number(EMBEDDING_DEFAULTS["batch_size"], label="Batch size", precision=0)
            patience = gr.Number(2, label="Early stopping patience (evaluations; 0 = off)",
                                 precision=0)
            every = gr.Number(0, label="Evaluate every (steps; 0 = ten times a run)",
                              precision=0)
        with gr.Row():
            start = gr.Button("Train retriever", variant="primary")
            stop = gr.Button("Stop (save)")
            resume = gr.Button("Resume")
            job = gr.Dropdown(job_choices(services), label="Job", scale=3)
        status = gr.Markdown("Pick an embedding dataset version and press Train retriever.")
        chart = gr.Plot(label="Loss")
        log = gr.Textbox(label="Log", lines=4, max_lines=10, interactive=False)
        gr.Markdown("### Retrievers")
        with gr.Row():
            retriever = gr.Dropdown(retriever_choices(services), label="Retriever", scale=3)
            user = gr.Textbox("anonymous", label="Your name", scale=1)
            promote = gr.Button("Promote (re-embed documents)", variant="primary")
            rollback = gr.Button("Roll back last promotion")
        outcome = gr.Markdown()
        with gr.Row():
            table = gr.Dataframe(label="Held-out retrieval, before → after", interactive=False)
            figure = gr.Plot(label="Before and after")
        timer = gr.Timer(REFRESH_S)

        def show(job_id):
            if not job_id:  # re-attach: follow the running embedding job, else the newest
                jobs = sorted((j for j in runner.list() if j.kind == "embedding"),
                              key=lambda j: (j.status != "running", j.status not in ACTIVE))
                job_id = jobs[0].id if jobs else None
            if not job_id:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            try:
                record = runner.get(job_id)
                history, tail = runner.history(job_id), "\n".join(runner.log_tail(job_id))
            except RefineryError as error:
                return gr.update(), f"⚠️ {error.message}", gr.skip(), gr.skip(), gr.skip()
            return (gr.update(choices=job_choices(services), value=job_id), status_text(record),
                    loss_figure(history), tail,
                    gr.update(choices=retriever_choices(services)))  # a finished run joins

        def failed(error: RefineryError):
            return gr.update(), f"⚠️ {error.message}", gr.skip(), gr.skip(), gr.skip()

        def begin(dataset_id, loss_name, epoch_count, rate, batch_size, wait, each):
            try:
                if not dataset_id:
                    raise InvalidInput("pick an embedding dataset version first")
                spec = retrievers.make_spec({
                    "embedding_loss": loss_name, "epochs": epoch_count, "learning_rate": rate,
                    "batch_size": int(batch_size or 0),
                    "early_stopping_patience": int(wait or 0) or None,
                    "eval_every": int(each or 0) or None,
                }, dataset_id=dataset_id)
                record = runner.submit(spec, name=f"retriever · {loss_name} · {dataset_id}")
            except RefineryError as error:
                return failed(error)
            return show(record.id)

        def act(action, job_id):
            try:
                if not job_id:
                    raise InvalidInput("pick a job first")
                action(job_id)
            except RefineryError as error:
                return failed(error)
            return show(job_id)

        def pick(retriever_id):
            try:
                return evaluation_views(services, retriever_id)
            except RefineryError as error:
                gr.Warning(error.message)
                return gr.skip(), gr.skip()

        def switch(action, retriever_id, name, progress):
            report = lambda f, text: progress(f, desc=text)  # noqa: E731
            try:
                if action == "promote":
                    if not retriever_id:
                        raise InvalidInput("pick a retriever first")
                    record = retrievers.promote(retriever_id, user=name, progress=report)
                    message = f"✅ promoted **{record.id}**; the chunk store was re-embedded."
                else:
                    record = retrievers.rollback(user=name, progress=report)
                    message = f"✅ rolled back; **{record.id}** serves document search again."
            except RefineryError as error:
                message = f"⚠️ {error.message}"
            return (message, served_text(services),
                    gr.update(choices=retriever_choices(services)))

        def promote_with_progress(retriever_id, name, progress=gr.Progress()):  # noqa: B008
            return switch("promote", retriever_id, name, progress)

        def rollback_with_progress(name, progress=gr.Progress()):  # noqa: B008
            return switch("rollback", None, name, progress)

        outputs = [job, status, chart, log, retriever]
        start.click(begin, [dataset, loss, epochs, lr, batch, patience, every], outputs)
        stop.click(lambda j: act(runner.stop, j), job, outputs)
        resume.click(lambda j: act(runner.resume, j), job, outputs)
        job.input(show, job, outputs)
        timer.tick(show, job, outputs, show_progress="hidden")
        retriever.input(pick, retriever, [table, figure])
        promote.click(promote_with_progress, [retriever, user], [outcome, served, retriever])
        rollback.click(rollback_with_progress, user, [outcome, served, retriever])
        refresh.click(lambda: (gr.update(choices=dataset_choices(services)),
                               gr.update(choices=retriever_choices(services))), None,
                      [dataset, retriever])
