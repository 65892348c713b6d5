"""Admission control for generation requests: at most `max_queue` wait behind the one running.

The model generates one answer at a time (ModelService.use_lock), so a flood of requests would
only pile up threads and time out; beyond the queue the API answers 429 at once instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from core.errors import Busy

BUSY = "busy"


@dataclass
class Admission:
    max_queue: int
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, got {self.max_queue}")

    @property
    def queued(self) -> int:
        """Requests admitted but not generating yet (one generates at a time)."""
        return max(0, self._in_flight - 1)

    def _refusal(self) -> Busy:
        return Busy(
            BUSY,
            detail=f"the model is busy: {self.queued} requests are queued; try again shortly",
        )

    def enter(self) -> None:
        """Take a place in the queue, or raise Busy when it is full. Pair with `leave`."""
        with self._lock:
            if self._in_flight > self.max_queue:
                raise self._refusal()
            self._in_flight += 1

    def leave(self) -> None:
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)

    def check(self) -> None:
        """Refuse work that starts in the background (an evaluation run) while the queue is full."""
        with self._lock:
            if self._in_flight > self.max_queue:
                raise self._refusal()

    @contextmanager
    def slot(self) -> Iterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()
