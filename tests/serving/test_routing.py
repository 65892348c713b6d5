"""Routing: rules and similarity pick the adapter, the served model is the fallback, an explicit
choice and a running experiment come first, and the route is logged with the turn."""

from __future__ import annotations

import shutil
from datetime import datetime

import pytest

from core.comparison.experiments import ExperimentSpec
from core.errors import InvalidInput, NotFound
from core.serving.chat import ChatRequest
from core.serving.generation import GenerationOptions
from core.serving.routing import RouteSpec, compile_pattern
from core.training.events import write_jsonl
from tests.tiny_adapters import make_tiny_adapter
from ui.tabs.chat import metrics_line
from ui.tabs.routing import parse_patterns, routes_table

COOKING = [
    "How long should I roast a whole chicken?",
    "What temperature do I bake sourdough bread at?",
    "How do I keep pasta from sticking while it boils?",
    "Can I simmer a vegetable soup overnight?",
    "What is the best way to grill salmon fillets?",
]
OPTIONS = GenerationOptions(max_new_tokens=4, temperature=0.0)


@pytest.fixture(scope="module")
def adapter_files(tmp_path_factory, tiny_model_dir):
    """Two tiny adapters; the cooking one has a run folder with its training conversations."""
    root = tmp_path_factory.mktemp("routing")
    invoices = make_tiny_adapter(tiny_model_dir, root / "invoices", seed=1)
    cooking = make_tiny_adapter(tiny_model_dir, root / "cooking", seed=2)
    run_dir = root / "cooking-run"
    run_dir.mkdir()
    rows = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "ok"}]}
            for p in COOKING]
    write_jsonl(run_dir / "train.jsonl", rows)
    return {"invoices": (invoices, None), "cooking": (cooking, run_dir)}


@pytest.fixture
def adapters(services, adapter_files, tmp_path):
    """Both adapters registered (copies: deleting a registered adapter removes its folder)."""
    for model_id, (folder, run_dir) in adapter_files.items():
        copy = shutil.copytree(folder, tmp_path / "adapters" / model_id)
        services.registry.register(
            model_id=model_id, name=model_id, base_model=services.models.name, adapter_dir=copy,
            job_id=None, config={}, dataset_id=None, dataset_version=None, metrics={},
            duration_s=None, lineage={"run_dir": str(run_dir)} if run_dir else {},
        )
    services.routing.add(RouteSpec(model_id="invoices", kind="rule",
                                   patterns=("invoice", r"\bVAT\b")))
    services.routing.add(RouteSpec(model_id="cooking", kind="similarity", threshold=0.5))
    return services


def chat(services, prompt: str, **fields):
    return services.chat.complete(ChatRequest(prompt=prompt, options=OPTIONS, **fields)).turn


def test_rules_and_similarity_pick_the_adapter(adapters):
    route = adapters.routing.route("Please check this INVOICE for me")
    assert (route.model_id, route.reason) == ("invoices", "rule:/invoice/")
    assert adapters.routing.route("Is the VAT included?").reason == r"rule:/\bVAT\b/"

    similar = adapters.routing.route("How long do I roast potatoes in the oven?")
    assert similar.model_id == "cooking" and similar.reason.startswith("similarity:")
    assert float(similar.reason.split(":")[1]) >= 0.5

    unrelated = adapters.routing.route("Who wrote the Iliad?")
    assert (unrelated.model_id, unrelated.reason) == (None, "served")


def test_the_route_is_logged_with_the_turn(adapters):
    turn = chat(adapters, "Where do I send the invoice?")
    assert (turn.adapter_version, turn.route) == ("invoices", "rule:/invoice/")
    assert adapters.log.get_turn(turn.id)["route"] == "rule:/invoice/"
    assert "(route: `rule:/invoice/`)" in metrics_line(turn, None)

    cooking = chat(adapters, "How do I bake bread with a crisp crust?")
    assert cooking.adapter_version == "cooking" and cooking.route.startswith("similarity:")

    served = chat(adapters, "Who wrote the Iliad?")
    assert (served.adapter_version, served.route) == (None, "served")
    adapters.registry.promote("cooking")
    promoted = chat(adapters, "Who wrote the Iliad?")
    assert (promoted.adapter_version, promoted.route) == ("cooking", "served")


def test_an_explicit_model_and_an_experiment_come_before_routes(adapters):
    explicit = chat(adapters, "Where do I send the invoice?", model="base")
    assert (explicit.adapter_version, explicit.route) == (None, "explicit")
    chosen = chat(adapters, "How do I bake bread?", model="invoices")
    assert (chosen.adapter_version, chosen.route) == ("invoices", "explicit")

    adapters.experiments.create(ExperimentSpec(
        name="cooking vs base", model_a="base", model_b="cooking", end_rated_turns=50,
    ))
    arm = chat(adapters, "Where do I send the invoice?", user="ann")
    assert arm.route in ("experiment:A", "experiment:B")
    assert arm.adapter_version == ("cooking" if arm.route == "experiment:B" else None)
    still_explicit = chat(adapters, "Where do I send the invoice?", user="ann", model="invoices")
    assert still_explicit.route == "explicit"


def test_routes_to_a_deleted_adapter_are_skipped(adapters):
    adapters.registry.delete("invoices")
    assert adapters.routing.route("Check the invoice").reason == "served"
    assert chat(adapters, "Check the invoice").route == "served"


def test_patterns_are_one_per_line():
    patterns = parse_patterns("invoice\n  \n\\b(VAT|tax)\\b, due\n")
    assert patterns == ("invoice", r"\b(VAT|tax)\b, due")


