"""Faults of the app process: SIGKILL in the middle of writes, and a full disk under the data dir.

The real app (`python app.py`) runs in a subprocess on a tiny random model; requests are real
HTTP; the store is opened afterwards with the project's own Database.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from core.store import open_database
from tests.operations.test_app_process import free_port, start_app, wait_until_up

ROUNDS = 3


def chat(url: str) -> str:
    body = {"prompt": "hello", "max_new_tokens": 2, "temperature": 0}
    reply = httpx.post(f"{url}/chat", json=body, timeout=120)
    assert reply.status_code == 200, reply.text
    return reply.json()["response_id"]


def rate_until_killed(url: str, response_id: str, prefix: str, acknowledged: list[str],
                      gone: threading.Event) -> None:
    """Post ratings back to back; remember each one the app answered 200 to."""
    with httpx.Client(timeout=30) as client:
        for index in range(100_000):
            rater = f"{prefix}-{index}"
            try:
                reply = client.post(f"{url}/feedback", json={
                    "response_id": response_id, "rating": 1 + index % 5, "user": rater,
                    "tags": ["fault"], "correction": f"correction {index}"})
            except httpx.HTTPError:
                gone.set()
                return
            assert reply.status_code == 200, reply.text
            acknowledged.append(rater)


def stored_raters(data_dir: Path) -> set[str]:
    db = open_database(data_dir / "refinery.duckdb")  # opens: the kill left a usable store
    try:
        return {row[0] for row in db.fetch_all("SELECT rater FROM ratings")}
    finally:
        db.close()


@pytest.mark.slow  # three app starts: minutes on a busy 2-core machine
def test_kill_9_during_a_stream_of_ratings_loses_no_acknowledged_one(tmp_path, tiny_model_dir):
    data_dir, port = tmp_path / "data", free_port()
    acknowledged: list[str] = []
    for round_ in range(ROUNDS):
        app = start_app(data_dir, tiny_model_dir, port)
        try:
            url = wait_until_up(app, port)
            response_id = chat(url)
            gone = threading.Event()
            raters = [threading.Thread(target=rate_until_killed, daemon=True,
                                       args=(url, response_id, f"round{round_}-t{t}",
                                             acknowledged, gone)) for t in range(2)]
            for thread in raters:
                thread.start()
            before = len(acknowledged)
            while len(acknowledged) < before + 20 and all(t.is_alive() for t in raters):
                gone.wait(0.05)
            assert len(acknowledged) >= before + 20
        finally:
            app.kill()  # SIGKILL while both clients still have requests in flight
            app.wait()
        for thread in raters:
            thread.join(timeout=60)
        assert gone.is_set()
        # the next round's app starts on what this kill left behind
        assert set(acknowledged) <= stored_raters(data_dir), f"round {round_} lost ratings"


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MB tmpfs: a real file system that fills up. Needs the right to mount (root)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                    "the full-disk test needs root or CAP_SYS_ADMIN")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the file system says it is full."""
    filler = disk / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * (1 << 16))
                out.flush()
        except OSError as error:
            assert error.errno == 28  # ENOSPC
    assert shutil.disk_usage(disk).free < (1 << 16)
    return filler


def test_a_full_disk_gives_a_clear_error_and_keeps_earlier_data(small_disk, tiny_model_dir):
    data_dir, port = small_disk / "data", free_port()
    app = start_app(data_dir, tiny_model_dir, port)
    try:
        url = wait_until_up(app, port)
        response_id = chat(url)
        feedback = {"response_id": response_id, "rating": 4, "user": "early"}
        assert httpx.post(f"{url}/feedback", json=feedback, timeout=60).status_code == 200
        text = b"Paris is the capital of France.\n\nThe Seine flows through it."
        upload = httpx.post(f"{url}/documents", files={"files": ("early.txt", text)}, timeout=120)
        assert upload.json()["ingested"] == 1, upload.text

        filler = fill(small_disk)
        late = []  # small writes may still fit in the last page of the store's log
        for index in range(500):
            rated = httpx.post(f"{url}/feedback", timeout=60,
                               json={**feedback, "user": f"late{index}", "rating": 1})
            if rated.status_code != 200:
                break
            late.append(f"late{index}")
        assert rated.status_code == 507, rated.text
        assert rated.json()["error"].startswith("the disk is full")
        upload = httpx.post(f"{url}/documents", files={"files": ("late.txt", text * 50)},
                            timeout=120)
        assert upload.status_code == 200, upload.text
        [result] = upload.json()["results"]
        assert not result["ok"] and result["reason"].startswith("the disk is full")
        assert "Traceback" not in rated.text + upload.text

        filler.unlink()  # space again: the same app process writes again, no restart needed
        again = httpx.post(f"{url}/feedback", timeout=60,
                           json={**feedback, "user": "after", "rating": 5})
        assert again.status_code == 200, again.text
    finally:
        app.kill()
        app.wait()

    db = open_database(data_dir / "refinery.duckdb")
    try:
        raters = {row[0] for row in db.fetch_all("SELECT rater FROM ratings")}
        names = [row[0] for row in db.fetch_all("SELECT name FROM documents")]
    finally:
        db.close()
    assert raters == {"early", "after", *late}
    assert names == ["early.txt"]
    assert len(list((data_dir / "uploads").iterdir())) == 1  # no half-written upload left
