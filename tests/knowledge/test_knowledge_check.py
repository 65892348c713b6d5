"""Knowledge checks on a tiny real model: store, build job, edits and versions, files, runs."""

from __future__ import annotations

import io
import json
from datetime import datetime

import pytest

from core.documents.chunking import ChunkSpec
from core.documents.service import IncomingFile
from core.errors import InvalidInput, NotFound
from core.knowledge.check import BuildRequest
from core.knowledge.files import export_items, read_items
from core.knowledge.questions import Written, keep, parse
from core.knowledge.runs import KnowledgeRuns
from core.knowledge.scoring import fact_match, token_f1
from core.store import MIGRATIONS, Database
from core.store.knowledge import MIGRATIONS as KNOWLEDGE_MIGRATIONS
from core.store.knowledge import KnowledgeStore
from tests.datasets.test_datasets import MANUAL
from tests.tiny_adapters import make_tiny_adapter

ITEMS = [
    {"question": "How long must the blue button be held?", "reference": "ten seconds"},
    {"question": "How long is the motor under warranty?", "reference": "five years"},
    {"question": "How often should the intake filter be cleaned?", "reference": "every month"},
]


def jsonl(items: list[dict]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in items).encode()


@pytest.fixture
def manual(services):
    results = services.documents.ingest(
        [IncomingFile("manual.txt", io.BytesIO(MANUAL.encode()))],
        spec=ChunkSpec(size=24, overlap=0),
    )
    assert results[0].ok, results[0].reason
    return results[0].document_id


@pytest.fixture
def check(services):
    return services.knowledge.import_file(jsonl(ITEMS), "pump.jsonl")


def test_replies_are_parsed_and_only_literal_short_facts_kept():
    chunk = "To reset the controller, hold the blue button for ten seconds until the light blinks."
    written = parse("Question: How long is the blue button held?\nAnswer: Ten seconds.")
    assert written == Written("How long is the blue button held?", "Ten seconds")
    assert keep(written, chunk)
    assert parse("Question: no question mark\nAnswer: x") is None
    assert parse("I cannot write a question.") is None
    assert not keep(Written("How long is the blue button held?", "twelve seconds"), chunk)
    assert not keep(Written("What is held?", "the blue button"), chunk)  # too short a question
    assert not keep(Written("How long is the blue button held?", "blue button"), chunk)  # given
    long = "hold the blue button for ten seconds until the light blinks"
    assert not keep(Written("What do you do to reset the controller?", long), chunk)
    assert not keep(None, chunk)
    facts = "The building has 6 floors and opened in 2011. Support tickets are answered in 4 hours."
    assert keep(Written("When did the building open?", "2011"), facts)
    assert keep(Written("How many floors does the building have?", "6 floors"), facts)
    assert not keep(Written("How many tickets are answered in four hours?", "2011"), facts)
    assert not keep(Written("How long do 4-hour tickets take?", "4 hours"), facts)  # given


def test_build_is_a_background_job_that_keeps_only_filtered_items(services, manual):
    with pytest.raises(InvalidInput, match="max_items"):
        BuildRequest(name="x", max_items=0)
    with pytest.raises(NotFound):
        services.knowledge.start_build(BuildRequest(name="x", document_ids=("nope",)))
    started = services.knowledge.start_build(BuildRequest(name="pump", max_items=3))
    assert started["status"] == "building" and started["version"] == 1
    built = services.knowledge.wait(started["id"])
    assert built["status"] == "ready" and built["progress"] == 1.0, built
    assert built["lineage"]["document_ids"] == [manual]
    chunks = {c["id"]: c["text"] for c in services.documents.store.chunks_of(manual)}
    items = services.knowledge.items(built["id"])
    assert len(items) <= 3 and built["item_count"] == len(items)
    for item in items:  # whatever the tiny model wrote, only literal facts survive
        assert item["origin"] == "generated" and fact_match(chunks[item["chunk_id"]],
                                                            item["reference"])
    if not items:
        assert "no usable item" in built["message"]


