"""Optional login on the UI and the REST API, ratings and votes recorded for the logged-in user,
the bind rule, the user CLI, no public share link anywhere, and text never shown as live HTML."""

from __future__ import annotations

import ast
import base64
import io
import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from app import main
from core.errors import Forbidden, InvalidInput
from core.operations.auth import (
    Authenticator,
    acting_user,
    bind_notice,
    build_authenticator,
    session_user,
)
from core.operations.users import main as users_main
from tests.conftest import LOCAL
from tests.training_helpers import wait_for
from ui.markup import as_text, as_text_messages

ROOT = Path(__file__).resolve().parents[2]
# Cheap argon2 parameters keep the tests quick; the hash carries them, so verify uses them too.
FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22"}


def basic(name: str, password: str) -> dict:
    token = base64.b64encode(f"{name}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def users_file(tmp_path) -> Path:
    path = tmp_path / "users.yaml"
    path.write_text("\n".join(f"{n}: '{FAST.hash(p)}'" for n, p in PASSWORDS.items()))
    return path


@pytest.fixture
def auth_services(tmp_path, tiny_model_dir, users_file):
    from core.services import build_services
    from core.settings import Settings

    settings = Settings(engine="transformers",
        data_dir=tmp_path / "data", model=str(tiny_model_dir), default_max_new_tokens=4,
        users_file=users_file,
    )
    built = build_services(settings)
    yield built
    built.close()


@pytest.fixture
def auth_client(auth_services):
    from fastapi.testclient import TestClient

    from app import create_app

    with TestClient(create_app(auth_services), base_url=LOCAL) as test_client:
        yield test_client


ALICE = basic("alice", PASSWORDS["alice"])


def test_every_api_route_but_health_needs_credentials(auth_client):
    assert auth_client.get("/api/v1/health").status_code == 200
    for method, url in [("get", "/api/v1/interactions"), ("get", "/api/v1/models"),
                        ("post", "/api/v1/chat"), ("post", "/api/v1/feedback"),
                        ("get", "/api/v1/datasets"), ("post", "/api/v1/votes")]:
        response = getattr(auth_client, method)(url)
        assert response.status_code == 401, (url, response.status_code)
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert "log in" in response.json()["error"]
    for headers in (basic("alice", "wrong"), basic("mallory", "x"), basic("alice", ""),
                    {"Authorization": "Basic !!!"}, {"Authorization": "Bearer abc"}):
        assert auth_client.get("/api/v1/interactions", headers=headers).status_code == 401
    assert auth_client.get("/api/v1/interactions", headers=ALICE).status_code == 200


def test_ratings_and_votes_record_the_logged_in_user(auth_client, auth_services):
    turn = auth_client.post(
        "/api/v1/chat", json={"prompt": "hi", "max_new_tokens": 2, "user": "anonymous"},
        headers=ALICE,
    ).json()
    assert auth_services.log.get_turn(turn["response_id"])["user_id"] == "alice"
    rated = auth_client.post("/api/v1/feedback", headers=ALICE,
                             json={"response_id": turn["response_id"], "rating": 4})
    assert rated.status_code == 200 and rated.json()["user"] == "alice"
    forged = auth_client.post("/api/v1/feedback", headers=ALICE,
                              json={"response_id": turn["response_id"], "rating": 1,
                                    "user": "bob"})
    assert forged.status_code == 403 and "cannot act as 'bob'" in forged.json()["error"]
    assert auth_services.log.get_rating(turn["response_id"], "bob") is None

    compared = auth_client.post("/api/v1/compare", headers=ALICE, json={
        "prompt": "hi", "model_a": "base", "model_b": "base+fewshot", "max_new_tokens": 2})
    assert compared.status_code == 200, compared.text
    comparison = compared.json()["comparison_id"]
    forged_vote = auth_client.post("/api/v1/votes", headers=ALICE,
                                   json={"comparison_id": comparison, "vote": "left",
                                         "user": "bob"})
    assert forged_vote.status_code == 403
    vote = auth_client.post("/api/v1/votes", headers=ALICE,
                            json={"comparison_id": comparison, "vote": "left"})
    assert vote.status_code == 200, vote.text
    voters = auth_services.db.fetch_all(
        "SELECT voter FROM votes WHERE comparison_id = ?", [comparison])
    assert voters == [("alice",)]


def test_the_ui_asks_to_log_in(auth_client):
    assert auth_client.get("/gradio_api/login_check").status_code == 401
    assert auth_client.get("/config").status_code == 401
    wrong = auth_client.post("/login", data={"username": "alice", "password": "no"})
    assert wrong.status_code == 400
    ok = auth_client.post("/login", data={"username": "alice", "password": PASSWORDS["alice"]})
    assert ok.status_code == 200
    assert auth_client.get("/gradio_api/login_check").status_code == 200
    assert auth_client.get("/config").json()["username"] == "alice"


@pytest.fixture
def live_ui(auth_services):
    """The app with login on, served by uvicorn on a free loopback port, for gradio_client."""
    import socket
    import threading

    import uvicorn

    from app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(auth_services), host="127.0.0.1",
                                           port=port, log_level="warning",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, every=0.1)
    yield f"http://127.0.0.1:{port}/"
    server.should_exit = True
    thread.join()


