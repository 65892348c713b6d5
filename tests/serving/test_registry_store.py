"""The registry of adapters and retrievers: a store made before they shared one registry."""

import json
from datetime import datetime

from core.store import MIGRATIONS, Database, open_database
from core.store.registry import ADAPTER, RETRIEVER, ModelRecord, RegistryStore, RetrieverRecord

# The registry's tables as the studio created them before adapters and retrievers shared one
OLD_SCHEMA = (
    """CREATE TABLE registered_models (
        id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, base_model VARCHAR NOT NULL,
        adapter_dir VARCHAR NOT NULL, job_id VARCHAR, config JSON NOT NULL, dataset_id VARCHAR,
        dataset_version VARCHAR, metrics JSON NOT NULL, duration_s DOUBLE,
        lineage JSON NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE model_promotions (
        seq INTEGER PRIMARY KEY,
        action VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
        model_id VARCHAR, user_id VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE retrievers (
        id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, model_dir VARCHAR NOT NULL,
        base_model VARCHAR NOT NULL, job_id VARCHAR, dataset_id VARCHAR,
        dataset_version VARCHAR, loss_function VARCHAR NOT NULL, config JSON NOT NULL,
        metrics JSON NOT NULL, evaluation JSON NOT NULL, created_at TIMESTAMP NOT NULL)""",
    """CREATE TABLE retriever_actions (
        seq INTEGER PRIMARY KEY,
        action VARCHAR NOT NULL CHECK (action IN ('promote', 'rollback')),
        retriever_id VARCHAR NOT NULL, chunks INTEGER NOT NULL, user_id VARCHAR NOT NULL,
        created_at TIMESTAMP NOT NULL)""",
    "INSERT INTO schema_migrations (component, version) VALUES ('registry', 1), ('retrievers', 1)",
)
WHEN = datetime(2026, 3, 1, 12, 0)


def make_old_store(path) -> None:
    old = Database(path)
    old.migrate([m for m in MIGRATIONS if m.component != "registry"])
    for statement in OLD_SCHEMA:
        old.execute(statement)
    for index in (1, 2):
        old.execute(
            "INSERT INTO registered_models"
            " VALUES (?, ?, 'base', ?, ?, ?, 'd1', 'v1', ?, 3.5, ?, ?)",
            [f"job-{index}", f"adapter {index}", f"/runs/job-{index}/adapter", f"job-{index}",
             json.dumps({"rank": 8}), json.dumps({"val_loss": 0.5}),
             json.dumps({"dataset": "d1"}), WHEN.replace(day=index)],
        )
    for seq, (action, model_id) in enumerate(
        [("promote", "job-1"), ("promote", "job-2"), ("rollback", "job-2")], start=1
    ):
        old.execute("INSERT INTO model_promotions VALUES (?, ?, ?, 'ada', ?)",
                    [seq, action, model_id, WHEN])
    old.execute(
        "INSERT INTO retrievers VALUES ('retriever-job-3', 'codes', '/runs/job-3/adapter',"
        " 'bundled', 'job-3', 'd2', 'v1', 'mnrl', '{}', '{\"steps\": 4}',"
        " '{\"before\": null, \"after\": {\"mrr\": 0.9}}', ?)",
        [WHEN],
    )
    for seq, action in enumerate(("promote", "rollback"), start=1):
        old.execute("INSERT INTO retriever_actions VALUES (?, ?, 'retriever-job-3', 7, 'bo', ?)",
                    [seq, action, WHEN])
    old.close()


def test_a_store_from_before_the_shared_registry_opens_with_everything_listed(settings):
    from core.services import build_services

    make_old_store(settings.db_path)
    services = build_services(settings)
    try:
        assert [m.id for m in services.registry.list()] == ["job-2", "job-1"]
        adapter = services.registry.get("job-1")
        assert (adapter.adapter_dir, adapter.config, adapter.lineage, adapter.duration_s) == (
            "/runs/job-1/adapter", {"rank": 8}, {"dataset": "d1"}, 3.5)
        assert services.registry.active().id == "job-1"  # promote, promote, rollback
        assert [(h["action"], h["model_id"], h["user_id"]) for h in services.registry.history()] \
            == [("promote", "job-1", "ada"), ("promote", "job-2", "ada"),
                ("rollback", "job-2", "ada")]
        assert [r.id for r in services.retrievers.list()] == ["retriever-job-3", "bundled"]
        retriever = services.retrievers.get("retriever-job-3")
        assert retriever.evaluation == {"before": None, "after": {"mrr": 0.9}}
        assert retriever.loss_function == "mnrl" and retriever.model_dir == "/runs/job-3/adapter"
        assert services.retrievers.active().id == "bundled"
        assert [(h["action"], h["retriever_id"], h["chunks"])
                for h in services.retrievers.history()] == [
            ("promote", "retriever-job-3", 7), ("rollback", "retriever-job-3", 7)]
        tables = {row[0] for row in services.db.fetch_all(
            "SELECT table_name FROM information_schema.tables")}
        assert not tables & {"registered_models", "model_promotions", "retrievers",
                             "retriever_actions"}
        # a new action continues after the folded log, in each kind's own history
        services.registry.promote("job-2", user="cy")
        assert services.registry.active().id == "job-2"
        assert services.retrievers.history()[-1]["action"] == "rollback"
    finally:
        services.close()
    reopened = Database(settings.db_path)
    assert reopened.migrate(MIGRATIONS) == []  # the fold ran once
    assert len(RegistryStore(reopened, ADAPTER).list()) == 2
    assert len(RegistryStore(reopened, RETRIEVER).list()) == 1
    reopened.close()


def test_each_kind_sees_only_its_own_entries_and_actions(tmp_path):
    db = open_database(tmp_path / "r.duckdb")
    adapters = RegistryStore(db, ADAPTER)
    adapters.add(ModelRecord(id="x", name="a", base_model="b", adapter_dir="/a", job_id=None,
                             config={}, dataset_id=None, dataset_version=None, metrics={},
                             duration_s=None, lineage={}, created_at=WHEN))
    retrievers = RegistryStore(db, RETRIEVER)
    retrievers.add(RetrieverRecord(id="x", name="r", model_dir="/r", base_model="bundled",
                                   job_id=None, dataset_id=None, dataset_version=None,
                                   loss_function="mnrl", config={}, metrics={}, evaluation={},
                                   created_at=WHEN))
    retrievers.log_action("promote", "x", "ada", chunks=3)
    assert adapters.get("x").adapter_dir == "/a" and retrievers.get("x").model_dir == "/r"
    assert adapters.actions() == []
    assert [a["retriever_id"] for a in retrievers.actions()] == ["x"]
    db.close()
