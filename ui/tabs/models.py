"""Models tab: the registry of trained adapters; compare, rename, delete, promote, roll back."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.errors import RefineryError
from core.services import Services
from ui.tabs.knowledge import scores_markdown

COLUMNS = ["promoted", "id", "name", "base_model", "dataset", "val_loss", "perplexity",
           "train_loss", "rank", "lr", "epochs", "duration_s", "created_at"]


def registry_frame(services: Services) -> pd.DataFrame:
    active = services.registry.active()
    rows = [{
        "promoted": "★" if active and m.id == active.id else "",
        "id": m.id, "name": m.name, "base_model": m.base_model,
        "dataset": f"{m.dataset_id or 'rows'} v{m.dataset_version or '-'}",
        "val_loss": m.metrics.get("val_loss"), "perplexity": m.metrics.get("perplexity"),
        "train_loss": m.metrics.get("train_loss"), "rank": m.config.get("lora_rank"),
        "lr": m.config.get("learning_rate"), "epochs": m.config.get("epochs"),
        "duration_s": round(m.duration_s or 0, 1),
        "created_at": m.created_at.isoformat(" ", "seconds"),
    } for m in services.registry.list()]
    return pd.DataFrame(rows, columns=COLUMNS)


def history_frame(services: Services) -> pd.DataFrame:
    rows = services.registry.history()
    return pd.DataFrame(rows, columns=["seq", "action", "model_id", "user_id", "created_at"])


def served_text(services: Services) -> str:
    active = services.registry.active()
    served = f"adapter **{active.name}** (`{active.id}`)" if active else "the base model"
    return f"The Chat tab serves {served} by default on **{services.models.name}**."


def build_models_tab(services: Services) -> None:
    registry = services.registry
    with gr.Tab("Models", id="models"):
        served = gr.Markdown(served_text(services))
        knows = gr.Markdown(scores_markdown(services))
        table = gr.Dataframe(registry_frame(services), label="Registered adapters",
                             interactive=False, wrap=True)
        with gr.Row():
            model = gr.Dropdown([m.id for m in registry.list()], label="Model", scale=2)
            user = gr.Textbox("anonymous", label="Your name", scale=1)
            refresh = gr.Button("↻ Refresh", scale=0)
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
                                   interactive=False)

        def refreshed(note: str = ""):
            return (served_text(services), registry_frame(services),
                    gr.update(choices=[m.id for m in registry.list()]),
                    history_frame(services), note, scores_markdown(services))

        outputs = [served, table, model, history, message, knows]

        def run(action, *args):
            try:
                note = action(*args)
            except RefineryError as error:
                return refreshed(f"⚠️ {error.message}")
            return refreshed(note)

        def pick(model_id):
            if not model_id:
                return None
            try:
                return registry.get(model_id).__dict__ | {"created_at": None}
            except RefineryError as error:
                return {"error": error.message}

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

        export.click(exported, [model, export_format], outputs)
        refresh.click(lambda: refreshed(), None, outputs)
        model.change(pick, model, details)
        rename.click(lambda m, n: run(lambda: f"Renamed to {registry.rename(need(m), n).name}."),
                     [model, new_name], outputs)
        promote.click(lambda m, u: run(lambda: f"Promoted {registry.promote(need(m), user=u).id}."),
                      [model, user], outputs)
        def roll_back(name):
            active = registry.rollback(user=name)
            return f"Rolled back; now serving {active.id if active else 'the base model'}."

        rollback.click(lambda u: run(roll_back, u), user, outputs)
        delete.click(lambda m: run(lambda: registry.delete(need(m)) or f"Deleted {m}."),
                     model, outputs)
