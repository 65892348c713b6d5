"""Versioned datasets: contract, lineage, reproducible splits, kinds, augmentation, files."""

from __future__ import annotations

import io
import json
from dataclasses import FrozenInstanceError

import pandas as pd
import pytest

from core.datasets.augment import Augmentation, perturb, replace_synonyms
from core.datasets.versions import BuildSpec, Dataset
from core.documents.chunking import ChunkSpec
from core.documents.service import IncomingFile
from core.errors import InvalidInput, NotFound
from core.feedback.ratings import BulkAction
from core.feedback.turn_filter import TurnFilter
from tests.rated_turns import add_turn, rate

MANUAL = (
    "The red pump must be primed with water before it is switched on for the first time.\n\n"
    "To reset the controller, hold the blue button for ten seconds until the light blinks.\n\n"
    "The warranty covers the motor for five years and the housing for two years.\n\n"
    "Clean the intake filter every month with warm water and a soft brush.\n\n"
    "Store the pump indoors during winter so the seals do not freeze and crack."
)


def sft_rows(n: int, prefix: str = "question") -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"{prefix} {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(n)
    ]


def test_create_from_rows_keeps_the_training_contract(services):
    dataset = services.datasets.create_from_rows(
        name="demo", kind="sft", rows=sft_rows(20), seed=1, validation_fraction=0.25
    )
    assert isinstance(dataset, Dataset)
    assert (dataset.name, dataset.version, dataset.kind) == ("demo", 1, "sft")
    assert len(dataset.train) == 15 and len(dataset.validation) == 5
    row = dataset.train[0]
    assert set(row) >= {"id", "messages"} and row["messages"][-1]["role"] == "assistant"
    with pytest.raises(FrozenInstanceError):
        dataset.name = "other"
    again = services.datasets.get(dataset.id)
    assert again == dataset
    summary = services.datasets.list()[0]
    assert (summary.id, summary.train_count, summary.validation_count) == (dataset.id, 15, 5)


def test_ids_are_content_hashes_and_names_get_new_versions(services):
    first = services.datasets.create_from_rows(name="same", kind="sft", rows=sft_rows(6))
    reordered = list(reversed(sft_rows(6)))
    second = services.datasets.create_from_rows(name="same", kind="sft", rows=reordered)
    assert (first.version, second.version) == (1, 2) and first.id != second.id
    ids = lambda d: {r["id"] for r in d.train + d.validation}  # noqa: E731
    assert ids(first) == ids(second)
    # the first version is untouched by the second
    assert services.datasets.get(first.id) == first
    with_meta = sft_rows(1)[0] | {"meta": {"label": "x"}}
    third = services.datasets.create_from_rows(
        name="meta", kind="sft", rows=[with_meta, sft_rows(1)[0]], validation_fraction=0
    )
    assert len(third.train) == 1  # same content, same id: stored once
    assert third.lineage["duplicates_dropped"] == 1


def test_split_is_reproducible_whatever_the_input_order_and_seed_matters(services):
    rows = sft_rows(40)
    a = services.datasets.create_from_rows(name="a", kind="sft", rows=rows, seed=7)
    b = services.datasets.create_from_rows(name="b", kind="sft", rows=rows[::-1], seed=7)
    c = services.datasets.create_from_rows(name="c", kind="sft", rows=rows, seed=8)
    val = lambda d: [r["id"] for r in d.validation]  # noqa: E731
    assert val(a) == val(b) and len(val(a)) == 4
    assert {r["id"] for r in a.train} == {r["id"] for r in b.train}
    assert set(val(a)) != set(val(c))
    assert a.lineage["seed"] == 7 and a.lineage["validation_fraction"] == 0.1


def test_rows_sharing_a_prompt_stay_on_one_side_of_the_split(services):
    rows = [
        {"prompt": f"prompt {i // 3}", "chosen": f"good {i}", "rejected": f"bad {i}"}
        for i in range(30)
    ]
    dataset = services.datasets.create_from_rows(
        name="pairs", kind="preference", rows=rows, validation_fraction=0.2, seed=3
    )
    train_prompts = {r["prompt"] for r in dataset.train}
    validation_prompts = {r["prompt"] for r in dataset.validation}
    assert validation_prompts and not train_prompts & validation_prompts
    assert len(dataset.validation) == 6


