"""Does the loop teach the model the team's facts? The whole loop through the studio's services.

Uploads the documents of bench/knowledge_data (a fictional company, 44 facts no model can
know) and scores the base model on held-out questions ungrounded and grounded. Asks 20
questions grounded, corrects each answer, trains "learn corrections" and asks reworded
versions of those questions. Then imports the held-out questions as the studio's knowledge
check, builds a "teach documents" dataset, trains with that preset, and reads the scores the
studio gives the adapter (and the base model) on that check by itself. General ability (the
set shipped with the studio) before and after each adapter. The held-out questions never
train the taught adapter.

    .venv/bin/python bench/knowledge.py --cache-dir /work/cache/models [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.datasets.synthesis import write_batch  # noqa: E402
from core.datasets.versions import BuildSpec  # noqa: E402
from core.documents.grounding import SOURCES_K, fit_sources, retrieve, with_sources  # noqa: E402
from core.documents.service import IncomingFile  # noqa: E402
from core.feedback.ratings import Feedback  # noqa: E402
from core.knowledge.general import load_general_set  # noqa: E402
from core.knowledge.runs import FINISHED  # noqa: E402
from core.knowledge.scoring import fact_match  # noqa: E402
from core.services import build_services  # noqa: E402
from core.serving.generation import GenerationOptions  # noqa: E402
from core.settings import Settings  # noqa: E402
from core.training.spec import CORRECT, TEACH  # noqa: E402

DATA = Path(__file__).with_name("knowledge_data")
ANSWER = GenerationOptions(max_new_tokens=40, temperature=0.0)
BATCH = 8


def load_facts() -> list[dict]:
    return [json.loads(line) for line in (DATA / "facts.jsonl").read_text().splitlines()
            if line.strip()]


def right(text: str, fact: dict) -> bool:
    return any(fact_match(text, ref) for ref in (fact["answer"], *fact["aliases"]))


class Bench:
    def __init__(self, services, training: dict | None = None) -> None:
        self.services = services
        self.training = training or {}  # options over the recipe presets (e.g. epochs)
        self.rows: list[tuple[str, str, float]] = []
        self.teach_started = 0.0

    def step(self, name: str, started: float, score: str = "") -> None:
        seconds = time.perf_counter() - started
        self.rows.append((name, score, seconds))
        print(f"  {name}: {score} ({seconds:.0f} s)", flush=True)

    def answers(self, questions: list[str], *, adapter: str | None, grounded: bool) -> list[str]:
        """Greedy answers, several questions per forward pass, grounded as chat grounds them."""
        services = self.services
        hits = [retrieve(services.documents, q, SOURCES_K) if grounded else [] for q in questions]
        out = []
        for start in range(0, len(questions), BATCH):
            with services.models.use(adapter) as loaded:
                budget = loaded.context_length - ANSWER.max_new_tokens
                chats = []
                for q, found in zip(questions[start:start + BATCH], hits[start:start + BATCH],
                                    strict=True):
                    sources = fit_sources(loaded.tokenizer, found, budget // 2)
                    chats.append(with_sources([{"role": "user", "content": q}], sources))
                out += write_batch(loaded, chats, ANSWER, budget)
        return out

    def score(self, name: str, questions: list[str], facts: list[dict], *,
              adapter: str | None, grounded: bool) -> float:
        started = time.perf_counter()
        texts = self.answers(questions, adapter=adapter, grounded=grounded)
        hits = sum(right(t, f) for t, f in zip(texts, facts, strict=True))
        self.step(name, started, f"{hits}/{len(facts)} ({100 * hits / len(facts):.0f}%)")
        return hits / len(facts)

    def general(self, name: str, items, adapter: str | None) -> float:
        started = time.perf_counter()
        texts = self.answers([i.question for i in items], adapter=adapter, grounded=False)
        hits = sum(i.matches(t) for i, t in zip(items, texts, strict=True))
        self.step(name, started, f"{hits}/{len(items)} ({100 * hits / len(items):.0f}%)")
        return hits / len(items)

    def train(self, name: str, dataset_id: str, preset: str) -> tuple[str, str]:
        """(model id, adapter dir) of the registered adapter."""
        started = time.perf_counter()
        runner = self.services.training
        spec = runner.make_spec(self.training, dataset_id=dataset_id, preset=preset)
        job = runner.submit(spec, name=name)
        while (job := runner.get(job.id)).status not in ("completed", "failed", "stopped"):
            time.sleep(2)
        if job.status != "completed":
            raise SystemExit(f"{name} training {job.status}: {job.error}")
        tokens_per_s = job.metrics.get("tokens_per_s")
        self.step(f"{name}: train ({job.total_steps} steps, {spec.epochs:g} epochs, "
                  f"{tokens_per_s or 0:.0f} tok/s)", started,
                  f"loss {job.metrics.get('train_loss', float('nan')):.3f}")
        return job.model_id, self.services.registry.get(job.model_id).adapter_dir

    def check_runs(self, model_id: str, label: str) -> dict[tuple[str, bool], dict]:
        """The studio's own scoring of a registered adapter (queued when its training
        finished): one step per run, as each finishes."""
        runs = self.services.knowledge_runs
        started, found = time.perf_counter(), {}
        names = {("knowledge", False): f"{label}, ungrounded (knowledge check)",
                 ("knowledge", True): f"{label}, grounded (knowledge check)",
                 ("general", False): f"{label}, general ability"}
        while len(found) < len(names):
            for run in runs.list():
                key = (run["kind"], run["grounded"])
                if run["model"] != model_id or key in found or run["status"] not in FINISHED:
                    continue
                found[key] = run
                summary = run.get("summary") or {}
                correct, items = summary.get("correct", 0), summary.get("items") or 1
                self.step(names[key], started,
                          f"{correct}/{items} ({100 * correct / items:.0f}%)"
                          if run["status"] == "done" else f"failed: {run.get('error')}")
                started = time.perf_counter()
                if key == ("knowledge", True):
                    self.step("documents -> adapter -> scores", self.teach_started)
            time.sleep(2)
        return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="a fresh studio data dir (default: a temporary folder)")
    Settings.add_arguments(parser, only=("model", "cache_dir"))
    parser.add_argument("--quick", action="store_true",
                        help="12 facts scored, 8 corrections, 12 general questions, no written "
                             "questions: a smoke run")
    parser.add_argument("--written-questions", type=int, default=None,
                        help="questions the base model writes per fact (default 1; quick 0)")
    parser.add_argument("--corrections", type=int, default=20)
    parser.add_argument("--epochs", type=float, default=None,
                        help="epochs instead of the recipe presets' budget")
    parser.add_argument("--phases", default="base,teach,corrections",
                        help="comma-separated subset of base,teach,corrections")
    args = parser.parse_args(argv)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="refinery-knowledge-"))
    written = args.written_questions
    if written is None:
        written = 0 if args.quick else 1
    args.data_dir = data_dir
    services = build_services(Settings.from_args(args))
    bench = Bench(services, {"epochs": args.epochs} if args.epochs else None)
    facts = load_facts()
    scored = facts[::4][:12] if args.quick else facts
    general = load_general_set()[: 12 if args.quick else None]
    n_corrections = min(8 if args.quick else args.corrections, len(facts))
    print(f"data dir {data_dir}; load average {os.getloadavg()[0]:.1f}", flush=True)
    total = time.perf_counter()

    started = time.perf_counter()
    files = [IncomingFile(p.name, p) for p in sorted(DATA.glob("*.md"))]
    results = services.documents.ingest(files)
    services.models.get()
    chunks = sum(r.chunks for r in results)
    bench.step(f"upload {len(files)} documents, load model", started, f"{chunks} chunks")

    phases = set(args.phases.split(","))
    questions = [f["question"] for f in scored]
    if "base" in phases:
        bench.score("base, ungrounded", questions, scored, adapter=None, grounded=False)
        bench.score("base, grounded", questions, scored, adapter=None, grounded=True)
        bench.general("base, general ability", general, None)
    # corrections first: the teach phase adds the held-out questions as the studio's knowledge
    # check, and a dataset build drops every row that asks a check question
    if "corrections" in phases:
        corrections(bench, services, facts, scored, general, written, n_corrections)
    if "teach" in phases:
        teach(bench, services, scored, written)
        started = time.perf_counter()
        services.knowledge_runs.wait_idle()
        bench.step("base, knowledge check runs (queued after the adapter's)", started)
    print(f"\nload average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
          f"total {time.perf_counter() - total:.0f} s")
    print("| step | score | wall time |\n|---|---|---|")
    for name, score, seconds in bench.rows:
        print(f"| {name} | {score} | {seconds:.0f} s |")
    services.close()


def teach(bench, services, scored, written) -> None:
    bench.teach_started = time.perf_counter()
    started = time.perf_counter()
    items = "".join(json.dumps({"question": f["question"], "reference": f["answer"],
                                "source": f["document"]}) + "\n" for f in scored)
    check = services.knowledge.import_file(items.encode(), "bench-facts.jsonl",
                                           name="bench facts")
    dataset = services.datasets.build(BuildSpec(
        name="teach", kind="sft", recipe=TEACH, written_questions=written,
        validation_fraction=0.05))
    labels = dataset.stats["labels"]["train"]
    bench.step(f"knowledge check ({check['item_count']} items imported); {TEACH}: dataset "
               f"({written} written question(s) per fact)", started,
               f"{len(dataset.train)} rows {labels}")
    model_id, _ = bench.train(TEACH, dataset.id, TEACH)
    bench.check_runs(model_id, TEACH)


def corrections(bench, services, facts, scored, general, written, n_corrections) -> None:
    from core.serving.chat import ChatRequest

    started = time.perf_counter()
    corrected = facts[1::2][:n_corrections]
    for fact in corrected:
        turn = services.chat.complete(ChatRequest(prompt=fact["question"], use_documents=True,
                                                  model="base", options=ANSWER)).turn
        services.feedback.rate(Feedback(response_id=turn.id, rating=1,
                                        correction=f"The answer is {fact['answer']}."))
    bench.step(f"{len(corrected)} grounded turns asked and corrected", started)
    started = time.perf_counter()
    dataset = services.datasets.build(BuildSpec(name="corrections", kind="sft", recipe=CORRECT,
                                                written_questions=written,
                                                validation_fraction=0.05))
    bench.step(f"{CORRECT}: dataset", started, f"{len(dataset.train)} rows "
               f"(fitted to max_length: {dataset.stats['training_length']['over']})")
    _, adapter_c = bench.train(CORRECT, dataset.id, CORRECT)
    reworded = [(p, f) for f in corrected for p in f["paraphrases"]]
    bench.score("base, reworded corrected questions", [p for p, _ in reworded],
                         [f for _, f in reworded], adapter=None, grounded=False)
    bench.score(f"{CORRECT}, reworded corrected questions", [p for p, _ in reworded],
                        [f for _, f in reworded], adapter=adapter_c, grounded=False)
    others = [f for f in scored if f not in corrected]
    bench.score(f"{CORRECT}, other facts (should stay near base)",
                            [f["question"] for f in others], others, adapter=adapter_c,
                            grounded=False)
    bench.general(f"{CORRECT}, general ability", general, adapter_c)


if __name__ == "__main__":
    main()
