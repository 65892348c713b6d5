"""The one job model: one checked lifecycle, stored, listed across kinds, kept over restarts."""

from __future__ import annotations

import io
import json
from contextlib import contextmanager

import pytest
from fastapi.testclient import TestClient

from core.comparison.evaluation import EvalRequest
from core.datasets.augment import Augmentation
from core.datasets.versions import BuildSpec
from core.documents.chunking import ChunkSpec
from core.documents.service import IncomingFile
from core.errors import Conflict
from core.feedback.turn_filter import TurnFilter
from core.jobs import (
    DATASET,
    EVALUATION,
    INTERRUPTED,
    KNOWLEDGE,
    Cancelled,
    Failed,
    Progressed,
    Queued,
    Requeued,
    Started,
    Succeeded,
)
from core.services import build_services
from core.training.search import SearchSpec
from tests.conftest import LOCAL
from tests.training_helpers import chat_rows, wait_final, wait_for

SHAPE = {"id", "kind", "name", "status", "user", "progress", "eta_s", "message", "error",
         "interrupted", "detail", "result", "created_at", "started_at", "finished_at"}


@contextmanager
def studio(settings):
    """Services and an HTTP client on `settings`' data dir; closing them is the restart."""
    from app import create_app

    services = build_services(settings)
    try:
        with TestClient(create_app(services), base_url=LOCAL) as client:
            yield services, client
    finally:
        services.close()


def test_the_lifecycle_is_checked_and_stored(services):
    board, seen = services.jobs, []
    board.listeners.append(lambda event, job: seen.append((type(event).__name__, job.status)))
    job = board.emit(Queued("e1", EVALUATION, "evaluate base", "ana", detail={"items": 4}))
    assert (job.status, job.user_id, job.detail, job.started_at) == ("queued", "ana",
                                                                     {"items": 4}, None)
    with pytest.raises(Conflict):
        board.emit(Queued("e1", EVALUATION, "again"))
    with pytest.raises(Conflict, match="queued; cannot apply requeued"):
        board.emit(Requeued("e1"))
    board.emit(Started("e1"))
    job = board.emit(Progressed("e1", progress=0.5, eta_s=3.0, message="scored 2 of 4",
                                result={"done": 2}))
    assert (job.progress, job.eta_s, job.message, job.result) == (0.5, 3.0, "scored 2 of 4",
                                                                  {"done": 2})
    job = board.emit(Succeeded("e1", "done", result={"loss": 1.5}))
    assert (job.status, job.progress, job.eta_s, job.result) == ("succeeded", 1.0, None,
                                                                 {"loss": 1.5})
    assert job.finished_at >= job.started_at >= job.created_at
    late = board.emit(Progressed("e1", progress=0.75, message="a late report"))
    assert (late.status, late.progress, late.message) == ("succeeded", 1.0, "done")
    with pytest.raises(Conflict, match="succeeded; cannot apply started"):
        board.emit(Started("e1"))
    assert seen[:4] == [("Queued", "queued"), ("Started", "running"), ("Progressed", "running"),
                        ("Succeeded", "succeeded")]

    board.emit(Queued("d1", DATASET, "build faq"))
    assert board.emit(Cancelled("d1")).status == "cancelled"
    board.emit(Requeued("d1"))
    board.emit(Started("d1"))
    failed = board.emit(Failed("d1", "ValueError: no rows"))
    assert (failed.status, failed.error) == ("failed", "ValueError: no rows")
    again = board.emit(Requeued("d1"))
    assert (again.status, again.error, again.finished_at) == ("queued", None, None)
    assert [job.id for job in board.list(kinds=(DATASET,))] == ["d1"]
    assert [job.id for job in board.list(statuses=("succeeded",))] == ["e1"]


def test_work_cut_off_by_a_restart_shows_as_interrupted(settings):
    with studio(settings) as (services, _):
        board = services.jobs
        # the store as a process killed mid-build leaves it: running, 3 rows written so far
        board.emit(Queued("d1", DATASET, "build faq", "ana"))
        board.emit(Started("d1"))
        board.emit(Progressed("d1", progress=0.3, message="written 3 of 10",
                              result={"written": 3, "total": 10, "dataset_id": None}))
        board.emit(Queued("k1", KNOWLEDGE, "knowledge check of base"))
        board.emit(Queued("e1", EVALUATION, "evaluate base"))
        board.emit(Started("e1"))
        board.emit(Succeeded("e1", result={"loss": 2.0}))
    with studio(settings) as (services, client):
        build = services.jobs.get("d1")
        assert (build.status, build.interrupted, build.error) == ("failed", True, INTERRUPTED)
        assert build.result["written"] == 3 and build.progress == 0.3  # what it had done
        assert services.jobs.get("k1").interrupted
        finished = services.jobs.get("e1")
        assert (finished.status, finished.interrupted, finished.result) == (
            "succeeded", False, {"loss": 2.0})
        listed = client.get("/api/v1/datasets/jobs").json()["items"]
        assert [(j["id"], j["status"], j["written"], j["error"]) for j in listed] == [
            ("d1", "failed", 3, INTERRUPTED)]
        reply = client.post("/api/v1/datasets/jobs/d1/resume")
        assert reply.status_code == 409 and "start the build again" in reply.json()["error"]
        body = client.get("/api/v1/jobs/d1").json()
        assert body["interrupted"] is True and set(body) == SHAPE
        assert client.get("/api/v1/jobs/nope").status_code == 404


