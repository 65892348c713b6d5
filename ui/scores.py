"""What each model knows of the team's facts, as the Knowledge, Compare and Models tabs show it."""

from __future__ import annotations

from core.services import Services


def scores_markdown(services: Services, models: list[str] | None = None) -> str:
    """One line per model: "knows X/N of your facts (grounded Y/N), general Z/M"."""
    scores = services.knowledge_scores
    rows = scores.table() if models is None else [scores.of(m) for m in models]
    return "\n".join(f"- **{row['model']}**: {row['line']}" for row in rows)