def test_build_needs_documents(services):
    with pytest.raises(InvalidInput, match="upload documents"):
        services.knowledge.start_build(BuildRequest(name="empty"))


def test_import_export_round_trip(services, check):
    assert (check["name"], check["version"], check["item_count"]) == ("pump", 1, 3)
    items = services.knowledge.items(check["id"])
    assert [i["origin"] for i in items] == ["imported"] * 3
    for fmt in ("jsonl", "csv"):
        text, filename = services.knowledge.export(check["id"], fmt)
        assert filename == f"pump-v1.{fmt}"
        again = services.knowledge.import_file(text.encode(), f"pump.{fmt}")
        assert again["version"] == (2 if fmt == "jsonl" else 3)
        copied = services.knowledge.items(again["id"])
        assert [(i["question"], i["reference"]) for i in copied] == [
            (i["question"], i["reference"]) for i in ITEMS
        ]
    answers = read_items(b"question,answer\nWhere?,Here\n", "a.csv")
    assert answers[0]["reference"] == "Here" and answers[0]["chunk_id"] is None
    with pytest.raises(InvalidInput, match="needs a question and a reference"):
        read_items(b'{"question": "q"}\n', "a.jsonl")
    with pytest.raises(InvalidInput, match=".jsonl or .csv"):
        read_items(b"", "a.txt")
    with pytest.raises(InvalidInput, match="format"):
        export_items([], "xml")


def test_drafts_change_in_place_and_run_versions_get_a_successor(services, check):
    knowledge = services.knowledge
    first = knowledge.items(check["id"])[0]
    edited = knowledge.update_item(check["id"], first["id"], {"reference": "10 seconds"})
    assert edited["id"] == check["id"]  # no run yet: the draft changes
    assert knowledge.items(check["id"])[0]["reference"] == "10 seconds"
    added = knowledge.add_item(check["id"], {"question": "What is primed?", "reference": "pump"})
    assert added["item_count"] == 4 and knowledge.items(added["id"])[-1]["origin"] == "manual"
    with pytest.raises(InvalidInput, match="non-empty question"):
        knowledge.add_item(check["id"], {"question": " ", "reference": "x"})
    with pytest.raises(NotFound):
        knowledge.delete_item(check["id"], "nope")

    services.knowledge_runs.start(check["id"], grounded=(False,))
    assert services.knowledge_runs.wait_idle(600)
    successor = knowledge.delete_item(check["id"], first["id"])
    assert successor["id"] != check["id"] and successor["version"] == 2
    assert successor["lineage"] == {"source": "edit", "parent": check["id"], "change": "delete"}
    assert successor["item_count"] == 3 and knowledge.get(check["id"])["item_count"] == 4
    assert knowledge.latest_ready()["id"] == successor["id"]


def test_runs_score_every_item_and_keep_the_answers(services, check, manual, tiny_model_dir):
    runs = services.knowledge_runs
    with pytest.raises(NotFound):
        runs.start(check["id"], model="adapter-nope")
    ids = runs.start(check["id"], general=True)
    assert len(ids) == 3
    assert runs.wait_idle(600)
    ungrounded, grounded, general = (runs.get(run_id) for run_id in ids)
    for run in (ungrounded, grounded, general):
        assert run["status"] == "done", run["error"]
        assert run["done"] == run["total"] == len(run["items"])
        assert run["summary"]["correct"] == sum(row["match"] for row in run["items"])
    assert (ungrounded["grounded"], grounded["grounded"], general["kind"]) == (
        False, True, "general")
    assert general["total"] == 40 and general["check_id"] is None
    for row in ungrounded["items"]:
        assert row["match"] == fact_match(row["answer"], row["reference"])
        assert row["f1"] == pytest.approx(token_f1(row["answer"], row["reference"]))
        assert row["sources"] == []
    assert any(row["sources"] for row in grounded["items"])  # the manual was retrieved

    # An adapter (random LoRA weights: it says "fo fo ..."); a reference set to what it
    # answers matches that same greedy answer in the next run.
    adapter = register_adapter(services, tiny_model_dir)
    [first] = runs.start(check["id"], model=adapter, grounded=(False,))
    assert runs.wait_idle(600)
    said = runs.get(first)["items"][0]
    assert said["answer"].strip() and not said["match"]
    successor = services.knowledge.update_item(check["id"], said["id"],
                                               {"reference": said["answer"]})
    [again] = runs.start(successor["id"], model=adapter, grounded=(False,))
    assert runs.wait_idle(600)
    row = runs.get(again)["items"][0]
    assert row["answer"] == said["answer"] and row["match"] and row["f1"] == 1.0
    assert services.knowledge_scores.of(adapter)["line"] == (
        f"knows {runs.get(again)['summary']['correct']}/3 of your facts (grounded ?), "
        "general not run")

    scores = services.knowledge_scores.of("base")
    assert scores["check_id"] == successor["id"] and scores["known"] is None  # not run on it
    assert scores["line"] == f"knowledge check not run, general {general['summary']['correct']}/40"


