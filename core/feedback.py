"""Ratings of answers: validation and the write that ties each to its exact turn."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from core.errors import InvalidInput, NotFound
from core.store.chatlog import ChatLog, RatingRecord

MAX_TAGS = 20
MAX_TAG_CHARS = 40


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
            if len(self.tags) > MAX_TAGS:
                raise InvalidInput(f"at most {MAX_TAGS} tags, got {len(self.tags)}")
            if any(not tag.strip() or len(tag) > MAX_TAG_CHARS for tag in self.tags):
                raise InvalidInput(f"tags must be non-empty and at most {MAX_TAG_CHARS} characters")
        given = (self.rating, self.thumb, self.correction, self.tags)
        if all(value is None for value in given):
            raise InvalidInput("give at least one of rating, thumb, correction or tags")
        if not self.user.strip():
            raise InvalidInput("the rater name is empty")


def parse_tags(text: str) -> list[str]:
    """'a, b,,c ' -> ['a', 'b', 'c'] (order kept, duplicates dropped)."""
    return list(dict.fromkeys(tag.strip() for tag in text.split(",") if tag.strip()))


class FeedbackService:
    def __init__(self, log: ChatLog) -> None:
        self.log = log

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
