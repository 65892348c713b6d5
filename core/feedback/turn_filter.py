"""The one filter over chat turns and their ratings, used by the log, curation, datasets,
quality checks and retraining; its SQL lives in core/store/turns.py.

The field annotations carry the bounds, so the REST bodies that take a filter are built from
this class (api/curation.py) and refuse the same values it does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Annotated, Literal, get_args

from annotated_types import Ge, Le, MaxLen

from core.errors import InvalidInput

MAX_NAME_CHARS = 1_000  # a tag, id or name to match
Rating = Annotated[int, Ge(1), Le(5)]
Thumb = Literal["up", "down", "none"]  # 'none': not rated with a thumb
Name = Annotated[str, MaxLen(MAX_NAME_CHARS)]
THUMBS: tuple[str, ...] = get_args(Thumb)
DATES = ("date_from", "date_to")


@dataclass(frozen=True, kw_only=True)
class TurnFilter:
    """A selection of turns (one row per turn and rater); None or empty means any."""

    text: str | None = None  # a literal, case-insensitive substring of prompt, answer or fix
    min_rating: Rating | None = None
    max_rating: Rating | None = None
    thumb: Thumb | None = None
    rated: bool | None = None  # False: turns nobody rated (only the log lists those)
    tags: tuple[Name, ...] = ()  # rows carrying any of these tags
    model_version: Name | None = None
    rater: Name | None = None
    date_from: datetime | None = None
    date_to: datetime | None = None
    conversation_id: Name | None = None
    has_correction: bool | None = None
    grounded: bool | None = None
    label: Name | None = None
    include: bool | None = None  # True: in training (the default); False: excluded
    response_ids: tuple[Name, ...] = ()  # an explicit selection, narrowed by the other fields

    def __post_init__(self) -> None:
        for name in ("min_rating", "max_rating"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value not in range(1, 6)):
                raise InvalidInput(f"{name} must be a whole number from 1 to 5, got {value!r}")
        if self.min_rating and self.max_rating and self.min_rating > self.max_rating:
            raise InvalidInput("min_rating is above max_rating")
        if self.thumb is not None and self.thumb not in THUMBS:
            raise InvalidInput(f"thumb must be one of {', '.join(THUMBS)}, got {self.thumb!r}")
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise InvalidInput("the date range ends before it starts")
        object.__setattr__(self, "tags", tuple(t.strip() for t in self.tags if t.strip()))
        object.__setattr__(self, "response_ids", tuple(self.response_ids))

    def to_dict(self) -> dict:
        """The set fields as plain JSON data (lineage, the retraining policy)."""
        out = {}
        for field in fields(self):
            value = getattr(self, field.name)
            if value in (None, ()):
                continue
            out[field.name] = value.isoformat() if isinstance(value, datetime) else value
        return json.loads(json.dumps(out, default=list))

    @classmethod
    def from_dict(cls, data: dict) -> TurnFilter:
        """The inverse of to_dict: lists back to tuples, ISO text to datetimes."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise InvalidInput(f"unknown filter field(s): {', '.join(unknown)}")
        values = {}
        for key, value in data.items():
            if key in DATES and isinstance(value, str):
                try:
                    value = datetime.fromisoformat(value)
                except ValueError as error:
                    raise InvalidInput(f"{key}: {error}") from error
            values[key] = tuple(value) if isinstance(value, list) else value
        try:
            return cls(**values)
        except TypeError as error:
            raise InvalidInput(f"bad filter: {error}") from error
