"""Readable chart axes: whole-number steps, room around fixed ranges, empty charts say why."""

from __future__ import annotations

from ui.charts import loss_figure, ratings_figure, rolling_figure, topics_figure


def test_short_runs_tick_whole_steps_and_long_runs_never_show_fractions():
    short = loss_figure({"train": [(1, 2.0), (2, 1.5), (3, 1.2)], "validation": [(3, 1.4)]})
    assert short.layout.xaxis.dtick == 1
    assert short.data[0].mode == "lines+markers"  # three points: each one drawn
    long = loss_figure({"train": [(step, 1.0) for step in range(1, 200)]})
    assert long.layout.xaxis.dtick is None and long.layout.xaxis.tickformat == "d"
    assert long.data[0].mode == "lines"
    assert rolling_figure({"rolling": [1.0, 0.5]}, title="t", y_title="y").layout.xaxis.dtick == 1


def test_a_point_on_a_fixed_bound_is_drawn_whole():
    rolling = rolling_figure({"rolling": [1.0]}, title="t", y_title="rate", y_range=[0, 1])
    low, high = rolling.layout.yaxis.range
    assert low < 0 and high > 1
    day = ratings_figure([{"day": "2026-12-06", "ratings": 4, "thumbs_up_rate": 1.0}])
    assert day.layout.yaxis2.range[1] > 1


def test_a_topics_chart_without_topics_says_why():
    figure = topics_figure({"topics": []})
    assert "Not enough prompts" in figure.layout.annotations[0].text
    assert figure.layout.xaxis.visible is False
