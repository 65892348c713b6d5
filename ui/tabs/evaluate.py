"""Evaluate tab: automatic evaluation with progress and cancel, before/after, and A/B tests."""

from __future__ import annotations

import threading
from pathlib import Path

import gradio as gr
import pandas as pd

from core.comparison.evaluation import EvalRequest, before_after, read_eval_file
from core.comparison.experiments import ExperimentSpec
from core.errors import InvalidInput
from core.services import Services
from ui.charts import evaluation_figure, experiment_figure
from ui.errors import message_of, problem, shows_errors
from ui.live import Live
from ui.readable import frame
from ui.uploads import uploaded_file

ARM_COLUMNS = ["arm", "model", "turns", "rated_turns", "mean_stars", "thumbs_up",
               "thumbs_down", "thumbs_up_rate", "mean_latency_ms"]
RUN_COLUMNS = ["created_at", "model", "model_version", "source", "status", "done", "total", "id"]


def dataset_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{d.name} v{d.version} · {d.validation_count} validation rows", d.id)
            for d in services.datasets.list()]


def experiment_choices(services: Services) -> list[tuple[str, str]]:
    return [(f"{e.name} ({e.status}) · {e.model_a} vs {e.model_b}", e.id)
            for e in services.experiments.history()]


def run_table(runs: list[dict]):
    table = before_after(runs)
    labels = [column for column in (table[0] if table else {}) if column not in
              ("metric", "change", "better")]
    data = pd.DataFrame(table).round(4) if table else pd.DataFrame()
    return (gr.update(value=data, visible=bool(table)),  # hidden, never a "1 2 3" table
            gr.update(value=evaluation_figure(table, labels) if runs else None,
                      visible=bool(runs)))


