"""Load on loopback: 50 concurrent API chat requests plus 5 concurrent uploads, each followed by
ratings of the answers as they arrive. Prints counts, latency percentiles and the app's memory.

Every request must be answered (200) or refused with the queue-full message (429 busy); no 5xx.
Run with `make bench` (or `.venv/bin/python bench/load.py [--model PATH] [--rounds N]`).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = ["What is the warranty?", "How do returns work?", "Summarise the manual.",
           "Who answers support calls?", "What does the kettle cost?"]  # fmt: skip
DOCUMENT = ("Kettle manual, part {n}. The kettle has a two year warranty. Returns are accepted "
            "within 30 days with the receipt. Support answers calls on weekdays.\n") * 20


@dataclass
class Reply:
    kind: str  # chat, upload, rating
    status: int
    seconds: float
    body: dict

    @property
    def busy(self) -> bool:
        return self.status == 429 and self.body.get("error") == "busy"


@dataclass
class RoundResult:
    replies: list[Reply] = field(default_factory=list)
    acknowledged: set[tuple[str, str]] = field(default_factory=set)  # (response_id, rater)

    def of(self, kind: str) -> list[Reply]:
        return [reply for reply in self.replies if reply.kind == kind]

    def unexpected(self) -> list[Reply]:
        """Anything but an answer or a clear queue-full refusal."""
        return [r for r in self.replies if not (r.status == 200 or (r.kind == "chat" and r.busy))]


async def call(client: httpx.AsyncClient, kind: str, method: str, url: str, **kwargs) -> Reply:
    started = time.perf_counter()
    response = await client.request(method, url, **kwargs)
    try:
        body = response.json()
    except ValueError:
        body = {"error": response.text[:200]}
    return Reply(kind, response.status_code, time.perf_counter() - started, body)


async def one_chat(client, api: str, number: int, answered: asyncio.Queue, result: RoundResult,
                   max_new_tokens: int) -> None:  # fmt: skip
    body = {"prompt": PROMPTS[number % len(PROMPTS)], "max_new_tokens": max_new_tokens,
            "temperature": 0, "user": f"load-{number}"}  # fmt: skip
    reply = await call(client, "chat", "POST", f"{api}/chat", json=body)
    result.replies.append(reply)
    if reply.status == 200:
        answered.put_nowait(reply.body["response_id"])


async def upload_then_rate(client, api: str, worker: int, tag: str, answered: asyncio.Queue,
                           result: RoundResult) -> None:  # fmt: skip
    document = DOCUMENT.format(n=worker).encode()
    files = [("files", (f"{tag}-manual-{worker}.txt", document, "text/plain"))]
    result.replies.append(await call(client, "upload", "POST", f"{api}/documents", files=files))
    rater = f"{tag}-rater-{worker}"
    while (response_id := await answered.get()) is not None:
        body = {"response_id": response_id, "rating": 1 + worker % 5, "user": rater}
        reply = await call(client, "rating", "POST", f"{api}/feedback", json=body)
        result.replies.append(reply)
        if reply.status == 200:
            result.acknowledged.add((response_id, rater))


async def run_round(api: str, *, tag: str, chats: int = 50, uploads: int = 5,
                    max_new_tokens: int = 16) -> RoundResult:  # fmt: skip
    result, answered = RoundResult(), asyncio.Queue()
    limits = httpx.Limits(max_connections=chats + uploads)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600), limits=limits) as client:
        raters = [asyncio.create_task(upload_then_rate(client, api, w, tag, answered, result))
                  for w in range(uploads)]  # fmt: skip
        await asyncio.gather(*(one_chat(client, api, n, answered, result, max_new_tokens)
                               for n in range(chats)))  # fmt: skip
        for _ in raters:
            answered.put_nowait(None)
        await asyncio.gather(*raters)
    return result


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def summary(result: RoundResult) -> str:
    lines = []
    for kind in ("chat", "upload", "rating"):
        replies = result.of(kind)
        if not replies:
            continue
        counts = ", ".join(f"{status}: {n}" for status, n in sorted(
            Counter(r.status for r in replies).items()))  # fmt: skip
        answered = [r.seconds * 1000 for r in replies if r.status == 200]
        timing = "none answered"
        if answered:
            marks = ", ".join(f"p{round(share * 100)} {percentile(answered, share):.0f} ms"
                              for share in (0.5, 0.9, 0.99))  # fmt: skip
            timing = f"{marks}, mean {statistics.fmean(answered):.0f} ms"
        lines.append(f"  {kind:<7} {len(replies):>3} requests ({counts}) · {timing}")
    busy = [r for r in result.of("chat") if r.busy]
    if busy:
        lines.append(f"  queue full: {len(busy)} chat request(s) refused with 429 "
                     f"\"{busy[0].body['error']}\": {busy[0].body.get('detail')}")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    from tests.e2e.served import ServedApp
    from tests.tiny_models import make_tiny_llama

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model to serve (default: a tiny random Llama)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        model = args.model or str(make_tiny_llama(Path(folder) / "tiny-llama"))
        with ServedApp(Path(folder) / "data", model) as app:
            for number in range(1, args.rounds + 1):
                started = time.perf_counter()
                result = asyncio.run(run_round(app.api, tag=f"round{number}",
                                               max_new_tokens=args.max_new_tokens))
                print(f"round {number}: {time.perf_counter() - started:.1f} s, app RSS "
                      f"{app.rss_bytes() / 2**20:.0f} MiB, unexpected replies "
                      f"{len(result.unexpected())}, ratings stored {len(result.acknowledged)}")
                print(summary(result), flush=True)


if __name__ == "__main__":
    main()
