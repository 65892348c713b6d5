"""The Chat tab's rating form, sources and [n] markers, and grounded Compare, in a real browser:
the form follows the selected answer, the sources box too, and grounded answers cite [n]."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import VIEWPORT
from tests.e2e.loop import Loop
from tests.e2e.served import ServedApp
from tests.tiny_models import make_parrot_llama

pytestmark = pytest.mark.e2e

ANSWER = ("Every", "kettle", "has", "two", "year", "warranty.")  # the model's answer to anything
DOCUMENTS = {
    "warranty.md": "# Warranty\n\nEvery kettle has a two year warranty from the day of purchase.\n",
    "installer.txt": "The installer blinks a red light and beeps when the install fails.\n",
}


@pytest.fixture(scope="module")
def kettle_app(tmp_path_factory):
    """The app serving a model that always answers with a sentence of warranty.md."""
    root = tmp_path_factory.mktemp("e2e-chat")
    with ServedApp(root / "data", str(make_parrot_llama(root / "parrot", ANSWER))) as served:
        files = [("files", (name, text.encode(), "text/plain")) for name, text in DOCUMENTS.items()]
        httpx.post(f"{served.api}/documents", files=files, timeout=300).raise_for_status()
        yield served


@pytest.fixture
def loop(browser, kettle_app):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(kettle_app.url + "/")
    page.get_by_role("tab", name="Chat").wait_for()
    yield Loop(page, kettle_app.api)
    context.close()


def form_shows(loop: Loop, *, stars: str | None, thumb: str | None, tags: str, correction: str):
    panel = loop.open_tab("Chat")
    for label, value in (("Stars", stars), ("Thumb", thumb)):
        group = loop.radios(panel, label)
        if value is None:
            expect(group.locator("input:checked")).to_have_count(0)
        else:
            expect(group.get_by_role("radio", name=value, exact=True)).to_be_checked()
    expect(loop.field(panel, "Tags (comma-separated)")).to_have_value(tags)
    expect(loop.field(panel, "Corrected answer (optional)")).to_have_value(correction)


def first_source(loop: Loop, answer: int, document: str) -> None:
    sources = loop.page.locator("#chat-sources")
    expect(sources).to_contain_text(f"Sources of answer #{answer}")
    expect(sources).to_contain_text(re.compile(rf"\[1\]\s*{re.escape(document)}"))


def test_the_rating_form_and_sources_follow_the_selected_answer(loop):
    panel = loop.open_tab("Chat")
    panel.get_by_role("button", name="Save rating").click()
    stale = panel.get_by_text("There is no answer to rate yet")
    expect(stale).to_be_visible()

    first = loop.chat("How long is the kettle warranty?", grounded=True)
    expect(stale).to_have_count(0)  # the answer exists: the old message is gone
    assert re.search(r"warranty \[\d\]\.$", first)  # the sentence warranty.md supports
    first_source(loop, 1, "warranty.md")
    assert "Saved for answer #1" in loop.rate(stars=4, thumb="up", correction="Two years.",
                                              tags="kettle")

    loop.chat("What does the installer do when the install fails?", grounded=True)
    form_shows(loop, stars=None, thumb=None, tags="", correction="")  # nothing carried over
    first_source(loop, 2, "installer.txt")

    bots = panel.get_by_test_id("bot")
    bots.nth(0).click()
    expect(panel.get_by_text("Rating answer #1")).to_be_visible()
    form_shows(loop, stars="4", thumb="up", tags="kettle", correction="Two years.")
    first_source(loop, 1, "warranty.md")

    bots.nth(1).click()
    expect(panel.get_by_text("Rating answer #2")).to_be_visible()
    form_shows(loop, stars=None, thumb=None, tags="", correction="")
    first_source(loop, 2, "installer.txt")
    assert "Saved for answer #2" in loop.rate(stars=2, thumb="down", tags="installer")

    bots.nth(0).click()
    form_shows(loop, stars="4", thumb="up", tags="kettle", correction="Two years.")
    bots.nth(1).click()
    form_shows(loop, stars="2", thumb="down", tags="installer", correction="")

    loop.chat("Hello there")  # not grounded: the box says so instead of older sources
    expect(loop.page.locator("#chat-sources")).to_contain_text("was not grounded")
    form_shows(loop, stars=None, thumb=None, tags="", correction="")


def test_compare_grounds_both_answers_and_shows_the_sources_once(loop):
    panel = loop.open_tab("Compare")
    loop.field(panel, "Prompt").fill("How long is the kettle warranty?")
    panel.get_by_label("Ground on documents (as Chat does)").check()
    panel.get_by_role("button", name="Compare", exact=True).click()
    loop.status_text(panel, "Vote below", timeout=loop.long_ms)
    sources = loop.page.locator("#compare-sources")
    expect(sources).to_contain_text(re.compile(r"\[1\]\s*warranty\.md"))
    expect(sources.get_by_text("warranty.md", exact=False)).to_have_count(1)  # shown once
    for side in ("left", "right"):
        expect(loop.page.locator(f"#compare-{side}-answer")).to_contain_text("warranty [1].")

    panel.get_by_role("button", name="Right is better ➡️").click()
    loop.status_text(panel, "Vote saved")
    panel.get_by_text("Results, leaderboard and promotion").click()
    panel.get_by_role("button", name="↻ Update results").click()
    # One vote: a verdict would be premature, and the interval says so by its width.
    pair = panel.get_by_role("row", name=re.compile(r"^A base vs B base\+fewshot"))
    expect(pair.get_by_role("gridcell", name="not enough votes yet (1 of 10)")).to_be_visible()
    rate = re.compile(r"^(1\.00 \(0\.05–1\.00\)|0\.00 \(0\.00–0\.95\))$")  # blind: either side
    expect(pair.get_by_role("gridcell", name=rate)).to_be_visible()
