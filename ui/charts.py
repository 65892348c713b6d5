"""Every Plotly figure of the studio, drawn from core's plain data (lists, dicts, DataFrames).

Each goes through tidy(): the toolbar stands upright in the right margin instead of over the
data, and the legend sits above the plot area.
"""

from __future__ import annotations

from datetime import date, timedelta

import plotly.graph_objects as go
from plotly.subplots import make_subplots

DAY_MS = 86_400_000


def tidy(figure: go.Figure) -> go.Figure:
    margin = figure.layout.margin
    figure.update_layout(modebar={"orientation": "v", "bgcolor": "rgba(255,255,255,0.7)"},
                         margin={"r": max(margin.r or 0, 40), "t": max(margin.t or 0, 40)})
    return figure


def whole_numbers(last: float | None) -> dict:
    """An x axis of counts (steps, ratings): one tick per value when few, never "1.5"."""
    return {"dtick": 1} if last is not None and last <= 12 else {"tickformat": "d"}


def padded(bounds: list[float]) -> list[float]:
    """A fixed range with room at both ends, so a point on a bound is drawn whole."""
    low, high = bounds
    room = (high - low) * 0.05
    return [low - room, high + room]


def empty_note(figure: go.Figure, text: str) -> go.Figure:
    """A chart with no data says why instead of drawing bare axes."""
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False)
    return figure


def ratings_figure(per_day: list[dict]) -> go.Figure:
    """Ratings per day (bars) and the day's thumbs-up rate (line, right axis), with day ticks
    (one day of data would otherwise get sub-millisecond ticks)."""
    figure = make_subplots(specs=[[{"secondary_y": True}]])
    days = [row["day"] for row in per_day]
    figure.add_bar(x=days, y=[row["ratings"] for row in per_day], name="ratings",
                   width=[DAY_MS * 0.8] * len(days))  # a lone day's bar is 1 ms wide otherwise
    figure.add_scatter(x=days, y=[row["thumbs_up_rate"] for row in per_day],
                       name="thumbs-up rate", mode="lines+markers", secondary_y=True)
    figure.update_yaxes(title_text="ratings", secondary_y=False)
    figure.update_yaxes(title_text="thumbs-up rate", range=padded([0, 1]), secondary_y=True)
    xaxis = {"type": "date", "tickformat": "%b %d"}
    if days:
        first, last = date.fromisoformat(days[0]), date.fromisoformat(days[-1])
        xaxis["range"] = [str(first - timedelta(days=1)), str(last + timedelta(days=1))]
        if (last - first).days <= 14:
            xaxis["dtick"] = DAY_MS
    figure.update_layout(title="Ratings per day", height=320, margin={"t": 40, "b": 30},
                         legend={"orientation": "h", "y": -0.15}, xaxis=xaxis)
    return tidy(figure)


def dataset_stats_figure(stats: dict) -> go.Figure:
    """Token-length histogram and label balance per split."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("Token lengths", "Labels by split"))
    histogram = stats.get("token_histogram")
    if histogram:
        edges = histogram["edges"]
        centres = [(a + b) / 2 for a, b in zip(edges, edges[1:], strict=False)]
        figure.add_bar(x=centres, y=histogram["counts"], name="rows", row=1, col=1)
    for split, labels in stats.get("labels", {}).items():
        figure.add_bar(x=list(labels), y=list(labels.values()), name=split, row=1, col=2)
    figure.update_layout(height=320, barmode="group", margin=dict(t=40, b=30, l=30, r=10))
    return tidy(figure)


def rolling_figure(stream: dict, *, title: str, y_title: str, y_range=None) -> go.Figure:
    """The rolling mean over the stream, the baseline band, and where the recent window starts."""
    figure = go.Figure()
    values = stream.get("rolling") or []
    figure.add_scatter(x=list(range(1, len(values) + 1)), y=values, mode="lines",
                       name="rolling mean")
    if stream.get("band"):
        low, high = stream["band"]
        figure.add_hrect(y0=low, y1=high, opacity=0.15, line_width=0, fillcolor="green",
                         annotation_text="baseline band (95%)")
        figure.add_hline(y=stream["baseline_mean"], line_dash="dot")
    if values and stream.get("recent_n"):
        figure.add_vline(x=stream["recent_start"] + 0.5, line_dash="dash",
                         annotation_text="recent window")
    figure.update_layout(title=title, xaxis_title="rating (oldest → newest)", yaxis_title=y_title,
                         xaxis=whole_numbers(len(values)), height=300,
                         margin={"l": 40, "r": 10, "t": 40, "b": 40},
                         yaxis={"range": padded(y_range)} if y_range else {})
    return tidy(figure)


def topics_figure(prompts: dict) -> go.Figure:
    """Each topic's share of the baseline and of the recent prompts."""
    figure = go.Figure()
    topics = prompts.get("topics") or []
    labels = [t["example"][:40] for t in topics]
    figure.add_bar(y=labels, x=[t["baseline"] for t in topics], name="baseline", orientation="h")
    figure.add_bar(y=labels, x=[t["recent"] for t in topics], name="recent", orientation="h")
    figure.update_layout(title="Prompt topics (k-means on the baseline)", barmode="group",
                         xaxis={"title": "share of prompts", "range": [0, 1]},
                         height=140 + 36 * max(len(topics), 1),
                         margin={"l": 10, "r": 10, "t": 60, "b": 40},
                         legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1,
                                 "xanchor": "right"})
    if not topics:
        empty_note(figure, "Not enough prompts to find topics yet")
    return tidy(figure)

