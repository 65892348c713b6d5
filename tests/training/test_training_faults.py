"""Faults around training: a killed worker, a killed app, and a worker that runs out of memory.

Real worker processes on a tiny random Llama, a real DuckDB file; the app-kill test runs the
real app (`python app.py`) in a subprocess and kills it with SIGKILL.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from core.training.events import RunFolder
from core.training.lora import DEBUG_HOLD_ENV
from core.training.runner import pid_runs
from tests.operations.test_app_process import free_port, start_app, wait_until_up
from tests.training_helpers import chat_rows, wait_final, wait_for

FAST = {"learning_rate": 1e-2, "batch_size": 2, "grad_accumulation": 1, "warmup_ratio": 0.0}


@pytest.fixture
def runner(services):
    yield services.training
    services.training.close(stop_workers=True)


def workers_of(run_dir: Path) -> list[int]:
    """Live worker processes whose command line names this run folder (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_runs(int(entry.name), str(run_dir)):
            found.append(int(entry.name))
    return found


def submit(url: str, body: dict) -> str:
    reply = httpx.post(f"{url}/training/jobs", json=body, timeout=60)
    assert reply.status_code == 201, reply.text
    return reply.json()["id"]


def test_killed_worker_fails_and_resume_continues_from_the_last_complete_checkpoint(
        services, runner, monkeypatch):
    monkeypatch.setenv(DEBUG_HOLD_ENV, "7")  # the worker waits after step 7 to be killed
    spec = services.training.make_spec({**FAST, "epochs": 25, "checkpoint_every": 3})
    job = runner.submit(spec, train=chat_rows(), name="kill me")
    run_dir = Path(job.run_dir)
    running = wait_for(lambda: (j := runner.get(job.id)).step >= 7 and j)
    os.kill(running.pid, signal.SIGKILL)
    failed = wait_final(runner, job.id)
    assert failed.status == "failed" and "signal 9" in failed.error
    assert workers_of(run_dir) == []

    # what a kill in the middle of saving leaves behind: a staging folder, never a step-N one
    run = RunFolder(run_dir)
    partial = run.checkpoints_dir / ".partial-000009"
    partial.mkdir()
    (partial / "adapter_model.safetensors").write_bytes(b"cut short")
    assert run.resume_step() == 6
    seen = max(e["seq"] for e in runner.store.events(job.id))
    monkeypatch.setenv(DEBUG_HOLD_ENV, "10")  # the resumed worker waits after step 10
    runner.resume(job.id)  # progress restarts from the checkpoint, not from the kill's step
    wait_for(lambda: runner.get(job.id).step >= 10)
    runner.stop(job.id)
    stopped = wait_final(runner, job.id)
    assert (stopped.status, stopped.step) == ("stopped", 10), stopped.error
    logs = [e.get("message") for e in runner.store.events(job.id, types=("log",), after_seq=seen)]
    assert "resumed from checkpoint at step 6" in logs
    resumed = [e["step"] for e in runner.store.events(job.id, types=("step",), after_seq=seen)]
    assert resumed == [7, 8, 9, 10]  # on from the checkpoint, no gap


def test_out_of_memory_in_the_worker_is_reported_as_such(services, runner, monkeypatch):
    # A real allocation failure: the worker's address space is capped and one batch of
    # long sequences needs several times that cap (torch's CPU allocator then raises
    # "DefaultCPUAllocator: can't allocate memory").
    monkeypatch.setenv("REFINERY_TRAIN_MEMORY_MB", "3072")
    long_text = " ".join(["the capital of France is Paris"] * 700)
    rows = [{"id": f"long{i}", "text": f"{i} {long_text}"} for i in range(128)]
    spec = services.training.make_spec(
        {**FAST, "batch_size": 128, "max_length": 4096, "epochs": 1})
    job = wait_final(runner, runner.submit(spec, train=rows, kind="text", name="too big").id)
    assert job.status == "failed"
    assert job.error.startswith("out of memory"), job.error
    assert "batch_size" in job.error
    result = RunFolder(Path(job.run_dir)).result()
    assert result["kind"] == "oom"
    assert services.registry.by_job(job.id) is None


@pytest.mark.slow  # three app starts and two workers: minutes on a busy 2-core machine
def test_killing_the_app_mid_run_reattaches_or_fails_and_never_starts_a_second_worker(
        tmp_path, tiny_model_dir):
    data_dir, port = tmp_path / "data", free_port()
    app = start_app(data_dir, tiny_model_dir, port)
    try:
        url = wait_until_up(app, port)
        body = {"train": chat_rows(), "name": "outlives the app",
                "config": {**FAST, "epochs": 4, "checkpoint_every": 20}}
        job_id = submit(url, body)
        run_dir = data_dir / "runs" / job_id
        wait_for(lambda: httpx.get(f"{url}/training/jobs/{job_id}").json()["step"] >= 2)
        [worker] = workers_of(run_dir)
        os.kill(worker, signal.SIGSTOP)  # however fast it trains, it outlives the restart
        app.kill()
        app.wait()

        app = start_app(data_dir, tiny_model_dir, port)
        url = wait_until_up(app, port)
        assert workers_of(run_dir) == [worker], "re-attached to the same worker, none started"
        job = httpx.get(f"{url}/training/jobs/{job_id}").json()
        assert job["status"] == "running", job
        os.kill(worker, signal.SIGCONT)
        job = wait_for(lambda: (j := httpx.get(f"{url}/training/jobs/{job_id}").json())
                       ["status"] in ("completed", "failed", "stopped") and j)
        assert job["status"] == "completed", job["error"]
        assert job["step"] == job["total_steps"]
        models = httpx.get(f"{url}/models").json()["items"]
        assert [m["id"] for m in models if m.get("job_id") == job_id] == [job["model_id"]]

        body = {**body, "name": "dies with the app", "config": {**FAST, "epochs": 50}}
        second = submit(url, body)
        second_dir = data_dir / "runs" / second
        wait_for(lambda: httpx.get(f"{url}/training/jobs/{second}").json()["step"] >= 1)
        [worker] = workers_of(second_dir)
        os.kill(worker, signal.SIGSTOP)  # it cannot finish before the kill below
        app.kill()
        app.wait()
        os.kill(worker, signal.SIGKILL)  # the worker dies while no app is watching
        wait_for(lambda: not workers_of(second_dir))

        app = start_app(data_dir, tiny_model_dir, port)
        url = wait_until_up(app, port)
        job = httpx.get(f"{url}/training/jobs/{second}").json()
        assert job["status"] == "failed" and "gone" in job["error"]
        assert workers_of(second_dir) == []
        statuses = [j["status"] for j in httpx.get(f"{url}/training/jobs").json()["items"]]
        assert sorted(statuses) == ["completed", "failed"]
    finally:
        app.kill()
        app.wait()
        for run in (data_dir / "runs").glob("*"):
            for pid in workers_of(run):
                os.kill(pid, signal.SIGKILL)
