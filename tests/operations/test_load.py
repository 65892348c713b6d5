"""Bounded load on loopback against the real app in a subprocess (bench/load.py's rounds): no 5xx,
every request answered or refused with the queue-full message, every acknowledged rating stored,
memory stable from one round to the next."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.load import run_round, summary
from core.store import open_database
from tests.e2e.served import ServedApp

RSS_GROWTH_LIMIT = 256 * 2**20  # generous: a leak per request would pass it within a few rounds


def load_round(api: str, tag: str):
    """One round in a thread of its own: asyncio.run needs a thread without a running event loop
    (Playwright's sync API keeps one in the main thread while a browser test session is open)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run_round(api, tag=tag)).result()


def stored_for(api: str, rater: str) -> set[str]:
    query = {"rater": rater, "page_size": 1000}
    reply = httpx.get(f"{api}/feedback/rated", params=query, timeout=60)
    assert reply.status_code == 200, reply.text
    return {row["response_id"] for row in reply.json()["items"]}


def check_round(result, api: str) -> None:
    print(summary(result))
    assert not result.unexpected(), [(r.kind, r.status, r.body) for r in result.unexpected()]
    chats = result.of("chat")
    assert len(chats) == 50 and any(r.status == 200 for r in chats)
    for refused in (r for r in chats if r.status == 429):
        assert "busy" in refused.body["detail"] and "try again" in refused.body["detail"]
    uploads = result.of("upload")
    assert len(uploads) == 5 and all(r.body["ingested"] == 1 for r in uploads)
    answered = {r.body["response_id"] for r in chats if r.status == 200}
    assert {response_id for response_id, _ in result.acknowledged} == answered
    for rater in {rater for _, rater in result.acknowledged}:
        mine = {response_id for response_id, who in result.acknowledged if who == rater}
        assert mine <= stored_for(api, rater)


def test_fifty_chats_and_five_uploads_with_ratings(tmp_path, tiny_model_dir):
    app = ServedApp(tmp_path / "data", str(tiny_model_dir)).start()
    try:
        warm = load_round(app.api, "warm")
        check_round(warm, app.api)
        after_warm_up = app.rss_bytes()
        second = load_round(app.api, "second")
        check_round(second, app.api)
        after_second = app.rss_bytes()
    finally:
        app.stop()
    print(f"app RSS {after_warm_up / 2**20:.0f} MiB after the warm-up round, "
          f"{after_second / 2**20:.0f} MiB after the second")  # fmt: skip
    assert after_second - after_warm_up < RSS_GROWTH_LIMIT

    db = open_database(tmp_path / "data" / "refinery.duckdb")  # the app has stopped: reopen
    stored = set(db.fetch_all("SELECT interaction_id, rater FROM ratings"))
    db.close()
    assert warm.acknowledged | second.acknowledged <= stored
