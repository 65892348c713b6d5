"""Immutable, versioned training datasets built from curated feedback, documents or files.

Every version keeps its lineage (which turns, ratings, documents, chunks, filter and
seed made it), a seeded train/validation split and its statistics.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from pathlib import Path

from core.datasets import kinds as dataset_kinds
from core.datasets.augment import Augmentation, perturb, replace_synonyms
from core.datasets.formats import read_records, records_to_rows, write_export
from core.datasets.rows import CONTENT, KINDS, check_kind, normalise_row, split_rows, statistics
from core.datasets.synthesis import PARAPHRASE_PROMPT, Writer
from core.errors import InvalidInput, NotFound
from core.feedback.turn_filter import TurnFilter
from core.knowledge import recipes
from core.knowledge.holdout import drop_held_out
from core.serving.models import ModelService, resolve_model_source
from core.store.curation import CurationStore
from core.store.datasets import DatasetStore
from core.store.documents import DocumentStore
from core.training.data import length_report
from core.training.spec import CORRECT, RECIPES, TEACH, TrainingSpec

MAX_NAME_CHARS = 80
Progress = Callable[[float, str], None]


def _quiet(_fraction: float, _message: str) -> None:
    """Progress sink when nobody is watching."""


@dataclass(frozen=True)
class Dataset:
    id: str
    name: str
    version: int
    kind: str
    created_at: datetime
    train: list[dict]
    validation: list[dict]
    lineage: dict
    stats: dict


@dataclass(frozen=True)
class DatasetSummary:
    id: str
    name: str
    version: int
    kind: str
    created_at: datetime
    train_count: int
    validation_count: int
    stats: dict


@dataclass(frozen=True, kw_only=True)
class BuildSpec:
    """Freeze a selection: rated turns matching `selection`, or documents for kind 'text'."""

    name: str
    kind: str
    selection: TurnFilter = field(default_factory=TurnFilter)
    seed: int = 0
    validation_fraction: float = 0.1
    min_rating: int = 4  # sft/embedding: "highly rated" means at least this many stars
    preference_margin: float = 1.0  # stars between the chosen and the rejected answer
    max_pairs_per_prompt: int = 10
    hard_negatives: int = 3
    document_ids: tuple[str, ...] = ()  # text: empty means every document
    synthetic_qa: int = 0  # text: QA pairs the base model writes from this many chunks
    augmentation: Augmentation = field(default_factory=Augmentation)
    recipe: str = ""  # sft: "teach documents" (from documents) or "learn corrections"
    written_questions: int = 1  # recipes: questions/paraphrases the base model writes per item

    def __post_init__(self) -> None:
        check_name(self.name)
        check_kind(self.kind)
        if not 1 <= self.min_rating <= 5:
            raise InvalidInput(f"min_rating must be 1-5, got {self.min_rating}")
        if not 0 <= self.synthetic_qa <= 1000:
            raise InvalidInput(f"synthetic_qa must be 0-1000, got {self.synthetic_qa}")
        if not 0 <= self.hard_negatives <= 20:
            raise InvalidInput(f"hard_negatives must be 0-20, got {self.hard_negatives}")
        if self.recipe and (self.recipe not in RECIPES or self.kind != "sft"):
            raise InvalidInput(f"recipe must be one of {', '.join(RECIPES)}, on kind 'sft'")
        if not 0 <= self.written_questions <= 5:
            raise InvalidInput(f"written_questions must be 0-5, got {self.written_questions}")
        if self.preference_margin <= 0:
            raise InvalidInput("preference_margin must be above 0")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise InvalidInput(
                f"validation_fraction must be in [0, 1), got {self.validation_fraction}"
            )

    def to_dict(self) -> dict:
        """Plain JSON data, so a build's job can be started again after a restart."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "selection": self.selection.to_dict(),
                "augmentation": asdict(self.augmentation),
                "document_ids": list(self.document_ids)}

    @classmethod
    def from_dict(cls, data: dict) -> BuildSpec:
        return cls(**{**data, "selection": TurnFilter.from_dict(data["selection"]),
                      "augmentation": Augmentation(**data["augmentation"]),
                      "document_ids": tuple(data["document_ids"])})

    @property
    def synthetic(self) -> bool:
        """Whether the base model writes rows for this build (a background job)."""
        return bool(self.synthetic_qa and self.kind == "text") or bool(
            self.recipe and self.written_questions) or bool(self.augmentation.paraphrase)


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("the dataset name is empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"the dataset name has more than {MAX_NAME_CHARS} characters")


def make_id(name: str, version: int) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "dataset"
    return f"{slug}-v{version}-{uuid.uuid4().hex[:6]}"


class DatasetService:
    def __init__(
        self,
        store: DatasetStore,
        curation: CurationStore,
        documents: DocumentStore,
        models: ModelService,
        *,
        exports_dir: Path,
        search: Callable | None = None,  # (query, k) -> SearchHit list: grounded recipe rows
    ) -> None:
        self.search = search
        self.store = store
        self.curation = curation
        self.documents = documents
        self.models = models
        self.exports_dir = exports_dir

    # reading

    def get(self, dataset_id: str) -> Dataset:
        header = self.store.header(dataset_id)
        if header is None:
            raise NotFound(f"no dataset with id {dataset_id!r}")
        rows = self.store.rows(dataset_id)
        return Dataset(
            id=header["id"],
            name=header["name"],
            version=header["version"],
            kind=header["kind"],
            created_at=header["created_at"],
            train=rows["train"],
            validation=rows["validation"],
            lineage=header["lineage"],
            stats=header["stats"],
        )

    def list(self) -> list[DatasetSummary]:
        return [
            DatasetSummary(**{k: h[k] for k in DatasetSummary.__dataclass_fields__})
            for h in self.store.headers()
        ]

    def delete(self, dataset_id: str) -> None:
        if self.store.header(dataset_id) is None:
            raise NotFound(f"no dataset with id {dataset_id!r}")
        self.store.delete(dataset_id)

    # writing

    def create_from_rows(
        self,
        *,
        name: str,
        kind: str,
        rows: list[dict],
        seed: int = 0,
        validation_fraction: float = 0.1,
        lineage: dict | None = None,
        augmentation: Augmentation | None = None,
        progress: Progress = _quiet,
        write: Callable[[list[str]], list[str]] | None = None,
    ) -> Dataset:
        """Validate, dedupe by content id, split (seeded), augment train, store a new version.

        `write` (prompts -> texts) writes paraphrases; by default the base model, in batches."""
        check_name(name)
        check_kind(kind)
        rows = drop_held_out(self.store.db, rows)  # knowledge check questions never train
        clean = list(
            {
                r["id"]: r for r in (normalise_row(kind, row, n) for n, row in enumerate(rows, 1))
            }.values()
        )
        if not clean:
            raise InvalidInput(f"no {kind} rows to store")
        train, validation = split_rows(
            kind, clean, seed=seed, validation_fraction=validation_fraction
        )
        augmentation = augmentation or Augmentation()
        if augmentation.active:
            write = write or Writer(self.models, seed=seed).write_many
            train = train + self._augment(kind, train, augmentation, seed, progress, write)
        splits = {"train": train, "validation": validation}
        progress(0.95, "computing statistics")
        unit, counter = self._token_counter()
        stats = {**statistics(kind, splits, counter), "length_unit": unit,
                 **self._training_lengths(kind, train)}
        full_lineage = {
            **(lineage or {"source": "rows"}),
            "kind": kind,
            "seed": seed,
            "validation_fraction": validation_fraction,
            "augmentation": augmentation.__dict__ if augmentation.active else None,
            "duplicates_dropped": len(rows) - len(clean),
        }
        header = self.store.insert(
            make_id=make_id,
            name=name.strip(),
            kind=kind,
            created_at=datetime.now(),
            splits=splits,
            lineage=full_lineage,
            stats=stats,
        )
        return self.get(header["id"])

    def build(self, spec: BuildSpec, *, progress: Progress = _quiet,
              write: Callable[[list[str]], list[str]] | None = None) -> Dataset:
        """Freeze the current selection (or the chosen documents) into a new version.

        `write` (prompts -> texts) writes the synthetic rows; by default the base model in
        batches, in this call (the dataset job runs builds that write in the background)."""
        progress(0.0, "reading the selection")
        write = write or Writer(self.models, seed=spec.seed).write_many
        if spec.recipe == TEACH:
            rows, lineage = self._teach(spec, write, progress)
        elif spec.recipe == CORRECT:
            rows, lineage = self._corrections(spec, write)
        elif spec.kind == "text":
            rows, lineage = self._text(spec, write, progress)
        else:
            rows, lineage = self._from_feedback(spec)
        if not rows:
            raise InvalidInput(f"the selection gives no {spec.kind} examples: {_hint(spec)}")
        return self.create_from_rows(
            name=spec.name,
            kind=spec.kind,
            rows=rows,
            seed=spec.seed,
            validation_fraction=spec.validation_fraction,
            lineage=lineage,
            augmentation=spec.augmentation,
            progress=progress,
            write=write,
        )

    def import_file(
        self,
        data: bytes,
        filename: str,
        *,
        name: str | None = None,
        seed: int = 0,
        validation_fraction: float = 0.1,
    ) -> Dataset:
        records = read_records(data, filename)
        kind, rows = records_to_rows(records, source=Path(filename).name)
        return self.create_from_rows(
            name=name or Path(filename).stem,
            kind=kind,
            rows=rows,
            seed=seed,
            validation_fraction=validation_fraction,
            lineage={"source": "import", "file": Path(filename).name, "records": len(records)},
        )

    def export(self, dataset_id: str, fmt: str) -> Path:
        dataset = self.get(dataset_id)
        path = self.exports_dir / f"{dataset.id}.{fmt}"
        splits = {"train": dataset.train, "validation": dataset.validation}
        return write_export(dataset.kind, splits, path, fmt)

    # building blocks

    def _from_feedback(self, spec: BuildSpec) -> tuple[list[dict], dict]:
        frame = self.curation.all_rows(spec.selection)
        excluded = frame.loc[~frame["include"].astype(bool), "response_id"].unique().tolist()
        turns = dataset_kinds.fold_turns(frame[frame["include"].astype(bool)])
        if spec.kind == "sft":
            rows = dataset_kinds.sft_rows(turns, min_rating=spec.min_rating)
        elif spec.kind == "preference":
            rows = dataset_kinds.preference_rows(
                turns, margin=spec.preference_margin, max_pairs_per_prompt=spec.max_pairs_per_prompt
            )
        else:
            rows = dataset_kinds.embedding_rows(
                turns,
                self.documents,
                min_rating=spec.min_rating,
                hard_negatives=spec.hard_negatives,
            )
        used = {turn_id for row in rows for turn_id in _turns_of(row)}
        lineage = {
            "source": "feedback",
            "filter": spec.selection.to_dict(),
            "min_rating": spec.min_rating,
            "turns": sorted(used),
            "ratings": [[t.id, r, at] for t in turns if t.id in used for r, at in t.ratings],
            "excluded_turns": sorted(excluded),
            "chunks": sorted({c for row in rows for c in _chunks_of(row)}),
        }
        return rows, lineage

    def _document_ids(self, spec: BuildSpec) -> list[str]:
        known = {d["id"] for d in self.documents.list()}
        missing = sorted(set(spec.document_ids) - known)
        if missing:
            raise NotFound(f"no document with id {missing[0]!r}")
        return sorted(spec.document_ids or known)

    def _text(self, spec: BuildSpec, write, progress: Progress) -> tuple[list[dict], dict]:
        document_ids = self._document_ids(spec)
        rows = dataset_kinds.text_rows(
            self.documents,
            document_ids,
            synthetic_qa=spec.synthetic_qa,
            seed=spec.seed,
            write=write,
            progress=progress,
        )
        lineage = {
            "source": "documents",
            "documents": document_ids,
            "chunks": sorted({row["meta"]["chunk_id"] for row in rows}),
            "synthetic_qa": spec.synthetic_qa,
            "generator": self.models.name if spec.synthetic_qa else None,
        }
        return rows, lineage

    def _teach(self, spec: BuildSpec, write, progress: Progress) -> tuple[list[dict], dict]:
        document_ids = self._document_ids(spec)
        documents = []
        for document_id in document_ids:
            chunks = [
                {**c, "document_id": document_id}
                for c in dataset_kinds.document_chunks(self.documents, document_id)
            ]
            if chunks:
                documents.append((document_title(chunks), chunks))
        rows = recipes.teach_rows(
            documents,
            search=(lambda query, k: self.search(query, k=k)) if self.search else None,
            writer=write if spec.written_questions else None,
            options=recipes.TeachOptions(written_questions=spec.written_questions),
            seed=spec.seed,
            progress=progress,
        )
        lineage = {
            "source": "documents",
            "recipe": TEACH,
            "documents": document_ids,
            "chunks": sorted({r["meta"]["chunk_id"] for r in rows if "chunk_id" in r["meta"]}),
            "written_questions": spec.written_questions,
            "generator": self.models.name if spec.written_questions else None,
        }
        return rows, lineage

    def _corrections(self, spec: BuildSpec, write) -> tuple[list[dict], dict]:
        frame = self.curation.all_rows(spec.selection)
        turns = dataset_kinds.fold_turns(frame[frame["include"].astype(bool)])
        corrected = [r for r in dataset_kinds.sft_rows(turns, min_rating=5)
                     if r["meta"]["label"] == "correction"]
        rows = recipes.correction_rows(
            corrected, writer=write if spec.written_questions else None,
            paraphrases=spec.written_questions, seed=spec.seed)
        lineage = {
            "source": "feedback",
            "recipe": CORRECT,
            "filter": spec.selection.to_dict(),
            "turns": sorted(r["meta"]["interaction_id"] for r in corrected),
            "written_questions": spec.written_questions,
        }
        return rows, lineage

    def _augment(
        self, kind: str, rows: list[dict], aug: Augmentation, seed: int, progress: Progress,
        write: Callable[[list[str]], list[str]],
    ) -> list[dict]:
        """Extra copies of train rows with their input text changed; each marked as such.
        Paraphrases are written first, all in batches, and used in the same order."""
        rng = random.Random(seed)
        prompts = [PARAPHRASE_PROMPT.format(text=_input_text(kind, row))
                   for row in rows for _ in range(aug.paraphrase)]
        if prompts:
            progress(0.3, f"writing {len(prompts)} paraphrases")
        written = iter(write(prompts) if prompts else [])
        out = []
        for n, row in enumerate(rows):
            progress(0.5 + 0.4 * n / len(rows), f"augmenting row {n + 1} of {len(rows)}")
            for method, copies in (
                ("perturb", aug.perturb),
                ("synonym", aug.synonym),
                ("paraphrase", aug.paraphrase),
            ):
                for _ in range(copies):
                    changed = _rewrite(kind, row, method, rng, aug.rate, written)
                    if changed is not None:
                        meta = {**row["meta"], "augmented": method, "augmented_from": row["id"]}
                        out.append(normalise_row(kind, {**changed, "meta": meta}, n + 1))
        seen = {row["id"] for row in rows}
        return [r for r in {r["id"]: r for r in out}.values() if r["id"] not in seen]

    def _training_lengths(self, kind: str, train: list[dict]) -> dict:
        """Train rows measured in the chat model's tokens against the default training
        max_length: how many are longer (training fits them by cutting prompt context)."""
        if kind not in ("sft", "text"):
            return {}
        report = length_report(self._tokenizer(), train, kind=kind,
                               max_length=TrainingSpec(base_model=self.models.name).max_length)
        return {"training_length": report.to_dict()}

    def _tokenizer(self):
        if self.models.is_loaded:
            return self.models.get().tokenizer
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(
            resolve_model_source(self.models.name, self.models.cache_dir),
            trust_remote_code=self.models.trust_remote_code)

    def _token_counter(self) -> tuple[str, Callable[[list[str]], list[int]]]:
        """The chat model's tokenizer once the model is in memory; whitespace words before.

        Statistics never load the model just to count (the app loads it at start)."""
        if not self.models.is_loaded:
            return "words", lambda texts: [len(t.split()) for t in texts]
        tokenizer = self.models.get().tokenizer

        def count(texts: list[str]) -> list[int]:
            return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

        return f"tokens ({self.models.name})", count


def document_title(chunks: list[dict]) -> str:
    """A document's first markdown heading, else its file name without the extension."""
    for line in chunks[0]["text"].splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return Path(chunks[0]["source"]).stem.replace("_", " ")


def _input_text(kind: str, row: dict) -> str:
    if kind == "sft":
        return [m for m in row["messages"] if m["role"] == "user"][-1]["content"]
    return row[{"text": "text", "preference": "prompt", "embedding": "query"}[kind]]


def _rewrite(kind: str, row: dict, method: str, rng, rate: float, written) -> dict | None:
    """The row with its input (user prompt, prompt, query or text) rewritten; None if unchanged.
    `written` yields the paraphrases, one per paraphrase copy, in row order."""

    def change(text: str) -> str:
        if method == "perturb":
            return perturb(text, rng, rate)
        if method == "synonym":
            return replace_synonyms(text, rng, rate)
        return next(written) or text

    content = {key: row[key] for key in CONTENT[kind]}
    if kind == "sft":
        messages = [dict(m) for m in content["messages"]]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[last_user]["content"] = change(messages[last_user]["content"])
        new = {"messages": messages}
    else:
        field_name = {"text": "text", "preference": "prompt", "embedding": "query"}[kind]
        new = {**content, field_name: change(content[field_name])}
    return None if new == content else new


def _turns_of(row: dict) -> list[str]:
    meta = row["meta"]
    return meta.get("interaction_ids") or [meta["interaction_id"]]


def _chunks_of(row: dict) -> list[str]:
    meta = row["meta"]
    return [c for c in [meta.get("positive_chunk_id"), *meta.get("negative_chunk_ids", [])] if c]


def _hint(spec: BuildSpec) -> str:
    return {
        "sft": f"no included turn has a correction or a rating of {spec.min_rating}+ stars "
        "(or a thumb up)",
        "preference": "no correction differs from its answer, and no prompt has answers rated "
        f"{spec.preference_margin}+ stars apart",
        "embedding": f"no document-grounded answer is rated {spec.min_rating}+ stars "
        "(or thumbed up)",
        "text": "the chosen documents have no chunks",
    }[spec.kind]


__all__ = ["KINDS", "BuildSpec", "Dataset", "DatasetService", "DatasetSummary"]