def test_bad_rows_are_refused_with_the_row_number(services):
    rows = sft_rows(2) + [{"messages": [{"role": "user", "content": "only a question"}]}]
    with pytest.raises(InvalidInput, match="row 3"):
        services.datasets.create_from_rows(name="bad", kind="sft", rows=rows)
    with pytest.raises(InvalidInput, match="kind"):
        services.datasets.create_from_rows(name="bad", kind="poetry", rows=sft_rows(2))
    with pytest.raises(InvalidInput, match="negatives"):
        services.datasets.create_from_rows(
            name="bad", kind="embedding", rows=[{"query": "q", "positive": "p", "negatives": "n"}]
        )
    with pytest.raises(InvalidInput, match="name"):
        services.datasets.create_from_rows(name=" ", kind="text", rows=[{"text": "t"}])
    with pytest.raises(NotFound):
        services.datasets.get("no-such-dataset")
    assert services.datasets.list() == []


@pytest.fixture
def feedback(services):
    """Rated turns covering corrections, high and low ratings, and an excluded turn."""
    system = [{"role": "system", "content": "Be brief."}]
    ids = {
        "good": add_turn(
            services,
            "Capital of France?",
            "Paris.",
            context=[*system, {"role": "user", "content": "Capital of France?"}],
        ),
        "fixed": add_turn(services, "Boiling point of water?", "50 degrees.", minutes=1),
        "meh": add_turn(services, "Tell a joke", "No.", minutes=2),
        "thumb": add_turn(services, "Say hi", "Hi there!", minutes=3),
        "hidden": add_turn(services, "Secret", "Do not train on me.", minutes=4),
        "alt": add_turn(services, "Tell a joke", "Why did the chicken cross the road?", minutes=5),
    }
    rate(services, ids["good"], "ann", rating=5)
    rate(services, ids["good"], "bob", rating=4)
    rate(services, ids["fixed"], "ann", rating=1, correction="100 degrees Celsius at sea level.")
    rate(services, ids["meh"], "ann", rating=2)
    rate(services, ids["thumb"], "bob", thumb="up")
    rate(services, ids["hidden"], "ann", rating=5)
    rate(services, ids["alt"], "ann", rating=5)
    services.feedback.bulk(BulkAction(action="exclude"), TurnFilter(text="Secret"))
    return ids


def test_sft_from_feedback_uses_corrections_and_high_ratings_with_lineage(services, feedback):
    dataset = services.datasets.build(
        BuildSpec(name="support", kind="sft", seed=5, validation_fraction=0)
    )
    by_turn = {r["meta"]["interaction_id"]: r for r in dataset.train}
    assert set(by_turn) == {feedback[k] for k in ("good", "fixed", "thumb", "alt")}
    assert by_turn[feedback["fixed"]]["messages"][-1]["content"].startswith("100 degrees")
    assert by_turn[feedback["fixed"]]["meta"]["label"] == "correction"
    good = by_turn[feedback["good"]]["messages"]
    assert [m["role"] for m in good] == ["system", "user", "assistant"]
    lineage = dataset.lineage
    assert lineage["source"] == "feedback" and lineage["seed"] == 5
    assert set(lineage["turns"]) == set(by_turn)
    assert lineage["excluded_turns"] == [feedback["hidden"]]
    assert [feedback["good"], "bob"] in [r[:2] for r in lineage["ratings"]]
    assert {r[0] for r in lineage["ratings"]} == set(by_turn)  # only the turns used
    assert dataset.stats["labels"]["train"] == {"rated": 3, "correction": 1}
    narrowed = services.datasets.build(
        BuildSpec(name="support", kind="sft", selection=TurnFilter(rater="bob"))
    )
    assert narrowed.version == 2 and narrowed.lineage["filter"] == {"rater": "bob"}
    assert len(narrowed.train) + len(narrowed.validation) == 2


def test_preference_pairs_from_corrections_and_rating_gaps(services, feedback):
    dataset = services.datasets.build(
        BuildSpec(name="prefs", kind="preference", validation_fraction=0)
    )
    pairs = {(r["prompt"], r["chosen"], r["rejected"]): r["meta"]["label"] for r in dataset.train}
    assert pairs == {
        (
            "Boiling point of water?",
            "100 degrees Celsius at sea level.",
            "50 degrees.",
        ): "correction",
        ("Tell a joke", "Why did the chicken cross the road?", "No."): "rating_gap",
    }
    used = {feedback[k] for k in ("fixed", "meh", "alt")}
    assert set(dataset.lineage["turns"]) == used
    with pytest.raises(InvalidInput, match="no preference examples"):
        services.datasets.build(
            BuildSpec(name="none", kind="preference", selection=TurnFilter(rater="bob"))
        )