def test_ui_ratings_and_votes_record_the_logged_in_user(live_ui, auth_services):
    from gradio_client import Client

    with pytest.raises(Exception, match="(?i)login|credentials|auth"):
        Client(live_ui, auth=("alice", "wrong"), verbose=False)
    ui = Client(live_ui, auth=("alice", PASSWORDS["alice"]), verbose=False)
    shown, *_ = ui.predict("<b>hi</b>", "", 2, 0.0, 0.9, "mallory", "", False,
                           api_name="/respond")
    assert shown[0]["content"] in ("&lt;b&gt;hi&lt;/b&gt;",
                                   [{"type": "text", "text": "&lt;b&gt;hi&lt;/b&gt;"}])
    assert ui.predict("mallory", "4", "up", "", "", api_name="/save_rating").startswith("✅")
    ratings = auth_services.db.fetch_all("SELECT rater, rating FROM ratings")
    turns = auth_services.db.fetch_all("SELECT user_id, prompt FROM interactions")
    assert ratings == [("alice", 4)] and turns == [("alice", "<b>hi</b>")]

    ui.predict("base", "base+fewshot", True, "mallory", "hi", 2, 0.0, False, "",
               api_name="/compare")
    status, *_ = ui.predict("mallory", api_name="/handler_2")  # the first vote button
    assert status.startswith("✅"), status
    assert auth_services.db.fetch_all("SELECT voter FROM votes") == [("alice",)]


def test_without_users_login_is_off(client):
    assert client.get("/api/v1/interactions").status_code == 200
    assert client.get("/gradio_api/login_check").status_code == 200


def test_users_come_from_a_file_and_the_environment(users_file):
    env = json.dumps({"carol": FAST.hash("carol-pass-333")})
    auth = build_authenticator(users_file, env)
    assert sorted(auth.users) == ["alice", "bob", "carol"]
    assert auth.verify("carol", "carol-pass-333") and auth.verify("alice", PASSWORDS["alice"])
    assert auth.verify("alice", PASSWORDS["alice"])  # the remembered success
    assert not auth.verify("alice", PASSWORDS["bob"]) and not auth.verify("nobody", "x")
    for bad in ('{"dave": "plain-text"}', "dave:hash", "[1, 2]"):
        with pytest.raises(InvalidInput):
            build_authenticator(None, bad)
    assert not Authenticator().enabled


def test_acting_user_never_impersonates():
    assert acting_user(None, "bob") == "bob"
    assert acting_user(None, "  ") == "anonymous"
    assert acting_user("alice", "anonymous") == "alice"
    assert acting_user("alice", "alice") == "alice"
    with pytest.raises(Forbidden):
        acting_user("alice", "bob")
    assert session_user("alice", "bob") == "alice"  # the UI's name box yields to the login
    assert session_user(None, " bob ") == "bob"
    assert session_user(None, "") == "anonymous"


