"""Plotly figures drawn from core's plain data (lists, dicts, DataFrames)."""

from __future__ import annotations

import plotly.graph_objects as go

MARGIN_SERIES = (("reward_margin", "reward margin", "lines"),
                 ("val_reward_margin", "validation reward margin", "lines+markers"))


def loss_figure(history: dict, *, title: str = "") -> go.Figure:
    """Training loss per step and validation loss per evaluation, on one step axis; a preference
    (DPO) run adds its reward-margin curves on a second y axis."""
    figure = go.Figure()
    train = history.get("train") or []
    val = history.get("validation") or []
    if train:
        figure.add_trace(go.Scatter(x=[s for s, _ in train], y=[v for _, v in train],
                                    mode="lines", name="training loss"))
    if val:
        figure.add_trace(go.Scatter(x=[s for s, _ in val], y=[v for _, v in val],
                                    mode="lines+markers", name="validation loss"))
    series = history.get("series") or {}
    for key, name, mode in MARGIN_SERIES:
        if series.get(key):
            figure.add_trace(go.Scatter(x=[s for s, _ in series[key]],
                                        y=[v for _, v in series[key]], mode=mode, name=name,
                                        yaxis="y2", line={"dash": "dot"}))
    if any(series.get(key) for key, _, _ in MARGIN_SERIES):
        figure.update_layout(yaxis2={"title": "reward margin", "overlaying": "y",
                                     "side": "right", "showgrid": False})
    figure.update_layout(title=title or None, xaxis_title="optimizer step", yaxis_title="loss",
                         height=340, margin={"l": 40, "r": 10, "t": 40 if title else 10, "b": 40},
                         legend={"orientation": "h", "y": 1.1})
    return figure


def parameter_figure(trials: list[dict], parameters: list[str]) -> go.Figure:
    """Validation loss against each searched parameter, one panel per parameter."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=max(len(parameters), 1), subplot_titles=parameters,
                           shared_yaxes=True)
    done = [t for t in trials if t.get("val_loss") is not None]
    for col, name in enumerate(parameters, start=1):
        figure.add_trace(go.Scatter(x=[t["params"][name] for t in done],
                                    y=[t["val_loss"] for t in done], mode="markers",
                                    name=name, showlegend=False), row=1, col=col)
        if name == "learning_rate":
            figure.update_xaxes(type="log", row=1, col=col)
    figure.update_yaxes(title_text="validation loss", row=1, col=1)
    figure.update_layout(height=320, margin={"l": 50, "r": 10, "t": 40, "b": 40})
    return figure


def win_rate_figure(pairs: list[dict]) -> go.Figure:
    """Each pair's win rate of its first model with the Wilson 95% interval as error bars."""
    labels = [f"{p['model_a']} vs {p['model_b']}" for p in pairs]
    rates = [p["win_rate_a"] if p["win_rate_a"] is not None else 0.5 for p in pairs]
    figure = go.Figure(go.Bar(
        x=rates, y=labels, orientation="h",
        error_x={"type": "data", "symmetric": False,
                 "array": [p["ci_high"] - r for p, r in zip(pairs, rates, strict=True)],
                 "arrayminus": [r - p["ci_low"] for p, r in zip(pairs, rates, strict=True)]},
        text=[f"n={p['wins_a'] + p['wins_b']}" for p in pairs], textposition="inside",
    ))
    figure.add_vline(x=0.5, line_dash="dot")
    figure.update_layout(xaxis={"range": [0, 1], "title": "win rate of the first model (95% CI)"},
                         height=120 + 40 * len(pairs), margin={"l": 10, "r": 10, "t": 10, "b": 40})
    return figure


def leaderboard_figure(ratings: list[dict]) -> go.Figure:
    """Bradley-Terry log-strengths with their 95% intervals, best first."""
    figure = go.Figure(go.Scatter(
        x=[r["score"] for r in ratings], y=[r["model"] for r in ratings], mode="markers",
        error_x={"type": "data", "symmetric": False,
                 "array": [r["high"] - r["score"] for r in ratings],
                 "arrayminus": [r["score"] - r["low"] for r in ratings]},
    ))
    figure.update_layout(xaxis_title="Bradley-Terry rating (log strength, 95% interval)",
                         yaxis={"autorange": "reversed"}, height=120 + 40 * len(ratings),
                         margin={"l": 10, "r": 10, "t": 10, "b": 40})
    return figure


