"""Drift monitor: false alarms on stable streams, detection of shifts, and check() latency.

Streams are simulated with the default windows (200 + 50 ratings, 300 + 100 prompts):
prompts drawn from templated topics and embedded with the bundled all-MiniLM-L6-v2 once,
ratings drawn per turn. Stable: thumbs up 80%, three topics throughout. Shifted: the recent
window drops to 60% thumbs up and a third of its prompts come from a topic never seen.
Latency: DriftMonitor.check() on a real store of 400 rated turns, cold (embedding every
prompt) and warm (cached embeddings).
"""

from __future__ import annotations

import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from core.audit.drift import DriftOptions, prompt_drift, rating_drift  # noqa: E402

TOPICS = {
    "cooking": (("How long should I {v} {o}?", "What is the best way to {v} {o}?"),
                ("bake", "roast", "boil", "grill", "simmer"),
                ("a chicken", "bread dough", "potatoes", "salmon", "a soup", "rice")),
    "travel": (("What should I pack to {v} {o}?", "Any tips to {v} {o} in spring?"),
               ("visit", "explore", "hike around", "fly to", "take a train through"),
               ("Japan", "the Alps", "Lisbon", "Iceland", "the highlands", "Patagonia")),
    "code": (("How do I {v} {o} in Python?", "Why does my code fail to {v} {o}?"),
             ("sort", "parse", "reverse", "serialize", "merge"),
             ("a list of dicts", "a JSON file", "a CSV table", "two dataframes", "tuples")),
    "invoices": (("How do I {v} {o}?", "Who must {v} {o} before the deadline?"),
                 ("pay", "dispute", "file", "correct", "approve"),
                 ("an overdue invoice", "the VAT return", "a supplier invoice", "a credit note")),
}
OLD = ("cooking", "travel", "code")
RUNS = 100


def pool() -> dict[str, list[str]]:
    return {name: [t.format(v=v, o=o) for t, v, o in itertools.product(*parts)]
            for name, parts in TOPICS.items()}


def ratings(rng: random.Random, n: int, up_rate: float) -> list[dict]:
    rows = []
    for _ in range(n):
        good = rng.random() < up_rate
        rows.append({"thumb": "up" if good else "down",
                     "stars": rng.choice((4, 5, 5)) if good else rng.choice((1, 2, 3))})
    return rows


def prompts(rng, texts, vectors, topics, n) -> tuple[np.ndarray, list[str]]:
    picks = [(topic := rng.choice(topics), rng.randrange(len(texts[topic]))) for _ in range(n)]
    return (np.stack([vectors[t][i] for t, i in picks]), [texts[t][i] for t, i in picks])


def calibrate(texts, vectors, options: DriftOptions) -> None:
    for label, up_rate, new_topics in (("stable", 0.8, OLD), ("shifted", 0.6, (*OLD, "invoices"))):
        fired = Counter()
        for seed in tqdm(range(RUNS), desc=label):
            rng = random.Random(seed)
            rows = ratings(rng, options.baseline, 0.8) + ratings(rng, options.window, up_rate)
            base, base_texts = prompts(rng, texts, vectors, OLD, options.prompt_baseline)
            recent, _ = prompts(rng, texts, vectors, new_topics, options.prompt_window)
            alerts = rating_drift(rows, options)[1]
            alerts += prompt_drift(base, recent, base_texts, options)[1]
            fired.update({alert.kind for alert in alerts} | ({"any"} if alerts else set()))
        shares = ", ".join(f"{kind} {fired[kind] / RUNS:.0%}" for kind in
                           ("any", "thumbs", "stars", "cusum", "prompt_centroid", "prompt_psi"))
        print(f"{label}: runs with an alert of each kind ({RUNS} seeded runs): {shares}")


def latency(texts) -> None:
    from core.services import build_services
    from core.settings import Settings
    from tests.rated_turns import add_turn, rate  # writes straight into a real store

    with tempfile.TemporaryDirectory() as folder:
        services = build_services(Settings(data_dir=Path(folder)))
        rng = random.Random(0)
        for minute in tqdm(range(400), desc="store"):
            turn = add_turn(services, rng.choice(texts[rng.choice(OLD)]), "a", minutes=minute)
            rate(services, turn, thumb=rng.choice(("up", "up", "down")), rating=rng.randint(1, 5))
        start = time.perf_counter()
        services.drift.check()
        cold = time.perf_counter() - start
        warm = []
        for _ in range(5):
            start = time.perf_counter()
            services.drift.check()
            warm.append(time.perf_counter() - start)
        services.close()
    print(f"check() on 400 rated turns: cold {cold:.1f} s (embeds 400 prompts), "
          f"warm median {statistics.median(warm):.2f} s")


def main() -> None:
    from core.documents.retrieval import Embedder

    texts = pool()
    embedder = Embedder()
    start = time.perf_counter()
    vectors = {name: embedder.embed(items) for name, items in texts.items()}
    count = sum(len(items) for items in texts.values())
    print(f"embedded {count} distinct prompts in {time.perf_counter() - start:.1f} s")
    calibrate(texts, vectors, DriftOptions())
    latency(texts)


if __name__ == "__main__":
    main()
