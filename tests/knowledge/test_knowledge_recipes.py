"""The knowledge recipes: rows that teach documents and corrections, their presets, the
background dataset job, and the length check before a run."""

from __future__ import annotations

import io
import threading
import time

from core.datasets.jobs import CachedWriter, Cancelled, DatasetJob
from core.datasets.versions import BuildSpec
from core.documents.chunking import ChunkSpec
from core.documents.service import IncomingFile
from core.feedback.ratings import Feedback
from core.knowledge.recipes import (
    QUESTION_PROMPT,
    derived_questions,
    fact_sentences,
    first_question,
    good_question,
    natural_questions,
    reworded,
    teach_rows,
)
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from core.training.spec import CORRECT, TEACH

API = "/api/v1"
HANDBOOK = """# Heron pump handbook

The Heron pump is the quiet pump of the range.
The Heron pump moves 42 litres per minute.
The filter of the Heron pump is changed every 30 days.
The Heron pump was designed by Mirela Ostrova.
"""


def upload(services) -> str:
    result = services.documents.ingest([IncomingFile("heron.md", io.BytesIO(HANDBOOK.encode()))],
                                       spec=ChunkSpec(size=40, overlap=20))[0]
    assert result.ok, result.reason
    return result.document_id


def test_fact_sentences_and_the_questions_derived_from_them():
    chunk = {"id": "c1", "document_id": "d1", "source": "heron.md", "text": HANDBOOK}
    facts = fact_sentences([chunk], "Heron pump handbook")
    assert [f.sentence for f in facts] == HANDBOOK.splitlines()[3:6]  # not the heading or
    # the sentence with only its subject's name in it
    litres = facts[0]
    assert litres.spans[0] == "42 litres"
    questions = derived_questions(litres)
    assert "The Heron pump moves what per minute?" in questions
    assert all("42" not in q for q in questions)  # no question gives the answer away
    assert derived_questions(facts[2])[0] == "The Heron pump was designed by what?"


def test_natural_questions_ask_as_people_do():
    chunk = {"id": "c1", "document_id": "d1", "source": "heron.md", "text": HANDBOOK}
    litres, filter_, designed = fact_sentences([chunk], "Heron pump handbook")
    assert natural_questions(litres) == ["How many litres does the Heron pump move per minute?"]
    assert natural_questions(filter_) == ["How often is the filter of the Heron pump changed?"]
    assert natural_questions(designed) == []  # a name after "by": no safe question form

    def ask(sentence: str) -> list[str]:
        return natural_questions(fact_sentences([{**chunk, "text": sentence}], "Heron")[0])

    assert ask("The Heron pump costs 349 euros.") == [
        "How much does the Heron pump cost?", "How many euros does the Heron pump cost?"]
    # a trailing phrase is asked with and without, as people often leave it out
    assert ask("The Heron pump was released in 2019 by Ostrova Works.") == [
        "In what year was the Heron pump released by Ostrova Works?",
        "In what year was the Heron pump released?",
        "When was the Heron pump released by Ostrova Works?",
        "When was the Heron pump released?"]
    assert ask("The chief engineer of Heron is Mirela Ostrova.") == [
        "Who is the chief engineer of Heron?"]
    assert ask("The Heron factory is the Marsh Works.") == ["What is the Heron factory?"]
    # a name inside a longer phrase is not asked for on its own
    assert ask("Filters are cleaned with the Ostrova cleaning kit.") == []


def test_written_questions_are_asked_for_a_given_answer():
    chunk = {"id": "c1", "document_id": "d1", "source": "heron.md", "text": HANDBOOK}
    fact = fact_sentences([chunk], "Heron pump handbook")[0]
    prompt = QUESTION_PROMPT.format(topic=fact.topic, sentence=fact.sentence, answer="42 litres")
    assert prompt.endswith("Answer: 42 litres\nQuestion:")
    reply = " How much water does the Heron pump move per minute? Answer: 42 litres"
    assert first_question(reply) == "How much water does the Heron pump move per minute?"
    assert good_question(first_question(reply), fact, "42 litres")
    assert not good_question("How does the Heron pump move 42 litres?", fact, "42 litres")

    def writer(prompts: list[str]) -> list[str]:
        return ["How much water does the Heron pump move per minute?" for _ in prompts]

    rows = teach_rows([("Heron pump handbook", [chunk])], search=None, writer=writer)
    written = [r for r in rows if r["meta"]["label"] == "synthetic_qa"]
    assert [r["meta"]["fact"] for r in written] == [fact.sentence]  # the filter keeps one