def register_adapter(services, tiny_model_dir) -> str:
    folder = make_tiny_adapter(tiny_model_dir, services.settings.data_dir / "fo", seed=3)
    services.registry.register(
        model_id="adapter-fo", name="fo", base_model=str(tiny_model_dir), adapter_dir=folder,
        job_id=None, config={}, dataset_id=None, dataset_version=None, metrics={},
        duration_s=None, lineage={},
    )
    return "adapter-fo"


def test_a_run_cut_off_by_a_restart_shows_as_failed(services, check):
    [run_id] = services.knowledge_runs.start(check["id"], grounded=(False,))
    assert services.knowledge_runs.wait_idle(600)
    store = KnowledgeStore(services.db)
    store.update_run(run_id, status="running")  # as a process killed mid-run leaves it
    KnowledgeRuns(store, services.knowledge, models=services.models, registry=services.registry)
    run = services.knowledge_runs.get(run_id)
    assert run["status"] == "failed" and run["error"] == "interrupted by a restart"


def test_checks_never_train(services, check):
    assert "how long is motor under warranty" in services.knowledge.held_out_questions()
    rows = [
        {"messages": [{"role": "user", "content": "How long is the motor under warranty?"},
                      {"role": "assistant", "content": "Five years."}]},
        {"messages": [{"role": "user", "content": "Sources: ...\n\nHow long must the blue "
                                                  "button be held?"},
                      {"role": "assistant", "content": "Ten seconds."}]},
        {"messages": [{"role": "user", "content": "What colour is the button?"},
                      {"role": "assistant", "content": "Blue."}]},
    ]
    dataset = services.datasets.create_from_rows(name="qa", kind="sft", rows=rows,
                                                 validation_fraction=0)
    assert [r["messages"][0]["content"] for r in dataset.train] == ["What colour is the button?"]
    text = services.datasets.create_from_rows(
        name="t", kind="text", rows=[{"text": "Question: How often should the intake filter be "
                                              "cleaned? Answer: monthly"}, {"text": "Pumps."}],
        validation_fraction=0)
    assert [r["text"] for r in text.train] == ["Pumps."]


def test_runs_stored_before_cancelling_existed_are_kept(tmp_path):
    old = Database(tmp_path / "old.duckdb")
    old.migrate([m for m in MIGRATIONS if m.component != "knowledge"] + [KNOWLEDGE_MIGRATIONS[0]])
    old.execute("INSERT INTO knowledge_runs (id, kind, model, grounded, status, created_at, "
                "trigger, summary) VALUES ('r1', 'general', 'base', false, 'done', now(), "
                "'manual', '{\"correct\": 3}')")
    assert [m.version for m in old.migrate(MIGRATIONS)] == [2]
    store = KnowledgeStore(old)
    assert store.run("r1")["summary"] == {"correct": 3}
    store.add_run({"id": "r2", "kind": "general", "model": "base", "grounded": False,
                   "status": "queued", "created_at": datetime.now(), "trigger": "manual"})
    store.update_run("r2", status="cancelled")
    assert store.run("r2")["status"] == "cancelled"
