"""Retriever fine-tuning end to end: a real worker process fine-tunes the bundled
all-MiniLM-L6-v2 on invented code words, then promote, rollback and a restart on a real
DuckDB file. One run is shared by the tests of this module (they run in file order)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

from core.documents.retrieval import bundled_model_dir
from core.documents.retrievers import BUNDLED, EMBEDDING_DEFAULTS
from core.errors import Conflict, InvalidInput, NotFound
from tests.conftest import LOCAL
from tests.training_helpers import wait_final, wait_for

# Words the base model has never seen, each standing for one passage: it ranks them poorly.
CODEWORDS = {
    "zorblat": "Photosynthesis lets plants turn sunlight, water and carbon dioxide into sugar.",
    "quindle": "The Roman aqueducts carried fresh water into cities along gentle slopes.",
    "vexmor": "A sourdough starter is a living culture of wild yeast and lactic bacteria.",
    "plimbus": "Jupiter is the largest planet in the solar system and has a great red storm.",
    "drazzle": "Chess openings such as the Sicilian Defence shape the middle game.",
    "fennok": "Glaciers carve U-shaped valleys as they slowly grind over rock.",
    "murtle": "The violin has four strings tuned in fifths and is played with a bow.",
    "snorvid": "Compound interest makes savings grow faster because interest earns interest.",
    "trellop": "Honeybees tell each other where flowers are with a waggle dance.",
    "wobrin": "Lighthouses warn ships of dangerous coasts with rotating beams of light.",
}
TRAIN = ("what is {}?", "explain {} to me", "{} facts")
HELD_OUT = ("tell me about {}", "I want to learn about {}")  # new phrasings, same code words
OPTIONS = {"learning_rate": 1e-4, "epochs": 2, "batch_size": 8, "warmup_ratio": 0.1,
           "eval_every": 4}


def rows(templates) -> list[dict]:
    words = list(CODEWORDS)
    out = []
    for i, word in enumerate(words):
        negatives = [CODEWORDS[words[(i + 1) % len(words)]], CODEWORDS[words[(i + 2) % len(words)]]]
        out += [{"query": t.format(word), "positive": CODEWORDS[word], "negatives": negatives}
                for t in templates]
    return out


def top_hits(services) -> int:
    """How many held-out queries find their passage first in the document store."""
    return sum(services.documents.search(row["query"], k=1)[0].text.strip() == row["positive"]
               for row in rows(HELD_OUT))


def stored_vectors(services) -> dict[str, np.ndarray]:
    ids, vectors = services.documents.store.load_vectors()
    return dict(zip(ids.tolist(), vectors, strict=True))


@pytest.fixture(scope="module")
def state(tmp_path_factory, tiny_model_dir):
    from core.documents.service import IncomingFile
    from core.services import build_services
    from core.settings import Settings

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REFINERY_TRAIN_THREADS", "1")  # the test machine's cores are shared
        settings = Settings(engine="transformers",
                            data_dir=tmp_path_factory.mktemp("retriever") / "data",
                            model=str(tiny_model_dir))
        services = build_services(settings)
        files = [IncomingFile(f"{word}.txt", io.BytesIO(text.encode()))
                 for word, text in CODEWORDS.items()]
        assert all(result.ok for result in services.documents.ingest(files))
        spec = services.retrievers.make_spec(OPTIONS)
        job = services.training.submit(spec, train=rows(TRAIN), validation=rows(HELD_OUT),
                                       kind="embedding", name="code words")
        current = {"services": services, "settings": settings,
                   "job": wait_final(services.training, job.id)}
        yield current
        current["services"].training.close(stop_workers=True)
        current["services"].close()


def test_bad_rows_and_options_are_refused_clearly(state):
    services = state["services"]
    make = services.retrievers.make_spec
    with pytest.raises(InvalidInput, match="row 0: a embedding row needs positive"):
        services.training.submit(make(), train=[{"query": "q", "negatives": []}],
                                 kind="embedding")
    with pytest.raises(InvalidInput, match="negatives must be a list"):
        services.training.submit(make(), train=[{"query": "q", "positive": "p",
                                                 "negatives": "n"}], kind="embedding")
    no_negatives = [{"query": "q", "positive": "p", "negatives": []}]
    with pytest.raises(InvalidInput, match="TripletLoss needs rows with negatives"):
        services.training.submit(make({"embedding_loss": "TripletLoss"}), train=no_negatives,
                                 kind="embedding")
    with pytest.raises(InvalidInput, match="embedding_loss must be one of"):
        make({"embedding_loss": "HingeLoss"})
    with pytest.raises(InvalidInput, match="early_stopping_patience"):
        make({"early_stopping_patience": 0})
    with pytest.raises(InvalidInput, match="starts from 'bundled' or a registered retriever"):
        services.training.submit(make({"base_model": "../../etc"}), train=no_negatives,
                                 kind="embedding")
    with pytest.raises(NotFound):
        services.retrievers.promote("retriever-nope")
    with pytest.raises(Conflict, match="nothing to roll back"):
        services.retrievers.rollback()


def test_fine_tune_raises_mrr_on_held_out_queries(state):
    services, job = state["services"], state["job"]
    assert job.status == "completed", job.error
    assert job.kind == "embedding" and job.model_id.startswith("retriever-")
    record = services.retrievers.get(job.model_id)
    before, after = record.evaluation["before"], record.evaluation["after"]
    assert before["queries"] == len(rows(HELD_OUT)) and before["corpus"] == len(CODEWORDS)
    assert after["mrr@10"] > before["mrr@10"]
    assert after["ndcg@10"] > before["ndcg@10"]
    assert after["recall@1"] > before["recall@1"]
    table = {row["metric"]: row for row in services.retrievers.evaluation_table(record.id)}
    assert table["mrr@10"]["change"] == pytest.approx(after["mrr@10"] - before["mrr@10"],
                                                      abs=1e-4)
    # The app's own evaluation of both models agrees with what the worker measured.
    again = services.retrievers.evaluate([BUNDLED, record.id], rows(HELD_OUT))
    assert again[BUNDLED]["mrr@10"] == pytest.approx(before["mrr@10"], abs=1e-3)
    assert again[record.id]["mrr@10"] == pytest.approx(after["mrr@10"], abs=1e-3)


def test_job_is_in_the_normal_job_list_with_a_loss_history(state):
    from fastapi.testclient import TestClient

    from app import create_app

    services, job = state["services"], state["job"]
    history = services.training.history(job.id)
    assert [step for step, _ in history["train"]] == list(range(1, job.total_steps + 1))
    assert history["validation"] and all(loss > 0 for _, loss in history["validation"])
    with TestClient(create_app(services), base_url=LOCAL) as client:
        jobs = client.get("/api/v1/training/jobs").json()["items"]
        assert [j["kind"] for j in jobs if j["id"] == job.id] == ["embedding"]
        listed = client.get("/api/v1/retrievers").json()
        assert listed["serving"] == BUNDLED
        assert {r["id"] for r in listed["items"]} == {job.model_id, BUNDLED}
        detail = client.get(f"/api/v1/retrievers/{job.model_id}").json()
        assert {row["metric"] for row in detail["table"]} >= {"precision@5", "recall@5",
                                                             "mrr@10", "ndcg@10"}
        bad = client.post("/api/v1/retrievers/jobs", json={"train": [{"query": "q"}]})
        assert bad.status_code == 400 and "needs positive" in bad.json()["error"]
        assert client.post("/api/v1/retrievers/nope/promote").status_code == 404
        extra = client.post("/api/v1/retrievers/jobs", json={"dataset": "x"})
        assert 400 <= extra.status_code < 500
        evaluated = client.post("/api/v1/retrievers/evaluate",
                                json={"retrievers": [BUNDLED], "rows": rows(HELD_OUT)})
        assert evaluated.json()["results"][BUNDLED]["queries"] == len(rows(HELD_OUT))
        both = client.post("/api/v1/retrievers/evaluate",
                           json={"retrievers": [BUNDLED], "rows": [], "dataset_id": "x"})
        assert both.status_code == 400 and "either" in both.json()["error"]
        broken = client.post("/api/v1/retrievers/evaluate",
                             json={"retrievers": [BUNDLED], "rows": [{"query": "q"}]})
        assert broken.status_code == 400 and "needs positive" in broken.json()["error"]
        # The UI's path: an embedding dataset version by id.
        made = client.post("/api/v1/datasets", json={"name": "code words", "kind": "embedding",
                                                     "rows": rows(TRAIN + HELD_OUT)})
        dataset_id = made.json()["id"]
        on_dataset = client.post("/api/v1/retrievers/evaluate",
                                 json={"retrievers": [BUNDLED], "dataset_id": dataset_id})
        assert on_dataset.json()["results"][BUNDLED]["queries"] == made.json()["validation_count"]
        text = client.post("/api/v1/datasets", json={"name": "t", "kind": "text",
                                                     "rows": [{"text": "some words"}]})
        wrong = client.post("/api/v1/retrievers/jobs", json={"dataset_id": text.json()["id"]})
        assert wrong.status_code == 400 and "not 'embedding'" in wrong.json()["error"]
        queued = client.post("/api/v1/retrievers/jobs", json={"dataset_id": dataset_id})
        assert queued.status_code == 201, queued.text
        body = queued.json()
        assert (body["kind"], body["dataset_id"]) == ("embedding", dataset_id)
        assert body["config"]["base_model"] == BUNDLED  # the serving retriever
        assert body["config"]["learning_rate"] == EMBEDDING_DEFAULTS["learning_rate"]
        # Stop once the worker speaks (its SIGTERM handler is installed by then).
        wait_for(lambda: services.training.log_tail(body["id"]))
        client.post(f"/api/v1/training/jobs/{body['id']}/stop")
        assert wait_final(services.training, body["id"]).status == "stopped"


def test_promote_reembeds_the_chunk_store_and_search_uses_the_new_model(state):
    services, job = state["services"], state["job"]
    state["bundled_vectors"] = stored_vectors(services)
    state["bundled_hits"] = top_hits(services)
    steps = []
    record = services.retrievers.promote(job.model_id, user="ada",
                                         progress=lambda f, text: steps.append((f, text)))
    assert steps and steps[-1] == (1.0, f"re-embedded {len(CODEWORDS)} chunks")
    assert services.retrievers.active().id == record.id
    assert services.documents.retriever.model_dir == Path(record.model_dir)
    # Other services' prompt embeddings keep their meaning: their embedder stays the bundled one.
    assert services.documents.embedder.model_dir == bundled_model_dir()
    vectors = stored_vectors(services)
    assert vectors.keys() == state["bundled_vectors"].keys()
    texts = {c["id"]: c["text"] for c in services.documents.get_chunks(list(vectors))}
    fresh = services.documents.retriever.embed([texts[i] for i in vectors])
    assert np.allclose(np.stack(list(vectors.values())), fresh, atol=1e-4)
    assert not np.allclose(np.stack(list(vectors.values())),
                           np.stack(list(state["bundled_vectors"].values())), atol=1e-2)
    assert top_hits(services) > state["bundled_hits"]
    with pytest.raises(Conflict, match="already the serving retriever"):
        services.retrievers.promote(job.model_id)
    assert [(a["action"], a["retriever_id"], a["chunks"], a["user_id"])
            for a in services.retrievers.history()] == [
        ("promote", record.id, len(CODEWORDS), "ada")]


def test_rollback_restores_the_bundled_retriever(state):
    services = state["services"]
    assert services.retrievers.rollback(user="ada").id == BUNDLED
    assert services.retrievers.active().id == BUNDLED
    vectors = stored_vectors(services)
    for chunk_id, vector in state["bundled_vectors"].items():
        assert np.allclose(vectors[chunk_id], vector, atol=1e-4)
    assert services.documents.retriever is services.documents.embedder
    assert top_hits(services) == state["bundled_hits"]


def test_the_promoted_retriever_survives_a_restart(state):
    from core.services import build_services

    services, job = state["services"], state["job"]
    services.retrievers.promote(job.model_id)
    hits = top_hits(services)
    services.training.close(stop_workers=True)
    services.close()
    state["services"] = restarted = build_services(state["settings"])
    assert restarted.retrievers.active().id == job.model_id
    assert restarted.documents.retriever.model_dir == Path(
        restarted.retrievers.get(job.model_id).model_dir)
    assert top_hits(restarted) == hits > state["bundled_hits"]


class Events:
    """Collects a trainer's events; asks it to stop after step `stop_at`."""

    def __init__(self, stop, stop_at: int | None = None) -> None:
        self.items: list[tuple[str, dict]] = []
        self.stop, self.stop_at = stop, stop_at

    def emit(self, event_type: str, /, **payload) -> None:
        self.items.append((event_type, payload))
        if event_type == "step" and payload["step"] == self.stop_at:
            self.stop.set()

    def of(self, event_type: str) -> list[dict]:
        return [payload for kind, payload in self.items if kind == event_type]


