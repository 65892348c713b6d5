"""Models tab: the registry of trained adapters; compare, rename, delete, promote, roll back."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.errors import RefineryError
from core.services import Services
from ui.choices import adapter_choices
from ui.errors import problem, shows_errors
from ui.identity import user_name
from ui.live import Live
from ui.readable import frame, named
from ui.scores import scores_markdown

COLUMNS = ["promoted", "name", "dataset", "val loss", "perplexity", "train loss", "rank", "lr",
           "epochs", "duration", "created", "base model", "id"]


def registry_frame(services: Services) -> pd.DataFrame:
    active = services.registry.active()
    names = {d.id: f"{d.name} v{d.version}" for d in services.datasets.list()}
    rows = [{
        "promoted": "★" if active and m.id == active.id else "",
        "id": m.id, "name": m.name, "base model": m.base_model,
        "dataset": names.get(m.dataset_id, m.dataset_id or "rows"),
        "val loss": m.metrics.get("val_loss"), "perplexity": m.metrics.get("perplexity"),
        "train loss": m.metrics.get("train_loss"), "rank": m.config.get("lora_rank"),
        "lr": m.config.get("learning_rate"), "epochs": m.config.get("epochs"),
        "duration": f"{(m.duration_s or 0) / 60:.1f} min", "created": m.created_at,
    } for m in services.registry.list()]
    return frame(rows, COLUMNS, ids=("id",))


def history_frame(services: Services) -> pd.DataFrame:
    return frame(services.registry.history()[::-1],
                 ["created_at", "action", "model_id", "user_id"])


def served_text(services: Services) -> str:
    active = services.registry.active()
    served = f"adapter **{named(active.name, active.id)}**" if active else "the base model"
    return f"The Chat tab serves {served} by default on **{services.models.name}**."


def build_models_tab(services: Services, live: Live, user: gr.Textbox) -> None:
    registry = services.registry
    with gr.Tab("Models", id="models"):
        served = gr.Markdown(served_text(services))
        knows = gr.Markdown(scores_markdown(services))
        table = gr.Dataframe(registry_frame(services), label="Registered adapters",
                             interactive=False, wrap=True)
        with gr.Row():
            model = gr.Dropdown(adapter_choices(services), label="Model", scale=2)
        with gr.Row():
            new_name = gr.Textbox(label="New name", scale=2)
            rename = gr.Button("Rename")
            promote = gr.Button("Promote", variant="primary")
            rollback = gr.Button("Roll back last promotion")
            delete = gr.Button("Delete", variant="stop")
        with gr.Row():
            export_format = gr.Radio(["adapter", "merged", "gguf-f16", "gguf-f32"],
                                     value="adapter", label="Export format",
                                     info="GGUF: Llama-family models; with an Ollama Modelfile")
            export = gr.Button("Export")
        message = gr.Markdown()
        with gr.Accordion("Details and promotion log", open=False):
            details = gr.JSON(label="Model details")
            history = gr.Dataframe(history_frame(services), label="Promotions and rollbacks",
                                   interactive=False, max_height=300)

        def refreshed(note: str = ""):
            return (served_text(services), registry_frame(services),
                    gr.update(choices=adapter_choices(services)),
                    history_frame(services), note, scores_markdown(services))

        outputs = [served, table, model, history, message, knows]

        @shows_errors(lambda m: refreshed(problem(m)))
        def run(action, *args):
            note = action(*args)
            return refreshed(note)

        @shows_errors(lambda m: {"error": m})
        def pick(model_id):
            if not model_id:
                return None
            return registry.get(model_id).__dict__ | {"created_at": None}

        def need(model_id):
            if not model_id:
                raise RefineryError("pick a model first")
            return model_id

        def exported(model_id, fmt, progress=gr.Progress()):  # noqa: B008 (gradio's idiom)
            progress(0.1, desc=f"exporting {fmt}: merging and verifying may take a minute")

            def work():
                result = services.model_exports.export(registry.get(need(model_id)), fmt)
                check = ("" if result.max_logit_diff is None else
                         f" · verified: max logit difference {result.max_logit_diff:.2g}")
                return f"Exported to `{result.path}`: {', '.join(result.files)}{check}"

            return run(work)

        export.click(exported, [model, export_format], outputs, show_progress_on=outputs[0])
        def followed():  # new adapters, promotions and knowledge scores show at once
            views = refreshed()
            return (*views[:4], views[5])

        live.on_change(followed, None, [*outputs[:4], knows])
        model.change(pick, model, details)
        rename.click(lambda m, n: run(lambda: f"Renamed to {registry.rename(need(m), n).name}."),
                     [model, new_name], outputs)
        def promoted(request: gr.Request, model_id, name):
            return run(lambda: "Promoted "
                       f"{registry.promote(need(model_id), user=user_name(name, request)).id}.")

        def roll_back(request: gr.Request, name):
            def work():
                active = registry.rollback(user=user_name(name, request))
                return f"Rolled back; now serving {active.id if active else 'the base model'}."
            return run(work)

        promote.click(promoted, [model, user], outputs)
        rollback.click(roll_back, user, outputs)
        delete.click(lambda m: run(lambda: registry.delete(need(m)) or f"Deleted {m}."),
                     model, outputs)
