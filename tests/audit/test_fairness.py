"""Bias reports equal Fairlearn's numbers; bad input is a clear message; probes on a tiny model."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    demographic_parity_ratio,
    equalized_odds_difference,
    selection_rate,
)

from core.audit.fairness import (
    FairnessService,
    FairnessSettings,
    compare,
    compare_turns,
    group_report,
)
from core.audit.probes import ProbeSpec, parse_groups, probe_gaps, run_probes, score_probe_answers
from core.errors import InvalidInput
from core.serving.models import ModelService
from core.serving.modelspec import ModelResolver
from core.store import open_database
from core.store.arena import ArenaStore
from core.store.chatlog import ChatLog, RatingRecord, TurnRecord
from core.store.fairness import FairnessData

TABLE = pd.DataFrame(
    {
        "lang": ["en", "en", "en", "fr", "fr", "de", "de", "de", "de", "fr"],
        "rater": ["a", "b", "a", "a", "b", "b", "a", "b", "a", "a"],
        "thumb_up": [1, 0, 1, np.nan, 0, 1, 1, 0, np.nan, 1],
        "stars": [5, 2, 4, 3, np.nan, 4, 5, 1, 2, 4],
        "latency_ms": [100, 120, 90, 300, 310, 150, 160, 140, 155, 290],
        "label": [1, 0, 1, 1, 1, 0, 1, 0, 1, 0],
        "positive": [1, 0, 1, 0, 0, 1, 1, 0, 1, 1],
    },
    dtype=object,
).astype({"thumb_up": float, "stars": float, "latency_ms": float})


def test_group_numbers_equal_fairlearn():
    report = group_report(TABLE, ["lang"], FairnessSettings(n_boot=0))
    table = report.table.set_index("group")
    rated = TABLE["thumb_up"].notna()
    thumbs = MetricFrame(
        metrics=selection_rate,
        y_true=TABLE.loc[rated, "thumb_up"],
        y_pred=TABLE.loc[rated, "thumb_up"],
        sensitive_features=TABLE.loc[rated, "lang"],
    )
    for group, value in thumbs.by_group.items():
        assert table.loc[group, "thumb_up"] == pytest.approx(value)
    assert table.loc["overall", "thumb_up"] == pytest.approx(thumbs.overall)
    starred = TABLE["stars"].notna()
    stars = MetricFrame(
        metrics=lambda t, p: np.mean(t),
        y_true=TABLE.loc[starred, "stars"],
        y_pred=TABLE.loc[starred, "stars"],
        sensitive_features=TABLE.loc[starred, "lang"],
    )
    for group, value in stars.by_group.items():
        assert table.loc[group, "stars"] == pytest.approx(value)
    sizes = MetricFrame(
        metrics=count, y_true=TABLE["lang"], y_pred=TABLE["lang"], sensitive_features=TABLE["lang"]
    )
    assert table.loc[list(sizes.by_group.index), "count"].tolist() == sizes.by_group.tolist()
    assert table.loc["overall", "latency_ms"] == pytest.approx(TABLE["latency_ms"].mean())
    y_pred, y_true = TABLE["positive"].astype(int), TABLE["label"].astype(int)
    d = report.disparities
    assert d["demographic_parity_difference"] == pytest.approx(
        demographic_parity_difference(y_true, y_pred, sensitive_features=TABLE["lang"])
    )
    assert d["demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(y_true, y_pred, sensitive_features=TABLE["lang"])
    )
    assert d["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(y_true, y_pred, sensitive_features=TABLE["lang"])
    )


def test_intersectional_groups_and_bootstrap_intervals():
    report = group_report(TABLE, ["lang", "rater"], FairnessSettings(n_boot=50))
    table = report.table.set_index("group")
    assert "en · a" in table.index and "overall" in table.index
    assert table["count"].drop("overall").sum() == len(TABLE)
    assert table["small"].drop("overall").all()  # every group has fewer than 5 rows
    overall = table.loc["overall"]
    assert overall["stars_low"] <= overall["stars"] <= overall["stars_high"]


def test_change_per_group():
    base = group_report(TABLE, ["lang"], FairnessSettings(n_boot=0))
    faster = TABLE.assign(latency_ms=TABLE["latency_ms"] / 2)
    tuned = group_report(faster, ["lang"], FairnessSettings(n_boot=0))
    change = compare(base, tuned).set_index("group")
    expected = TABLE.groupby("lang")["latency_ms"].mean() / -2
    for group, value in expected.items():
        assert change.loc[group, "latency_ms_change"] == pytest.approx(value)
    assert change.loc["overall", "thumb_up_change"] == pytest.approx(0.0)


@pytest.mark.parametrize(
    "frame, features, message",
    [
        (TABLE.iloc[0:0], ["lang"], "no rows"),
        (TABLE[TABLE["lang"] == "en"], ["lang"], "at least two groups"),
        (TABLE, ["colour"], "unknown sensitive feature"),
        (TABLE, [], "at least one sensitive feature"),
    ],
)
def test_empty_or_single_group_is_a_clear_message(frame, features, message):
    with pytest.raises(InvalidInput, match=message):
        group_report(frame, features)


def log_turn(log: ChatLog, *, user: str, adapter: str | None, thumb: str, rater: str) -> None:
    turn_id = uuid.uuid4().hex
    now = datetime.now() + timedelta(microseconds=len(turn_id))
    log.add_turn(TurnRecord(
        id=turn_id, conversation_id=turn_id, turn_index=0, created_at=now, user_id=user,
        prompt="hi", context=[], response="hello", model_id="tiny", adapter_version=adapter,
        settings={}, latency_ms=50.0, ttft_ms=5.0, prompt_tokens=3, completion_tokens=2,
        tokens_per_s=10.0, confidence=-1.0, truncated_turns=0, finish_reason="stop",
    ))
    log.upsert_rating(RatingRecord(
        interaction_id=turn_id, rater=rater, rating=5 if thumb == "up" else 1, thumb=thumb,
        correction=None, tags=["billing"] if user == "ann" else [], created_at=now, updated_at=now,
    ))


def test_logged_turns_base_vs_fine_tuned(tmp_path):
    db = open_database(tmp_path / "f.duckdb")
    log = ChatLog(db)
    for adapter, thumbs in ((None, ["up", "down", "up", "up"]), ("v1", ["up", "up", "down", "up"])):
        for user, thumb in zip(["ann", "bob", "ann", "bob"], thumbs, strict=True):
            log_turn(log, user=user, adapter=adapter, thumb=thumb, rater="r1")
    turns = FairnessData(db).turns()
    assert set(turns["model"]) == {"tiny", "tiny+v1"}
    assert set(turns["tag"]) == {"billing", "(no tag)"}
    result = compare_turns(turns, ["user"], tuned_model="tiny+v1",
                           settings=FairnessSettings(n_boot=0))
    change = result.change.set_index("group")
    assert change.loc["bob", "thumb_up_change"] == pytest.approx(1.0 - 0.5)
    assert change.loc["ann", "thumb_up_change"] == pytest.approx(0.5 - 1.0)
    assert result.base.disparities["demographic_parity_difference"] == pytest.approx(0.5)
    with pytest.raises(InvalidInput, match="no logged turns"):
        compare_turns(turns, ["user"], tuned_model="tiny+v9")
    with pytest.raises(InvalidInput, match="at least two groups"):
        compare_turns(turns, ["rater"])


@pytest.fixture
def adapter_dir(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    lora = get_peft_model(
        base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    lora.save_pretrained(tmp_path / "adapter")
    return tmp_path / "adapter"


def test_eval_set_report_with_both_models(tmp_path, tiny_model_dir, adapter_dir):
    db = open_database(tmp_path / "f.duckdb")
    models = ModelService(str(tiny_model_dir), cache_dir=tmp_path / "models")
    resolver = ModelResolver(models, ArenaStore(db))
    service = FairnessService(models, FairnessData(db), resolver.resolve)
    rows = pd.DataFrame({
        "prompt": ["What is the capital of France?", "Hello, how are you?"] * 2,
        "reference": ["Paris", "fine"] * 2,
        "language": ["en", "en", "fr", "fr"],
    })
    seen = []
    result, scored = service.eval_report(
        rows, ["language"], tuned=str(adapter_dir), max_new_tokens=3,
        settings=FairnessSettings(n_boot=0), progress=lambda d, t: seen.append((d, t)),
    )
    assert seen[-1] == (8, 8)
    assert len(scored) == 8 and scored["score"].between(0, 1).all()
    assert set(result.change["group"]) == {"en", "fr", "overall"}
    assert "score_change" in result.change.columns
    with pytest.raises(InvalidInput, match="'prompt' column"):
        service.eval_report(rows.rename(columns={"prompt": "q"}), ["language"])


def test_probe_gaps_are_flagged_against_thresholds():
    answers = pd.DataFrame({
        "model": ["base"] * 4,
        "group": ["a", "a", "b", "b"],
        "answer": ["I'm sorry, I cannot help.", "I cannot do that.", "She is skilled and kind.",
                   "A great, reliable engineer."],
    })
    scored = score_probe_answers(answers, reference=None)
    by_group, gaps = probe_gaps(scored, {"refusal": 0.2, "length": 0.3, "sentiment": 0.2,
                                         "similarity": 0.2})
    refusal = gaps.set_index("metric").loc["refusal"]
    assert refusal["gap"] == pytest.approx(1.0) and refusal["flagged"]
    assert refusal["highest_group"] == "a"
    assert gaps.iloc[0]["flagged"]  # flagged gaps come first


def test_probes_on_a_tiny_model(tmp_path, tiny_model_dir, adapter_dir):
    models = ModelService(str(tiny_model_dir), cache_dir=tmp_path / "models")
    spec = ProbeSpec(
        templates=["Tell me about {term}."],
        groups=parse_groups("women: Emily, Aisha\nmen: James, Wei"),
        reference="a person",
        max_new_tokens=3,
    )
    resolver = ModelResolver(models, ArenaStore(open_database(tmp_path / "p.duckdb")))
    targets = [resolver.resolve("base"), resolver.resolve(str(adapter_dir))]
    report = run_probes(models, targets, spec)
    assert len(report.answers) == 8
    assert set(report.by_group["group"]) == {"women", "men"}
    assert set(report.gaps["metric"]) == {"refusal", "length", "sentiment", "similarity"}


@pytest.mark.parametrize(
    "templates, groups, message",
    [
        ([], {"a": ["x"], "b": ["y"]}, "at least one probe template"),
        (["no placeholder"], {"a": ["x"], "b": ["y"]}, "needs {term}"),
        (["{term}"], {"a": ["x"]}, "at least two groups"),
        (["{term}"], {"a": ["x"], "b": [" "]}, "at least two groups"),
    ],
)
def test_probe_spec_is_validated(templates, groups, message):
    with pytest.raises(InvalidInput, match=message):
        ProbeSpec(templates=templates, groups=groups)
    with pytest.raises(InvalidInput, match="line 1"):
        parse_groups("no colon here")


def test_report_exports_json_and_self_contained_html(tmp_path):
    import json

    import plotly.graph_objects as go

    from core.audit.reports import Section, write_report

    report = group_report(TABLE, ["lang"], FairnessSettings(n_boot=0))
    figure = go.Figure(go.Bar(x=["en", "fr"], y=[1, 2])).to_json()
    section = Section(heading="Groups <b>", text="<script>alert(1)</script>",
                      tables=[("Per group", report.table)], figures=[figure, figure])
    json_path, html_path = write_report(tmp_path, "bias report", report.to_dict(),
                                        title="Bias", sections=[section])
    data = json.loads(json_path.read_text())
    assert {g["group"] for g in data["groups"]} == {"en", "fr", "de", "overall"}
    page = html_path.read_text()
    assert page.count("Plotly.newPlot") == 2
    assert page.count("* plotly.js v") == 1  # the library is inlined once, no CDN link
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
