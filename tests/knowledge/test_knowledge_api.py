"""Knowledge checks over HTTP, and the scores every finished training run gets by itself."""

from __future__ import annotations

import csv
import io

from tests.datasets.test_datasets import MANUAL
from tests.gradio_calls import gradio_call
from tests.knowledge.test_knowledge_check import ITEMS, jsonl
from tests.training_helpers import chat_rows, wait_final, wait_for

API = "/api/v1"


def test_checks_and_runs_over_http(client):
    assert client.post(f"{API}/knowledge-checks", json={"name": "x"}).status_code == 400
    upload = client.post(
        f"{API}/documents",
        files=[("files", ("manual.txt", MANUAL.encode(), "text/plain"))],
        data={"chunk_tokens": "24", "chunk_overlap": "0"},
    )
    assert upload.status_code == 200, upload.text
    built = client.post(f"{API}/knowledge-checks", json={"name": "pump", "max_items": 2})
    assert built.status_code == 202, built.text
    job = built.json()["job_id"]
    done = wait_for(lambda: (c := client.get(f"{API}/knowledge-checks/{job}").json())["status"]
                    != "building" and c)
    assert done["status"] == "ready" and len(done["items"]) == done["item_count"] <= 2

    imported = client.post(
        f"{API}/knowledge-checks/import",
        files={"file": ("pump.jsonl", jsonl(ITEMS), "application/x-ndjson")},
        data={"name": "manual check"},
    )
    assert imported.status_code == 201, imported.text
    check = imported.json()
    check_id, first = check["id"], check["items"][0]["id"]
    assert [c["id"] for c in client.get(f"{API}/knowledge-checks").json()["items"]][0] == check_id

    changed = client.put(f"{API}/knowledge-checks/{check_id}/items/{first}",
                         json={"reference": "10 seconds"})
    assert changed.status_code == 200 and changed.json()["items"][0]["reference"] == "10 seconds"
    added = client.post(f"{API}/knowledge-checks/{check_id}/items",
                        json={"question": "What must be primed?", "reference": "the red pump"})
    assert added.status_code == 201 and len(added.json()["items"]) == 4
    removed = client.delete(f"{API}/knowledge-checks/{check_id}/items/{first}")
    assert removed.status_code == 200 and len(removed.json()["items"]) == 3

    exported = client.get(f"{API}/knowledge-checks/{check_id}/export?format=csv")
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [r["question"] for r in rows] == [i["question"] for i in removed.json()["items"]]
    assert client.get(f"{API}/knowledge-checks/{check_id}/export?format=xml").status_code == 422

    started = client.post(f"{API}/knowledge-checks/{check_id}/runs", json={"general": True})
    assert started.status_code == 202, started.text
    run_ids = started.json()["run_ids"]
    assert len(run_ids) == 3
    for run_id in run_ids:
        run = wait_for(lambda run_id=run_id: (r := client.get(f"{API}/knowledge-runs/{run_id}")
                                              .json())["status"] in ("done", "failed") and r)
        assert run["status"] == "done", run["error"]
        assert len(run["items"]) == run["total"] and run["summary"]["items"] == run["total"]
    listed = client.get(f"{API}/knowledge-checks/{check_id}/runs").json()["items"]
    assert {r["id"] for r in listed} == set(run_ids[:2])  # general runs belong to no check
    scores = client.get(f"{API}/knowledge-scores").json()["items"]
    assert scores[0]["model"] == "base" and scores[0]["line"].startswith("knows ")

    # After a run, an edit writes the next version.
    second = removed.json()["items"][0]["id"]
    edited = client.put(f"{API}/knowledge-checks/{check_id}/items/{second}",
                        json={"question": "How long is the motor covered?"})
    assert edited.json()["version"] == 2 and edited.json()["id"] != check_id

    assert client.get(f"{API}/knowledge-checks/nope").status_code == 404
    assert client.get(f"{API}/knowledge-runs/nope").status_code == 404
    bad_model = client.post(f"{API}/knowledge-checks/{check_id}/runs", json={"model": "nope"})
    assert bad_model.status_code == 404 and bad_model.json()["error"]
    assert client.post(f"{API}/knowledge-checks/{check_id}/items",
                       json={"question": "", "reference": "x"}).status_code == 400
    assert client.post(f"{API}/knowledge-checks/{check_id}/runs",
                       json={"grounded": []}).status_code == 422
    bad_file = client.post(f"{API}/knowledge-checks/import",
                           files={"file": ("x.txt", b"hello", "text/plain")})
    assert bad_file.status_code == 400