MARGIN_SERIES = (("reward_margin", "reward margin", "lines"),
                 ("val_reward_margin", "validation reward margin", "lines+markers"))


def loss_figure(history: dict, *, title: str = "") -> go.Figure:
    """Training loss per step and validation loss per evaluation, on one step axis; a preference
    (DPO) run adds its reward-margin curves on a second y axis."""
    figure = go.Figure()
    train = history.get("train") or []
    val = history.get("validation") or []
    if train:  # a short run's few points need markers (one point draws no line)
        figure.add_trace(go.Scatter(x=[s for s, _ in train], y=[v for _, v in train],
                                    mode="lines" if len(train) > 30 else "lines+markers",
                                    name="training loss"))
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
    xaxis = whole_numbers(max((s for s, _ in train + val), default=None))
    figure.update_layout(title=title or None, xaxis_title="optimizer step", yaxis_title="loss",
                         xaxis=xaxis, height=340,
                         margin={"l": 40, "r": 10, "t": 40 if title else 10, "b": 40},
                         legend={"orientation": "h", "y": 1.1})
    return tidy(figure)


def parameter_figure(trials: list[dict], parameters: list[str]) -> go.Figure:
    """Validation loss against each searched parameter, one panel per parameter."""
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
    return tidy(figure)


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
    return tidy(figure)


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
    return tidy(figure)


def evaluation_figure(table: list[dict], runs: list[str]) -> go.Figure:
    """Before/after: one small panel per metric (their scales differ), one bar per run."""
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
    return tidy(figure)


def experiment_figure(arms: dict) -> go.Figure:
    """Thumbs-up rate and mean stars per arm."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=["thumbs-up rate", "mean stars"])
    names = [f"{arm} ({result['model']})" for arm, result in arms.items()]
    figure.add_trace(go.Bar(x=names, y=[r["thumbs_up_rate"] or 0 for r in arms.values()],
                            showlegend=False), row=1, col=1)
    figure.add_trace(go.Bar(x=names, y=[r["mean_stars"] or 0 for r in arms.values()],
                            showlegend=False), row=1, col=2)
    figure.update_yaxes(range=[0, 1], row=1, col=1)
    figure.update_yaxes(range=[0, 5], row=1, col=2)
    figure.update_layout(height=300, margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return tidy(figure)


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
    return tidy(figure)


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
    return tidy(figure)


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
    return tidy(figure)


def probe_figure(by_group: list[dict], metric: str) -> go.Figure:
    """A probe score per group, one bar series per model."""
    figure = go.Figure()
    for model in dict.fromkeys(r["model"] for r in by_group):
        rows = [r for r in by_group if r["model"] == model]
        figure.add_trace(go.Bar(x=[r["group"] for r in rows], y=[r[metric] for r in rows],
                                name=model))
    figure.update_layout(title=f"{metric} per group", barmode="group", height=320,
                         margin={"l": 40, "r": 10, "t": 40, "b": 40})
    return tidy(figure)
