"""The real app in a subprocess: one instance per data dir, and no acknowledged rating is lost."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from core.store import open_database

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_app(data_dir: Path, model_dir: Path, port: int) -> subprocess.Popen:
    command = [
        sys.executable,
        "app.py",
        "--data-dir",
        str(data_dir),
        "--model",
        str(model_dir),
        "--port",
        str(port),
        "--engine",
        "transformers",  # the fast engine's background conversion has its own tests
    ]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def wait_until_up(process: subprocess.Popen, port: int) -> str:
    url = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(600):
        if process.poll() is not None:
            pytest.fail(f"app exited: {process.stderr.read()}")
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.2)
    pytest.fail("app did not come up")


@pytest.fixture
def running_app(tmp_path, tiny_model_dir):
    port = free_port()
    process = start_app(tmp_path / "data", tiny_model_dir, port)
    url = wait_until_up(process, port)
    yield process, url, tmp_path / "data"
    if process.poll() is None:
        process.kill()
        process.wait()


def test_a_second_instance_on_the_same_data_dir_exits_with_a_message(running_app, tiny_model_dir):
    first, _, data_dir = running_app
    second = start_app(data_dir, tiny_model_dir, free_port())
    _, errors = second.communicate(timeout=120)
    assert second.returncode == 2
    assert str(data_dir) in errors and f"pid {first.pid}" in errors


def test_killing_the_app_keeps_every_acknowledged_rating(running_app):
    process, url, data_dir = running_app
    body = {"prompt": "hello", "max_new_tokens": 2, "temperature": 0}
    response_id = httpx.post(f"{url}/chat", json=body, timeout=60).json()["response_id"]
    acknowledged = []
    for index in range(25):
        rater = f"rater{index}"
        reply = httpx.post(
            f"{url}/feedback",
            timeout=30,
            json={"response_id": response_id, "rating": 1 + index % 5, "user": rater},
        )
        assert reply.status_code == 200
        acknowledged.append(rater)
    process.send_signal(signal.SIGKILL)
    process.wait()
    db = open_database(data_dir / "refinery.duckdb")
    stored = {row[0] for row in db.fetch_all("SELECT rater FROM ratings")}
    db.close()
    assert set(acknowledged) <= stored
