"""Feedback-tab latency with 100,000 rated turns: filtered pages, counts, bulk tags, a build.

Target on a 2-core CPU machine: a filtered page (rows + total) under 300 ms at any offset.
Run with `make bench` (or `.venv/bin/python bench/curation.py --turns 100000`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.datasets.versions import BuildSpec  # noqa: E402
from core.feedback.ratings import BulkAction  # noqa: E402
from core.feedback.turn_filter import TurnFilter  # noqa: E402
from core.services import build_services  # noqa: E402
from core.settings import Settings  # noqa: E402

TOPICS = ["billing", "password", "shipping", "refund", "warranty", "login", "invoice", "pump"]


def seed_turns(services, turns: int) -> None:
    """Synthetic turns and 1-3 ratings each, written in bulk by SQL."""
    db = services.db
    db.execute(
        """INSERT INTO interactions
           SELECT 't' || i, 'c' || (i // 4), i % 4,
                  TIMESTAMP '2026-01-01' + to_seconds(i * 30), 'user' || (i % 50),
                  'How do I fix my ' || (?::VARCHAR[])[1 + i % 8] || ' problem number ' || i,
                  '[]', 'You can fix the ' || (?::VARCHAR[])[1 + i % 8] || ' issue by step ' || i,
                  'smollm2', CASE WHEN i % 3 = 0 THEN 'v' || (i % 5) END, '{}',
                  100, 10, 20, 40, 15, -0.5, 0, 'stop',
                  CASE WHEN i % 4 = 0 THEN '["chunk' || i || '"]' END
           FROM range(?) r(i)""",
        [TOPICS, TOPICS, turns],
    )
    for rater in range(3):
        db.execute(
            """INSERT INTO ratings
               SELECT 't' || i, 'rater' || ?, 1 + (i * 7 + ?) % 5,
                      CASE WHEN i % 3 = 0 THEN 'up' WHEN i % 3 = 1 THEN 'down' END,
                      CASE WHEN i % 10 = 0 THEN 'A better answer for ' || i END,
                      CASE WHEN i % 6 = 0 THEN ['checked'] ELSE [] END,
                      now(), now() + to_seconds(i)
               FROM range(?) r(i) WHERE i % (? + 1) = 0""",
            [rater, rater, turns, rater],
        )


def timed(label: str, action, repeats: int = 5) -> float:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    median = statistics.median(samples)
    print(f"{label:<52} {median:8.1f} ms (median of {repeats})")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        services = build_services(Settings(data_dir=Path(tmp)))
        started = time.perf_counter()
        seed_turns(services, args.turns)
        rows = services.feedback.curation.count(TurnFilter())
        print(
            f"seeded {args.turns:,} turns, {rows:,} rating rows "
            f"in {time.perf_counter() - started:.1f} s"
        )
        feedback = services.feedback
        last_page = max(1, -(-rows // 50))
        filters = {
            "no filter, page 1": (TurnFilter(), 1),
            f"no filter, last page ({last_page:,})": (TurnFilter(), last_page),
            "4+ stars, thumb up, grounded": (
                TurnFilter(min_rating=4, thumb="up", grounded=True), 1),
            "text search 'refund'": (TurnFilter(text="refund"), 1),
            "tag 'checked', has correction": (
                TurnFilter(tags=("checked",), has_correction=True), 1),
            "rater + model version + date range": (
                TurnFilter(rater="rater1", model_version="smollm2+v2",
                               date_from=datetime(2026, 1, 10), date_to=datetime(2026, 1, 20)),
                1),
        }  # fmt: skip
        pages = [
            timed(f"page of 50: {label}", lambda f=flt, p=page: feedback.page(f, page=p))
            for label, (flt, page) in filters.items()
        ]
        timed(
            "bulk add tag to 4+ star rows",
            lambda: feedback.bulk(
                BulkAction(action="add_tags", tags=["gold"]), TurnFilter(min_rating=4)
            ),
            repeats=1,
        )
        timed(
            "bulk exclude rows with 'password'",
            lambda: feedback.bulk(BulkAction(action="exclude"), TurnFilter(text="password")),
            repeats=1,
        )
        timed(
            "quality checks on 'refund' rows",
            lambda: services.quality.report(TurnFilter(text="refund")),
            repeats=1,
        )
        timed(
            "build sft dataset from corrections",
            lambda: services.datasets.build(
                BuildSpec(name="bench", kind="sft", selection=TurnFilter(has_correction=True))
            ),
            repeats=1,
        )
        print(f"worst filtered page: {max(pages):.1f} ms (target < 300 ms)")
        services.close()


if __name__ == "__main__":
    main()
