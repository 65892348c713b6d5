"""Hyperparameter search: each trial a real job on a tiny Llama; the best one is named."""

from __future__ import annotations

import pytest

from core.errors import InvalidInput
from core.training.search import SearchSpec
from tests.training_helpers import chat_rows, wait_for


def test_search_spec_is_validated():
    with pytest.raises(InvalidInput, match="cannot search"):
        SearchSpec(space={"batch_size": [1, 2]})
    with pytest.raises(InvalidInput, match="low < high"):
        SearchSpec(method="bayesian", space={"learning_rate": [1e-3, 1e-4]})
    grid = SearchSpec(method="grid", space={"learning_rate": [1e-3, 1e-2], "lora_rank": [4, 8]},
                      trials=3)
    assert len(grid.grid()) == 3


@pytest.mark.parametrize("method,space", [("grid", {"learning_rate": [1e-4, 2e-2]}),
                                          ("bayesian", {"lora_rank": [2, 8]})])
def test_search_runs_each_trial_as_a_job_and_names_the_best(services, client, method, space):
    base = services.training.make_spec({"max_steps": 2, "batch_size": 2, "eval_every": 2,
                                        "learning_rate": 1e-2})
    rows = chat_rows(1)
    search = services.searches.start(base, SearchSpec(method=method, space=space, trials=2),
                                     train=rows, validation=rows[:2], user="ann")
    wait_for(lambda: search.status != "running")
    assert search.status == "completed", search.error
    assert [t["status"] for t in search.trials] == ["completed", "completed"]
    assert {services.training.get(t["job_id"]).user_id for t in search.trials} == {"ann"}
    best = search.best
    assert best["val_loss"] == min(t["val_loss"] for t in search.trials)
    assert services.registry.get(best["model_id"])
    body = client.get(f"/api/v1/training/searches/{search.id}").json()
    assert body["best"]["job_id"] == best["job_id"] and body["user"] == "ann"
