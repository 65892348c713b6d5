"""A repeated-n-gram stop on any stream of units (token ids, or words for a remote engine).

Small models often loop on one sentence until the token limit. A loop of period p repeats
every window of n units every p units, so counting each window's occurrences finds it
whatever the engine: the answer stops once its last `size` units already appeared `limit`
times (with limit 3 the sentence has been said three times).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable


class RepetitionGuard:
    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        self.units: list[Hashable] = []
        self.seen: Counter = Counter()

    def feed(self, unit: Hashable) -> bool:
        """Add one unit; True when the answer is looping and should stop."""
        self.units.append(unit)
        if self.limit < 1 or len(self.units) < self.size:
            return False
        window = tuple(self.units[-self.size :])
        self.seen[window] += 1
        return self.seen[window] >= self.limit