def run_folder(path: Path, validation: list[dict], **options):
    from core.datasets.rows import normalise_row
    from core.documents.retrieval import bundled_model_dir
    from core.training.events import RunFolder, write_jsonl
    from core.training.spec import TrainingSpec

    run = RunFolder(path)
    path.mkdir()
    spec = TrainingSpec(base_model=BUNDLED, **{**OPTIONS, "grad_accumulation": 1,
                                               "warmup_ratio": 0.0, **options})
    run.write_json(run.spec_path, spec.to_dict())
    run.write_json(run.job_path, {"job_id": path.name, "kind": "embedding",
                                  "model_path": str(bundled_model_dir())})
    write_jsonl(run.train_path, [normalise_row("embedding", r, i)
                                 for i, r in enumerate(rows(TRAIN))])
    write_jsonl(run.validation_path, [normalise_row("embedding", r, i)
                                      for i, r in enumerate(validation)])
    return run


@pytest.fixture
def one_thread():
    """In-process training on one thread, as the worker does here (the cores are shared)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def trainer(run, events):
    from core.training.distributed import Ranks
    from core.training.embedding import EmbeddingTrainer

    made = EmbeddingTrainer(run, events, events.stop, Ranks(rank=0, world=1, local_rank=0))
    made.prepare()
    return made


def test_early_stopping_keeps_the_best_weights(tmp_path, one_thread):
    import threading

    # Held-out rows that contradict the training rows: each code word points at the passage
    # of the next word, so the validation loss rises as training proceeds.
    words = list(CODEWORDS)
    contrary = [{**row, "positive": CODEWORDS[words[(i + 1) % len(words)]],
                 "negatives": [CODEWORDS[words[i]]]}
                for i, row in enumerate(rows(HELD_OUT[:1]))]
    run = run_folder(tmp_path / "early", contrary, eval_every=1, early_stopping_patience=1)
    events = Events(threading.Event())
    fitted = trainer(run, events)
    metrics = fitted.fit()
    val = [e["val_loss"] for e in events.of("eval")]
    assert metrics["stopped_early"] and fitted.step < fitted.total_steps
    assert len(val) == fitted.step and val[-1] > min(val)
    assert metrics["best_step"] == 1 + val.index(min(val))
    assert metrics["val_loss"] == pytest.approx(min(val), abs=1e-4)  # the best weights kept
    assert run.has_sentence_model()


def test_a_stopped_run_resumes_from_its_checkpoint(tmp_path, one_thread):
    import threading

    run = run_folder(tmp_path / "stopped", rows(HELD_OUT), max_steps=3)
    events = Events(threading.Event(), stop_at=1)
    first = trainer(run, events)
    stopped = first.fit()
    assert stopped["steps"] == 1 and not run.has_sentence_model()
    assert run.latest_checkpoint() is not None
    events = Events(threading.Event())
    second = trainer(run, events)
    assert second.step == 1
    finished = second.fit()
    assert [e["step"] for e in events.of("step")] == [2, 3]
    assert finished["steps"] == 3 and run.has_sentence_model()
    assert finished["retrieval"]["before"] == first.before  # measured once, before step 1
