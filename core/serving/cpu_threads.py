"""Small torch work on one CPU thread.

Spreading a small product over the cores costs more in waking and synchronising the
thread team than it saves: one short search query took about 15 ms on one thread
instead of 100-400 ms on a busy 2-core machine, and decoding two answers of the default
model in one batch 3.9 s instead of 6.5 s. torch keeps the count per thread (a new
thread starts from the last count set anywhere), so each switch is undone in the same
thread, back to the process default.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


@cache
def default_threads() -> int:
    import torch

    return torch.get_num_threads()


@contextmanager
def one_thread() -> Iterator[None]:
    import torch

    default = default_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(default)
