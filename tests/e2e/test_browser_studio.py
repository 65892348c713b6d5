"""The studio's frame in a real browser: the stages in loop order, the Start page's next step,
one user name per session, lists that follow the store without a refresh, readable tables."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.loop import STAGES, Loop
from ui.readable import short_id

pytestmark = pytest.mark.e2e

ROWS = [{"messages": [{"role": "user", "content": f"question {n}"},
                      {"role": "assistant", "content": f"answer {n}"}]} for n in range(4)]


def post(api: str, path: str, **body) -> dict:
    reply = httpx.post(f"{api}{path}", timeout=120, **body)
    assert reply.status_code < 300, reply.text
    return reply.json()


def rate_turns(api: str, count: int) -> None:
    for n in range(count):
        turn = post(api, "/chat", json={"prompt": f"How long is warranty {n}?"})
        post(api, "/feedback", json={"response_id": turn["response_id"], "rating": 5,
                                     "thumb": "up", "tags": ["e2e", "studio"], "user": "ola"})


def stage_names(page) -> list[str]:
    """The top-level tab bar's labels, left to right."""
    tabs = page.get_by_role("tablist").first.get_by_role("tab")
    return [name.strip() for name in tabs.all_inner_texts()]


def test_stages_follow_the_loop_and_start_says_what_is_next(page, parrot_app):
    loop = Loop(page, parrot_app.api)
    assert stage_names(page) == STAGES
    start = loop.open_tab("Start")
    next_step = start.locator("#next-step")
    expect(next_step).to_contain_text("No documents yet")

    post(parrot_app.api, "/documents", files=[("files", ("kettle.md", b"# Kettle\n\nTwo year "
                                                          b"warranty.", "text/markdown"))])
    rate_turns(parrot_app.api, 3)
    # The page follows the store: no reload, no refresh button.
    expect(next_step).to_contain_text(re.compile(r"1 document, 3 rated turns: build a dataset"))
    expect(start.locator("#loop-counts")).to_contain_text("3 rated turns")
    start.get_by_role("button", name="Build a dataset →").click()
    expect(page.get_by_role("tab", name="Curate", exact=True)).to_have_attribute(
        "aria-selected", "true")
    expect(page.get_by_role("tab", name="Datasets", exact=True)).to_have_attribute(
        "aria-selected", "true")


def test_a_new_dataset_shows_in_train_and_the_run_is_the_users(page, parrot_app):
    loop = Loop(page, parrot_app.api)
    loop.set_user("ines")
    panel = loop.open_tab("Train")  # opened before the dataset exists
    created = post(parrot_app.api, "/datasets", json={"name": "live-rows", "kind": "sft",
                                                       "rows": ROWS, "validation_fraction": 0})
    adapter = loop.train("live-rows")  # picks it from the list without pressing any refresh
    jobs = [j for j in loop.get("/training/jobs")["items"] if j["dataset_id"] == created["id"]]
    assert [j["user"] for j in jobs] == ["ines"]
    expect(panel.get_by_text("started by ines")).to_be_visible()
    log = loop.field(panel, "Log").input_value()
    assert "completed after" in log and "{" not in log  # sentences, not raw dicts

    page.reload()  # the name is remembered in this browser
    expect(page.get_by_label("Your name", exact=True)).to_have_value("ines")

    models = loop.open_tab("Models")  # filled without a refresh
    expect(models.get_by_role("gridcell", name=short_id(adapter), exact=True).first).to_be_visible()


