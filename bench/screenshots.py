"""The README's pictures: a run that taught the model something, shown in Debian's Chromium.

Opens the studio on a data dir that holds a trained adapter with knowledge-check scores (the
one bench/knowledge.py leaves behind), on a copy so the original stays as it was, and saves one
1280x800 PNG per stage into docs/screenshots/: Start, Chat (a grounded answer with [n] markers
and its sources), Training (the finished run's loss chart), Compare & evaluate (the knowledge
check, base against the adapter) and Audit (an explained answer).

    .venv/bin/python bench/screenshots.py --data-dir /path/to/knowledge-run \\
        --cache-dir /work/cache/models

Without --data-dir it first builds a small one through the REST API (two manuals, four rated
grounded turns, a dataset, a quick-test adapter, a knowledge check run on base and adapter):
with `--model` a tiny test model that takes a minute, and shows the script works end to end.
Emoji need a colour emoji font (`apt-get install fonts-noto-color-emoji`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MANUALS = {
    "kettle-manual.md": (
        "# Kettle K2 manual\n\nThe K2 kettle boils 1.7 litres in about four minutes. Descale it "
        "every month with white vinegar. The kettle has a two year warranty; keep the receipt.\n"
    ),
    "returns-policy.txt": (
        "Returns policy. Unused products can be returned within 30 days for a full refund. "
        "Support answers calls on weekdays from 9 to 17 and replies to email within a day.\n"
    ),
}
FACTS = [  # question, reference: the small data dir's knowledge check
    ("How long is the warranty on the K2 kettle?", "two year"),
    ("How often should the kettle be descaled?", "every month"),
    ("Within how many days can unused products be returned?", "30 days"),
    ("When does support answer calls?", "weekdays from 9 to 17"),
]
KNOWLEDGE_FACTS = ROOT / "bench" / "knowledge_data" / "facts.jsonl"
SHOTS = ("01-start", "02-chat", "03-train", "04-knowledge", "05-audit")


def call(method: str, url: str, **kwargs) -> dict:
    reply = httpx.request(method, url, timeout=600, **kwargs)
    if reply.status_code >= 300:
        raise SystemExit(f"{method} {url}: {reply.status_code} {reply.text[:300]}")
    return reply.json()


def wait(check, what: str, timeout_s: float = 3600) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(1)
    raise SystemExit(f"gave up waiting for {what}")


def prepare(api: str) -> None:
    """A small data dir through the REST API: documents, rated grounded turns, a dataset, a
    quick-test adapter, and a knowledge check run on base and adapter."""
    files = [("files", (name, text.encode(), "text/plain")) for name, text in MANUALS.items()]
    call("POST", f"{api}/documents", files=files)
    for question, reference in FACTS:
        turn = call("POST", f"{api}/chat", json={"prompt": question, "use_documents": True,
                                                 "max_new_tokens": 32})
        call("POST", f"{api}/feedback", json={
            "response_id": turn["response_id"], "rating": 5, "thumb": "up", "user": "dana",
            "correction": f"{question.split()[0]} {reference}."})
    dataset = call("POST", f"{api}/datasets", json={"name": "kettle-support", "kind": "sft",
                                                     "validation_fraction": 0.25})
    job = call("POST", f"{api}/training/jobs", json={
        "dataset_id": dataset["id"], "preset": "quick test", "name": "kettle facts",
        "user": "dana"})
    done = wait(lambda: (j := call("GET", f"{api}/training/jobs/{job['id']}"))["status"]
                not in ("queued", "running") and j or None, "the training job")
    if done["status"] != "completed":
        raise SystemExit(f"training {done['status']}: {done['error']}")
    lines = "".join(json.dumps({"question": q, "reference": r}) + "\n" for q, r in FACTS)
    check = call("POST", f"{api}/knowledge-checks/import",
                 files={"file": ("kettle-facts.jsonl", lines.encode(), "application/jsonl")})
    run_check(api, check["id"], ["base", done["model_id"]])


def run_check(api: str, check_id: str, models: list[str]) -> None:
    for model in models:
        started = call("POST", f"{api}/knowledge-checks/{check_id}/runs",
                       json={"model": model, "general": True})
        for run_id in started["run_ids"]:
            wait(lambda r=run_id: call("GET", f"{api}/knowledge-runs/{r}")["status"]
                 in ("done", "failed") or None, "a knowledge run")


def scored(api: str) -> list[dict]:
    return [row for row in call("GET", f"{api}/knowledge-scores")["items"]
            if row["model"] != "base" and row["known"]]


def taught_adapter(api: str) -> dict:
    """The adapter that knows the most facts by the latest knowledge check. A data dir without
    knowledge-check runs gets a check of the knowledge benchmark's facts on its documents, run
    on base and every adapter."""
    if not scored(api):
        adapters = [m["id"] for m in call("GET", f"{api}/models")["items"]]
        if not adapters:
            raise SystemExit("the data dir has no trained adapter")
        names = {d["name"] for d in call("GET", f"{api}/documents")["items"]}
        facts = [json.loads(line) for line in KNOWLEDGE_FACTS.read_text().splitlines()]
        lines = "".join(json.dumps({"question": f["question"], "reference": f["answer"]}) + "\n"
                        for f in facts if f["document"] in names)
        if not lines:
            raise SystemExit("no knowledge-check scores, and none of the benchmark's facts "
                             "come from this data dir's documents")
        print(f"no knowledge-check scores: running the facts check on base and {adapters}",
              flush=True)
        check = call("POST", f"{api}/knowledge-checks/import",
                     files={"file": ("facts.jsonl", lines.encode(), "application/jsonl")})
        run_check(api, check["id"], ["base", *adapters])
    return max(scored(api), key=lambda row: (row["known"]["correct"], row["model"]))


def first_question(api: str) -> str:
    """A question the documents answer: the knowledge benchmark's first fact, else a manual's."""
    names = {d["name"] for d in call("GET", f"{api}/documents")["items"]}
    if KNOWLEDGE_FACTS.exists():
        for line in KNOWLEDGE_FACTS.read_text().splitlines():
            fact = json.loads(line)
            if fact["document"] in names:
                return fact["question"]
    return FACTS[0][0]


def take(loop, api: str, adapter: str, question: str) -> None:
    from playwright.sync_api import expect

    from tests.e2e.conftest import VIEWPORT

    start = loop.open_tab("Start")
    expect(start.locator("#next-step")).to_contain_text("Next:")
    loop.shot("01-start")

    chat = loop.open_tab("Chat")
    loop.choose(chat, "Model (auto: a matching route, else the promoted one)", adapter)
    loop.chat(question, max_new_tokens=48, grounded=True)
    expect(chat.get_by_text(re.compile(r"\[1\]")).first).to_be_visible()
    expect(chat.locator("#chat-sources")).to_contain_text("[1]")
    loop.page.set_viewport_size({"width": VIEWPORT["width"], "height": 960})  # and the sources
    loop.shot("02-chat", top=loop.page.get_by_role("tablist").first)
    loop.page.set_viewport_size(VIEWPORT)

    train = loop.open_tab("Train")
    job = next(j for j in call("GET", f"{api}/training/jobs")["items"]
               if j["model_id"] == adapter)
    loop.choose(train, "Job", job["name"] or job["id"][:8])
    expect(train.get_by_text(re.compile(r"Registered as")).first).to_be_visible()
    expect(train.locator(".js-plotly-plot").first).to_be_visible()
    loop.shot("03-train", top=train.get_by_role("button", name="Stop (save)"))

    knowledge = loop.open_tab("Knowledge")
    checks = call("GET", f"{api}/knowledge-checks")["items"]
    loop.choose(knowledge, "Knowledge check", checks[0]["name"])  # its runs, newest first
    expect(knowledge.get_by_text(re.compile(r"knows \d+/\d+ of your facts")).first).to_be_visible()
    loop.shot("04-knowledge")

    explain = loop.open_tab("Explain")  # base and the adapter side by side
    loop.choose(explain, "Second model (optional)", adapter)
    loop.explain(question, shot="05-audit")


def main() -> None:
    from playwright.sync_api import sync_playwright

    from core.settings import Settings
    from tests.e2e.conftest import CHROMIUM_ARGS, VIEWPORT, ensure_chromium
    from tests.e2e.loop import Loop
    from tests.e2e.served import ServedApp

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--data-dir", dest="source", type=Path, default=None,
                        help="a studio data dir with a trained adapter and knowledge-check "
                             "scores (copied first; default: build a small one)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    settings = Settings.from_args(args)
    os.environ["REFINERY_CACHE_DIR"] = str(settings.models_dir)  # the served studio reuses it
    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        data = Path(folder) / "data"
        if args.source is not None:
            if not (args.source / "refinery.duckdb").exists():
                raise SystemExit(f"{args.source} is not a studio data dir")
            shutil.copytree(args.source, data, ignore=shutil.ignore_patterns("*.lock"))
        browser = playwright.chromium.launch(
            executable_path=str(ensure_chromium()), headless=True, args=CHROMIUM_ARGS)
        with ServedApp(data, settings.model) as app:
            if args.source is None:
                prepare(app.api)
            adapter = taught_adapter(app.api)
            print(f"adapter {adapter['model']}: {adapter['line']}", flush=True)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.goto(app.url + "/")
            loop = Loop(page, app.api, shots=args.out, long_ms=1_800_000)  # a busy CPU
            take(loop, app.api, adapter["model"], first_question(app.api))
        browser.close()
    for name in SHOTS:
        png = args.out / f"{name}.png"
        print(f"{png}: {png.stat().st_size / 1024:.0f} KB")


if __name__ == "__main__":
    main()