def test_bad_routes_are_refused(adapters):
    with pytest.raises(InvalidInput, match="regular expression"):
        RouteSpec(model_id="invoices", kind="rule", patterns=("(unclosed",))
    with pytest.raises(InvalidInput, match="at least one"):
        RouteSpec(model_id="invoices", kind="rule", patterns=(" ",))
    with pytest.raises(InvalidInput, match="threshold"):
        RouteSpec(model_id="cooking", kind="similarity", threshold=1.5)
    with pytest.raises(NotFound):
        adapters.routing.add(RouteSpec(model_id="nope", kind="rule", patterns=("x",)))
    with pytest.raises(InvalidInput, match="no training prompts"):
        adapters.routing.add(RouteSpec(model_id="invoices", kind="similarity"))
    with pytest.raises(NotFound):
        adapters.routing.remove("missing")


HOSTILE = ("(a+)+$", "(a|aa)+$", r"(\w+\s?)*!$", "(x+x+)+y", "((a*)*b)*c$")


def test_rule_patterns_run_on_re2_so_backtracking_cannot_stall_chat(adapters):
    """Nested quantifiers that take exponential time on a backtracking engine either run on
    RE2 (linear in the prompt) or are refused when the route is made."""
    for pattern in HOSTILE:
        assert type(compile_pattern(pattern)).__module__.startswith("re2")
        adapters.routing.add(RouteSpec(model_id="invoices", kind="rule", patterns=(pattern,)))
    prompt = "a" * 30_000 + " " + "x" * 30_000  # hours of backtracking for `re`
    assert adapters.routing.route(prompt).reason == "served"
    assert adapters.routing.route("a" * 5000).reason == "rule:/(a+)+$/"
    for pattern in (r"(a)\1", "(?=a)", "(?<!a)b", "a{1000}{1000}"):
        with pytest.raises(InvalidInput, match="RE2 syntax"):
            RouteSpec(model_id="invoices", kind="rule", patterns=(pattern,))


def test_a_stored_pattern_re2_cannot_run_is_skipped(adapters):
    """A rule saved before rules ran on RE2 routes nothing instead of breaking chat."""
    from core.store.routing import RouteRecord

    adapters.routing.store.add(RouteRecord(id="old", model_id="cooking", kind="rule",
                                           patterns=[r"(pie)\1"], threshold=None,
                                           created_at=datetime.now()))
    assert adapters.routing.route("piepie").reason != r"rule:/(pie)\1/"
    assert adapters.routing.route("an invoice").reason == "rule:/invoice/"


def test_routes_api_round_trip(client, adapters):
    listed = client.get("/api/v1/routes").json()
    assert [(r["model_id"], r["kind"]) for r in listed] == [
        ("invoices", "rule"), ("cooking", "similarity")
    ]
    added = client.post("/api/v1/routes", json={"model": "cooking", "kind": "rule",
                                                "patterns": ["recipe"]})
    assert added.status_code == 200, added.text
    route_id = added.json()["id"]

    preview = client.post("/api/v1/routes/preview", json={"prompt": "a recipe for soup"})
    assert preview.json() == {"model": "cooking", "reason": "rule:/recipe/"}
    fallback = client.post("/api/v1/routes/preview", json={"prompt": "Who wrote the Iliad?"})
    assert fallback.json() == {"model": "base", "reason": "served"}

    answer = client.post("/api/v1/chat", json={"prompt": "Is this invoice paid?",
                                               "max_new_tokens": 4})
    assert answer.status_code == 200, answer.text
    assert answer.json()["route"] == "rule:/invoice/"
    assert answer.json()["adapter_version"] == "invoices"
    logged = client.get("/api/v1/interactions").json()["items"]
    assert [item["route"] for item in logged] == ["rule:/invoice/"]

    assert list(routes_table(adapters)["patterns"]) == ["invoice, \\bVAT\\b", "", "recipe"]
    assert client.delete(f"/api/v1/routes/{route_id}").status_code == 200
    assert client.delete(f"/api/v1/routes/{route_id}").status_code == 404
    bad = client.post("/api/v1/routes", json={"model": "cooking", "kind": "rule",
                                              "patterns": ["("]})
    assert bad.status_code == 400 and "regular expression" in bad.json()["error"]
    unknown = client.post("/api/v1/routes", json={"model": "nope", "kind": "rule",
                                                  "patterns": ["x"]})
    assert unknown.status_code == 404
    empty = client.post("/api/v1/routes/preview", json={"prompt": " "})
    assert empty.status_code == 400


def test_a_store_from_before_routing_gets_the_route_column(tmp_path):
    from core.store import MIGRATIONS, Database, open_database

    path = tmp_path / "old.duckdb"
    old = Database(path)
    old.migrate([m for m in MIGRATIONS if (m.component, m.version) == ("chatlog", 1)])
    old.execute(
        "INSERT INTO interactions (id, conversation_id, turn_index, created_at, user_id, prompt,"
        " context, response, model_id, settings, latency_ms, prompt_tokens, completion_tokens,"
        " tokens_per_s, finish_reason) VALUES ('old', 'c', 0, now(), 'u', 'p', '[]', 'r', 'm',"
        " '{}', 1, 1, 1, 1, 'stop')"
    )
    old.close()
    upgraded = open_database(path)
    assert upgraded.schema_version("chatlog") == 2
    assert upgraded.fetch_one("SELECT route FROM interactions WHERE id = 'old'") == (None,)
    upgraded.close()
