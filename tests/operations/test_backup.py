"""Backup and restore round trip on a real data dir: store rows, uploads, run folders, adapters."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from core.documents.service import IncomingFile
from core.feedback.ratings import Feedback
from core.operations.backup import main as backup_main
from core.operations.instance_lock import InstanceLock
from core.services import build_services
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from core.settings import Settings
from core.store import open_database


def fill(services, data_dir: Path) -> dict:
    """Real data of several kinds: turns, ratings, a document, a dataset, a registered adapter."""
    options = GenerationOptions(max_new_tokens=3, temperature=0)
    turn = services.chat.complete(ChatRequest(prompt="Hello there", options=options)).turn
    for rater, rating in (("ada", 5), ("bob", 2)):
        services.feedback.rate(Feedback(response_id=turn.id, rating=rating, user=rater,
                                        correction="Hi!", tags=["greeting"]))
    text = b"Refinery keeps every answer.\n\nIt turns feedback into training data."
    [result] = services.documents.ingest([IncomingFile("notes.txt", io.BytesIO(text))])
    assert result.ok, result.reason
    rows = [{"id": f"r{i}", "messages": [{"role": "user", "content": f"q{i}"},
                                         {"role": "assistant", "content": f"a{i}"}]}
            for i in range(6)]
    services.datasets.create_from_rows(name="tiny", kind="sft", rows=rows)
    adapter = data_dir / "runs" / "job1" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    services.registry.register(
        model_id="adapter-job1", name="tiny", base_model=services.settings.model,
        adapter_dir=adapter, job_id="job1", config={}, dataset_id=None, dataset_version=None,
        metrics={}, duration_s=1.0, lineage={"run_dir": str(adapter.parent)})
    return {"turn": turn.id}


def snapshot(db, old: str = "", new: str = "") -> dict[str, list]:
    """Every table's rows, sorted, with the data dir prefix `old` read as `new`."""
    tables = [row[0] for row in db.fetch_all(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'")]

    def mapped(value):
        return value.replace(old, new) if old and isinstance(value, str) else value

    return {table: sorted((tuple(mapped(v) for v in row)
                           for row in db.fetch_all(f'SELECT * FROM "{table}"')), key=repr)
            for table in tables}


@pytest.fixture
def backed_up(tmp_path, tiny_model_dir):
    settings = Settings(engine="transformers", data_dir=tmp_path / "old", model=str(tiny_model_dir))
    services = build_services(settings)
    try:
        ids = fill(services, settings.data_dir)
        before = snapshot(services.db)
    finally:
        services.close()
    assert backup_main(["export", str(tmp_path / "backup"), "--data-dir",
                        str(settings.data_dir)]) == 0
    return settings.data_dir, tmp_path / "backup", before, ids


def test_restore_into_a_new_dir_brings_back_every_row_and_file(backed_up, tmp_path,
                                                                tiny_model_dir):
    old_dir, backup, before, ids = backed_up
    assert (backup / "database" / "schema.sql").is_file()
    assert not (backup / "files" / "refinery.duckdb").exists()
    new_dir = tmp_path / "restored"
    assert backup_main(["restore", str(backup), "--data-dir", str(new_dir)]) == 0

    db = open_database(new_dir / "refinery.duckdb")
    try:
        after = snapshot(db)
    finally:
        db.close()
    assert after == {table: sorted((tuple(v.replace(f"{old_dir}/", f"{new_dir}/")
                                          if isinstance(v, str) else v for v in row)
                                    for row in rows), key=repr)
                     for table, rows in before.items()}
    assert sum(len(rows) for rows in after.values()) > 20
    assert [p.name for p in (new_dir / "uploads").iterdir()] == \
        [p.name for p in (old_dir / "uploads").iterdir()]

    services = build_services(Settings(engine="transformers",
                                       data_dir=new_dir, model=str(tiny_model_dir)))
    try:
        assert {r.rater for r in services.log.ratings_for(ids["turn"])} == {"ada", "bob"}
        [document] = services.documents.list()
        assert services.documents.preview(document["id"])
        assert services.documents.search("feedback training", k=1)
        model = services.registry.get("adapter-job1")
        assert Path(model.adapter_dir) == new_dir / "runs" / "job1" / "adapter"
        assert (Path(model.adapter_dir) / "adapter_config.json").is_file()
    finally:
        services.close()


def test_restore_refuses_a_non_empty_dir_unless_forced(backed_up, tmp_path, capsys):
    old_dir, backup, before, _ = backed_up
    target = tmp_path / "busy"
    (target / "uploads").mkdir(parents=True)
    (target / "uploads" / "keep.txt").write_text("mine")
    assert backup_main(["restore", str(backup), "--data-dir", str(target)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (target / "uploads" / "keep.txt").read_text() == "mine"
    assert backup_main(["restore", str(backup), "--data-dir", str(target), "--force"]) == 0
    assert not (target / "uploads" / "keep.txt").exists()
    db = open_database(target / "refinery.duckdb")
    try:
        assert {t: len(r) for t, r in snapshot(db).items()} == \
            {t: len(r) for t, r in before.items()}
    finally:
        db.close()


def test_restore_and_export_refuse_while_an_app_holds_the_data_dir(backed_up, tmp_path, capsys):
    old_dir, backup, _, _ = backed_up
    target = tmp_path / "served"
    lock = InstanceLock(target / "refinery.lock")
    lock.acquire("serving 127.0.0.1:7860")
    try:
        assert backup_main(["restore", str(backup), "--data-dir", str(target), "--force"]) == 2
        assert "another Refinery is already using" in capsys.readouterr().err
        assert not (target / "refinery.duckdb").exists()
    finally:
        lock.release()
    assert backup_main(["export", str(tmp_path / "again"), "--data-dir", str(tmp_path)]) == 2
    assert "holds no Refinery store" in capsys.readouterr().err
    assert backup_main(["export", str(backup), "--data-dir", str(old_dir)]) == 2
    assert "not empty" in capsys.readouterr().err
