"""Knowledge check questions never train: dataset rows that ask one of them are dropped."""

from __future__ import annotations

from core.knowledge.scoring import normalise
from core.store.database import Database
from core.store.knowledge import KnowledgeStore


def held_out_questions(db: Database) -> set[str]:
    """The normalised question of every item of every knowledge check version."""
    return {q for q in (normalise(text) for text in KnowledgeStore(db).questions()) if q}


def _prompts(row: dict) -> list[str]:
    """What a row of any dataset kind asks: user turns, prompt, query, or the text itself."""
    if not isinstance(row, dict):
        return []
    texts = [m.get("content") for m in row.get("messages") or [] if isinstance(m, dict)
             and m.get("role") == "user"]
    texts += [row.get(key) for key in ("prompt", "query", "text")]
    return [text for text in texts if isinstance(text, str)]


def asks_held_out(row: dict, questions: set[str]) -> bool:
    """The row's prompt is a held-out question or contains one (a grounded prompt puts
    passages around it; a text row may hold "Question: ... Answer: ...")."""
    for text in _prompts(row):
        padded = f" {normalise(text)} "
        if any(f" {question} " in padded for question in questions):
            return True
    return False


def drop_held_out(db: Database, rows: list) -> list:
    """The rows that ask no knowledge check question."""
    questions = held_out_questions(db)
    if not questions:
        return rows
    return [row for row in rows if not asks_held_out(row, questions)]
