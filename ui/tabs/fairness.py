"""Bias tab: Fairlearn reports per group, base vs fine-tuned, and counterfactual probes."""

from __future__ import annotations

import threading

import gradio as gr
import pandas as pd

from core.audit.fairness import METRICS, FairnessSettings
from core.audit.probes import (
    DEFAULT_TEMPLATES,
    DEFAULT_TERMS,
    ProbeSpec,
    format_groups,
    parse_groups,
)
from core.audit.probes import run_probes as run_probe_set
from core.audit.reports import Section, write_report
from core.errors import InvalidInput
from core.services import Services
from ui.charts import group_metric_figure, probe_figure
from ui.choices import model_choices
from ui.errors import problem, shows_errors, warn
from ui.live import Live
from ui.uploads import uploaded_file

SOURCES = ["Logged turns", "Evaluation set (CSV)"]
RESERVED = {"prompt", "reference", "label", "answer"}
HIGHER_IS_BETTER = {"thumb_up": True, "stars": True, "score": True, "latency_ms": False}


def read_csv(path) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (ValueError, OSError, UnicodeDecodeError) as error:
        raise InvalidInput(f"cannot read the CSV file: {error}") from error


def styled_change(change: pd.DataFrame):
    """Green where the fine-tuned model got better for a group, red where it got worse."""
    def colour(column: pd.Series) -> list[str]:
        metric = column.name.removesuffix("_change")
        if not column.name.endswith("_change") or metric not in HIGHER_IS_BETTER:
            return [""] * len(column)
        sign = 1 if HIGHER_IS_BETTER[metric] else -1
        return ["" if pd.isna(v) or v == 0 else
                f"background-color: {'#d4f4dd' if v * sign > 0 else '#f8d7da'}" for v in column]
    return change.round(4).style.apply(colour)


def disparity_text(name: str, disparities: dict) -> str:
    def show(value):
        return "n/a" if value is None else f"{value:.3f}"
    return (f"**{name}** · positive outcome: {disparities.get('positive_outcome') or 'n/a'} · "
            f"demographic parity difference {show(disparities['demographic_parity_difference'])}"
            f", ratio {show(disparities['demographic_parity_ratio'])} · equalized odds "
            f"difference {show(disparities['equalized_odds_difference'])}")


def report_figures(result: dict) -> dict:
    """{metric: figure} for the metrics the report has values for, in METRICS order."""
    reports = {"base": result["base"]["groups"]}
    if result.get("tuned"):
        reports["fine-tuned"] = result["tuned"]["groups"]
    return {metric: group_metric_figure(reports, metric, label)
            for metric, label in METRICS.items()
            if any(row.get(metric) is not None for row in reports["base"])}


def table_update(table):
    """A table shown only when there is one (an empty gr.Dataframe shows "1 2 3" headers)."""
    return gr.update(value=table, visible=table is not None)