def test_bind_rule():
    assert "127.0.0.1 only" in bind_notice("127.0.0.1", auth_enabled=False,
                                           allow_unauthenticated=False)
    assert "only" in bind_notice("::1", auth_enabled=False, allow_unauthenticated=False)
    with pytest.raises(InvalidInput, match="--allow-unauthenticated"):
        bind_notice("0.0.0.0", auth_enabled=False, allow_unauthenticated=False)
    assert bind_notice("0.0.0.0", auth_enabled=False,
                       allow_unauthenticated=True).startswith("WARNING")
    assert "Login is on" in bind_notice("0.0.0.0", auth_enabled=True,
                                        allow_unauthenticated=False)


def test_the_app_refuses_an_open_bind_without_login(tmp_path, tiny_model_dir, capsys):
    code = main(["--host", "0.0.0.0", "--data-dir", str(tmp_path / "d"),
                 "--model", str(tiny_model_dir)])
    assert code == 2
    assert "--allow-unauthenticated" in capsys.readouterr().err


def test_user_cli_adds_lists_and_removes(tmp_path, capsys):
    path = tmp_path / "users.json"
    assert users_main(["add", "erin", "--file", str(path)], io.StringIO("erin-pass-44\n")) == 0
    assert users_main(["list", "--file", str(path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "erin"
    assert path.stat().st_mode & 0o077 == 0  # owner-only
    assert build_authenticator(path, None).verify("erin", "erin-pass-44")
    assert users_main(["add", "erin", "--file", str(path)], io.StringIO("short\n")) == 2
    assert "at least 8" in capsys.readouterr().err
    assert users_main(["add", "bad:name"], io.StringIO("long-enough-1\n")) == 2
    assert users_main(["remove", "erin", "--file", str(path)]) == 0
    assert json.loads(path.read_text()) == {}


def test_no_public_share_link_anywhere():
    sources = [ROOT / "app.py", *ROOT.glob("core/**/*.py"), *ROOT.glob("ui/**/*.py")]
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text(), str(source))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                assert not (keyword.arg == "share" and getattr(keyword.value, "value", None)), \
                    f"{source}: share=True"
            func = node.func
            assert not (isinstance(func, ast.Attribute) and func.attr == "launch"), \
                f"{source}: .launch() (the app is served by uvicorn on the chosen host only)"


XSS = ["<script>alert(1)</script>", '<img src=x onerror="alert(1)">', "<svg onload=alert(1)>",
       "<iframe src=javascript:alert(1)>", "&lt;script&gt;"]


def test_model_and_user_text_is_escaped_outside_code():
    for payload in XSS:
        shown = as_text(f"Answer: {payload} done")
        assert "<" not in shown and ">" not in shown
    assert as_text("& <b>") == "&amp; &lt;b&gt;"
    code = "```html\n<script>x</script>\n```"
    assert as_text(code) == code  # the Markdown renderer escapes code itself
    assert as_text("use `<div>` here <b>") == "use `<div>` here &lt;b&gt;"
    history = [{"role": "user", "content": "<b>hi</b>"}, {"role": "assistant", "content": "ok"}]
    assert as_text_messages(history)[0] == {"role": "user", "content": "&lt;b&gt;hi&lt;/b&gt;"}
    assert history[0]["content"] == "<b>hi</b>"  # the conversation itself keeps the raw text


def test_every_chatbot_and_markdown_sanitizes_html(services):
    import gradio as gr

    from ui.layout import build_app

    blocks = build_app(services)
    components = list(blocks.blocks.values())
    chatbots = [c for c in components if isinstance(c, gr.Chatbot)]
    assert chatbots and all(c.sanitize_html for c in chatbots)
    assert all(c.sanitize_html for c in components if isinstance(c, gr.Markdown))
    assert not [c for c in components if isinstance(c, gr.HTML)]