def evaluation_figure(table: list[dict], runs: list[str]) -> go.Figure:
    """Before/after: one small panel per metric (their scales differ), one bar per run."""
    from plotly.subplots import make_subplots

    rows = [row for row in table if any(row.get(run) is not None for run in runs)]
    cols = 3
    figure = make_subplots(rows=max(1, -(-len(rows) // cols)), cols=cols,
                           subplot_titles=[row["metric"] for row in rows])
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a"]
    for i, row in enumerate(rows):
        for j, run in enumerate(runs):
            figure.add_trace(go.Bar(x=[run], y=[row.get(run)], name=run, legendgroup=run,
                                    marker_color=palette[j % len(palette)], showlegend=i == 0),
                             row=i // cols + 1, col=i % cols + 1)
    figure.update_xaxes(showticklabels=False)
    figure.update_layout(height=220 * max(1, -(-len(rows) // cols)),
                         margin={"l": 40, "r": 10, "t": 40, "b": 20},
                         legend={"orientation": "h", "y": -0.05})
    return figure


def experiment_figure(arms: dict) -> go.Figure:
    """Thumbs-up rate and mean stars per arm."""
    from plotly.subplots import make_subplots

    figure = make_subplots(rows=1, cols=2, subplot_titles=["thumbs-up rate", "mean stars"])
    names = [f"{arm} ({result['model']})" for arm, result in arms.items()]
    figure.add_trace(go.Bar(x=names, y=[r["thumbs_up_rate"] or 0 for r in arms.values()],
                            showlegend=False), row=1, col=1)
    figure.add_trace(go.Bar(x=names, y=[r["mean_stars"] or 0 for r in arms.values()],
                            showlegend=False), row=1, col=2)
    figure.update_yaxes(range=[0, 1], row=1, col=1)
    figure.update_yaxes(range=[0, 5], row=1, col=2)
    figure.update_layout(height=300, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure


def attribution_figure(words: list[str], values: list[float], *, title: str = "",
                       k: int = 15) -> go.Figure:
    """The k words with the largest attributions; red raises the answer, blue lowers it."""
    order = sorted(range(len(values)), key=lambda i: -abs(values[i]))[:k][::-1]
    figure = go.Figure(go.Bar(
        x=[values[i] for i in order],
        y=[f"{words[i]} ({i + 1})" for i in order],
        orientation="h",
        marker_color=["#d62728" if values[i] > 0 else "#1f77b4" for i in order],
    ))
    figure.update_layout(title=title or None, xaxis_title="attribution", height=360,
                         margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 40})
    return figure


def feedback_words_figure(top_words: list[dict]) -> go.Figure:
    """Classifier coefficients: positive pushes towards a thumbs down."""
    rows = sorted(top_words, key=lambda r: r["coefficient"])
    figure = go.Figure(go.Bar(
        x=[r["coefficient"] for r in rows], y=[r["word"] for r in rows], orientation="h",
        marker_color=["#d62728" if r["coefficient"] > 0 else "#2ca02c" for r in rows],
        customdata=[r["mean_abs_shap"] for r in rows],
        hovertemplate="%{y}: coefficient %{x:.3f}, mean |SHAP| %{customdata:.3f}<extra></extra>",
    ))
    figure.update_layout(title="Words that drive thumbs down (red) or up (green)", height=420,
                         margin={"l": 10, "r": 10, "t": 40, "b": 40})
    return figure


def group_metric_figure(reports: dict[str, list[dict]], metric: str, label: str) -> go.Figure:
    """One metric per group for each model, with its bootstrap interval when there is one."""
    figure = go.Figure()
    for name, rows in reports.items():
        rows = [r for r in rows if r.get(metric) is not None]
        error = None
        if rows and rows[0].get(f"{metric}_low") is not None:
            error = {"type": "data", "symmetric": False,
                     "array": [r[f"{metric}_high"] - r[metric] for r in rows],
                     "arrayminus": [r[metric] - r[f"{metric}_low"] for r in rows]}
        figure.add_trace(go.Bar(x=[str(r["group"]) for r in rows], y=[r[metric] for r in rows],
                                name=name, error_y=error))
    figure.update_layout(title=label, barmode="group", height=340,
                         margin={"l": 40, "r": 10, "t": 40, "b": 40},
                         legend={"orientation": "h", "y": 1.12})
    return figure


def probe_figure(by_group: list[dict], metric: str) -> go.Figure:
    """A probe score per group, one bar series per model."""
    figure = go.Figure()
    for model in dict.fromkeys(r["model"] for r in by_group):
        rows = [r for r in by_group if r["model"] == model]
        figure.add_trace(go.Bar(x=[r["group"] for r in rows], y=[r[metric] for r in rows],
                                name=model))
    figure.update_layout(title=f"{metric} per group", barmode="group", height=320,
                         margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return figure
