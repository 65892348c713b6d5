"""Shared bits of the training tests: a dataset a tiny model can memorise, and waiting."""

from __future__ import annotations

import time

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris."),
    ("Hello, how are you today?", "I am fine, thank you for asking."),
    ("What does Refinery do?", "Refinery turns documents and feedback into a better model."),
    ("Say the digits.", "0123456789"),
]


def chat_rows(repeat: int = 2) -> list[dict]:
    return [
        {"id": f"r{i}-{k}", "messages": [{"role": "user", "content": q},
                                          {"role": "assistant", "content": a}]}
        for k in range(repeat) for i, (q, a) in enumerate(PAIRS)
    ]


def text_rows() -> list[dict]:
    return [{"id": f"t{i}", "text": f"{q} {a}"} for i, (q, a) in enumerate(PAIRS)]


def wait_for(predicate, *, limit_s: float = 600, every: float = 0.2):
    """Poll until predicate() is truthy; a generous guard only, never a timing assertion."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError("condition not reached")


def wait_final(runner, job_id: str):
    return wait_for(lambda: (job := runner.get(job_id)).status in
                    ("completed", "stopped", "failed") and job)
