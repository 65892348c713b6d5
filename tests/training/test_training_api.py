"""Training and the registry over real HTTP and from the command line, on a tiny Llama."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.training_helpers import chat_rows, wait_for

ROOT = Path(__file__).resolve().parents[2]
QUICK = {"max_steps": 3, "learning_rate": 1e-2, "batch_size": 2, "grad_accumulation": 1}


def test_api_trains_a_dataset_version_registers_promotes_and_chats(client, services):
    rows = [{"messages": r["messages"]} for r in chat_rows(repeat=1)]
    dataset = services.datasets.create_from_rows(name="memo", kind="sft", rows=rows,
                                                 validation_fraction=0.25)
    bad = client.post("/api/v1/training/jobs", json={"dataset_id": dataset.id,
                                                     "config": {"lora_rank": 0}})
    assert bad.status_code == 400 and "lora_rank" in bad.json()["error"]
    assert client.post("/api/v1/training/jobs", json={"dataset": "x"}).status_code == 422
    assert client.post("/api/v1/training/jobs",
                       json={"dataset_id": "nope"}).status_code == 404

    created = client.post("/api/v1/training/jobs", json={"dataset_id": dataset.id,
                                                         "config": QUICK, "name": "api run"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    job = wait_for(lambda: (body := client.get(f"/api/v1/training/jobs/{job_id}").json())
                   ["status"] in ("completed", "failed") and body)
    assert job["status"] == "completed", job["error"]
    assert job["dataset_version"] == str(dataset.version)
    assert [step for step, _ in job["history"]["train"]] == [1, 2, 3]
    assert job["history"]["validation"] and job["metrics"]["tokens_per_s"] > 0

    models = client.get("/api/v1/models").json()
    assert models["promoted"] is None
    (model,) = models["items"]
    assert model["id"] == job["model_id"] and model["dataset_id"] == dataset.id
    assert model["metrics"]["perplexity"] > 1

    assert client.post("/api/v1/models/nope/promote").status_code == 404
    promoted = client.post(f"/api/v1/models/{model['id']}/promote", json={"user": "ada"})
    assert promoted.json() == {"promoted": model["id"]}
    ask = {"prompt": "What is the capital of France?", "max_new_tokens": 4}
    chat = client.post("/api/v1/chat", json=ask).json()
    assert chat["adapter_version"] == model["id"]
    base = client.post("/api/v1/chat", json={**ask, "model": "base"}).json()
    assert base["adapter_version"] is None
    assert client.post("/api/v1/chat", json={**ask, "model": "nope"}).status_code == 404
    assert client.delete(f"/api/v1/models/{model['id']}").status_code == 409
    assert client.post("/api/v1/models/rollback", json={"user": "ada"}).json() == {
        "promoted": None}
    renamed = client.post(f"/api/v1/models/{model['id']}/rename", json={"name": "memo v1"})
    assert renamed.json()["name"] == "memo v1"
    assert client.post(f"/api/v1/training/jobs/{job_id}/stop").status_code == 409


def test_cli_trains_from_a_file_with_a_yaml_config(tmp_path, tiny_model_dir):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in chat_rows(repeat=1)))
    config = tmp_path / "config.yaml"
    config.write_text("max_steps: 2\nlearning_rate: 0.01\nbatch_size: 2\nlora_rank: 4\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    common = [sys.executable, "-m", "core.training", "--data-dir", str(tmp_path / "data"),
              "--model", str(tiny_model_dir)]
    done = subprocess.run([*common, "train", "--train-file", str(rows), "--config", str(config)],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert result["status"] == "completed" and result["model_id"]
    listed = subprocess.run([*common, "list"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert result["id"] in listed.stdout and "completed" in listed.stdout
    bad = subprocess.run([*common, "stop", "nope"], capture_output=True, text=True, env=env,
                         cwd=ROOT)
    assert bad.returncode == 1 and "no training job" in bad.stderr
