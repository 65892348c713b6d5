"""The whole loop in a real browser (Debian's Chromium) against the app on loopback, and proof
that markup in model answers, documents and corrections is shown as text, never run."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.loop import Loop
from tests.tiny_models import XSS_PAYLOAD

pytestmark = pytest.mark.e2e

PAYLOAD = " ".join(XSS_PAYLOAD)
SHOTS = ["02-chat", "05-audit"]  # as bench/screenshots.py names them; small enough to commit
# Elements the payload would create if any part of the page rendered it as live HTML.
INJECTED = "img[src='x'], img[onerror], [onerror*='__xss'], script:text-matches('__xss')"


def write_documents(folder):
    folder.mkdir(exist_ok=True)
    notes = folder / "notes.txt"
    notes.write_text(f"Release notes. The installer prints {PAYLOAD} when it fails.\n")
    guide = folder / "warranty.md"
    guide.write_text("# Warranty\n\nEvery kettle has a two year warranty. Returns take 30 days.\n")
    return [notes, guide]


def assert_no_script_ran(page) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    assert page.locator(INJECTED).count() == 0


def test_the_detector_sees_a_payload_that_does_run(browser):
    """Control: the same checks do catch the payload when a page renders it as HTML."""
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<div id=answer></div>")
    page.evaluate(f"document.getElementById('answer').innerHTML = {PAYLOAD!r}")
    page.wait_for_function("window.__xss === 1")
    assert page.locator(INJECTED).count() >= 1
    context.close()


def test_the_whole_loop_in_the_browser(page, parrot_app, tmp_path):
    """Documents -> chat -> rate -> dataset -> train -> compare and vote -> explain -> bias, with
    the parrot model's markup answer, a markup document and a markup correction on the way."""
    shots = tmp_path / "screenshots"
    loop = Loop(page, parrot_app.api, shots=shots)

    results = loop.upload_documents(write_documents(tmp_path / "docs"))
    assert "✅ notes.txt" in results and "✅ warranty.md" in results
    assert {d["name"] for d in loop.get("/documents")["items"]} >= {"notes.txt", "warranty.md"}
    chunks = loop.open_tab("Documents")
    expect(chunks.get_by_text(XSS_PAYLOAD[1]).filter(visible=True).first).to_be_visible()
    assert_no_script_ran(page)

    prompts = ["How long is the warranty?", "How do returns work?", "Who makes the kettle?"]
    for prompt in prompts:
        assert loop.chat(prompt) == PAYLOAD  # the model's real answer, shown verbatim as text
        assert "Saved" in loop.rate(stars=5, thumb="up", correction="Two years.", tags="e2e")
    assert_no_script_ran(page)
    assert loop.chat("What does the installer print?") == PAYLOAD
    assert "Saved" in loop.rate(stars=1, thumb="down", correction=PAYLOAD, tags="xss")
    loop.shot("02-chat")
    rated = loop.get("/interactions", rated="true", limit=100)["items"]
    assert {row["prompt"] for row in rated} >= set(prompts)

    feedback = loop.review_feedback()
    expect(feedback.get_by_text(PAYLOAD).filter(visible=True).first).to_be_visible()
    assert_no_script_ran(page)
    page.reload()  # the stored answers and correction, rendered afresh from the database
    loop.review_feedback()
    assert_no_script_ran(page)

    built = loop.build_dataset("kettle-sft")
    assert "kettle-sft" in built
    datasets = [d for d in loop.get("/datasets")["items"] if d["name"] == "kettle-sft"]
    assert datasets and datasets[0]["train_count"] >= len(prompts)

    adapter = loop.train("kettle-sft")
    assert adapter in {model["id"] for model in loop.get("/models")["items"]}

    voted = loop.compare_and_vote("How long is the warranty?", adapter)
    assert "Vote saved" in voted and adapter in voted

    loop.explain("How long is the warranty?")
    loop.bias_report()
    assert_no_script_ran(page)

    for name in SHOTS:
        png = shots / f"{name}.png"
        assert png.stat().st_size < 250_000, f"{png.name} is {png.stat().st_size:,} bytes"