def build_fairness_tab(services: Services, page: gr.Blocks, live: Live) -> None:
    stops: dict[str, threading.Event] = {}

    with gr.Tab("Bias", id="bias"):
        last = gr.State(dict)
        with gr.Row():
            source = gr.Radio(SOURCES, value=SOURCES[0], label="Rows")
            upload = uploaded_file(label="Evaluation set: prompt, reference?, label? + any columns",
                                   file_types=[".csv"], visible=False)
        with gr.Row():
            features = gr.CheckboxGroup(list(services.fairness.features), value=["rater"],
                                        label="Sensitive features (groups = their combinations)")
            tuned = gr.Dropdown([], label="Fine-tuned model (optional)", allow_custom_value=True)
            n_boot = gr.Slider(0, 1000, value=200, step=50, label="Bootstrap resamples")
        with gr.Row():
            run = gr.Button("Build report", variant="primary")
            stop = gr.Button("Cancel", variant="stop")
            export = gr.Button("Export JSON + HTML", visible=False)  # once there is a report
        status = gr.Markdown()
        disparities = gr.Markdown()
        change = gr.Dataframe(label="Change per group (fine-tuned − base)", interactive=False,
                              visible=False)
        base_table = gr.Dataframe(label="Base model per group", interactive=False,
                                  visible=False)
        tuned_table = gr.Dataframe(label="Fine-tuned model per group", interactive=False,
                                   visible=False)
        plots = {metric: gr.Plot(label=label, visible=False)
                 for metric, label in METRICS.items()}
        files = gr.File(label="Exported report", file_count="multiple", interactive=False,
                        visible=False)
        with gr.Accordion("Counterfactual probes", open=False):
            with gr.Row():
                attribute = gr.Dropdown(list(DEFAULT_TERMS), value="genders",
                                        label="Start from a term list")
                probe_models = gr.Dropdown(model_choices(services), value=["base"],
                                           multiselect=True, max_choices=2,
                                           allow_custom_value=True, label="Models")
            templates = gr.Textbox("\n".join(DEFAULT_TEMPLATES), lines=3,
                                   label="Templates, one per line, with {term}")
            terms = gr.Textbox(format_groups(DEFAULT_TERMS["genders"]), lines=4,
                               label="Groups and terms: one 'group: term, term' per line")
            reference = gr.Textbox(label="Reference answer (optional: adds a similarity score)")
            with gr.Row():
                probe = gr.Button("Run probes", variant="primary")
                probe_export = gr.Button("Export JSON + HTML", visible=False)
            probe_status = gr.Markdown()
            gaps = gr.Dataframe(label="Largest gaps between groups (flagged first)",
                                interactive=False, visible=False)
            by_group = gr.Dataframe(label="Scores per group", interactive=False, visible=False)
            probe_plot = gr.Plot(visible=False)
            answers = gr.Dataframe(label="Answers", interactive=False, wrap=True, visible=False)
            probe_state = gr.State(dict)

    def choose_source(kind, file):
        is_csv = kind == SOURCES[1]
        if is_csv:
            names = ([] if file is None else
                     [c for c in read_csv(file).columns if c not in RESERVED])
            return (gr.update(visible=True), gr.update(choices=names, value=names[:1]),
                    gr.update(choices=model_choices(services)[1:], value=None))
        models = sorted(services.fairness.turns()["model"].unique().tolist())
        return (gr.update(visible=False), gr.update(choices=list(services.fairness.features),
                                                    value=["rater"]),
                gr.update(choices=models, value=None))

    @shows_errors(lambda m: [problem(m), {}, "", *[table_update(None)] * 3,
                            *[gr.update(visible=False)] * len(plots), gr.update(visible=False)])
    def build(kind, file, chosen, tuned_model, boot, request: gr.Request,
              progress=gr.Progress()):  # noqa: B008 (gradio idiom)
        stop_event = stops[request.session_hash] = threading.Event()
        settings = FairnessSettings(n_boot=int(boot))
        if kind == SOURCES[0]:
            report = services.fairness.turns_report(
                chosen, tuned_model=tuned_model or None, settings=settings)
        else:
            if file is None:
                raise InvalidInput("upload an evaluation set (CSV) first")
            report, _ = services.fairness.eval_report(
                read_csv(file), chosen, tuned=tuned_model or None, settings=settings,
                progress=lambda d, t: progress(d / t, desc=f"answering {d}/{t}"),
                cancel=stop_event)
        result = report.to_dict()
        texts = [disparity_text("Base", result["base"]["disparities"])]
        if report.tuned is not None:
            texts.append(disparity_text("Fine-tuned", result["tuned"]["disparities"]))
        figures = report_figures(result)
        return ["Groups marked `small` have too few rows to read much into.", result,
                "\n\n".join(texts),
                table_update(None if report.change is None else styled_change(report.change)),
                table_update(report.base.table.round(4)),
                table_update(None if report.tuned is None else report.tuned.table.round(4)),
                *[gr.update(value=figures.get(metric), visible=metric in figures)
                  for metric in plots], gr.update(visible=True)]

    def export_report(result):
        if not result:
            return gr.update(value=None, visible=False), "⚠️ Build a report first."
        tables = [("Base model per group", pd.DataFrame(result["base"]["groups"]))]
        if result.get("tuned"):
            tables += [("Fine-tuned model per group", pd.DataFrame(result["tuned"]["groups"])),
                       ("Change per group", pd.DataFrame(result["change"]))]
        text = "\n".join(disparity_text(k, result[k]["disparities"])
                         for k in ("base", "tuned") if result.get(k))
        section = Section(heading="Per-group metrics", text=text, tables=tables,
                          figures=[f.to_json() for f in report_figures(result).values()])
        paths = write_report(services.settings.data_dir / "exports", "bias-report", result,
                             title="Bias report", sections=[section])
        return gr.update(value=[str(p) for p in paths], visible=True), "Exported."

    @shows_errors(lambda m: (problem(m), {}, *[table_update(None)] * 2,
                            gr.update(visible=False), table_update(None), gr.update(visible=False)))
    def run_probes(template_text, term_text, ref, chosen_models, request: gr.Request,
                   progress=gr.Progress()):  # noqa: B008 (gradio idiom)
        stop_event = stops[request.session_hash] = threading.Event()
        spec = ProbeSpec(templates=template_text.splitlines(),
                         groups=parse_groups(term_text), reference=ref.strip() or None)
        targets = [services.explainer.target(m) for m in (chosen_models or ["base"])]
        report = run_probe_set(services.models, targets, spec, cancel=stop_event,
                               progress=lambda d, t: progress(d / t, desc=f"{d}/{t} answers"))
        flagged = int(report.gaps["flagged"].sum())
        data = report.to_dict()
        return (f"{flagged} gap(s) above their threshold.", data,
                table_update(report.gaps.round(4)), table_update(report.by_group.round(4)),
                gr.update(value=probe_figure(data["by_group"], "refusal"), visible=True),
                table_update(report.answers[["model", "group", "term", "prompt", "answer"]]),
                gr.update(visible=True))

    def export_probes(data):
        if not data:
            return gr.update(value=None, visible=False), "⚠️ Run the probes first."
        figures = [probe_figure(data["by_group"], m).to_json()
                   for m in ("refusal", "length", "sentiment", "similarity")
                   if data["by_group"] and m in data["by_group"][0]]
        section = Section(heading="Counterfactual probes", figures=figures, tables=[
            ("Gaps", pd.DataFrame(data["gaps"])), ("Per group", pd.DataFrame(data["by_group"])),
            ("Answers", pd.DataFrame(data["answers"]))])
        paths = write_report(services.settings.data_dir / "exports", "probes", data,
                             title="Counterfactual probes", sections=[section])
        return gr.update(value=[str(p) for p in paths], visible=True), "Exported."

    def cancel(request: gr.Request):
        if request.session_hash in stops:
            stops[request.session_hash].set()
        return "Cancelling ..."

    @shows_errors(warn(gr.update(), gr.update(), gr.update()))
    def safe_choose(kind, file):
        return choose_source(kind, file)

    source.change(safe_choose, [source, upload], [upload, features, tuned])
    upload.change(safe_choose, [source, upload], [upload, features, tuned])
    run.click(build, [source, upload, features, tuned, n_boot],
              [status, last, disparities, change, base_table, tuned_table, *plots.values(),
               export], show_progress_on=status)
    page.load(safe_choose, [source, upload], [upload, features, tuned])  # the models at once

    def tuned_choices(kind):
        if kind == SOURCES[1]:
            return gr.update(choices=model_choices(services)[1:])
        return gr.update(choices=sorted(services.fairness.turns()["model"].unique().tolist()))

    live.on_change(tuned_choices, source, tuned)  # a new adapter or its first turns
    stop.click(cancel, None, status)
    export.click(export_report, last, [files, status])
    attribute.change(lambda name: format_groups(DEFAULT_TERMS[name]), attribute, terms)
    probe.click(run_probes, [templates, terms, reference, probe_models],
                [probe_status, probe_state, gaps, by_group, probe_plot, answers, probe_export],
                show_progress_on=probe_status)
    probe_export.click(export_probes, probe_state, [files, probe_status])
