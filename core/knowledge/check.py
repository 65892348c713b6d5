"""Knowledge checks: built from the document store by the base model, reviewed by the team.

A check is versioned like a dataset (name -> version 1, 2, ...). A version is a draft until
it has been run: edits change a draft in place, and an edit of a version that has runs
writes the next version (its scores stay tied to the items they measured). Its questions
never train (core.knowledge.holdout).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from core.errors import Conflict, InvalidInput, NotFound, RefineryError
from core.knowledge.files import export_items, read_items
from core.knowledge.holdout import held_out_questions
from core.knowledge.questions import passages, write_items
from core.knowledge.scoring import normalise
from core.serving.models import ModelService
from core.store.documents import DocumentStore
from core.store.knowledge import KnowledgeStore

MAX_NAME_CHARS = 80
MAX_TEXT_CHARS = 2000
MAX_ITEMS = 500
BATCH = 8  # passages per generate() call
ATTEMPTS = (False, True, True)  # greedy, then two sampled retries (False: greedy)


@dataclass(frozen=True, kw_only=True)
class BuildRequest:
    name: str
    document_ids: tuple[str, ...] = ()  # empty: every document
    max_items: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        check_name(self.name)
        if not 1 <= self.max_items <= MAX_ITEMS:
            raise InvalidInput(f"max_items must be 1-{MAX_ITEMS}, got {self.max_items}")


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"a knowledge check needs a name of 1-{MAX_NAME_CHARS} characters")


def clean_item(item: dict, origin: str) -> dict:
    """A validated item: question and reference non-empty; id kept or new."""
    out = {}
    for key in ("question", "reference"):
        value = item.get(key)
        if not isinstance(value, str) or not value.strip():
            raise InvalidInput(f"an item needs a non-empty {key}")
        if len(value) > MAX_TEXT_CHARS:
            raise InvalidInput(f"an item's {key} is longer than {MAX_TEXT_CHARS} characters")
        out[key] = " ".join(value.split())
    return {
        "id": item.get("id") or uuid.uuid4().hex[:12],
        **out,
        **{k: item.get(k) or None for k in ("chunk_id", "document_id", "source")},
        "origin": item.get("origin") or origin,
    }


def spread(things: list, count: int) -> list:
    """`count` of the things spread evenly over the list (every one when there are fewer)."""
    if len(things) <= count:
        return things
    step = len(things) / count
    return [things[int(i * step)] for i in range(count)]


class KnowledgeService:
    def __init__(
        self, store: KnowledgeStore, documents: DocumentStore, models: ModelService
    ) -> None:
        self.store = store
        self.documents = documents
        self.models = models
        self._threads: dict[str, threading.Thread] = {}

    # reading

    def list(self) -> list[dict]:
        return self.store.checks()

    def get(self, check_id: str) -> dict:
        check = self.store.check(check_id)
        if check is None:
            raise NotFound(f"no knowledge check with id {check_id!r}")
        return check

    def items(self, check_id: str) -> list[dict]:
        self.get(check_id)
        return self.store.items(check_id)

    def latest_ready(self) -> dict | None:
        """The newest check with items: what finished training runs are scored on."""
        return next((c for c in self.list() if c["status"] == "ready" and c["item_count"]), None)

    def held_out_questions(self) -> set[str]:
        return held_out_questions(self.store.db)

    # building from documents (a background job; the check row is the job)

    def start_build(self, request: BuildRequest, *, then: Callable | None = None) -> dict:
        chunks = self._chunks(request.document_ids)
        if not chunks:
            raise InvalidInput("the document store has no chunks: upload documents first")
        check = self.store.create_check(
            make_id=lambda: f"kc-{uuid.uuid4().hex[:12]}",
            name=request.name.strip(),
            status="building",
            lineage={
                "source": "documents",
                "document_ids": sorted({c["document_id"] for c in chunks}),
                "max_items": request.max_items,
                "seed": request.seed,
            },
            items=[],
        )
        thread = threading.Thread(
            target=self._build, args=(check["id"], chunks, request, then), daemon=True
        )
        self._threads[check["id"]] = thread
        thread.start()
        return check

    def wait(self, check_id: str, timeout: float | None = None) -> dict:
        """Block until a build has finished (tests, CLI)."""
        thread = self._threads.get(check_id)
        if thread is not None:
            thread.join(timeout)
        return self.get(check_id)

    def _chunks(self, document_ids: tuple[str, ...]) -> list[dict]:
        known = {d["id"] for d in self.documents.list()}
        missing = sorted(set(document_ids) - known)
        if missing:
            raise NotFound(f"no document with id {missing[0]!r}")
        chunks = []
        for document_id in sorted(document_ids or known):
            chunks += [c for c in self.documents.chunks_of(document_id, limit=100_000)
                       if c["duplicate_of"] is None and c["text"].strip()]
        return chunks

    def _build(self, check_id: str, chunks: list[dict], request: BuildRequest, then) -> None:
        import torch

        # Twice as many passages as items wanted: the filter drops most replies. Each passage
        # gets a greedy attempt, then sampled retries while it has no item.
        pool = spread([(chunk, text) for chunk in chunks for text in passages(chunk["text"])],
                      2 * request.max_items)
        found: dict[int, dict] = {}
        seen: set[tuple[str, str]] = set()
        try:
            for attempt, sample in enumerate(ATTEMPTS):
                todo = [n for n in range(len(pool)) if n not in found]
                for start in range(0, len(todo), BATCH):
                    if len(found) >= request.max_items:
                        break
                    batch = todo[start : start + BATCH]
                    with self.models.use(None) as loaded:
                        torch.manual_seed(request.seed * 1_000_003 + attempt * 10_007 + start)
                        written = write_items(loaded, [pool[n][1] for n in batch], sample=sample)
                    for n, item in zip(batch, written, strict=True):
                        key = item and (normalise(item.question), normalise(item.reference))
                        if item is not None and key not in seen and len(found) < request.max_items:
                            seen.add(key)
                            found[n] = self._item(pool[n][0], item)
                    share = (start + len(batch)) / len(todo)
                    self.store.update_check(
                        check_id, progress=min(0.99, (attempt + share) / len(ATTEMPTS)),
                        message=f"{len(found)} item(s) so far",
                    )
            items = [found[n] for n in sorted(found)]
            self.store.set_items(check_id, items)
            message = (f"{len(items)} item(s) from {len(pool)} passage(s)" if items else
                       "the model wrote no usable item; add items by hand or import them")
            self.store.update_check(check_id, status="ready", progress=1.0, message=message)
        except Exception as error:  # a background job always ends in a stored state
            message = error.message if isinstance(error, RefineryError) else str(error)
            self.store.update_check(check_id, status="failed", message=message)
        finally:
            self._threads.pop(check_id, None)
        if then is not None:
            then(self.get(check_id))

    @staticmethod
    def _item(chunk: dict, written) -> dict:
        return clean_item(
            {"question": written.question, "reference": written.reference,
             "chunk_id": chunk["id"], "document_id": chunk["document_id"],
             "source": chunk["source"]},
            "generated",
        )

    # editing

    def _editable(self, check_id: str) -> dict:
        check = self.get(check_id)
        if check["status"] == "building":
            raise Conflict(f"{check_id} is still being built")
        return check

    def _write(self, check: dict, items: list[dict], change: str) -> dict:
        """Edit a draft in place; a version that has runs gets a successor instead."""
        if not self.store.has_runs(check["id"]):
            self.store.set_items(check["id"], items)
            if check["status"] == "failed":
                self.store.update_check(check["id"], status="ready", progress=1.0)
            return self.get(check["id"])
        return self.store.create_check(
            make_id=lambda: f"kc-{uuid.uuid4().hex[:12]}",
            name=check["name"],
            status="ready",
            lineage={"source": "edit", "parent": check["id"], "change": change},
            items=items,
        )

    def add_item(self, check_id: str, item: dict) -> dict:
        check = self._editable(check_id)
        items = self.store.items(check_id)
        if len(items) >= MAX_ITEMS:
            raise InvalidInput(f"a check holds at most {MAX_ITEMS} items")
        return self._write(check, [*items, clean_item({**item, "id": None}, "manual")], "add")

    def update_item(self, check_id: str, item_id: str, changes: dict) -> dict:
        check = self._editable(check_id)
        items = self.store.items(check_id)
        if not any(item["id"] == item_id for item in items):
            raise NotFound(f"{check_id} has no item {item_id!r}")
        items = [
            clean_item({**item, **{k: v for k, v in changes.items() if v is not None}},
                       item["origin"]) if item["id"] == item_id else item
            for item in items
        ]
        return self._write(check, items, "edit")

    def delete_item(self, check_id: str, item_id: str) -> dict:
        check = self._editable(check_id)
        items = self.store.items(check_id)
        kept = [item for item in items if item["id"] != item_id]
        if len(kept) == len(items):
            raise NotFound(f"{check_id} has no item {item_id!r}")
        return self._write(check, kept, "delete")

    def replace_items(self, check_id: str, rows: list[dict]) -> dict:
        """The whole item list at once (the UI's table): rows keep their ids when they have one."""
        check = self._editable(check_id)
        if len(rows) > MAX_ITEMS:
            raise InvalidInput(f"a check holds at most {MAX_ITEMS} items")
        return self._write(check, [clean_item(row, "manual") for row in rows], "table")

    def delete(self, check_id: str) -> None:
        self._editable(check_id)
        self.store.delete_check(check_id)

    # files

    def import_file(self, data: bytes, filename: str, *, name: str | None = None) -> dict:
        rows = read_items(data, filename)
        if len(rows) > MAX_ITEMS:
            raise InvalidInput(f"a check holds at most {MAX_ITEMS} items, the file has {len(rows)}")
        name = (name or filename.rsplit(".", 1)[0]).strip()
        check_name(name)
        return self.store.create_check(
            make_id=lambda: f"kc-{uuid.uuid4().hex[:12]}",
            name=name,
            status="ready",
            lineage={"source": "import", "file": filename, "items": len(rows)},
            items=[clean_item(row, "imported") for row in rows],
        )

    def export(self, check_id: str, fmt: str) -> tuple[str, str]:
        """(file text, file name)."""
        check = self.get(check_id)
        text = export_items(self.store.items(check_id), fmt)
        return text, f"{check['name']}-v{check['version']}.{fmt}"
