"""GET /metrics over real HTTP: counters move after real requests; store figures match the store."""

from __future__ import annotations

from datetime import datetime

from prometheus_client.parser import text_string_to_metric_families

from core.store.training import JobRecord
from tests.conftest import LOCAL


def scrape(client) -> dict:
    """{(sample name, frozenset(labels)): value} from the app's Prometheus text."""
    reply = client.get("/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(reply.text)
        for sample in family.samples
    }


def sample(samples: dict, name: str, **labels) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def chat(client) -> str:
    body = {"prompt": "hello there", "max_new_tokens": 4, "temperature": 0}
    reply = client.post("/api/v1/chat", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()["response_id"]


def test_request_counters_and_latency_move_by_route_template(client):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/api/v1/health").status_code == 200
    assert client.get("/api/v1/training/jobs/nope-1").status_code == 404
    assert client.get("/api/v1/training/jobs/nope-2").status_code == 404
    after = scrape(client)

    health = {"route": "/api/v1/health", "method": "GET", "status": "200"}
    assert sample(after, "refinery_http_requests_total", **health) - sample(
        before, "refinery_http_requests_total", **health) == 3
    job_route = {"route": "/api/v1/training/jobs/{job_id}", "method": "GET", "status": "404"}
    assert sample(after, "refinery_http_requests_total", **job_route) == 2
    assert not any("nope-1" in dict(labels).get("route", "") for _, labels in after)
    timed = {"route": "/api/v1/health", "method": "GET"}
    assert sample(after, "refinery_http_request_duration_seconds_count", **timed) >= 3
    assert sample(after, "refinery_http_request_duration_seconds_sum", **timed) > 0


def test_a_chat_answer_is_observed_and_the_queue_drains(client, services):
    before = scrape(client)
    chat(client)
    after = scrape(client)
    name = "refinery_generation_tokens_per_second"
    assert sample(after, f"{name}_count") - sample(before, f"{name}_count") == 1
    logged = services.db.fetch_one("SELECT sum(tokens_per_s) FROM interactions")[0]
    assert abs(sample(after, f"{name}_sum") - logged) < 1e-6
    assert sample(after, f"{name}_bucket", le="+Inf") == sample(after, f"{name}_count")
    chat_route = {"route": "/api/v1/chat", "method": "POST", "status": "200"}
    assert sample(after, "refinery_http_requests_total", **chat_route) == 1
    assert sample(after, "refinery_generation_queue_depth") == 0
    assert sample(after, "refinery_model_in_use") == 0

    services.admission.enter()  # the one generating
    services.admission.enter()  # and one waiting behind it
    try:
        with services.models.use_lock:
            busy = scrape(client)
    finally:
        services.admission.leave()
        services.admission.leave()
    assert sample(busy, "refinery_generation_queue_depth") == 1
    assert sample(busy, "refinery_model_in_use") == 1


def test_ratings_and_jobs_by_status_match_the_store(client, services, tmp_path):
    response_id = chat(client)
    for index in range(3):
        reply = client.post("/api/v1/feedback",
                            json={"response_id": response_id, "rating": 5, "user": f"r{index}"})
        assert reply.status_code == 200
    for index, status in enumerate(["completed", "completed", "failed", "stopped"]):
        services.training.store.add(JobRecord(
            id=f"job{index}", name="n", status=status, spec={}, kind="sft", dataset_id=None,
            dataset_version=None, run_dir=str(tmp_path / f"run{index}"), pid=None,
            created_at=datetime.now(), started_at=None, finished_at=None, step=0,
            total_steps=None, progress=0.0, metrics={}, error=None, events_offset=0,
            model_id=None, user_id="anonymous",
        ))
    samples = scrape(client)

    assert sample(samples, "refinery_ratings") == 3
    stored = dict(services.db.fetch_all("SELECT status, count(*) FROM training_jobs GROUP BY 1"))
    for status in ("queued", "running", "completed", "failed", "stopped"):
        assert sample(samples, "refinery_training_jobs", status=status) == stored.get(status, 0)
    assert sample(samples, "refinery_training_jobs", status="completed") == 2


def test_each_app_has_its_own_registry_and_login_guards_metrics(services, tmp_path,
                                                                tiny_model_dir):
    import base64

    from argon2 import PasswordHasher
    from fastapi.testclient import TestClient

    from app import create_app
    from core.services import build_services
    from core.settings import Settings

    hashed = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash("pw-for-ops-1")
    users = tmp_path / "users.yaml"
    users.write_text(f"ops: '{hashed}'")
    guarded = build_services(Settings(engine="transformers",
                                      data_dir=tmp_path / "guarded", model=str(tiny_model_dir),
                                      users_file=users))
    login = {"Authorization": "Basic " + base64.b64encode(b"ops:pw-for-ops-1").decode()}
    try:
        with TestClient(create_app(services), base_url=LOCAL) as first, \
                TestClient(create_app(guarded), headers=login, base_url=LOCAL) as second:
            first.get("/api/v1/health")
            health = {"route": "/api/v1/health", "method": "GET", "status": "200"}
            assert sample(scrape(first), "refinery_http_requests_total", **health) == 1
            assert sample(scrape(second), "refinery_http_requests_total", **health) == 0
            assert second.get("/metrics", headers={"Authorization": ""}).status_code == 401
    finally:
        guarded.close()
