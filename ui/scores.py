"""What each model knows of the team's facts, as the Knowledge, Compare and Models tabs show it."""

from __future__ import annotations

from core.errors import RefineryError
from core.services import Services
from ui.readable import named


def model_name(services: Services, model: str) -> str:
    """"kettle facts · 16050bcc" for an adapter id; other names as they are."""
    try:
        return named(services.registry.get(model).name, model)
    except RefineryError:
        return model


def scores_markdown(services: Services, models: list[str] | None = None) -> str:
    """One line per model: "knows X/N of your facts (grounded Y/N), general Z/M"."""
    scores = services.knowledge_scores
    rows = scores.table() if models is None else [scores.of(m) for m in models]
    return "\n".join(f"- **{model_name(services, row['model'])}**: {row['line']}"
                     for row in rows)
