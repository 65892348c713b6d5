"""What a training run will cost before it starts: steps, tokens, rows the max length drops,
and a time from the tokens/s that past runs on this machine reached."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass

from core.training.data import encode_causal, split_chat
from core.training.spec import TrainingSpec

CHARS_PER_TOKEN = 4  # for kinds the chat tokenizer does not encode here (rough but honest)


@dataclass(frozen=True)
class Estimate:
    rows: int
    kept: int  # rows that still have tokens to learn from at this max length
    steps: int
    tokens: int  # tokens the run processes, all epochs
    tokens_per_s: float | None  # median of past completed runs of this kind; None: no history
    eta_s: float | None
    longest_prompt: int  # tokens; a row whose prompt fills max_length teaches nothing
    max_length: int

    @property
    def dropped(self) -> int:
        return self.rows - self.kept

    def problem(self) -> str | None:
        """The fix, in words, when the max length leaves too little to train on."""
        if not self.dropped:
            return None
        need = self.longest_prompt + 64
        what = (f"{self.dropped} of {self.rows} training rows would be dropped: their prompt "
                f"alone fills the max length of {self.max_length} tokens (longest prompt "
                f"{self.longest_prompt} tokens), so no answer token is left to learn")
        fix = (f"raise Max length to about {need}, or build the dataset from shorter "
               "(less grounded) turns")
        return f"{what}. Fix: {fix}." if self.kept else f"Training would fail: {what}. Fix: {fix}."


def row_lengths(tokenizer, rows: list[dict], kind: str, max_length: int):
    """(processed tokens per kept row, kept rows, longest prompt in tokens)."""
    lengths, longest = [], 0
    for row in rows:
        if kind in ("sft", "text") and tokenizer is not None:
            if kind == "sft":
                prompt, _ = split_chat(tokenizer, row["messages"])
                longest = max(longest, len(tokenizer(prompt, add_special_tokens=False)
                                           ["input_ids"]))
            example = encode_causal(tokenizer, row, kind, max_length)
            if example is not None:
                lengths.append(len(example.input_ids))
        else:
            text = json.dumps({k: v for k, v in row.items() if k not in ("id", "meta")})
            lengths.append(min(max_length, max(1, len(text) // CHARS_PER_TOKEN)))
    return lengths, longest


def past_speed(jobs, kind: str) -> tuple[float | None, float]:
    """(median tokens/s, median seconds outside the training steps: loading, saving,
    evaluating) of this machine's completed runs of this kind."""
    speeds, overheads = [], []
    for job in jobs:
        metrics = job.metrics or {}
        speed, tokens = metrics.get("tokens_per_s"), metrics.get("tokens")
        if job.kind != kind or job.status != "completed" or not speed:
            continue
        speeds.append(speed)
        if job.started_at and job.finished_at and tokens:
            wall = (job.finished_at - job.started_at).total_seconds()
            overheads.append(max(0.0, wall - tokens / speed))
    return (statistics.median(speeds) if speeds else None,
            statistics.median(overheads) if overheads else 0.0)


def estimate(spec: TrainingSpec, rows: list[dict], kind: str, *, tokenizer=None,
             jobs=()) -> Estimate:
    lengths, longest = row_lengths(tokenizer, rows, kind, spec.max_length)
    steps = spec.total_steps(max(len(lengths), 1))
    per_step = spec.batch_size * spec.grad_accumulation
    mean = statistics.fmean(lengths) if lengths else 0.0
    tokens = int(mean * min(per_step, max(len(lengths), 1)) * steps)
    speed, overhead = past_speed(jobs, kind)
    return Estimate(rows=len(rows), kept=len(lengths), steps=steps, tokens=tokens,
                    tokens_per_s=speed, eta_s=overhead + tokens / speed if speed else None,
                    longest_prompt=longest, max_length=spec.max_length)
