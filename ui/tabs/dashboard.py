"""Dashboard tab: the loop at a glance, from DashboardService.summary()."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from core.services import Services
from ui.charts import ratings_figure
from ui.errors import problem, shows_errors
from ui.readable import frame, when

REFRESH_S = 30


def _pct(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def headline(summary: dict) -> str:
    docs, fb, runs = summary["documents"], summary["feedback"], summary["runs"]
    stars = "–" if fb["mean_stars"] is None else f"{fb['mean_stars']:.2f}"
    running = runs["by_status"].get("running", 0) + runs["by_status"].get("queued", 0)
    alerts = len(summary["drift"]["alerts"])
    auto = summary["automation"]
    return (
        f"**Documents** {docs['documents']} ({docs['chunks']} chunks) · "
        f"**Turns** {fb['turns']} in {fb['conversations']} conversations · "
        f"**Ratings** {fb['ratings']} (thumbs-up {_pct(fb['thumbs_up_rate'])}, "
        f"mean ★ {stars}, {fb['corrections']} corrections) · "
        f"**Runs** {runs['total']} ({running} active) · "
        f"**Experiments running** {len(summary['experiments'])} · "
        f"**Drift alerts** {alerts} · "
        f"**Automation** {'on' if auto['enabled'] else 'off'}"
    ) + "".join(f"\n\n**{row['model']}** {row['line']}" for row in summary["knowledge"])


def serving_table(summary: dict) -> pd.DataFrame:
    serving = summary["serving"]
    metrics = serving.get("metrics") or {}
    rows = [("serving", serving["model"]), ("name", serving["name"]),
            ("base model", serving["base_model"]), ("promoted at", when(serving["since"]) or "–")]
    rows += [(name, f"{value:.4g}") for name, value in metrics.items()
             if isinstance(value, (int, float))]
    return pd.DataFrame(rows, columns=["", "value"])


def experiments_table(experiments: list[dict]) -> pd.DataFrame:
    rows = []
    for exp in experiments:
        a, b = exp["arms"]["A"], exp["arms"]["B"]
        rows.append({"name": exp["name"], "A": exp["model_a"], "B": exp["model_b"],
                     "rated A/B": f"{a['rated_turns']}/{b['rated_turns']}",
                     "thumbs-up A/B": f"{_pct(a['thumbs_up_rate'])}/{_pct(b['thumbs_up_rate'])}",
                     "p": exp["p_value"], "recommendation": exp["recommendation"]})
    return frame(rows, ["name", "A", "B", "rated A/B", "thumbs-up A/B", "p", "recommendation"])


def drift_table(drift: dict) -> pd.DataFrame:
    if drift["error"]:
        return pd.DataFrame([{"kind": "error", "message": drift["error"]}])
    if not drift["alerts"]:
        note = "no drift alerts" if drift["available"] else "drift monitoring is not available"
        return pd.DataFrame([{"kind": "–", "message": note}])
    return frame(drift["alerts"], ["kind", "message"])


@shows_errors(lambda m: (problem(m), *[gr.skip()] * 8))
def views(services: Services):
    """Every output of the tab, from one summary."""
    summary = services.dashboard.summary()
    runs = summary["runs"]["recent"]
    for run in runs:
        run["progress"] = f"{run['progress']:.0%}"
    auto = summary["automation"]
    return (
        headline(summary),
        serving_table(summary),
        ratings_figure(summary["ratings_per_day"]),
        frame(summary["versions"], ["created_at", "action", "model_id", "user_id"]),
        frame(runs, ["name", "status", "progress", "user", "model_id", "created_at", "error",
                     "id"], ids=("id",)),
        experiments_table(summary["experiments"]),
        drift_table(summary["drift"]),
        f"**Automation:** {auto['status']}",
        frame(auto["actions"], ["created_at", "action", "reason"]),
    )


def build_dashboard_tab(services: Services, page: gr.Blocks) -> None:
    """`page` is the whole app: the dashboard fills itself in when the page loads."""
    with gr.Tab("Dashboard", id="dashboard"):
        with gr.Row():
            overview = gr.Markdown()
            refresh = gr.Button("Refresh", scale=0)
        with gr.Row():
            with gr.Column(scale=1):
                serving = gr.Dataframe(label="Serving model", interactive=False)
            with gr.Column(scale=2):
                chart = gr.Plot(label="Ratings trend")
        with gr.Row():
            versions = gr.Dataframe(label="Version history (promotions and rollbacks)",
                                    interactive=False, max_height=260)
            runs = gr.Dataframe(label="Training runs (latest)", interactive=False,
                                max_height=260, wrap=True)
        with gr.Row():
            experiments = gr.Dataframe(label="Running experiments", interactive=False)
            drift = gr.Dataframe(label="Drift alerts", interactive=False, wrap=True)
        automation = gr.Markdown()
        actions = gr.Dataframe(label="What the automation did last", interactive=False,
                               wrap=True, max_height=300)
        timer = gr.Timer(REFRESH_S)

    outputs = [overview, serving, chart, versions, runs, experiments, drift, automation, actions]
    refresh.click(lambda: views(services), None, outputs)
    timer.tick(lambda: views(services), None, outputs, show_progress="hidden")
    page.load(lambda: views(services), None, outputs)
