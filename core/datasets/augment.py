"""Seeded text augmentation: word-level noise, synonym swaps, model paraphrases."""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from core.errors import InvalidInput

# A small embedded thesaurus: each group is a set of interchangeable everyday words.
SYNONYM_GROUPS = (
    ("big", "large", "huge"),
    ("small", "little", "tiny"),
    ("fast", "quick", "rapid"),
    ("slow", "sluggish", "unhurried"),
    ("good", "fine", "great"),
    ("bad", "poor", "awful"),
    ("happy", "glad", "cheerful"),
    ("sad", "unhappy", "gloomy"),
    ("begin", "start", "commence"),
    ("end", "finish", "conclude"),
    ("help", "assist", "aid"),
    ("show", "display", "present"),
    ("make", "create", "produce"),
    ("buy", "purchase", "acquire"),
    ("get", "obtain", "receive"),
    ("use", "employ", "utilize"),
    ("need", "require"),
    ("answer", "reply", "response"),
    ("ask", "inquire", "query"),
    ("explain", "describe", "clarify"),
    ("important", "essential", "crucial"),
    ("easy", "simple", "straightforward"),
    ("hard", "difficult", "tough"),
    ("often", "frequently", "regularly"),
    ("maybe", "perhaps", "possibly"),
    ("about", "regarding", "concerning"),
    ("error", "mistake", "fault"),
    ("problem", "issue", "trouble"),
    ("document", "file", "record"),
    ("change", "modify", "alter"),
    ("find", "locate", "discover"),
    ("choose", "select", "pick"),
    ("correct", "right", "accurate"),
    ("wrong", "incorrect", "mistaken"),
    ("new", "fresh", "recent"),
    ("old", "aged", "former"),
    ("many", "numerous", "several"),
    ("method", "approach", "technique"),
    ("result", "outcome", "consequence"),
    ("idea", "notion", "concept"),
    ("rule", "regulation", "guideline"),
    ("allow", "permit", "let"),
    ("stop", "halt", "cease"),
    ("keep", "retain", "preserve"),
)
SYNONYMS = {word: group for group in SYNONYM_GROUPS for word in group}
WORD = re.compile(r"[A-Za-z]+")
KINDS = ("perturb", "synonym", "paraphrase")


@dataclass(frozen=True, kw_only=True)
class Augmentation:
    """How many augmented copies of each training row to add, by method."""

    perturb: int = 0
    synonym: int = 0
    paraphrase: int = 0
    rate: float = 0.15  # share of words touched by perturb / synonym

    def __post_init__(self) -> None:
        for kind in KINDS:
            if not 0 <= getattr(self, kind) <= 5:
                raise InvalidInput(f"{kind} copies must be 0-5, got {getattr(self, kind)}")
        if not 0.0 < self.rate <= 1.0:
            raise InvalidInput(f"augmentation rate must be in (0, 1], got {self.rate}")

    @property
    def active(self) -> bool:
        return any(getattr(self, kind) for kind in KINDS)


def perturb(text: str, rng: random.Random, rate: float) -> str:
    """Typos a person makes: swap two inner letters, drop a letter, or double one."""

    def touch(match: re.Match) -> str:
        word = match.group(0)
        if len(word) < 4 or rng.random() >= rate:
            return word
        i = rng.randrange(1, len(word) - 2)
        match rng.randrange(3):
            case 0:
                return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
            case 1:
                return word[:i] + word[i + 1 :]
            case _:
                return word[: i + 1] + word[i:]

    return WORD.sub(touch, text)


def replace_synonyms(text: str, rng: random.Random, rate: float) -> str:
    """Swap known words for another member of their synonym group, keeping capitalisation."""

    def swap(match: re.Match) -> str:
        word = match.group(0)
        group = SYNONYMS.get(word.lower())
        if group is None or rng.random() >= max(rate, 0.5):
            return word
        choice = rng.choice([w for w in group if w != word.lower()])
        return choice.capitalize() if word[0].isupper() else choice

    return WORD.sub(swap, text)