def build_evaluate_tab(services: Services, live: Live) -> None:
    cancels: dict[str, threading.Event] = {}
    choices = services.arena.resolver.choices

    with gr.Tab("Evaluate", id="evaluate"):
        with gr.Row():
            models = gr.Dropdown(choices(), value=["base"], multiselect=True,
                                 label="Models (first = before, last = after)",
                                 allow_custom_value=True)
            dataset = gr.Dropdown(dataset_choices(services), label="Dataset (validation split)")
            upload = uploaded_file(
                label="…or an evaluation set (.jsonl/.json/.csv: prompt, reference)",
                file_types=[".jsonl", ".json", ".csv"])
        with gr.Row():
            max_new = gr.Slider(1, 512, value=64, step=1, label="Max new tokens")
            limit = gr.Number(50, label="At most this many items", precision=0, minimum=1)
            grounded = gr.Checkbox(False, label="Retrieve document chunks (groundedness)")
        with gr.Row():
            run = gr.Button("Run evaluation", variant="primary")
            cancel = gr.Button("Cancel", variant="stop")
        status = gr.Markdown()
        table = gr.Dataframe(label="Before / after (change = last − first)", wrap=True,
                             visible=False)
        chart = gr.Plot(label="Metrics per model", visible=False)
        with gr.Accordion("Earlier runs", open=False):
            pick = gr.Dropdown([], multiselect=True, label="Runs to put side by side")
            history = gr.Dataframe(label="Runs", visible=False)
            show = gr.Button("Show selected runs")
        with gr.Accordion("A/B experiment in live chat", open=False):
            with gr.Row():
                name = gr.Textbox(label="Name")
                arm_a = gr.Dropdown(choices(), value="base", label="Model A",
                                    allow_custom_value=True)
                arm_b = gr.Dropdown(choices(), label="Model B", allow_custom_value=True)
                split = gr.Slider(0.05, 0.95, value=0.5, step=0.05, label="Share of users on B")
            with gr.Row():
                end_rated = gr.Number(100, label="End after rated turns (0 = no limit)",
                                      precision=0, minimum=0)
                hours = gr.Number(0, label="…or after hours (0 = no limit)", minimum=0)
                metric = gr.Radio(["thumbs", "stars"], value="thumbs", label="Decide on")
                alpha = gr.Number(0.05, label="alpha", minimum=0.0001, maximum=0.5)
            create = gr.Button("Start experiment", variant="primary")
            with gr.Row():
                experiment = gr.Dropdown(experiment_choices(services), label="Experiment")
                results_button = gr.Button("Results")
                stop_button = gr.Button("Stop experiment", variant="stop")
            ab_status = gr.Markdown()
            arms = gr.Dataframe(label="Arms", visible=False)
            ab_chart = gr.Plot(label="Arms", visible=False)

    def evaluate(names, dataset_id, file, tokens, most, ground, request: gr.Request,
                 progress=gr.Progress()):  # noqa: B008 (Gradio injects it by this default)
        stop_event = cancels[request.session_hash] = threading.Event()
        runs = []
        try:
            if not names:
                raise InvalidInput("choose at least one model")
            rows = read_eval_file(Path(file)) if file else None
            source = {"rows": rows, "source_name": Path(file).name} if file else {
                "dataset_id": dataset_id or None}
            for index, model in enumerate(names):
                def advance(done, total, index=index, model=model):
                    progress((index + done / total) / len(names),
                             desc=f"{model}: {done}/{total}")

                ask = EvalRequest(model=model, max_new_tokens=int(tokens),
                                  limit=int(most or 0) or None, use_documents=bool(ground),
                                  **source)
                runs.append(services.evaluations.run(ask, progress=advance, cancel=stop_event))
                if runs[-1]["status"] != "done":
                    break
        except Exception as error:  # the runs finished so far still show
            return problem(message_of(error)), *run_table(runs), gr.update()
        states = ", ".join(f"{run['model']}: {run['status']}" for run in runs)
        failed = [run["error"] for run in runs if run.get("error")]
        message = f"Finished ({states})." + (f" ⚠️ {failed[0]}" if failed else "")
        return message, *run_table(runs), gr.update(choices=run_choices())

    def stop_evaluation(request: gr.Request):
        if event := cancels.get(request.session_hash):
            event.set()

    def run_choices():
        return [(f"{r['model']} · {r['source']} · {r['status']} · {r['id'][:6]}", r["id"])
                for r in services.evaluations.history()]

    def show_runs(ids):
        runs = [services.evaluations.get(run_id) for run_id in ids or []]
        listed = frame(services.evaluations.history(), RUN_COLUMNS, ids=("id",))
        return *run_table(runs), gr.update(value=listed, visible=not listed.empty)

    def reload():
        names = choices()
        return (gr.update(choices=names), gr.update(choices=dataset_choices(services)),
                gr.update(choices=run_choices()), gr.update(choices=names),
                gr.update(choices=names), gr.update(choices=experiment_choices(services)))

    @shows_errors(lambda m: (problem(m), gr.update()))
    def start_experiment(label, a, b, share, rated, duration, deciding, level):
        record = services.experiments.create(ExperimentSpec(
            name=label or "", model_a=a or "", model_b=b or "", split_b=float(share),
            end_rated_turns=int(rated) or None, duration_hours=float(duration) or None,
            metric=deciding, alpha=float(level)))
        return (f"✅ Experiment **{record.name}** runs: the Chat tab now serves each user "
                f"their arm.", gr.update(choices=experiment_choices(services), value=record.id))

    @shows_errors(lambda m: (problem(m), gr.skip(), gr.skip()))
    def experiment_results(experiment_id):
        if not experiment_id:
            return "⚠️ Choose an experiment.", gr.skip(), gr.skip()
        result = services.experiments.results(experiment_id)
        p_value = result["p_value"]
        shown = "n/a" if p_value is None else f"{p_value:.4g}"
        message = (f"**Recommendation: {result['recommendation']}** · "
                   f"{result['primary_test']} p = {shown} · "
                   f"status {result['experiment']['status']}")
        table_ = frame(list(result["arms"].values()), ARM_COLUMNS)
        return (message, gr.update(value=table_, visible=True),
                gr.update(value=experiment_figure(result["arms"]), visible=True))

    @shows_errors(lambda m: (problem(m), gr.update()))
    def stop_experiment(experiment_id):
        record = services.experiments.stop(experiment_id or "")
        return f"Experiment **{record.name}** ended.", gr.update(
            choices=experiment_choices(services), value=record.id)

    run.click(evaluate, [models, dataset, upload, max_new, limit, grounded],
              [status, table, chart, pick], show_progress_on=status)
    cancel.click(stop_evaluation, None, None, concurrency_limit=None)
    show.click(show_runs, [pick], [table, chart, history])
    live.on_change(reload, None, [models, dataset, pick, arm_a, arm_b, experiment])
    create.click(start_experiment, [name, arm_a, arm_b, split, end_rated, hours, metric, alpha],
                 [ab_status, experiment])
    results_button.click(experiment_results, [experiment], [ab_status, arms, ab_chart])
    stop_button.click(stop_experiment, [experiment], [ab_status, experiment])
