"""Monitor tab: drift of the serving model's ratings and of the prompts, with the evidence."""

from __future__ import annotations

import gradio as gr

from core.audit.drift import DriftReport
from core.services import Services
from ui.charts import rolling_figure, topics_figure
from ui.errors import problem, shows_errors
from ui.markup import as_text

LABELS = {
    "thumbs": "Thumbs-up rate",
    "stars": "Mean stars",
    "cusum": "CUSUM on thumbs",
    "prompt_centroid": "Prompt centroid moved",
    "prompt_psi": "Prompt topics shifted",
}


def number(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def alerts_markdown(report: DriftReport) -> str:
    if not report.alerts:
        return "✅ **No drift.** " + coverage(report)
    blocks = []
    for alert in report.alerts:
        evidence = " · ".join(
            f"{key} {number(value)}" for key, value in alert.evidence.items()
            if not isinstance(value, (list, dict))
        )
        blocks.append(
            f"### ⚠️ {LABELS.get(alert.kind, alert.kind)}\n{as_text(alert.message)}\n\n"
            f"<small>{as_text(evidence)}</small>"
        )
    return "\n\n".join(blocks) + "\n\n" + coverage(report)


def coverage(report: DriftReport) -> str:
    """What was tested, so a quiet report with too little data does not look like good news."""
    thumbs, stars, prompts = (report.ratings["thumbs"], report.ratings["stars"], report.prompts)
    parts = [
        f"serving **{as_text(report.ratings['model'])}**",
        f"thumbs {thumbs['baseline_n']} baseline / {thumbs['recent_n']} recent"
        + ("" if thumbs["tested"] else " (too few to test)"),
        f"stars {stars['baseline_n']} / {stars['recent_n']}"
        + ("" if stars["tested"] else " (too few to test)"),
        f"prompts {prompts['baseline_n']} / {prompts['recent_n']}"
        + ("" if prompts["tested"] else " (too few to test)"),
    ]
    if prompts.get("tested"):
        parts.append(
            f"centroid distance {prompts['centroid_distance']:.3f} "
            f"(alert above {prompts['centroid_threshold']:g}), "
            f"PSI {prompts['psi']:.2f} (alert above {prompts['psi_threshold']:g})"
        )
    return " · ".join(parts)


def build_monitor_tab(services: Services) -> None:
    defaults = services.drift.options
    with gr.Tab("Monitor", id="monitor") as tab:
        gr.Markdown(
            "Drift of the **serving model's** ratings (recent window against the baseline before "
            "it: two-proportion z-test on thumbs, Mann-Whitney U on stars, CUSUM on thumbs) and "
            "of **all prompts** (embedding centroid distance and PSI over topics). Only a "
            "significant change past the threshold raises an alert."
        )
        with gr.Row():
            baseline = gr.Number(defaults.baseline, precision=0, label="Baseline ratings")
            window = gr.Number(defaults.window, precision=0, label="Recent ratings")
            prompt_baseline = gr.Number(defaults.prompt_baseline, precision=0,
                                        label="Baseline prompts")
            prompt_window = gr.Number(defaults.prompt_window, precision=0, label="Recent prompts")
            alpha = gr.Number(defaults.alpha, label="Significance level")
            check = gr.Button("Check now", variant="primary")
        alerts = gr.Markdown()
        with gr.Row():
            thumbs_plot = gr.Plot(label="Thumbs-up rate")
            stars_plot = gr.Plot(label="Mean stars")
        with gr.Row():
            topics_plot = gr.Plot(label="Prompt topics")
            with gr.Column():
                with gr.Accordion("All evidence (JSON)", open=False):
                    evidence = gr.JSON()

    @shows_errors(lambda m: (problem(m), None, None, None, None), expected=(TypeError, ValueError))
    def run(base, recent, prompt_base, prompt_recent, level, progress=gr.Progress()):  # noqa: B008
        progress(0.1, desc="Embedding prompts and testing the windows")
        report = services.drift.check(
            baseline=int(base), window=int(recent), prompt_baseline=int(prompt_base),
            prompt_window=int(prompt_recent), alpha=float(level),
        )
        ratings = report.ratings
        return (
            alerts_markdown(report),
            rolling_figure(ratings["thumbs"], title="Rolling thumbs-up rate",
                           y_title="thumbs-up rate", y_range=[0, 1]),
            rolling_figure(ratings["stars"], title="Rolling mean stars", y_title="stars",
                           y_range=[1, 5]),
            topics_figure(report.prompts),
            report.to_dict(),
        )

    inputs = [baseline, window, prompt_baseline, prompt_window, alpha]
    outputs = [alerts, thumbs_plot, stars_plot, topics_plot, evidence]
    check.click(run, inputs, outputs, show_progress_on=alerts)  # one progress bar
    tab.select(run, inputs, outputs, show_progress_on=alerts)