def test_a_finished_training_run_gets_both_scores(services):
    runs = services.knowledge_runs
    spec = services.training.make_spec({"epochs": 1, "batch_size": 2, "warmup_ratio": 0.0})
    first = wait_final(services.training, services.training.submit(
        spec, train=chat_rows(1), validation=chat_rows(1)[:2], name="before").id)
    assert first.status == "completed", first.error
    assert runs.wait_idle(600) and runs.store.runs() == []  # no check yet: nothing to score

    check = services.knowledge.import_file(jsonl(ITEMS), "pump.jsonl")
    job = wait_final(services.training, services.training.submit(
        spec, train=chat_rows(1), validation=chat_rows(1)[:2], name="after").id)
    assert job.status == "completed", job.error
    wait_for(lambda: len(runs.store.runs()) == 6)
    assert runs.wait_idle(600)
    made = {(r["kind"], r["model"], r["grounded"], r["status"], r["trigger"])
            for r in runs.store.runs()}
    trigger = f"training:{job.id}"
    assert made == {
        ("knowledge", job.model_id, False, "done", trigger),
        ("knowledge", job.model_id, True, "done", trigger),
        ("general", job.model_id, False, "done", trigger),
        ("knowledge", "base", False, "done", trigger),
        ("knowledge", "base", True, "done", trigger),
        ("general", "base", False, "done", trigger),
    }
    assert all(r["check_id"] == check["id"] for r in runs.store.runs(kind="knowledge"))
    line = services.knowledge_scores.of(job.model_id)["line"]
    assert line.startswith("knows ") and "/3 of your facts (grounded " in line
    assert "general " in line and "/40" in line
    services.training.close(stop_workers=True)


def test_tabs_show_what_each_model_knows(client, services):
    from ui.scores import scores_markdown
    from ui.tabs.dashboard import views
    from ui.tabs.knowledge import items_frame, table_rows

    assert client.get("/").status_code == 200  # the page with the Knowledge tab builds
    assert scores_markdown(services) == "- **base**: no knowledge check yet, general not run"
    check = services.knowledge.import_file(jsonl(ITEMS), "pump.jsonl")
    frame = items_frame(services, check["id"])
    frame.loc[0, "reference"] = "10 seconds"
    frame.loc[1, ["question", "reference"]] = ""  # a blanked row is deleted
    frame.loc[3] = {"id": None, "question": "What must be primed?", "reference": "the pump"}
    saved = services.knowledge.replace_items(check["id"], table_rows(frame))
    items = services.knowledge.items(saved["id"])
    assert [i["reference"] for i in items] == ["10 seconds", "every month", "the pump"]
    assert [i["origin"] for i in items] == ["imported", "imported", "manual"]
    [run_id] = services.knowledge_runs.start(check["id"], grounded=(False,))
    assert services.knowledge_runs.wait_idle(600)
    correct = services.knowledge_runs.get(run_id)["summary"]["correct"]
    overview = views(services)[0]
    assert f"**base** knows {correct}/3 of your facts (grounded ?), general not run" in overview


def test_a_knowledge_run_is_cancelled_through_the_one_jobs_route(client, services):
    imported = client.post(f"{API}/knowledge-checks/import",
                           files={"file": ("pump.jsonl", jsonl(ITEMS), "application/x-ndjson")})
    with services.models.use():  # the runs wait for the model until the cancel is in
        started = client.post(f"{API}/knowledge-checks/{imported.json()['id']}/runs",
                              json={"grounded": [False], "general": True})
        facts, general = started.json()["run_ids"]
        cancelled = client.post(f"{API}/jobs/{general}/cancel")  # queued behind the facts run
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["kind"] == "knowledge"

    def final(run_id):
        return wait_for(lambda: (r := client.get(f"{API}/knowledge-runs/{run_id}").json())
                        ["status"] not in ("queued", "running") and r)

    assert final(facts)["status"] == "done"
    run = final(general)
    assert run["status"] == "cancelled" and len(run["items"]) < run["total"] == 40
    job = client.get(f"{API}/jobs/{general}").json()
    assert job["status"] == "cancelled" and job["message"].startswith("cancelled after")
    again = client.post(f"{API}/jobs/{general}/cancel")
    assert again.status_code == 409 and "only queued or running" in again.json()["error"]
    assert client.post(f"{API}/jobs/{facts}/cancel").status_code == 409
    assert client.post(f"{API}/jobs/nope/cancel").status_code == 404


def test_the_knowledge_tab_cancels_the_runs_it_shows(client, services):
    # with no check chosen the tab shows the general runs
    with services.models.use():  # the run waits for the model until the cancel is in
        services.knowledge_runs.start_general()
        event, payload = gradio_call(client, "cancel_runs", [None])
    assert event == "complete", payload
    assert payload[0].startswith("Cancelling 1 run(s)")
    assert services.knowledge_runs.wait_idle(600)
    [run] = services.knowledge_runs.list(kind="general")
    assert run["status"] == "cancelled" and run["done"] < run["total"]
    event, payload = gradio_call(client, "cancel_runs", [None])
    assert payload[0] == "No run is queued or running."