def test_a_build_cut_off_by_a_restart_resumes_from_its_stored_spec(settings):
    rich = BuildSpec(name="faq", kind="sft", selection=TurnFilter(tags=("faq",), min_rating=4),
                     augmentation=Augmentation(paraphrase=1), document_ids=("d",), seed=3)
    assert BuildSpec.from_dict(json.loads(json.dumps(rich.to_dict()))) == rich
    spec = BuildSpec(name="docs", kind="text", synthetic_qa=2, validation_fraction=0.2)
    with studio(settings) as (services, _):
        text = "The red pump is primed with water first.\n\nHold the blue button to reset it."
        services.documents.ingest([IncomingFile("manual.txt", io.BytesIO(text.encode()))],
                                  spec=ChunkSpec(size=16, overlap=0))
        started = services.dataset_jobs.start(spec)  # as the API starts it, spec on the board
        services.dataset_jobs.wait(started.id)
        detail = services.jobs.get(started.id).detail
        # the store as a process killed mid-build leaves it
        services.jobs.emit(Queued("d2", DATASET, "build docs", "ana", detail=detail))
        services.jobs.emit(Started("d2"))
    with studio(settings) as (services, client):
        assert services.jobs.get("d2").interrupted
        reply = client.post("/api/v1/datasets/jobs/d2/resume")
        assert reply.status_code == 200, reply.text
        done = wait_for(lambda: (job := services.dataset_jobs.get("d2")).status
                        in ("completed", "failed") and job)
        assert done.status == "completed", done.error
        dataset = services.datasets.get(done.dataset_id)
        assert any(row["meta"].get("synthetic") for row in dataset.train + dataset.validation)
        assert services.jobs.get("d2").status == "succeeded"


OPTIONS = {"batch_size": 2, "eval_every": 1, "learning_rate": 1e-2}


def test_a_search_survives_a_restart_and_the_jobs_list_mixes_kinds(settings):
    rows = chat_rows(1)
    with studio(settings) as (services, _):
        base = services.training.make_spec({**OPTIONS, "max_steps": 2})
        search = services.searches.start(
            base, SearchSpec(method="grid", space={"learning_rate": [1e-2]}, trials=1),
            train=rows, validation=rows[:2])
        wait_for(lambda: search.status != "running")
        assert search.status == "completed", search.error
        before = search.to_dict()
        services.evaluations.run(EvalRequest(model="base", rows=[
            {"prompt": "Say the digits.", "reference": "0123456789"}], max_new_tokens=2))
    with studio(settings) as (services, client):
        [again] = services.searches.list()
        assert again.to_dict() == before  # trials, their losses and the best, as they were
        assert client.get(f"/api/v1/training/searches/{search.id}").json() == before
        assert client.get("/api/v1/training/searches").json()["items"] == [before]
        jobs = client.get("/api/v1/jobs").json()["items"]
        assert sorted(job["kind"] for job in jobs) == ["evaluation", "search", "training"]
        assert all(set(job) == SHAPE and job["status"] == "succeeded" for job in jobs)
        trial = next(job for job in jobs if job["kind"] == "training")
        assert trial["id"] == before["best"]["job_id"]
        assert trial["result"]["model_id"] == before["best"]["model_id"]
        only = client.get("/api/v1/jobs", params={"kind": "search"}).json()["items"]
        assert [job["id"] for job in only] == [search.id]
        panel_shows_the_trial(services, trial["id"], trial["result"]["model_id"])
        refused = client.get("/api/v1/jobs", params={"kind": "nope"})
        assert refused.status_code == 422 and refused.json()["detail"][0]["field"] == "query.kind"


def panel_shows_the_trial(services, job_id: str, model_id: str) -> None:
    """The Train tab's job panel lists and draws the job from the one job list."""
    import gradio as gr

    from ui.job_panel import JobPanel
    from ui.live import Live

    with gr.Blocks():
        panel = JobPanel(services, Live(services), kinds=("sft",), hint="")
    assert [value for _, value in panel.choices()] == [job_id] and panel.newest() == job_id
    _, status, _, log, following, _ = panel.view(None)
    assert following == job_id
    assert "· succeeded ·" in status and f"Registered as **{model_id}**" in status
    assert "completed after" in log


def test_a_search_cut_off_by_a_restart_is_interrupted_and_keeps_its_trial(settings):
    rows = chat_rows(1)
    with studio(settings) as (services, _):
        base = services.training.make_spec({**OPTIONS, "max_steps": 100_000})
        search = services.searches.start(
            base, SearchSpec(method="grid", space={"lora_rank": [2, 4]}, trials=2), train=rows)
        [trial] = wait_for(lambda: search.trials)
    with studio(settings) as (services, client):  # the trial's worker lives on meanwhile
        body = client.get(f"/api/v1/training/searches/{search.id}").json()
        assert (body["status"], body["interrupted"], body["error"]) == (
            "failed", True, INTERRUPTED)
        assert [t["job_id"] for t in body["trials"]] == [trial["job_id"]]
        assert body["trials"][0]["status"] in ("queued", "running")  # looked up, not stale
        job = services.jobs.get(search.id)
        assert (job.status, job.interrupted) == ("failed", True)
        client.post(f"/api/v1/training/searches/{search.id}/stop")  # stops the live trial
        assert wait_final(services.training, trial["job_id"]).status == "stopped"
        assert services.jobs.get(trial["job_id"]).status == "cancelled"
