"""Migrations and the chat log on a real DuckDB file."""

from datetime import datetime, timedelta

import duckdb

from core.feedback.turn_filter import TurnFilter
from core.store import MIGRATIONS, open_database
from core.store.chatlog import ChatLog, RatingRecord, TurnRecord


def make_turn(turn_id: str, prompt: str = "hi", when: datetime | None = None) -> TurnRecord:
    return TurnRecord(
        id=turn_id,
        conversation_id="c1",
        turn_index=0,
        created_at=when or datetime.now(),
        user_id="u",
        prompt=prompt,
        context=[{"role": "user", "content": prompt}],
        response=f"answer to {prompt}",
        model_id="m",
        adapter_version=None,
        settings={"t": 0},
        latency_ms=10.0,
        ttft_ms=2.0,
        prompt_tokens=3,
        completion_tokens=4,
        tokens_per_s=40.0,
        confidence=-0.5,
        truncated_turns=0,
        finish_reason="stop",
    )


def rate(log: ChatLog, turn_id: str, rater: str = "ann", **fields) -> RatingRecord:
    now = datetime.now()
    values = {"rating": None, "thumb": None, "correction": None, "tags": None, **fields}
    return log.upsert_rating(
        RatingRecord(interaction_id=turn_id, rater=rater, created_at=now, updated_at=now, **values)
    )


def test_migrations_are_idempotent_and_versioned(tmp_path):
    path = tmp_path / "log.duckdb"
    db = open_database(path)
    latest = max(m.version for m in MIGRATIONS if m.component == "chatlog")
    assert db.schema_version("chatlog") == latest
    assert db.migrate(MIGRATIONS) == []  # second run applies nothing
    db.close()
    reopened = open_database(path)  # and a reopen keeps the same version
    assert reopened.schema_version("chatlog") == latest
    reopened.close()


def test_upgrade_from_an_empty_duckdb_file(tmp_path):
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()  # a valid database with no tables at all
    db = open_database(path)
    tables = {row[0] for row in db.fetch_all("SELECT table_name FROM information_schema.tables")}
    assert {"interactions", "ratings", "schema_migrations"} <= tables


def test_rating_changes_keep_unmentioned_fields(tmp_path):
    log = ChatLog(open_database(tmp_path / "log.duckdb"))
    log.add_turn(make_turn("t1"))
    rate(log, "t1", rating=2, tags=["tone"])
    changed = rate(log, "t1", thumb="up", correction="better")
    assert (changed.rating, changed.thumb, changed.correction, changed.tags) == (
        2,
        "up",
        "better",
        ["tone"],
    )
    cleared = rate(log, "t1", tags=[])
    assert cleared.tags == [] and cleared.rating == 2
    assert len(log.ratings_for("t1")) == 1  # one row per rater, updated in place


def test_filters_select_the_right_turns(tmp_path):
    log = ChatLog(open_database(tmp_path / "log.duckdb"))
    old = datetime.now() - timedelta(days=10)
    log.add_turn(make_turn("a", "paris question", when=old))
    log.add_turn(make_turn("b", "berlin question"))
    log.add_turn(make_turn("c", "rome question"))
    rate(log, "a", rating=5, thumb="up")
    rate(log, "b", rating=1, thumb="down")

    def ids(**kwargs):
        return sorted(log.query(TurnFilter(**kwargs))["response_id"])

    assert ids(text="BERLIN") == ["b"]
    assert ids(min_rating=4) == ["a"]
    assert ids(max_rating=2) == ["b"]
    assert ids(thumb="down") == ["b"]
    assert ids(thumb="none") == ["c"]
    assert ids(rated=False) == ["c"]
    assert ids(date_from=datetime.now() - timedelta(days=1)) == ["b", "c"]
    assert ids(date_to=datetime.now() - timedelta(days=1)) == ["a"]
    assert log.count(TurnFilter(min_rating=1)) == 2
    assert len(log.query(TurnFilter(), limit=2)) == 2


def test_export_writes_every_filtered_row(tmp_path):
    import pandas as pd

    log = ChatLog(open_database(tmp_path / "log.duckdb"))
    for index in range(5):
        log.add_turn(make_turn(f"t{index}", f"prompt {index}"))
    flt = TurnFilter(text="prompt")  # the log reads 100 rows a page; an export reads every row
    csv = pd.read_csv(log.export(flt, tmp_path / "out" / "rows.csv", "csv"))
    parquet = pd.read_parquet(log.export(flt, tmp_path / "out" / "rows.parquet", "parquet"))
    assert len(csv) == len(parquet) == 5
    assert set(parquet["prompt"]) == {f"prompt {i}" for i in range(5)}