@pytest.fixture
def manual(services):
    results = services.documents.ingest(
        [IncomingFile("manual.txt", io.BytesIO(MANUAL.encode()))],
        spec=ChunkSpec(size=24, overlap=0),
    )
    assert results[0].ok, results[0].reason
    return results[0].document_id


def test_text_dataset_from_document_chunks_with_synthetic_qa(services, manual):
    chunks = services.documents.store.chunks_of(manual)
    assert len(chunks) >= 4
    dataset = services.datasets.build(
        BuildSpec(name="docs", kind="text", synthetic_qa=2, validation_fraction=0.2)
    )
    rows = dataset.train + dataset.validation
    plain = [r for r in rows if not r["meta"].get("synthetic")]
    synthetic = [r for r in rows if r["meta"].get("synthetic")]
    assert {r["text"] for r in plain} == {c["text"] for c in chunks}
    assert 1 <= len(synthetic) <= 2
    for row in synthetic:
        assert row["meta"]["label"] == "synthetic_qa" and row["text"].startswith("Question:")
        assert row["meta"]["chunk_id"] in {c["id"] for c in chunks}
    assert dataset.lineage["documents"] == [manual]
    assert set(dataset.lineage["chunks"]) == {c["id"] for c in chunks}
    assert dataset.stats["marked"]["train"]["synthetic"] + dataset.stats["marked"]["validation"][
        "synthetic"
    ] == len(synthetic)
    with pytest.raises(NotFound):
        services.datasets.build(BuildSpec(name="x", kind="text", document_ids=("nope",)))


def test_embedding_pairs_from_grounded_feedback_with_hard_negatives(services, manual):
    chunks = services.documents.store.chunks_of(manual)
    reset = next(c for c in chunks if "reset" in c["text"])
    warranty = next(c for c in chunks if "warranty" in c["text"])
    question = "How do I reset the controller?"
    helpful = add_turn(services, question, "Hold the blue button.", chunk_ids=[reset["id"]])
    unhelpful = add_turn(services, question, "Buy a new pump.", chunk_ids=[warranty["id"]])
    rate(services, helpful, "ann", rating=5)
    rate(services, unhelpful, "ann", thumb="down")
    dataset = services.datasets.build(
        BuildSpec(name="emb", kind="embedding", hard_negatives=2, validation_fraction=0)
    )
    (row,) = dataset.train
    assert row["query"] == question and row["positive"] == reset["text"]
    assert row["negatives"][0] == warranty["text"]  # from the unhelpful answer
    assert reset["text"] not in row["negatives"]
    hard = row["meta"]["hard_negative_ids"]
    assert len(hard) == 2 and reset["id"] not in hard
    assert set(dataset.lineage["chunks"]) >= {reset["id"], warranty["id"], *hard}


def test_augmented_rows_are_marked_and_only_in_train(services):
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Please help me find the important file {i}"},
                {"role": "assistant", "content": f"It is in folder {i}."},
            ]
        }
        for i in range(10)
    ]
    dataset = services.datasets.create_from_rows(
        name="aug",
        kind="sft",
        rows=rows,
        seed=2,
        validation_fraction=0.2,
        augmentation=Augmentation(perturb=1, synonym=1, paraphrase=1, rate=0.5),
    )
    assert not any(r["meta"].get("augmented") for r in dataset.validation)
    originals = {r["id"]: r for r in dataset.train if not r["meta"].get("augmented")}
    augmented = [r for r in dataset.train if r["meta"].get("augmented")]
    assert len(originals) == 8
    methods = {r["meta"]["augmented"] for r in augmented}
    assert {"perturb", "synonym"} <= methods
    for row in augmented:
        source = originals[row["meta"]["augmented_from"]]
        assert row["messages"][-1] == source["messages"][-1]  # the target is never altered
        assert row["messages"][0]["content"] != source["messages"][0]["content"]
    assert dataset.stats["marked"]["train"]["augmented"] == len(augmented)
    assert dataset.lineage["augmentation"]["synonym"] == 1