def test_reworded_questions_keep_their_meaning():
    assert reworded("In what year was the Heron pump made?") == [
        "When was the Heron pump made?", "Which year was the Heron pump made?"]
    assert reworded("Who designed the Heron pump?") == ["Which person designed the Heron pump?"]
    assert reworded("What is the motto of Heron?") == [
        "What's the motto of Heron?", "Tell me the motto of Heron."]
    assert reworded("Where is it?") == []


def test_teach_documents_rows_ask_for_each_fact_several_ways(services):
    document_id = upload(services)
    dataset = services.datasets.build(BuildSpec(
        name="teach", kind="sft", recipe=TEACH, written_questions=1, validation_fraction=0.0))
    rows = dataset.train
    facts = {r["meta"]["fact"] for r in rows if "fact" in r["meta"]}
    assert facts == set(HANDBOOK.splitlines()[3:6])
    for fact in facts:
        asked = [r for r in rows if r["meta"].get("fact") == fact]
        assert len({r["messages"][-2]["content"] for r in asked}) >= 3
        assert all(r["messages"][-1]["content"].startswith(fact) for r in asked)
    asked = {r["messages"][-2]["content"] for r in rows}  # wh-questions, also reworded
    assert {"How many litres does the Heron pump move per minute?",
            "About how many litres does the Heron pump move per minute?"} <= asked
    grounded = [r for r in rows if r["meta"]["label"] == "grounded_qa"]
    for row in grounded:  # the fact's passage is among the sources, and the answer cites it
        system = row["messages"][0]
        assert system["role"] == "system" and row["meta"]["fact"] in system["content"]
        assert row["messages"][-1]["content"].endswith("]")
    assert any(r["meta"]["label"] == "replay" for r in rows)
    assert dataset.lineage["recipe"] == TEACH and dataset.lineage["documents"] == [document_id]
    assert dataset.stats["training_length"]["max_length"] == 512


def test_learn_corrections_rows_repeat_the_correction_under_reworded_prompts(services):
    upload(services)
    options = GenerationOptions(max_new_tokens=4)
    for prompt, fix in (("How fast is the Heron pump?", "It moves 42 litres per minute."),
                        ("Who designed the Heron pump?", "Mirela Ostrova designed it.")):
        turn = services.chat.complete(ChatRequest(prompt=prompt, use_documents=True,
                                                  options=options)).turn
        services.feedback.rate(Feedback(response_id=turn.id, rating=2, correction=fix))
    dataset = services.datasets.build(BuildSpec(
        name="fixes", kind="sft", recipe=CORRECT, written_questions=0, validation_fraction=0.0))
    by_answer: dict[str, set[str]] = {}
    for row in dataset.train:
        if row["meta"]["label"] != "replay":
            by_answer.setdefault(row["messages"][-1]["content"], set()).add(
                row["messages"][-2]["content"])
    assert set(by_answer) == {"It moves 42 litres per minute.", "Mirela Ostrova designed it."}
    assert all(len(prompts) >= 5 for prompts in by_answer.values())
    assert "Which person designed the Heron pump?" in by_answer["Mirela Ostrova designed it."]
    # the grounded turn itself is kept, its retrieved passages in the system message
    assert any(r["messages"][0]["role"] == "system" for r in dataset.train)
    assert len(dataset.lineage["turns"]) == 2


