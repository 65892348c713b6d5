"""Training jobs end to end on a tiny random Llama: real worker processes, real DuckDB."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from core.errors import Conflict, InvalidInput
from core.training.lora import DEBUG_NAN_ENV
from core.training.spec import TrainingSpec
from tests.training_helpers import chat_rows, wait_final, wait_for

FAST = {"learning_rate": 1e-2, "batch_size": 2, "grad_accumulation": 1, "warmup_ratio": 0.0}


@pytest.fixture
def runner(services):
    yield services.training
    services.training.close(stop_workers=True)


def spec(services, **options) -> TrainingSpec:
    return services.training.make_spec({**FAST, **options})


def test_spec_rejects_bad_values():
    with pytest.raises(InvalidInput, match="lora_rank"):
        TrainingSpec(base_model="m", lora_rank=0)
    with pytest.raises(InvalidInput, match="unknown training option"):
        TrainingSpec.from_dict({"base_model": "m", "rank": 4})
    assert TrainingSpec(base_model="m").target_modules == "all-linear"


def test_run_completes_loss_falls_and_adapter_is_registered(services, runner):
    rows = chat_rows()
    job = runner.submit(spec(services, epochs=6), train=rows, validation=rows[:4], name="memo")
    job = wait_final(runner, job.id)
    assert job.status == "completed", job.error
    losses = [loss for _, loss in runner.history(job.id)["train"]]
    assert len(losses) == job.total_steps == 24
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4
    model = services.registry.get(job.model_id)
    assert model.metrics["val_loss"] is not None and model.metrics["perplexity"] > 1
    assert model.lineage["train_examples"] == len(rows)
    assert model.duration_s > 0

    import torch

    with services.models.use(None) as loaded:
        ids = loaded.tokenizer("What is the capital of France?", return_tensors="pt").input_ids
        base = loaded.model(ids).logits
    with services.models.use(model.adapter_dir) as loaded:
        tuned = loaded.model(ids).logits
    assert not torch.allclose(base, tuned, atol=1e-4)

    services.registry.promote(model.id, user="ada")
    assert services.registry.active().id == model.id
    with pytest.raises(Conflict):
        services.registry.delete(model.id)
    assert services.registry.rollback(user="ada") is None
    assert [row["action"] for row in services.registry.history()] == ["promote", "rollback"]

    incremental = services.training.make_spec(
        {**FAST, "init_adapter": model.id}, preset="incremental update"
    )
    with pytest.raises(InvalidInput, match="already used"):
        runner.submit(incremental, train=rows)


def test_stop_then_resume_continues_from_the_checkpoint(services, runner):
    rows = chat_rows(repeat=4)
    job = runner.submit(spec(services, epochs=20, checkpoint_every=2), train=rows)
    wait_for(lambda: runner.get(job.id).step >= 3)
    runner.stop(job.id)
    stopped = wait_final(runner, job.id)
    assert stopped.status == "stopped"
    saved = max(e["step"] for e in runner.store.events(job.id, types=("checkpoint",)))
    assert saved == stopped.step
    seen = max(e["seq"] for e in runner.store.events(job.id))
    runner.resume(job.id)
    first = wait_for(lambda: runner.store.events(job.id, types=("step",), after_seq=seen))
    assert first[0]["step"] == saved + 1
    runner.stop(job.id)
    assert wait_final(runner, job.id).status == "stopped"


def test_killed_worker_marks_the_job_failed(services, runner):
    job = runner.submit(spec(services, epochs=50), train=chat_rows())
    running = wait_for(lambda: (j := runner.get(job.id)).step >= 1 and j)
    os.kill(running.pid, signal.SIGKILL)
    failed = wait_final(runner, job.id)
    assert failed.status == "failed"
    assert "signal 9" in failed.error


def test_nan_loss_stops_the_run_with_a_clear_status(services, runner, monkeypatch):
    monkeypatch.setenv(DEBUG_NAN_ENV, "2")
    job = wait_final(runner, runner.submit(spec(services, epochs=5), train=chat_rows()).id)
    assert job.status == "failed"
    assert "loss became nan at step 2" in job.error
    assert services.registry.by_job(job.id) is None


def test_two_concurrent_starts_run_one_and_queue_the_other(services, runner):
    jobs = []
    barrier = threading.Barrier(2)

    def start():
        barrier.wait()
        jobs.append(runner.submit(spec(services, epochs=50), train=chat_rows()))

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(runner.get(j.id).status for j in jobs)
    assert statuses == ["queued", "running"]
    queued = next(j for j in jobs if runner.get(j.id).status == "queued")
    assert runner.stop(queued.id).status == "stopped"


def test_reconcile_marks_an_orphaned_job_failed_and_never_relaunches(services, runner):
    job = runner.submit(spec(services, epochs=50), train=chat_rows())
    running = wait_for(lambda: (j := runner.get(job.id)).step >= 1 and j)
    runner.close()  # the app goes away; the worker keeps training
    os.kill(running.pid, signal.SIGKILL)
    wait_for(lambda: runner._procs[job.id].poll() is not None)
    runner._procs.clear()  # a restarted app has no handle on the old process
    runner.reconcile()
    after = runner.get(job.id)
    assert after.status == "failed" and "gone" in after.error
    assert len(runner.list()) == 1
