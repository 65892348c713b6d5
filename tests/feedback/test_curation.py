"""Curation of rated turns: every filter, SQL paging, bulk actions, and their HTTP routes."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import InvalidInput
from core.feedback.ratings import BulkAction
from core.feedback.turn_filter import TurnFilter
from tests.rated_turns import START, add_turn, rate


@pytest.fixture
def rated(services):
    """Five turns with a spread of ratings, raters, tags, models and grounding."""
    ids = {
        "paris": add_turn(services, "Capital of France?", "Paris.", minutes=0),
        "rome": add_turn(services, "Capital of Italy?", "Rome, of course.", minutes=10),
        "bad": add_turn(services, "Explain gravity", "Bananas.", minutes=20, adapter_version="v2"),
        "grounded": add_turn(
            services,
            "What does the manual say?",
            "Press reset.",
            minutes=30,
            chunk_ids=["c1", "c2"],
        ),
        "unrated": add_turn(services, "Nobody rated me", "Ok.", minutes=40),
    }
    rate(services, ids["paris"], "ann", rating=5, thumb="up", tags=["geo"])
    rate(services, ids["paris"], "bob", rating=4)
    rate(services, ids["rome"], "ann", rating=4, tags=["geo", "long"])
    rate(services, ids["bad"], "bob", rating=1, thumb="down", correction="Gravity attracts mass.")
    rate(services, ids["grounded"], "cy", thumb="up")
    return ids


def ids_of(services, **fields) -> set[str]:
    frame = services.feedback.page(TurnFilter(**fields), page_size=100).rows
    return set(frame["response_id"])


def test_each_filter_selects_the_right_rated_turns(services, rated):
    assert ids_of(services) == set(rated.values()) - {rated["unrated"]}
    assert ids_of(services, min_rating=4) == {rated["paris"], rated["rome"]}
    assert ids_of(services, max_rating=1) == {rated["bad"]}
    assert ids_of(services, thumb="down") == {rated["bad"]}
    assert ids_of(services, thumb="none") == {rated["paris"], rated["rome"]}  # bob's and ann's
    assert ids_of(services, tags=("long",)) == {rated["rome"]}
    assert ids_of(services, model_version="tiny+v2") == {rated["bad"]}
    assert ids_of(services, rater="cy") == {rated["grounded"]}
    assert ids_of(services, text="ITALY") == {rated["rome"]}
    assert ids_of(services, text="attracts") == {rated["bad"]}  # found in the correction
    assert ids_of(services, has_correction=True) == {rated["bad"]}
    assert rated["bad"] not in ids_of(services, has_correction=False)
    assert ids_of(services, grounded=True) == {rated["grounded"]}
    assert ids_of(
        services, date_from=START + timedelta(minutes=5), date_to=START + timedelta(minutes=25)
    ) == {rated["rome"], rated["bad"]}


def test_rows_are_one_per_turn_and_rater_with_curation_columns(services, rated):
    page = services.feedback.page(TurnFilter(response_ids=(rated["paris"],)))
    assert page.total == 2
    assert set(page.rows["rater"]) == {"ann", "bob"}
    row = page.rows.iloc[0]
    assert bool(row["include"]) is True and row["label"] is None
    assert row["model_version"] == "tiny"


def test_paging_happens_in_sql_and_covers_every_row_once(services):
    ids = [add_turn(services, f"question {n}", f"answer {n}", minutes=n) for n in range(23)]
    for turn_id in ids:
        rate(services, turn_id, rating=3)
    seen = []
    for page_number in (1, 2, 3):
        page = services.feedback.page(TurnFilter(), page=page_number, page_size=10)
        assert page.total == 23 and page.pages == 3
        seen += list(page.rows["response_id"])
    assert len(seen) == 23 and set(seen) == set(ids)
    assert services.feedback.page(TurnFilter(), page=4, page_size=10).rows.empty
    with pytest.raises(InvalidInput):
        services.feedback.page(TurnFilter(), page_size=0)


def test_bulk_tags_on_the_filtered_rows_only(services, rated):
    geo = TurnFilter(tags=("geo",))
    assert services.feedback.bulk(BulkAction(action="add_tags", tags=["checked"]), geo) == 2
    assert ids_of(services, tags=("checked",)) == {rated["paris"], rated["rome"]}
    # bob's rating of paris had no "geo" tag, so it was not touched
    bob = services.log.get_rating(rated["paris"], "bob")
    assert "checked" not in bob.tags
    ann = services.log.get_rating(rated["rome"], "ann")
    assert ann.tags == ["geo", "long", "checked"]  # order kept, nothing doubled
    services.feedback.bulk(BulkAction(action="add_tags", tags=["checked"]), geo)
    assert services.log.get_rating(rated["rome"], "ann").tags == ["geo", "long", "checked"]
    removed = services.feedback.bulk(
        BulkAction(action="remove_tags", tags=["geo"]), TurnFilter()
    )
    assert removed == 5
    assert ids_of(services, tags=("geo",)) == set()
    assert services.log.get_rating(rated["rome"], "ann").tags == ["long", "checked"]


def test_bulk_label_and_training_inclusion_on_a_selection(services, rated):
    chosen = TurnFilter(response_ids=(rated["paris"], rated["bad"]))
    labelled = BulkAction(action="set_label", label="reviewed", user="cid")
    assert services.feedback.bulk(labelled, chosen) == 2
    assert set(services.feedback.curation.all_rows(chosen)["curated_by"]) == {"cid"}
    assert services.feedback.bulk(BulkAction(action="exclude"), TurnFilter(max_rating=1)) == 1
    assert ids_of(services, label="reviewed") == {rated["paris"], rated["bad"]}
    assert ids_of(services, include=False) == {rated["bad"]}
    # setting a label keeps the exclusion, and including again keeps the label
    services.feedback.bulk(BulkAction(action="set_label", label="bad answer"), chosen)
    assert ids_of(services, include=False) == {rated["bad"]}
    services.feedback.bulk(BulkAction(action="include"), chosen)
    assert ids_of(services, include=False) == set()
    assert ids_of(services, label="bad answer") == {rated["paris"], rated["bad"]}
    services.feedback.bulk(BulkAction(action="set_label", label=""), chosen)
    assert ids_of(services, label="bad answer") == set()


def test_bad_curation_input_is_refused_with_a_reason(services):
    with pytest.raises(InvalidInput, match="action"):
        BulkAction(action="delete_everything")
    with pytest.raises(InvalidInput, match="tag"):
        BulkAction(action="add_tags", tags=[])
    with pytest.raises(InvalidInput, match="min_rating"):
        TurnFilter(min_rating=4, max_rating=2)
    with pytest.raises(InvalidInput, match="thumb"):
        TurnFilter(thumb="sideways")
    with pytest.raises(InvalidInput, match="date"):
        TurnFilter(date_from=START, date_to=START - timedelta(days=1))


def test_curation_routes_filter_page_and_bulk_over_http(client, services, rated):
    listed = client.get("/api/v1/feedback/rated", params={"min_rating": 4, "page_size": 1})
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["total"] == 3 and body["pages"] == 3 and len(body["items"]) == 1
    done = client.post(
        "/api/v1/feedback/bulk",
        json={"action": "add_tags", "tags": ["gold"], "filter": {"min_rating": 5}},
    )
    assert done.status_code == 200, done.text
    assert done.json() == {"action": "add_tags", "rows": 1}
    tagged = client.get("/api/v1/feedback/rated", params={"tags": "gold"}).json()
    assert [i["response_id"] for i in tagged["items"]] == [rated["paris"]]
    picked = client.post("/api/v1/feedback/bulk", json={
        "action": "exclude", "response_ids": [rated["rome"]], "user": "dee"})
    assert picked.json()["rows"] == 1
    excluded = client.get("/api/v1/feedback/rated", params={"include": False}).json()["items"]
    assert {item["curated_by"] for item in excluded} == {"dee"}
    assert client.get("/api/v1/feedback/rated", params={"include": False}).json()["total"] == 1
    bad = client.post("/api/v1/feedback/bulk", json={"action": "explode"})
    assert bad.status_code == 400 and "action" in bad.json()["error"]
    bad = client.get("/api/v1/feedback/rated", params={"thumb": "sideways"})
    assert bad.status_code in (400, 422)


def test_one_filter_reads_the_log_and_the_curation_alike(services, rated):
    services.feedback.bulk(BulkAction(action="exclude"), TurnFilter(response_ids=(rated["bad"],)))
    for fields in ({"include": False}, {"tags": ("geo",)}, {"text": "gravity"},
                   {"grounded": True}, {"model_version": "tiny+v2"}):
        flt = TurnFilter(**fields)
        logged = set(services.log.query(flt)["response_id"])
        assert logged == ids_of(services, **fields) != set(), fields
    assert set(services.log.query(TurnFilter(rated=False))["response_id"]) == {rated["unrated"]}


def test_a_filter_round_trips_through_its_dict_form():
    flt = TurnFilter(text="refund", min_rating=4, tags=("gold",), include=True,
                     date_from=START, response_ids=("a", "b"))
    data = flt.to_dict()
    assert data == {"text": "refund", "min_rating": 4, "tags": ["gold"], "include": True,
                    "date_from": START.isoformat(), "response_ids": ["a", "b"]}
    assert TurnFilter.from_dict(data) == flt
    assert TurnFilter.from_dict({}) == TurnFilter()
    with pytest.raises(InvalidInput, match="bogus"):
        TurnFilter.from_dict({"bogus": 1})
    with pytest.raises(InvalidInput, match="date_to"):
        TurnFilter.from_dict({"date_to": "soon"})
    with pytest.raises(InvalidInput, match="min_rating"):
        TurnFilter.from_dict({"min_rating": 9})
