"""Turn rated turns and documents into rows of each dataset kind, with the sources of each row."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from core.datasets.synthesis import ANSWER_PROMPT, QUESTION_PROMPT
from core.store.documents import DocumentStore

HELPFUL_THUMB = "up"
UNHELPFUL_RATING = 2  # at or below: the answer did not help


@dataclass(frozen=True)
class RatedTurn:
    """One turn with all its ratings folded together."""

    id: str
    prompt: str
    response: str
    context: list[dict]
    correction: str | None
    mean_rating: float | None
    ups: int
    downs: int
    ratings: list[tuple[str, str]]  # (rater, rated_at ISO)
    chunk_ids: list[str] = field(default_factory=list)

    def rated_at_least(self, stars: int) -> bool:
        if self.mean_rating is not None:
            return self.mean_rating >= stars
        return self.ups > self.downs

    @property
    def unhelpful(self) -> bool:
        if self.mean_rating is not None:
            return self.mean_rating <= UNHELPFUL_RATING
        return self.downs > self.ups


def fold_turns(frame: pd.DataFrame) -> list[RatedTurn]:
    """One RatedTurn per turn; the newest non-empty correction wins."""
    by_turn: dict[str, list[dict]] = {}
    for row in frame.sort_values("rated_at").to_dict(orient="records"):
        by_turn.setdefault(str(row["response_id"]), []).append(row)
    return [_fold(turn_id, rows) for turn_id, rows in sorted(by_turn.items())]


def _fold(turn_id: str, rows: list[dict]) -> RatedTurn:
    first = rows[0]
    corrections = [r["correction"] for r in rows if _text(r["correction"])]
    stars = [float(r["rating"]) for r in rows if not pd.isna(r["rating"])]
    return RatedTurn(
        id=turn_id,
        prompt=first["prompt"],
        response=first["response"],
        context=_messages(first["context"], first["prompt"]),
        correction=corrections[-1].strip() if corrections else None,
        mean_rating=sum(stars) / len(stars) if stars else None,
        ups=sum(r["thumb"] == "up" for r in rows),
        downs=sum(r["thumb"] == "down" for r in rows),
        ratings=[(r["rater"], pd.Timestamp(r["rated_at"]).isoformat()) for r in rows],
        chunk_ids=[str(c) for c in _json_list(first["retrieved_chunk_ids"])],
    )


def _text(value) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _json_list(value) -> list:
    """A JSON array column as a list; SQL NULL arrives from pandas as None or NaN."""
    if not isinstance(value, str):
        return []
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        return []
    return parsed if isinstance(parsed, list) else []


def _messages(context_json: str | None, prompt: str) -> list[dict]:
    """What the model saw for this turn, ending with the user's prompt."""
    context = _json_list(context_json)
    ok = (
        isinstance(context, list)
        and context
        and all(isinstance(m, dict) and m.get("role") and m.get("content") for m in context)
        and context[-1]["role"] == "user"
    )
    if not ok:
        return [{"role": "user", "content": prompt}]
    return [{"role": m["role"], "content": m["content"]} for m in context]


def _meta(turn: RatedTurn, label: str, **more) -> dict:
    return {
        "label": label,
        "source": "feedback",
        "interaction_id": turn.id,
        "ratings": [list(r) for r in turn.ratings],
        **more,
    }


def sft_rows(turns: Sequence[RatedTurn], *, min_rating: int) -> list[dict]:
    """Corrections become the target; otherwise answers rated min_rating+ (or thumbed up)."""
    rows = []
    for turn in turns:
        if turn.correction:
            target, label = turn.correction, "correction"
        elif turn.rated_at_least(min_rating) and turn.response.strip():
            target, label = turn.response, "rated"
        else:
            continue
        messages = [*turn.context, {"role": "assistant", "content": target}]
        rows.append({"messages": messages, "meta": _meta(turn, label)})
    return rows


def normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def preference_rows(
    turns: Sequence[RatedTurn], *, margin: float, max_pairs_per_prompt: int
) -> list[dict]:
    """Correction over the original answer; and better- over worse-rated answers to one prompt."""
    rows = []
    for turn in turns:
        if turn.correction and turn.correction != turn.response.strip():
            rows.append(
                {
                    "prompt": turn.prompt,
                    "chosen": turn.correction,
                    "rejected": turn.response,
                    "meta": _meta(turn, "correction"),
                }
            )
    by_prompt: dict[str, list[RatedTurn]] = {}
    for turn in turns:
        if turn.mean_rating is not None and turn.response.strip():
            by_prompt.setdefault(normalise(turn.prompt), []).append(turn)
    for group in by_prompt.values():
        group.sort(key=lambda t: (-t.mean_rating, t.id))
        pairs = [
            (a, b)
            for i, a in enumerate(group)
            for b in group[i + 1 :]
            if a.mean_rating - b.mean_rating >= margin and a.response != b.response
        ]
        for better, worse in pairs[:max_pairs_per_prompt]:
            rows.append(
                {
                    "prompt": better.prompt,
                    "chosen": better.response,
                    "rejected": worse.response,
                    "meta": {
                        "label": "rating_gap",
                        "source": "feedback",
                        "interaction_ids": [better.id, worse.id],
                        "ratings": [better.mean_rating, worse.mean_rating],
                    },
                }
            )
    return rows


