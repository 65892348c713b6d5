"""The SQL of a TurnFilter over `interactions i`, `ratings r` and `curation_labels c`.

The log reads turns left-joined with their ratings (unrated turns too); curation reads
ratings joined with their turns. Both join the per-turn labels as `c` and use this WHERE.
"""

from __future__ import annotations

from core.feedback.turn_filter import TurnFilter
from core.store.database import text_search

SEARCHED = ("i.prompt", "i.response", "r.correction")  # what the text filter searches
MODEL_VERSION = (
    "CASE WHEN i.adapter_version IS NULL THEN i.model_id"
    " ELSE i.model_id || '+' || i.adapter_version END"
)
GROUNDED = "coalesce(json_array_length(i.retrieved_chunk_ids), 0) > 0"
LABELS = "LEFT JOIN curation_labels c ON c.interaction_id = i.id"


def where(flt: TurnFilter) -> tuple[str, list]:
    """(SQL condition, params) selecting the rows the filter matches."""
    clauses, params = ["TRUE"], []

    def add(clause: str, *values) -> None:
        clauses.append(clause)
        params.extend(values)

    if flt.text:
        sql, patterns = text_search(SEARCHED, flt.text)
        add(sql, *patterns)
    if flt.min_rating is not None:
        add("r.rating >= ?", flt.min_rating)
    if flt.max_rating is not None:
        add("r.rating <= ?", flt.max_rating)
    if flt.thumb in ("up", "down"):
        add("r.thumb = ?", flt.thumb)
    elif flt.thumb == "none":
        add("r.thumb IS NULL")
    if flt.rated is not None:
        add("r.rater IS NOT NULL" if flt.rated else "r.rater IS NULL")
    if flt.tags:
        add("list_has_any(r.tags, ?::VARCHAR[])", list(flt.tags))
    if flt.model_version:
        add(f"{MODEL_VERSION} = ?", flt.model_version)
    if flt.rater:
        add("r.rater = ?", flt.rater)
    if flt.date_from is not None:
        add("i.created_at >= ?", flt.date_from)
    if flt.date_to is not None:
        add("i.created_at <= ?", flt.date_to)
    if flt.conversation_id:
        add("i.conversation_id = ?", flt.conversation_id)
    if flt.has_correction is not None:
        has = "coalesce(trim(r.correction), '') <> ''"
        add(has if flt.has_correction else f"NOT ({has})")
    if flt.grounded is not None:
        add(GROUNDED if flt.grounded else f"NOT ({GROUNDED})")
    if flt.label:
        add("c.label = ?", flt.label)
    if flt.include is not None:
        add("coalesce(c.include, TRUE) = ?", flt.include)
    if flt.response_ids:
        add("i.id IN (SELECT unnest(?::VARCHAR[]))", list(flt.response_ids))
    return " AND ".join(clauses), params
