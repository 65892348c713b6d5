"""Preference tuning (DPO) on a tiny random Llama: real worker process, real DuckDB, real HTTP."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.training.data import IGNORE
from core.training.lora import DEBUG_HOLD_ENV
from core.training.preference import encode_pair, fit_pair
from core.training.spec import TrainingSpec
from tests.tiny_models import make_tiny_t5, make_tokenizer
from tests.training_helpers import PAIRS, wait_for

BETA = 0.5
CONFIG = {"learning_rate": 1e-2, "batch_size": 2, "grad_accumulation": 1, "warmup_ratio": 0.0,
          "epochs": 8, "eval_every": 8, "checkpoint_every": 2, "precision": "fp32",
          "dpo_beta": BETA}


def preference_rows() -> list[dict]:
    """Each prompt's own answer is chosen; the answers to the other prompts are rejected."""
    return [{"prompt": q, "chosen": a, "rejected": PAIRS[(i + k) % len(PAIRS)][1]}
            for i, (q, a) in enumerate(PAIRS) for k in (1, 2)]


def answer_logp(loaded, prompt: str, answer: str) -> float:
    """log p(answer | prompt) under the chat template, from the full logits."""
    import torch

    tokenizer = loaded.tokenizer
    user = [{"role": "user", "content": prompt}]
    head = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": answer}],
                                         tokenize=False)
    head_ids = tokenizer(head, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([tokenizer(full, add_special_tokens=False)["input_ids"]])
    assert ids[0, :len(head_ids)].tolist() == head_ids
    with torch.no_grad():
        logps = loaded.model(ids).logits[0, :-1].float().log_softmax(-1)
    targets = ids[0, 1:]
    picked = logps.gather(1, targets.unsqueeze(1)).squeeze(1)
    return float(picked[len(head_ids) - 1:].sum())


def margins(services, adapter_dir, rows: list[dict]) -> list[float]:
    """Chosen-over-rejected log-probability margin per pair, with or without the adapter."""
    with services.models.use(adapter_dir) as loaded:
        return [answer_logp(loaded, r["prompt"], r["chosen"])
                - answer_logp(loaded, r["prompt"], r["rejected"]) for r in rows]


def test_pairs_label_only_the_answers_and_cut_prompts_from_the_left():
    for template in (True, False):
        tokenizer = make_tokenizer(chat_template=template)
        row = {"prompt": "What is the capital of France?", "chosen": "Paris.",
               "rejected": "I am fine."}
        pair = encode_pair(tokenizer, row, 256)
        chosen, rejected = pair.sequences()
        for example, answer in ((chosen, pair.chosen_ids), (rejected, pair.rejected_ids)):
            assert example.input_ids == pair.prompt_ids + answer
            assert example.labels == [IGNORE] * len(pair.prompt_ids) + answer
        assert "Paris" in tokenizer.decode(pair.chosen_ids)
        assert "capital" in tokenizer.decode(pair.prompt_ids)
    prompt, chosen, rejected = fit_pair(list(range(100)), [1] * 30, [2] * 10, 64)
    assert prompt == list(range(66, 100)) and len(chosen) == 30 and len(rejected) == 10
    prompt, chosen, rejected = fit_pair(list(range(100)), [1] * 60, [2] * 5, 64)
    assert prompt == list(range(68, 100)) and len(chosen) == 32 and len(rejected) == 5


def test_dpo_beta_is_validated(client):
    with pytest.raises(InvalidInput, match="dpo_beta"):
        TrainingSpec(base_model="m", dpo_beta=0)
    response = client.post("/api/v1/training/jobs", json={
        "kind": "preference", "train": preference_rows(), "config": {"dpo_beta": -1}})
    assert response.status_code == 400 and "dpo_beta" in response.json()["error"]


def test_bad_preference_row_is_refused_with_a_clear_400(client, services):
    rows = preference_rows()
    del rows[1]["rejected"]
    response = client.post("/api/v1/training/jobs", json={"kind": "preference", "train": rows})
    assert response.status_code == 400
    assert "row 1" in response.json()["error"] and "rejected" in response.json()["error"]
    rows = preference_rows()
    rows[0]["chosen"] = "  "
    response = client.post("/api/v1/training/jobs", json={"kind": "preference", "train": rows})
    assert response.status_code == 400 and "chosen" in response.json()["error"]
    assert services.training.list() == []


def test_encoder_decoder_base_is_refused_at_submit(client, services):
    t5 = make_tiny_t5(services.settings.models_dir / "tiny-t5")  # a folder requests may name
    response = client.post("/api/v1/training/jobs", json={
        "kind": "preference", "train": preference_rows(), "config": {"base_model": str(t5)}})
    assert response.status_code == 400
    assert "decoder-only" in response.json()["error"]
    assert services.training.list() == []


def job_status(client, job_id: str, statuses: tuple[str, ...]) -> dict:
    return wait_for(lambda: (body := client.get(f"/api/v1/training/jobs/{job_id}").json())
                    ["status"] in statuses and body)


def test_dpo_run_stops_resumes_and_raises_the_chosen_over_rejected_margin(
        client, services, monkeypatch):
    monkeypatch.setenv(DEBUG_HOLD_ENV, "3")  # the worker waits after step 3 to be stopped
    rows = preference_rows()
    dataset = services.datasets.create_from_rows(name="prefs", kind="preference", rows=rows,
                                                 validation_fraction=0.25)
    created = client.post("/api/v1/training/jobs", json={"dataset_id": dataset.id,
                                                         "config": CONFIG, "name": "dpo"})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    wait_for(lambda: services.training.get(job_id).step >= 3)
    cancelled = client.post(f"/api/v1/jobs/{job_id}/cancel")  # the one route for every kind
    assert cancelled.status_code == 200 and cancelled.json()["kind"] == "training"
    stopped = job_status(client, job_id, ("stopped", "failed", "completed"))
    assert (stopped["status"], stopped["step"]) == ("stopped", 3), stopped["error"]
    assert client.get(f"/api/v1/jobs/{job_id}").json()["status"] == "cancelled"
    assert client.post(f"/api/v1/training/jobs/{job_id}/resume").status_code == 200
    job = job_status(client, job_id, ("completed", "stopped", "failed"))
    services.training.close()
    assert job["status"] == "completed", job["error"]
    assert job["kind"] == "preference"

    series = job["history"]["series"]
    # The resumed worker continued right after the stopped step's checkpoint.
    assert [step for step, _ in series["reward_margin"]] == list(range(1, 25))
    assert all(0 <= value <= 1 for _, value in series["reward_accuracy"])
    assert [step for step, _ in series["val_reward_margin"]] == [8, 16, 24]
    assert [step for step, _ in job["history"]["validation"]] == [8, 16, 24]
    assert job["metrics"]["reward_margin"] == series["reward_margin"][-1][1]

    model = client.get(f"/api/v1/models/{job['model_id']}").json()
    assert model["lineage"]["kind"] == "preference"
    assert model["metrics"]["val_reward_margin"] is not None
    assert model["config"]["dpo_beta"] == BETA

    train, validation = list(dataset.train), list(dataset.validation)
    before = margins(services, None, train)
    after = margins(services, model["adapter_dir"], train)
    assert sum(after) / len(after) > sum(before) / len(before)
    assert sum(a > b for a, b in zip(after, before, strict=True)) > len(train) / 2

    # The worker's validation reward margin is beta times the margin's growth on those pairs.
    growth = [a - b for a, b in zip(margins(services, model["adapter_dir"], validation),
                                    margins(services, None, validation), strict=True)]
    expected = BETA * sum(growth) / len(growth)
    assert model["metrics"]["val_reward_margin"] == pytest.approx(expected, rel=1e-3, abs=1e-4)


def test_loss_chart_adds_the_reward_margin_curves_when_present():
    from ui.charts import loss_figure

    sft = {"train": [[1, 2.0], [2, 1.5]], "validation": [[2, 1.7]],
           "series": {"loss": [[1, 2.0], [2, 1.5]], "val_loss": [[2, 1.7]]}}
    assert [trace.name for trace in loss_figure(sft).data] == ["training loss",
                                                               "validation loss"]
    dpo = {**sft, "series": {**sft["series"], "reward_margin": [[1, 0.0], [2, 0.4]],
                             "val_reward_margin": [[2, 0.2]]}}
    figure = loss_figure(dpo)
    margin = {trace.name: trace for trace in figure.data}["reward margin"]
    assert list(margin.y) == [0.0, 0.4] and margin.yaxis == "y2"
    assert "validation reward margin" in {trace.name for trace in figure.data}
    assert figure.layout.yaxis2.title.text == "reward margin"
