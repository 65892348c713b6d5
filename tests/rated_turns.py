"""Write logged turns and ratings straight into a real store (no model needed)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from core.feedback.ratings import Feedback
from core.store.chatlog import TurnRecord

START = datetime(2026, 1, 1, 12, 0, 0)


def add_turn(
    services,
    prompt: str,
    response: str,
    *,
    minutes: int = 0,
    model_id: str = "tiny",
    adapter_version: str | None = None,
    chunk_ids: list[str] | None = None,
    context: list[dict] | None = None,
) -> str:
    turn_id = uuid.uuid4().hex
    services.log.add_turn(
        TurnRecord(
            id=turn_id,
            conversation_id=uuid.uuid4().hex,
            turn_index=0,
            created_at=START + timedelta(minutes=minutes),
            user_id="user",
            prompt=prompt,
            context=context or [{"role": "user", "content": prompt}],
            response=response,
            model_id=model_id,
            adapter_version=adapter_version,
            settings={},
            latency_ms=10.0,
            ttft_ms=1.0,
            prompt_tokens=5,
            completion_tokens=5,
            tokens_per_s=100.0,
            confidence=-1.0,
            truncated_turns=0,
            finish_reason="stop",
            retrieved_chunk_ids=chunk_ids,
        )
    )
    return turn_id


def rate(services, turn_id: str, rater: str = "ann", **fields) -> None:
    services.feedback.rate(Feedback(response_id=turn_id, user=rater, **fields))
