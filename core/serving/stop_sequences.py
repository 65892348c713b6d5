"""Stop sequences: an answer ends before the first of them, and a streamed answer never shows
a piece of one (the tail that could still grow into a stop sequence is held back)."""

from __future__ import annotations

from collections.abc import Sequence

from core.errors import InvalidInput

MAX_STOP_SEQUENCES = 4  # as many as OpenAI's API takes
MAX_STOP_CHARS = 200


def check_stop_sequences(stops: Sequence[str]) -> None:
    if len(stops) > MAX_STOP_SEQUENCES:
        raise InvalidInput(f"at most {MAX_STOP_SEQUENCES} stop sequences, got {len(stops)}")
    for stop in stops:
        if not isinstance(stop, str) or not stop:
            raise InvalidInput("a stop sequence must be a non-empty string")
        if len(stop) > MAX_STOP_CHARS:
            raise InvalidInput(f"a stop sequence may have at most {MAX_STOP_CHARS} characters")


def visible_text(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """(the part of `text` that may be shown, whether a stop sequence ended it)."""
    cuts = [index for stop in stops if (index := text.find(stop)) >= 0]
    if cuts:
        return text[: min(cuts)], True
    held = max(
        (size for stop in stops for size in range(1, len(stop)) if text.endswith(stop[:size])),
        default=0,
    )
    return text[: len(text) - held], False
