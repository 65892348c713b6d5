"""Explain tab: which prompt words drive a model's answer (SHAP and LIME), one or two models."""

from __future__ import annotations

import threading

import gradio as gr
import pandas as pd

from core.audit.explain import ExplainSettings, Explanation
from core.audit.reports import Section, write_report
from core.feedback.turn_filter import TurnFilter
from core.services import Services
from ui.charts import attribution_figure
from ui.choices import model_choices
from ui.errors import message_of, problem
from ui.feedback_model_view import build_feedback_model_view
from ui.live import Live

METHODS = {"SHAP (Partition)": "shap", "LIME": "lime"}


def turn_choices(services: Services, limit: int = 200) -> list[tuple[str, str]]:
    frame = services.feedback.turns(TurnFilter(), limit=limit)
    frame = frame.drop_duplicates("response_id")
    return [(f"{str(r.created_at)[:16]} · {r.prompt[:70]}", r.response_id)
            for r in frame.itertuples()]


def highlighted(words: list[str], values: list[float] | None) -> list[tuple[str, float]]:
    """Words with scores scaled to [-1, 1] for gr.HighlightedText's colour scale."""
    if not values:
        return [(w + " ", None) for w in words]
    top = max(abs(v) for v in values) or 1.0
    return [(w + " ", round(v / top, 3)) for w, v in zip(words, values, strict=True)]


def summary(result: Explanation) -> str:
    agreement = "n/a" if result.agreement is None else f"{result.agreement:+.2f}"
    cached = " · from cache" if result.cached else ""
    return (f"**{result.model}** · log-likelihood of the answer {result.full_score:.2f} "
            f"(all words masked: {result.masked_score:.2f}) · SHAP-LIME rank agreement "
            f"(Spearman) **{agreement}** · {result.evaluations} evaluations in "
            f"{result.seconds:.1f} s{cached}")


def side_outputs(result: Explanation | None) -> list:
    if result is None:
        return ["", "", None, None, None]
    figure = (attribution_figure(result.words, result.shap or result.lime,
                                 title=f"Top words ({'SHAP' if result.shap else 'LIME'})"))
    return [summary(result), result.answer, highlighted(result.words, result.shap),
            highlighted(result.words, result.lime), figure]


def build_explain_tab(services: Services, live: Live) -> None:
    stops: dict[str, threading.Event] = {}

    with gr.Tab("Explain", id="explain"):
        last = gr.State(list)
        gr.Markdown("Which words of the prompt make the model give this answer? Attributions "
                    "measure the answer's log-likelihood with words masked (`...`).")
        with gr.Row():
            turn = gr.Dropdown(turn_choices(services), label="Logged turn (optional)", scale=3)
        prompt = gr.Textbox(label="Prompt", lines=2)
        answer = gr.Textbox(label="Answer to explain (empty: each model explains its own "
                                  "greedy answer)", lines=2)
        with gr.Row():
            model_a = gr.Dropdown(model_choices(services), value="base", label="Model",
                                  allow_custom_value=True)
            model_b = gr.Dropdown(["", *model_choices(services)], value="",
                                  label="Second model (optional)", allow_custom_value=True)
            methods = gr.CheckboxGroup(list(METHODS), value=list(METHODS), label="Methods")
            budget = gr.Slider(8, 1000, value=ExplainSettings.max_evals, step=8,
                               label="Evaluations per method")
        with gr.Row():
            run = gr.Button("Explain", variant="primary")
            stop = gr.Button("Cancel", variant="stop")
        status = gr.Markdown()
        sides, columns = [], []
        with gr.Row():
            for name in ("first", "second"):  # each shown once it holds an explanation
                with gr.Column(visible=False) as column:
                    columns.append(column)
                    info = gr.Markdown()
                    used = gr.Textbox(label="Answer", interactive=False, lines=2)
                    shap_text = gr.HighlightedText(label="SHAP: red raises the answer, blue "
                                                   "lowers it", show_inline_category=False)
                    lime_text = gr.HighlightedText(label="LIME", show_inline_category=False)
                    plot = gr.Plot(label=f"Top words, {name} model")
                    sides += [info, used, shap_text, lime_text, plot]
        with gr.Row():
            export_json = gr.Button("Export JSON + HTML", visible=False)
            files = gr.File(label="Exported report", file_count="multiple", interactive=False,
                            visible=False)
        build_feedback_model_view(services)

    def load_turn(response_id):
        turn_row = services.feedback.turn(response_id) if response_id else None
        if turn_row is None:
            return gr.update(), gr.update()
        return turn_row["prompt"], turn_row["response"]

    def explain(prompt_text, answer_text, first, second, chosen, evals, request: gr.Request,
                progress=gr.Progress()):  # noqa: B008 (gradio idiom)
        stop_event = stops[request.session_hash] = threading.Event()
        specs = [s for s in (first, second) if s]
        results: list[Explanation] = []
        try:
            settings = ExplainSettings(methods=tuple(METHODS[m] for m in chosen) or ("shap",),
                                       max_evals=int(evals))
            for index, spec in enumerate(specs):
                def report(done, total, index=index, spec=spec):
                    progress((index * total + done) / (total * len(specs)),
                             desc=f"{spec}: {done}/{total} evaluations")

                own = answer_text.strip() or services.explainer.generate_answer(
                    prompt_text, model=spec)
                results.append(services.explainer.explain(
                    prompt_text, own, model=spec, settings=settings, progress=report,
                    cancel=stop_event))
        except Exception as error:  # the explanations made so far still show
            return [problem(message_of(error)), results, *blank_sides(results)]
        return ["Done.", results, *blank_sides(results)]

    def blank_sides(results):
        padded = [*results, None, None][:2]
        return [*[value for result in padded for value in side_outputs(result)],
                *[gr.update(visible=index < len(results)) for index in range(2)],
                gr.update(visible=bool(results))]

    def cancel(request: gr.Request):
        if request.session_hash in stops:
            stops[request.session_hash].set()
        return "Cancelling after the current batch ..."

    def export(results: list[Explanation]):
        if not results:
            return gr.update(value=None, visible=False), "⚠️ Explain something first."
        sections = []
        for result in results:
            figures = [attribution_figure(result.words, values, title=method).to_json()
                       for method, values in (("SHAP", result.shap), ("LIME", result.lime))
                       if values]
            table = pd.DataFrame({"word": result.words, "shap": result.shap or None,
                                  "lime": result.lime or None})
            sections.append(Section(heading=f"Model {result.model}", text=(
                f"Prompt: {result.prompt}\nAnswer: {result.answer}\n{summary(result)}"),
                tables=[("Attribution per word", table)], figures=figures))
        paths = write_report(services.settings.data_dir / "exports", "explanation", results,
                             title="Explanation", sections=sections)
        return gr.update(value=[str(p) for p in paths], visible=True), "Exported."

    def refresh_choices():
        names = model_choices(services)
        return (gr.update(choices=turn_choices(services)), gr.update(choices=names),
                gr.update(choices=["", *names]))

    turn.change(load_turn, turn, [prompt, answer])
    run.click(explain, [prompt, answer, model_a, model_b, methods, budget],
              [status, last, *sides, *columns, export_json], show_progress_on=status)
    stop.click(cancel, None, status)
    export_json.click(export, last, [files, status])
    live.on_change(refresh_choices, None, [turn, model_a, model_b])
