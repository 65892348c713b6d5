"""No path from a request reads outside the allowed folders: a corpus of traversal attempts over
real HTTP, and property tests of the one path check (core/paths.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import InvalidInput, NotFound
from core.paths import AllowedFolders, inside
from tests.tiny_adapters import make_tiny_adapter
from tests.training_helpers import chat_rows


@pytest.fixture(scope="module")
def adapter_template(tiny_model_dir, tmp_path_factory) -> Path:
    return make_tiny_adapter(tiny_model_dir, tmp_path_factory.mktemp("adapters") / "lora")


@pytest.fixture
def outside(services, adapter_template, tiny_model_dir) -> dict[str, Path]:
    """A real adapter and a real model next to the data dir (outside it), and a symlink in it."""
    beside = services.settings.data_dir.parent
    adapter = shutil.copytree(adapter_template, beside / "outside-adapter")
    model = shutil.copytree(tiny_model_dir, beside / "outside-model")
    (services.settings.data_dir / "link").symlink_to(adapter, target_is_directory=True)
    (services.settings.data_dir / "model-link").symlink_to(model, target_is_directory=True)
    return {"adapter": adapter, "model": model}


def attempts(services, target: str) -> list[str]:
    """Ways to name `target` (a folder beside the data dir) or studio files from a request."""
    data = services.settings.data_dir
    return [
        f"../{target}",
        f"./../{target}",
        f"models/../../{target}",
        str(data.parent / target),
        f"%2e%2e%2f{target}",
        f"%252e%252e%252f{target}",
        f"..%2f{target}",
        f"..\\{target}",
        f"..\\..\\{target}",
        f"runs/\x00/../../{target}",
        f"../{target}\x00.safetensors",
        "link" if target == "outside-adapter" else "model-link",
        str(data / ("link" if target == "outside-adapter" else "model-link")),
        str(services.settings.db_path),
        "refinery.duckdb",
        "./refinery.duckdb",
        "/etc/passwd",
        "/etc",
        "/",
        "~",
        "~/.ssh",
        "../" * 30 + "etc/passwd",
    ]


def assert_refused(response, spec: str = "") -> None:
    assert response.status_code in (400, 404), (spec, response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error", "detail"} and body["error"]


def test_compare_refuses_every_traversal_attempt(client, services, outside):
    for spec in attempts(services, "outside-adapter"):
        response = client.post(
            "/api/v1/compare", json={"prompt": "hi", "model_a": "base", "model_b": spec}
        )
        assert_refused(response, spec)
    assert not services.models.is_loaded  # refused before anything was loaded or generated


def test_ab_tests_refuse_adapter_folders_outside(client, services, outside):
    for spec in attempts(services, "outside-adapter"):
        response = client.post("/api/v1/ab-tests", json={"name": "x", "model_b": spec})
        assert_refused(response, spec)


def test_training_refuses_base_models_and_init_adapters_outside(client, services, outside):
    rows = chat_rows(1)
    for spec in attempts(services, "outside-model"):
        body = {"kind": "sft", "train": rows, "config": {"base_model": spec, "max_steps": 1}}
        assert_refused(client.post("/api/v1/training/jobs", json=body), spec)
    for spec in attempts(services, "outside-adapter"):
        body = {"kind": "sft", "train": rows, "preset": "incremental update",
                "config": {"init_adapter": spec, "max_steps": 1}}
        assert_refused(client.post("/api/v1/training/jobs", json=body), spec)
    assert client.get("/api/v1/training/jobs").json()["items"] == []


def test_an_adapter_inside_the_data_dir_is_accepted(services, adapter_template):
    inner = shutil.copytree(adapter_template, services.settings.data_dir / "adapters" / "mine")
    resolved = services.arena.resolver.resolve("adapters/mine")
    assert resolved.adapter_dir == inner.resolve()
    assert services.arena.resolver.resolve(str(inner)).adapter_dir == inner.resolve()


def test_dataset_export_and_document_routes_never_serve_the_store(client, services):
    db = services.settings.db_path
    names = ["..%2Frefinery.duckdb", "..%252Frefinery.duckdb", "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
             "..\\refinery.duckdb", str(db).replace("/", "%2F"), "refinery.duckdb"]
    for name in names:
        for url in (f"/api/v1/datasets/{name}/export", f"/api/v1/datasets/{name}",
                    f"/api/v1/documents/{name}"):
            response = client.get(url)
            assert response.status_code in (400, 404, 405), (url, response.status_code)
            assert b"DUCK" not in response.content


def test_gradio_file_route_never_serves_studio_files(client, services):
    db = services.settings.db_path
    for target in (str(db), "/etc/passwd", f"{services.settings.data_dir}/../etc/passwd",
                   str(db).replace("/", "%2F"), "%2e%2e%2f%2e%2e%2fetc%2fpasswd"):
        response = client.get(f"/gradio_api/file={target}")
        assert response.status_code in (400, 403, 404), (target, response.status_code)
        assert b"DUCK" not in response.content and b"root:" not in response.content


# --- property tests of the path check --------------------------------------------------------

SEGMENTS = st.sampled_from(["..", ".", "a", "b", "link", "", "%2e%2e", "\\", "~", "\x00", "/"])
PATHS = st.one_of(
    st.text(max_size=60),
    st.lists(SEGMENTS, max_size=8).map("/".join),
    st.lists(SEGMENTS, max_size=8).map(lambda parts: "/" + "/".join(parts)),
)


FIXTURE_OK = [HealthCheck.function_scoped_fixture]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("tree")
    root = base / "root"
    (root / "a" / "b").mkdir(parents=True)
    (base / "secret").mkdir()
    (root / "link").symlink_to(base / "secret", target_is_directory=True)
    (root / "store.duckdb").write_bytes(b"x")
    return root


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(candidate=PATHS)
def test_inside_only_raises_typed_errors_and_stays_inside(tree, candidate):
    try:
        found = inside(tree, candidate)
    except (InvalidInput, NotFound):
        return
    assert found.is_relative_to(tree.resolve())
    assert found.exists()


@settings(max_examples=300, deadline=None, suppress_health_check=FIXTURE_OK)
@given(candidate=PATHS)
def test_allowed_folders_never_hand_out_protected_or_outside_paths(tree, candidate):
    folders = AllowedFolders((tree,), (tree / "store.duckdb",))
    try:
        found = folders.path(candidate)
    except (InvalidInput, NotFound):
        return
    assert found.is_relative_to(tree.resolve())
    assert found != (tree / "store.duckdb").resolve()


def test_inside_examples(tree):
    assert inside(tree, "a/b") == (tree / "a" / "b").resolve()
    assert inside(tree, str(tree / "a")) == (tree / "a").resolve()
    for bad in ("../secret", "link", "a/../../secret", "/etc", "a\\b", "a\x00", ""):
        with pytest.raises(InvalidInput):
            inside(tree, bad)
    with pytest.raises(NotFound):
        inside(tree, "a/missing")
    with pytest.raises(InvalidInput, match="protected"):
        AllowedFolders((tree,), (tree / "store.duckdb",)).path("store.duckdb")
    with pytest.raises(InvalidInput, match="not a folder"):
        AllowedFolders((tree,)).folder("store.duckdb")
