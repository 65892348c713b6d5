"""Tune tab: hyperparameter search (grid or Bayesian TPE); each trial is a training job."""

from __future__ import annotations

import json

import gradio as gr
import pandas as pd

from core.errors import RefineryError
from core.services import Services
from core.training.search import SearchSpec
from ui.charts import parameter_figure
from ui.choices import KINDS, dataset_choices
from ui.errors import problem, shows_errors
from ui.identity import user_name
from ui.job_panel import JobPanel, estimate_for, estimate_text
from ui.live import Live
from ui.readable import cell, short_id

EXAMPLE_SPACE = {"learning_rate": [1e-4, 1e-3], "lora_rank": [4, 32]}
REFRESH_S = 3.0


def trials_frame(search) -> pd.DataFrame:
    rows = [{"trial": n, **{k: cell(v) for k, v in t["params"].items()}, "status": t["status"],
             "val_loss": cell(t["val_loss"]), "model": t.get("model_id") or "",
             "job": short_id(t["job_id"])}
            for n, t in enumerate(search.trials, start=1)]
    return pd.DataFrame(rows)


def summary(search) -> str:
    best = search.best
    text = (f"Search `{search.id}` by {search.user} · {search.spec.method} · "
            f"**{search.status}** · {len(search.trials)}/{search.spec.trials} trials")
    if best:
        params = ", ".join(f"{k} {cell(v)}" for k, v in best["params"].items())
        text += (f"\n\nBest: val loss **{best['val_loss']:.4f}** with {params}; its "
                 f"adapter is registered as `{best.get('model_id')}` (promote it in Models).")
    return text + (f"\n\n⚠️ {search.error}" if search.error else "")


def build_tune_tab(services: Services, live: Live, user: gr.Textbox) -> None:
    searches = services.searches
    with gr.Tab("Tune", id="tune"):
        gr.Markdown("Search learning rate, LoRA rank, epochs and dropout. Each trial is a "
                    "training job (it queues behind running jobs and shows in the Train tab).")
        with gr.Row():
            dataset = gr.Dropdown(dataset_choices(services), label="Dataset version", scale=3)
            method = gr.Radio(["bayesian", "grid"], value="bayesian", label="Method")
            trials = gr.Number(6, label="Trial budget", precision=0)
        space = gr.Code(json.dumps(EXAMPLE_SPACE, indent=1), language="json",
                        label="Search space (bayesian: [low, high]; grid: list of values)")
        fixed = gr.Code(json.dumps({"epochs": 1}, indent=1), language="json",
                        label="Fixed training options for every trial")
        with gr.Row():
            start = gr.Button("Start search", variant="primary")
            stop = gr.Button("Stop search")
            current = gr.Dropdown([s.id for s in searches.list()], label="Search")
        status = gr.Markdown()
        table = gr.Dataframe(label="Trials", interactive=False, visible=False)
        chart = gr.Plot(label="Validation loss against parameters", visible=False)
        timer = gr.Timer(REFRESH_S)
        gr.Markdown("### Trial jobs")
        panel = JobPanel(services, live, kinds=KINDS, hint="Each trial's training job shows "
                         "here once the search starts.")

        @shows_errors(lambda m: (gr.update(), problem(m), gr.skip(), gr.skip()))
        def show(search_id):
            if not search_id:
                return gr.skip(), gr.skip(), gr.skip(), gr.skip()
            search = searches.get(search_id)
            return (gr.update(choices=[s.id for s in searches.list()], value=search.id),
                    summary(search), gr.update(value=trials_frame(search), visible=True),
                    gr.update(value=parameter_figure(search.trials, list(search.spec.space)),
                              visible=True))

        @shows_errors(problem, expected=(ValueError,))
        def estimated(dataset_id, fixed_text, budget):
            if not dataset_id:
                return ""
            base = services.training.make_spec(json.loads(fixed_text or "{}"),
                                               dataset_id=dataset_id)
            return (f"Each of {int(budget or 0)} trials — "
                    + estimate_text(estimate_for(services, base)))

        @shows_errors(lambda m: (gr.update(), problem(m), gr.skip(), gr.skip()))
        def begin(name, dataset_id, method_name, budget, space_text, fixed_text,
                  request: gr.Request):
            if not dataset_id:
                raise RefineryError("pick a dataset version first")
            try:
                space_value, options = json.loads(space_text), json.loads(fixed_text or "{}")
            except ValueError as error:
                raise RefineryError(f"not valid JSON: {error}") from error
            base = services.training.make_spec(options, dataset_id=dataset_id)
            spec = SearchSpec(method=method_name, space=space_value, trials=int(budget))
            search = searches.start(base, spec, user=user_name(name, request))
            return show(search.id)

        @shows_errors(lambda m: (gr.update(), problem(m), gr.skip(), gr.skip()))
        def halt(search_id):
            searches.stop(search_id)
            return show(search_id)

        outputs = [current, status, table, chart]
        start.click(begin, [user, dataset, method, trials, space, fixed], outputs)
        stop.click(halt, current, outputs)
        current.input(show, current, outputs)
        for box in (dataset, fixed, trials):
            box.change(estimated, [dataset, fixed, trials], panel.estimate,
                       show_progress="hidden")
        live.on_change(lambda: gr.update(choices=dataset_choices(services)), None, dataset)
        timer.tick(show, current, outputs, show_progress="hidden")
