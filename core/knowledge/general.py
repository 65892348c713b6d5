"""The general-ability set shipped with the studio: forgetting shows as a lower score."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core.knowledge.scoring import fact_match

GENERAL_SET = Path(__file__).with_name("general_ability.jsonl")


@dataclass(frozen=True)
class GeneralItem:
    question: str
    answer: str
    aliases: tuple[str, ...] = ()

    def matches(self, text: str) -> bool:
        """The answer or one of its accepted spellings appears in the text."""
        return any(fact_match(text, reference) for reference in (self.answer, *self.aliases))


def load_general_set(path: Path = GENERAL_SET) -> list[GeneralItem]:
    items = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            items.append(GeneralItem(row["question"], row["answer"], tuple(row.get("aliases", ()))))
    return items