def test_tables_are_readable(page, parrot_app):
    loop = Loop(page, parrot_app.api)
    rate_turns(parrot_app.api, 1)
    post(parrot_app.api, "/datasets", json={"name": "readable", "kind": "sft", "rows": ROWS,
                                            "validation_fraction": 0})
    datasets = loop.open_tab("Datasets")
    table = datasets.get_by_role("grid").filter(has_text="readable").first
    expect(table).to_be_visible()
    headers = [h.strip() for h in table.get_by_role("columnheader").all_inner_texts()]
    assert headers.index("name") < headers.index("id") == len(headers) - 1
    for th in table.get_by_role("columnheader").all():  # no header one letter per line
        assert th.bounding_box()["height"] < 80, th.inner_text()
    row = table.get_by_role("row").filter(has_text="readable").first
    cells = [text.strip() for text in row.get_by_role("gridcell").all_inner_texts()]
    assert not any(text.startswith(("[", "{")) for text in cells)
    assert re.fullmatch(r"[0-9a-f]{1,8}", cells[-1]), cells  # the id: last and short
    assert any(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", text) for text in cells), cells

    feedback = loop.open_tab("Feedback")
    card = feedback.locator(".answer-card").first
    expect(card).to_be_visible()
    expect(card).to_contain_text("How long is warranty")
    assert "e2e, studio" in card.inner_text()  # tags as words, not a Python list


def test_labels_are_the_users_and_empty_boxes_stay_hidden(page, parrot_app):
    loop = Loop(page, parrot_app.api)
    rate_turns(parrot_app.api, 1)
    loop.set_user("lena")
    feedback = loop.open_tab("Feedback")
    expect(feedback.locator(".answer-card").first).to_be_visible()
    feedback.get_by_text("Bulk actions", exact=True).click()
    loop.radios(feedback, "Apply to").get_by_role("radio", name="all filtered rows").check()
    loop.choose(feedback, "Action", "set label")
    loop.field(feedback, "Tags (comma-separated) or label").fill("checked")
    feedback.get_by_role("button", name="Apply action").click()
    loop.status_text(feedback, r"set label: \d+ row\(s\) changed")
    labelled = loop.get("/feedback/rated", label="checked")["items"]
    assert labelled and {row["curated_by"] for row in labelled} == {"lena"}
    expect(feedback.locator(".answer-card").first).to_contain_text("label checked by lena")

    logs = loop.open_tab("Logs")  # filled at once, never a "1 2 3" placeholder table
    expect(logs.locator(".answer-card").first).to_be_visible()
    for grid in logs.get_by_role("grid").all():
        headers = [h.strip() for h in grid.get_by_role("columnheader").all_inner_texts()]
        assert headers[:3] != ["1", "2", "3"], headers
    for tab, button in (("Bias", "Export JSON + HTML"), ("Explain", "Export JSON + HTML")):
        panel = loop.open_tab(tab)  # nothing to export yet: no button, no empty file box
        expect(panel.get_by_role("button", name=button)).to_have_count(0)
        expect(panel.get_by_text("Exported report").filter(visible=True)).to_have_count(0)
    no_sides = panel.get_by_label("Answer", exact=True).filter(visible=True)
    expect(no_sides).to_have_count(0)  # Explain shows no empty answer boxes


def test_knowledge_scores_show_when_a_run_finishes_elsewhere(page, parrot_app):
    loop = Loop(page, parrot_app.api)
    knowledge = loop.open_tab("Knowledge")  # opened before the check exists
    lines = b'{"question": "How long is the warranty?", "reference": "two years"}\n'
    check = post(parrot_app.api, "/knowledge-checks/import",
                 files={"file": ("warranty.jsonl", lines, "application/jsonl")})
    started = post(parrot_app.api, f"/knowledge-checks/{check['id']}/runs",
                   json={"model": "base", "grounded": [False]})
    expect(knowledge.get_by_text(re.compile(r"knows \d/1 of your facts")).first).to_be_visible()
    runs = [loop.get(f"/knowledge-runs/{run_id}") for run_id in started["run_ids"]]
    assert {run["status"] for run in runs} == {"done"}
    models = loop.open_tab("Models")  # the same line there, no refresh pressed
    expect(models.get_by_text(re.compile(r"knows \d/1 of your facts")).first).to_be_visible()