def embedding_rows(
    turns: Sequence[RatedTurn],
    documents: DocumentStore,
    *,
    min_rating: int,
    hard_negatives: int,
) -> list[dict]:
    """Query -> its top retrieved chunk when the grounded answer helped; negatives are the
    chunks retrieved for unhelpful answers to the same query, plus the stored chunks whose
    embeddings lie nearest the positive (mined hard negatives)."""
    grounded = [t for t in turns if t.chunk_ids]
    helpful = [t for t in grounded if t.rated_at_least(min_rating)]
    if not helpful:
        return []
    bad_by_query: dict[str, set[str]] = {}
    good_by_query: dict[str, set[str]] = {}
    helpful_ids = {t.id for t in helpful}
    for turn in grounded:
        if turn.id in helpful_ids:
            good_by_query.setdefault(normalise(turn.prompt), set()).update(turn.chunk_ids)
        elif turn.unhelpful:
            bad_by_query.setdefault(normalise(turn.prompt), set()).update(turn.chunk_ids)
    wanted = {c for t in grounded for c in t.chunk_ids}
    mined = _nearest_chunks(documents, [t.chunk_ids[0] for t in helpful], hard_negatives + 8)
    wanted |= {c for ids in mined.values() for c in ids}
    chunks = {c["id"]: c for c in documents.get_chunks(sorted(wanted))}
    rows = []
    for turn in helpful:
        positive = chunks.get(turn.chunk_ids[0])
        if positive is None:
            continue  # the document was deleted since
        good = good_by_query.get(normalise(turn.prompt), set())
        answered_badly = sorted(bad_by_query.get(normalise(turn.prompt), set()) - good)
        hard = [c for c in mined.get(positive["id"], []) if c not in good][:hard_negatives]
        negative_ids = list(dict.fromkeys([*answered_badly, *hard]))
        negatives = [
            chunks[c]["text"]
            for c in negative_ids
            if c in chunks and chunks[c]["text"] != positive["text"]
        ]
        rows.append(
            {
                "query": turn.prompt,
                "positive": positive["text"],
                "negatives": negatives,
                "meta": _meta(
                    turn,
                    "grounded_helpful",
                    positive_chunk_id=positive["id"],
                    negative_chunk_ids=negative_ids,
                    hard_negative_ids=hard,
                ),
            }
        )
    return rows


def _nearest_chunks(documents: DocumentStore, ids: list[str], k: int) -> dict[str, list[str]]:
    """For each chunk id, the ids of the k stored chunks with the most similar embeddings."""
    if not ids or k < 1:
        return {}
    all_ids, matrix = documents.load_vectors()
    position = {str(c): i for i, c in enumerate(all_ids)}
    out = {}
    for chunk_id in dict.fromkeys(ids):
        if chunk_id not in position:
            continue
        scores = matrix @ matrix[position[chunk_id]]
        order = np.argsort(-scores, kind="stable")[: k + 1]
        out[chunk_id] = [str(all_ids[i]) for i in order if str(all_ids[i]) != chunk_id][:k]
    return out


def document_chunks(documents: DocumentStore, document_id: str) -> list[dict]:
    """A document's unique, non-empty chunks in order."""
    chunks, offset = [], 0
    while batch := documents.chunks_of(document_id, limit=1000, offset=offset):
        offset += len(batch)
        chunks += [c for c in batch if c["duplicate_of"] is None and c["text"].strip()]
    return chunks


def text_rows(
    documents: DocumentStore,
    document_ids: Sequence[str],
    *,
    synthetic_qa: int,
    seed: int,
    write: Callable[[list[str]], list[str]] | None,
    progress: Callable[[float, str], None],
) -> list[dict]:
    """Every unique chunk as plain text; optionally QA pairs the base model writes from chunks
    (`write`: prompts -> texts, in batches: all questions, then all answers)."""
    rows = []
    for n, document_id in enumerate(document_ids):
        progress(n / max(len(document_ids), 1) * 0.5, f"reading document {n + 1}")
        rows.extend(
            {
                "text": c["text"],
                "meta": {
                    "label": "chunk",
                    "source": "document",
                    "document_id": document_id,
                    "chunk_id": c["id"],
                    "file": c["source"],
                    "page": c["page"],
                },
            }
            for c in document_chunks(documents, document_id)
        )
    if synthetic_qa and write is not None and rows:
        picked = random.Random(seed).sample(rows, min(synthetic_qa, len(rows)))
        progress(0.5, f"writing {len(picked)} questions")
        questions = write([QUESTION_PROMPT.format(passage=c["text"]) for c in picked])
        progress(0.75, f"writing {len(picked)} answers")
        answers = write([ANSWER_PROMPT.format(passage=c["text"], question=q)
                         for c, q in zip(picked, questions, strict=True)])
        for chunk, question, answer in zip(picked, questions, answers, strict=True):
            if question and answer:
                rows.append(
                    {
                        "text": f"Question: {question}\nAnswer: {answer}",
                        "meta": {**chunk["meta"], "label": "synthetic_qa", "synthetic": True},
                    }
                )
    return rows
