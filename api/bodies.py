"""The base of every request body: unknown fields refused, every string and integer bounded.

A 5 MB "correction" or a seed of 10**30 (beyond DuckDB's BIGINT) is refused with a 4xx by
validation, before any work starts. Fields that need a tighter bound declare it; the rest get
the bounds of last resort below, and the OpenAPI description shows them.
"""

from __future__ import annotations

from dataclasses import fields
from typing import get_args, get_origin, get_type_hints

from annotated_types import Ge, Le, MaxLen
from pydantic import BaseModel, ConfigDict, Field, create_model
from pydantic.fields import FieldInfo

from core.feedback.turn_filter import TurnFilter

MAX_TEXT_CHARS = 100_000  # any free-text field (prompts have their own, smaller, setting)
MAX_QUERY_CHARS = 1_000  # a name, id or filter in the query string or a form field
MAX_INT = 2**53 - 1  # no count, offset, seed or window needs more; DuckDB and JSON hold it
MIN_INT = -MAX_INT


def _is(annotation, kind: type) -> bool:
    """`kind` itself or `kind | None`."""
    from types import NoneType, UnionType
    from typing import Union, get_args, get_origin

    if annotation is kind:
        return True
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not NoneType]
        return len(args) == 1 and args[0] is kind
    return False


def bound_fields(fields: dict[str, FieldInfo]) -> bool:
    """Give every integer field without a lower or upper bound the widest sane one, and every
    text field without a length bound MAX_TEXT_CHARS (shown in OpenAPI even where the field
    is read from the query string)."""
    changed = False
    for field in fields.values():
        if _is(field.annotation, str) and not any(isinstance(m, MaxLen)
                                                  for m in field.metadata):
            field.metadata.append(MaxLen(MAX_TEXT_CHARS))
            changed = True
        if not _is(field.annotation, int):
            continue
        kinds = {type(m) for m in field.metadata}
        lower = {m for m in kinds if m.__name__ in ("Ge", "Gt")}
        upper = {m for m in kinds if m.__name__ in ("Le", "Lt")}
        if not lower:
            field.metadata.append(Ge(MIN_INT))
            changed = True
        if not upper:
            field.metadata.append(Le(MAX_INT))
            changed = True
    return changed


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", str_max_length=MAX_TEXT_CHARS)

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if bound_fields(cls.model_fields):
            cls.model_rebuild(force=True)


def _turn_filter_fields() -> dict:
    """TurnFilter's fields as pydantic fields, with its bounds; lists where it keeps tuples."""
    hints = get_type_hints(TurnFilter, include_extras=True)
    out = {}
    for field in fields(TurnFilter):
        if field.name == "response_ids":  # bodies name their explicit selection beside `filter`
            continue
        kind = hints[field.name]
        if get_origin(kind) is tuple:
            out[field.name] = (list[get_args(kind)[0]], Field(default_factory=list))
        else:
            out[field.name] = (kind, field.default)
    return out


class _FilterBase(Body):
    def to_filter(self, response_ids: list[str] | None = None) -> TurnFilter:
        fields_ = self.model_dump(include=set(FilterBody.model_fields))
        return TurnFilter.from_dict({**fields_, "response_ids": response_ids or []})


# The filter of GET /interactions, /feedback/rated, /quality and of bulk and dataset bodies
FilterBody = create_model("FilterBody", __base__=_FilterBase, **_turn_filter_fields())