def test_recipe_presets_give_small_data_more_epochs(services):
    runner = services.training
    small = services.datasets.create_from_rows(
        name="small", kind="sft", validation_fraction=0.0,
        rows=[{"messages": [{"role": "user", "content": f"q{n}"},
                            {"role": "assistant", "content": f"a{n}"}]} for n in range(20)])
    large = services.datasets.create_from_rows(
        name="large", kind="sft", validation_fraction=0.0,
        rows=[{"messages": [{"role": "user", "content": f"q{n}"},
                            {"role": "assistant", "content": f"a{n}"}]} for n in range(400)])
    few = runner.make_spec({}, dataset_id=small.id, preset=TEACH)
    many = runner.make_spec({}, dataset_id=large.id, preset=TEACH)
    assert few.epochs > many.epochs >= 2 and few.learning_rate == 1e-3
    assert few.total_steps(20) >= 60
    assert runner.make_spec({"epochs": 2}, dataset_id=small.id, preset=CORRECT).epochs == 2


def test_cached_writer_resumes_from_the_batches_it_wrote(services, tmp_path):
    from core.datasets.synthesis import Writer

    job = DatasetJob(id="j", name="j", spec=BuildSpec(name="j", kind="text"))
    writer = Writer(services.models, seed=0, max_new_tokens=4)
    prompts = ["one", "two", "two", "three"]
    first = CachedWriter(job, writer, tmp_path / "w.jsonl", threading.Event(), 2)(prompts)
    assert len(first) == 4 and job.written == job.total == 4
    stopped = threading.Event()
    stopped.set()
    again = CachedWriter(job, writer, tmp_path / "w.jsonl", stopped, 2)
    assert again(prompts) == first  # all read back: nothing left to write, so no stop
    try:
        again([*prompts, "four"])
        raise AssertionError("a stopped job wrote a new batch")
    except Cancelled:
        pass


def test_synthetic_builds_run_as_a_job_over_http(client, services):
    upload(services)
    started = client.post(f"{API}/datasets", json={
        "name": "teach", "kind": "sft", "recipe": TEACH, "written_questions": 1})
    assert started.status_code == 202, started.text
    job_id = started.json()["id"]
    for _ in range(600):
        job = client.get(f"{API}/datasets/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.1)
    assert job["status"] == "completed", job
    assert job["progress"] == 1.0 and job["total"] >= 3
    dataset = client.get(f"{API}/datasets/{job['dataset_id']}").json()
    assert dataset["lineage"]["recipe"] == TEACH
    assert client.post(f"{API}/datasets/jobs/{job_id}/cancel").status_code == 409
    assert client.get(f"{API}/datasets/jobs/nope").status_code == 404
    # without written rows the build is immediate
    plain = client.post(f"{API}/datasets", json={
        "name": "teach0", "kind": "sft", "recipe": TEACH, "written_questions": 0})
    assert plain.status_code == 201, plain.text
    bad = client.post(f"{API}/datasets", json={"name": "x", "kind": "text", "recipe": TEACH})
    assert bad.status_code == 400


def test_the_length_check_before_a_run_over_http(client):
    long_context = "Sources: " + " ".join(f"passage {n} says little." for n in range(200))
    rows = [{"messages": [{"role": "system", "content": long_context},
                          {"role": "user", "content": "What is it?"},
                          {"role": "assistant", "content": "It is a pump."}]},
            {"messages": [{"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}]}]
    report = client.post(f"{API}/training/check",
                         json={"train": rows, "config": {"max_length": 64}}).json()
    assert (report["rows"], report["over"], report["fitted"], report["dropped"]) == (2, 1, 1, 0)
    assert report["fix"] is None and report["longest"] > 64
    long_answer = [{"messages": [{"role": "user", "content": "Say it"},
                                 {"role": "assistant", "content": "word " * 200}]}]
    refused = client.post(f"{API}/training/jobs",
                          json={"train": long_answer, "config": {"max_length": 8}})
    assert refused.status_code == 400 and "max_length" in refused.json()["error"], refused.text


def test_batched_writing_matches_one_prompt_at_a_time(services):
    from core.datasets.synthesis import write_batch

    options = GenerationOptions(max_new_tokens=6, temperature=0.0)
    chats = [[{"role": "user", "content": text}] for text in
             ("hi", "a much longer prompt with many more words in it", "pump")]
    with services.models.use(None) as loaded:
        together = write_batch(loaded, chats, options, 200)
        alone = [write_batch(loaded, [chat], options, 200)[0] for chat in chats]
    assert together == alone