def test_augmentation_functions_are_seeded():
    import random

    text = "Please help me choose a quick and simple method to find the error"
    assert perturb(text, random.Random(1), 0.5) == perturb(text, random.Random(1), 0.5)
    swapped = replace_synonyms(text, random.Random(1), 1.0)
    assert swapped != text and len(swapped.split()) == len(text.split())
    assert replace_synonyms("Zebra xylophone", random.Random(1), 1.0) == "Zebra xylophone"


def test_statistics_count_tokens_and_label_balance(services):
    rows = [
        {"text": "word " * n, "meta": {"label": "long" if n > 5 else "short"}} for n in range(1, 11)
    ]
    dataset = services.datasets.create_from_rows(
        name="stats", kind="text", rows=rows, validation_fraction=0.2
    )
    stats = dataset.stats
    assert stats["counts"] == {"train": 8, "validation": 2, "total": 10}
    lengths = stats["token_lengths"]["train"]
    assert 0 < lengths["min"] <= lengths["p50"] <= lengths["max"]
    labels = stats["labels"]
    assert sum(labels["train"].values()) == 8
    assert labels["train"].get("long", 0) + labels["validation"].get("long", 0) == 5
    assert sum(stats["token_histogram"]["counts"]) == 10


def test_import_openai_alpaca_and_csv(services):
    chat = "\n".join(json.dumps(r) for r in sft_rows(5)).encode()
    openai = services.datasets.import_file(chat, "chats.jsonl", validation_fraction=0.2)
    assert (openai.kind, openai.name, len(openai.train) + len(openai.validation)) == (
        "sft",
        "chats",
        5,
    )
    alpaca = json.dumps(
        [
            {"instruction": "Translate", "input": "bonjour", "output": "hello"},
            {"instruction": "Add 2 and 2", "input": "", "output": "4"},
        ]
    ).encode()
    imported = services.datasets.import_file(alpaca, "alpaca.json", validation_fraction=0)
    first = next(r for r in imported.train if r["messages"][-1]["content"] == "hello")
    assert first["messages"][0] == {"role": "user", "content": "Translate\n\nbonjour"}
    assert first["meta"]["source"] == "alpaca.json"
    frame = pd.DataFrame({"prompt": ["Hi", "Bye"], "response": ["Hello!", "See you."]})
    from_csv = services.datasets.import_file(
        frame.to_csv(index=False).encode(), "pairs.csv", name="csv set", validation_fraction=0
    )
    assert from_csv.name == "csv set" and len(from_csv.train) == 2
    assert from_csv.lineage == {**from_csv.lineage, "source": "import", "file": "pairs.csv"}


@pytest.mark.parametrize(
    ("data", "name", "message"),
    [
        (b"", "empty.jsonl", "empty"),
        (b'{"messages": []}\n{not json', "broken.jsonl", "line 2"),
        (b'{"colour": "red"}', "odd.jsonl", "unrecognised"),
        (b"a,b\n1,2\n", "cols.csv", "unrecognised"),
        (b'{"text": "a"}\n{"prompt": "p", "response": "r"}', "mixed.jsonl", "row 2"),
        (b"hello", "notes.docx", "cannot import"),
        (b'{"a": 1}', "obj.json", "list"),
    ],
)
def test_bad_imports_fail_with_a_clear_reason(services, data, name, message):
    with pytest.raises(InvalidInput, match=message):
        services.datasets.import_file(data, name)
    assert services.datasets.list() == []


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_export_then_import_gives_the_same_examples(services, fmt):
    rows = [
        {"query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}", "shared"]} for i in range(6)
    ]
    dataset = services.datasets.create_from_rows(name="emb", kind="embedding", rows=rows)
    path = services.datasets.export(dataset.id, fmt)
    assert path.suffix == f".{fmt}" and path.stat().st_size > 0
    back = services.datasets.import_file(path.read_bytes(), path.name, validation_fraction=0)
    assert back.kind == "embedding"
    assert {r["id"] for r in back.train} == {r["id"] for r in dataset.train + dataset.validation}
    with pytest.raises(InvalidInput, match="format"):
        services.datasets.export(dataset.id, "xlsx")
