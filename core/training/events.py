"""The run folder a worker writes and the runner reads: paths, the event log, the result marker.

The worker only appends complete JSON lines to `events.jsonl`; the runner reads
from a byte offset and takes only lines that end in a newline, so a line being
written is never read half-way.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

COMPLETE_CHECKPOINT = "state.pt"  # written last: a checkpoint folder without it is ignored


@dataclass(frozen=True)
class RunFolder:
    path: Path

    @property
    def spec_path(self) -> Path:
        return self.path / "spec.json"

    @property
    def job_path(self) -> Path:
        return self.path / "job.json"

    @property
    def train_path(self) -> Path:
        return self.path / "train.jsonl"

    @property
    def validation_path(self) -> Path:
        return self.path / "validation.jsonl"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "worker.log"

    @property
    def adapter_dir(self) -> Path:
        return self.path / "adapter"

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def result_path(self) -> Path:
        """The done marker: written atomically as the worker's very last act."""
        return self.path / "result.json"

    def read_json(self, path: Path) -> dict:
        return json.loads(path.read_text(encoding="utf-8"))

    def write_json(self, path: Path, data: dict) -> None:
        staging = path.with_name(f".{path.name}.partial")
        staging.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(staging, path)

    def result(self) -> dict | None:
        try:
            return self.read_json(self.result_path)
        except (OSError, ValueError):
            return None

    def latest_checkpoint(self) -> Path | None:
        if not self.checkpoints_dir.is_dir():
            return None
        complete = [
            p for p in self.checkpoints_dir.glob("step-*") if (p / COMPLETE_CHECKPOINT).is_file()
        ]
        return max(complete, key=checkpoint_step, default=None)

    def resume_step(self) -> int:
        """The step a resumed run continues from: its latest complete checkpoint's, else 0."""
        latest = self.latest_checkpoint()
        return checkpoint_step(latest) if latest else 0

    def has_adapter(self) -> bool:
        return (self.adapter_dir / "adapter_config.json").is_file() and any(
            self.adapter_dir.glob("adapter_model.*")
        )

    def has_sentence_model(self) -> bool:
        """An embedding run's output: a whole sentence-transformers model folder."""
        folder = self.adapter_dir
        return (folder / "modules.json").is_file() and (folder / "model.safetensors").is_file()


def checkpoint_step(folder: Path) -> int:
    return int(folder.name.split("-")[1])  # folders are named step-N


def read_jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


class EventWriter:
    """Appends one JSON object per line and flushes it, so a follower sees it at once."""

    def __init__(self, path: Path) -> None:
        self._handle = path.open("a", encoding="utf-8")

    def emit(self, event_type: str, /, **payload) -> None:
        record = {"type": event_type, "time": time.time(), **payload}
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def read_events(path: Path, offset: int) -> tuple[list[dict], int]:
    """New complete events after byte `offset`, and the offset to continue from."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read()
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n") + 1
    events = []
    for line in chunk[:end].splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # a corrupt line must not stall the job's follower
    return events, offset + end
