"""Ratings of answers and their curation: rate a turn, filter and page rated turns, bulk-label."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from core.errors import InvalidInput, NotFound
from core.feedback.turn_filter import TurnFilter
from core.operations.auth import ANONYMOUS
from core.store.chatlog import ChatLog, RatingRecord
from core.store.curation import CurationStore

MAX_TAGS = 20
MAX_TAG_CHARS = 40
MAX_PAGE_SIZE = 1000
BULK_ACTIONS = ("add_tags", "remove_tags", "set_label", "include", "exclude")


def check_tags(tags: list[str]) -> None:
    if len(tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags, got {len(tags)}")
    if any(not tag.strip() or len(tag) > MAX_TAG_CHARS for tag in tags):
        raise InvalidInput(f"tags must be non-empty and at most {MAX_TAG_CHARS} characters")


@dataclass(frozen=True, kw_only=True)
class Feedback:
    response_id: str
    rating: int | None = None
    thumb: str | None = None
    correction: str | None = None
    tags: list[str] | None = None
    user: str = "anonymous"

    def __post_init__(self) -> None:
        if self.rating is not None and (
            isinstance(self.rating, bool) or self.rating not in range(1, 6)
        ):
            raise InvalidInput(f"rating must be a whole number from 1 to 5, got {self.rating!r}")
        if self.thumb is not None and self.thumb not in ("up", "down"):
            raise InvalidInput(f"thumb must be 'up' or 'down', got {self.thumb!r}")
        if self.tags is not None:
            check_tags(self.tags)
        given = (self.rating, self.thumb, self.correction, self.tags)
        if all(value is None for value in given):
            raise InvalidInput("give at least one of rating, thumb, correction or tags")
        if not self.user.strip():
            raise InvalidInput("the rater name is empty")


def parse_tags(text: str) -> list[str]:
    """'a, b,,c ' -> ['a', 'b', 'c'] (order kept, duplicates dropped)."""
    return list(dict.fromkeys(tag.strip() for tag in text.split(",") if tag.strip()))


@dataclass(frozen=True, kw_only=True)
class BulkAction:
    """One change applied to every selected row: tags per rating, label and inclusion per turn."""

    action: str
    tags: list[str] | None = None
    label: str | None = None
    user: str = ANONYMOUS  # recorded with a label or an inclusion change

    def __post_init__(self) -> None:
        if self.action not in BULK_ACTIONS:
            raise InvalidInput(f"action must be one of {', '.join(BULK_ACTIONS)}")
        if self.action in ("add_tags", "remove_tags"):
            if not self.tags:
                raise InvalidInput(f"{self.action} needs at least one tag")
            check_tags(self.tags)
        if self.label is not None and len(self.label) > MAX_TAG_CHARS:
            raise InvalidInput(f"a label has at most {MAX_TAG_CHARS} characters")


@dataclass(frozen=True)
class FeedbackPage:
    total: int
    page: int
    pages: int
    rows: object  # pandas DataFrame of the page


class FeedbackService:
    def __init__(self, log: ChatLog) -> None:
        self.log = log
        self.curation = CurationStore(log.db)

    def page(self, flt: TurnFilter, *, page: int = 1, page_size: int = 50) -> FeedbackPage:
        """One page of rated turns matching the filter; paging happens in SQL."""
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise InvalidInput(f"page_size must be 1-{MAX_PAGE_SIZE}, got {page_size}")
        if page < 1:
            raise InvalidInput(f"page must be 1 or more, got {page}")
        total = self.curation.count(flt)
        rows = self.curation.page(flt, limit=page_size, offset=(page - 1) * page_size)
        return FeedbackPage(total, page, max(1, -(-total // page_size)), rows)

    def bulk(self, action: BulkAction, flt: TurnFilter) -> int:
        """Apply one action to the filtered (or selected) rows; returns how many it touched."""
        tags = [t.strip() for t in action.tags or []]
        match action.action:
            case "add_tags":
                return self.curation.add_tags(flt, tags)
            case "remove_tags":
                return self.curation.remove_tags(flt, tags)
            case "set_label":
                return self.curation.set_label(flt, (action.label or "").strip() or None,
                                               user=action.user)
            case "include":
                return self.curation.set_include(flt, True, user=action.user)
            case _:
                return self.curation.set_include(flt, False, user=action.user)

    def choices(self) -> dict:
        """The raters, model versions, labels and tags the rated turns hold (filter menus)."""
        return self.curation.choices()

    def turn(self, response_id: str) -> dict | None:
        return self.log.get_turn(response_id)

    def rating(self, response_id: str, rater: str) -> RatingRecord | None:
        return self.log.get_rating(response_id, rater)

    def turns(self, flt: TurnFilter, *, limit: int | None = 100, offset: int = 0
              ) -> pd.DataFrame:
        """The logged turns (rated or not) matching the filter, newest first."""
        return self.log.query(flt, limit=limit, offset=offset)

    def count_turns(self, flt: TurnFilter) -> int:
        return self.log.count(flt)

    def export_turns(self, flt: TurnFilter, path: Path, fmt: str) -> Path:
        return self.log.export(flt, path, fmt)

    def rate(self, feedback: Feedback) -> RatingRecord:
        if not self.log.turn_exists(feedback.response_id):
            raise NotFound(f"no response with id {feedback.response_id!r}")
        now = datetime.now()
        tags = (
            None if feedback.tags is None else list(dict.fromkeys(t.strip() for t in feedback.tags))
        )
        return self.log.upsert_rating(
            RatingRecord(
                interaction_id=feedback.response_id,
                rater=feedback.user.strip(),
                rating=feedback.rating,
                thumb=feedback.thumb,
                correction=feedback.correction,
                tags=tags,
                created_at=now,
                updated_at=now,
            )
        )
