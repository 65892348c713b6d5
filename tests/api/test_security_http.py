"""The HTTP and Gradio surface, each class of hole checked over its whole surface: file values
reaching Gradio handlers, the same-origin rule, impersonation, login throttling, literal text
filters. The routes and endpoints come from the app's own descriptions (OpenAPI, Gradio's API
info), so a new route or tab is covered without editing this file."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

from argon2 import extract_parameters
from starlette.routing import Mount

from api.attribution import ATTRIBUTION_FIELDS
from api.throttle import FREE, LoginThrottle
from tests.api import test_security_auth as login
from tests.api.test_security_auth import ALICE, PASSWORDS, basic
from tests.gradio_calls import endpoints, gradio_call

STATE_CHANGING = ("post", "put", "patch", "delete")
# login on, with users alice and bob: the fixtures of the login tests
users_file, auth_services, auth_client = login.users_file, login.auth_services, login.auth_client
SECRET = "refinery-secret-marker-7f3a"


def concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


# ---- file values reaching Gradio handlers --------------------------------------------------

def file_slots(endpoint: dict) -> list[tuple[int, bool]]:
    """(position, takes a list) of every file-valued parameter of a Gradio endpoint."""
    slots = []
    for i, parameter in enumerate(endpoint["parameters"]):
        kind = str(parameter.get("python_type", {}).get("type", ""))
        if "filepath" in kind or "FileData" in kind or "bytes" in kind:
            slots.append((i, kind.startswith("list")))
    return slots


def test_every_gradio_file_input_takes_only_uploaded_files(client, services, tmp_path):
    import gradio as gr

    secret = tmp_path / "secret.csv"
    secret.write_text(f"prompt,reference\n{SECRET},{SECRET}\n")
    cache = Path(gr.utils.get_upload_folder())
    planted = cache / f"test-{uuid.uuid4().hex}"
    planted.mkdir(parents=True)
    link = planted / "innocent.csv"
    link.symlink_to(secret)
    taking_files = {name: e for name, e in endpoints(client).items() if file_slots(e)}
    # the tabs that take files today; any new one is covered too
    assert {"/run_ingest", "/import_file", "/evaluate", "/build"} <= set(taking_files)
    try:
        for name, endpoint in taking_files.items():
            for path in (str(secret), str(link), "/etc/passwd", f"{planted}/../../etc/passwd"):
                data = [p.get("parameter_default") if p.get("parameter_has_default") else None
                        for p in endpoint["parameters"]]
                for i, many in file_slots(endpoint):
                    value = {"path": path, "meta": {"_type": "gradio.FileData"}}
                    data[i] = [value] if many else value
                event, payload = gradio_call(client, name, data)
                assert event == "error", (name, path, payload)
                assert "upload" in str(payload), (name, path, payload)
                assert "Traceback" not in str(payload)
        assert services.documents.list() == []
        assert services.datasets.list() == []
        copies = [p for p in cache.rglob("*") if p.is_file() and not p.is_symlink()
                  and p.stat().st_size < 10_000 and SECRET in p.read_text(errors="ignore")]
        assert copies == []  # refused before Gradio copied anything into its cache
    finally:
        link.unlink()
        planted.rmdir()


def test_an_uploaded_file_is_still_accepted(client, services):
    uploaded = client.post("/gradio_api/upload",
                           files=[("files", ("rows.jsonl", b'{"prompt": "a", "response": "b"}\n'
                                                           b'{"prompt": "c", "response": "d"}\n'))])
    assert uploaded.status_code == 200, uploaded.text
    value = {"path": uploaded.json()[0], "meta": {"_type": "gradio.FileData"}}
    event, payload = gradio_call(client, "/import_file", [value, "mine", 0, 0.5])
    assert event == "complete", payload
    assert [d.name for d in services.datasets.list()] == ["mine"]


# ---- the same-origin rule ------------------------------------------------------------------

def every_route(app) -> list[tuple[str, str]]:
    """(method, path) of every route: the REST API's from OpenAPI, the rest (Gradio's UI and
    API, mounted at /) by walking the app's routers."""
    found = [(m, p) for p, ops in app.openapi()["paths"].items() for m in ops]

    def walk(routes, prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif hasattr(route, "original_router"):  # a router included into another
                walk(route.original_router.routes, prefix + route.include_context.prefix)
            elif getattr(route, "methods", None):
                found.extend((m.lower(), prefix + route.path) for m in route.methods)

    walk(app.routes, "")
    return found


def test_cross_origin_state_changes_and_foreign_hosts_are_refused(client):
    routes = every_route(client.app)
    changing = [(m, p) for m, p in routes if m in STATE_CHANGING]
    assert any(p.startswith("/api/v1/") for _, p in changing)
    assert {"/login", "/gradio_api/upload"} <= {p for _, p in changing}
    assert any(p.startswith("/gradio_api/call/") for _, p in changing)
    foreign = [{"Origin": "http://evil.example"}, {"Origin": "null"},
               {"Referer": "http://evil.example/page"},
               {"Origin": "http://127.0.0.1:9999"},  # another local port is another site
               {"Origin": "http://127.0.0.1.evil.example"}]
    for method, path in changing:
        for headers in foreign:
            reply = client.request(method.upper(), concrete(path), headers=headers)
            assert reply.status_code == 403, (method, path, headers, reply.status_code)
            assert "cross-origin" in reply.json()["error"]
    for method, path in routes:
        for host in ("evil.example", "127.0.0.1.nip.io", "localhost.evil.example"):
            reply = client.request(method.upper(), concrete(path), headers={"Host": host})
            assert reply.status_code == 403, (method, path, host, reply.status_code)
            assert method == "head" or "host" in reply.json()["error"]


def test_same_origin_and_headerless_requests_still_work(client):
    body = {"query": "warranty", "k": 1}
    assert client.post("/api/v1/search", json=body).status_code == 200  # curl, SDKs
    for origin in ("http://127.0.0.1", "http://localhost"):
        host = origin.removeprefix("http://")
        reply = client.post("/api/v1/search", json=body,
                            headers={"Origin": origin, "Host": host})
        assert reply.status_code == 200, reply.text
    referred = client.post("/api/v1/search", json=body,
                           headers={"Referer": "http://127.0.0.1/?__theme=dark"})
    assert referred.status_code == 200
    assert client.get("/api/v1/health", headers={"Host": "[::1]:7860"}).status_code == 200


def test_allowed_hosts_extend_the_host_list(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient

    from app import create_app
    from core.services import build_services
    from core.settings import parse_settings

    settings = parse_settings(["--data-dir", str(tmp_path / "d"), "--model", str(tiny_model_dir)],
                              env={"REFINERY_ALLOWED_HOSTS": "studio.lan, Proxy.Example"})
    assert settings.allowed_hosts == ("studio.lan", "Proxy.Example")
    services = build_services(settings)
    try:
        with TestClient(create_app(services), base_url="http://studio.lan:7860") as lan:
            assert lan.get("/api/v1/health").status_code == 200
            assert lan.get("/api/v1/health", headers={"Host": "proxy.example"}).status_code == 200
            same = lan.post("/api/v1/search", json={"query": "a", "k": 1},
                            headers={"Origin": "http://studio.lan:7860"})
            assert same.status_code == 200
            assert lan.get("/api/v1/health", headers={"Host": "other.lan"}).status_code == 403
    finally:
        services.close()


# ---- impersonation -------------------------------------------------------------------------

PERSON = re.compile(r"(user|rater|voter|author|owner|actor|operator|requester|_by)$|^by$")


def attribution_fields(spec: dict) -> list[tuple[str, str, str, str]]:
    """(method, path, where, field) of every field of a state-changing request that could
    name a person: top-level JSON/form body properties and query parameters."""
    schemas = spec["components"]["schemas"]

    def resolve(schema: dict) -> list[dict]:
        if "$ref" in schema:
            return resolve(schemas[schema["$ref"].rsplit("/", 1)[1]])
        if "anyOf" in schema:
            return [s for option in schema["anyOf"] for s in resolve(option)]
        return [schema]

    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method not in STATE_CHANGING:
                continue
            for parameter in operation.get("parameters", []):
                if PERSON.search(parameter["name"]) and parameter["in"] == "query":
                    found.append((method, path, "query", parameter["name"]))
            for kind, content in operation.get("requestBody", {}).get("content", {}).items():
                for schema in resolve(content["schema"]):
                    for name in schema.get("properties", {}):
                        if PERSON.search(name):
                            found.append((method, path, kind, name))
    return found


def test_no_route_lets_a_logged_in_user_act_as_another(auth_client, auth_services):
    fields = attribution_fields(auth_client.app.openapi())
    assert {("put", "/api/v1/retraining/policy"), ("post", "/api/v1/retraining/run"),
            ("post", "/api/v1/feedback"), ("post", "/api/v1/votes")} <= {
        (m, p) for m, p, _, _ in fields}
    for method, path, where, name in fields:
        assert name in ATTRIBUTION_FIELDS, f"{method} {path}: {name} is not guarded"
        url = concrete(path)
        if where == "query":
            reply = auth_client.request(method.upper(), url, params={name: "bob"}, headers=ALICE)
        elif where.startswith("multipart") or where.endswith("urlencoded"):
            reply = auth_client.request(method.upper(), url, data={name: "bob"}, headers=ALICE)
        else:
            reply = auth_client.request(method.upper(), url, json={name: "bob"}, headers=ALICE)
        assert reply.status_code == 403, (method, path, name, reply.status_code, reply.text)
        error = reply.json()["error"]  # /v1 answers in OpenAI's shape: {"message": ...}
        assert "cannot act as 'bob'" in (error["message"] if isinstance(error, dict) else error)
    assert not auth_services.db.fetch_all("SELECT * FROM retraining_policy")
    assert auth_services.retraining.actions() == []


def test_actions_are_recorded_for_the_logged_in_user(auth_client, auth_services):
    for body in ({"user": "anonymous", "min_new_examples": 7}, {"min_new_examples": 8}):
        reply = auth_client.put("/api/v1/retraining/policy", json=body, headers=ALICE)
        assert reply.status_code == 200, reply.text
        assert auth_services.db.fetch_all(
            "SELECT updated_by FROM retraining_policy") == [("alice",)]
    reasons = [a["reason"] for a in auth_services.retraining.actions()]
    assert reasons and all(r.startswith("alice changed") for r in reasons), reasons
    run = auth_client.post("/api/v1/retraining/run", headers=ALICE)
    assert run.status_code == 200, run.text


# ---- login hardening -----------------------------------------------------------------------

def test_failed_logins_are_throttled_on_both_doors(auth_client):
    wrong = basic("alice", "wrong-guess")
    for _ in range(FREE + 1):
        assert auth_client.get("/api/v1/interactions", headers=wrong).status_code == 401
    locked = auth_client.get("/api/v1/interactions", headers=wrong)
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    assert "too many failed logins" in locked.json()["error"]
    # while locked even the right password waits (that is what stops guessing)
    assert auth_client.get("/api/v1/interactions", headers=ALICE).status_code == 429
    # the same client is locked on the UI's login form too, whatever name it tries
    form = auth_client.post("/login", data={"username": "bob", "password": PASSWORDS["bob"]})
    assert form.status_code == 429 and "Retry-After" in form.headers


def test_the_ui_login_form_is_throttled_per_name():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from api.throttle import ThrottleLogins

    async def login(request):
        form = await request.form()
        ok = form["password"] == "right"
        return JSONResponse({"ok": ok}, status_code=200 if ok else 400)

    now = [0.0]
    throttle = LoginThrottle(clock=lambda: now[0])
    app = ThrottleLogins(Starlette(routes=[Route("/login", login, methods=["POST"])]),
                         throttle=throttle)
    ui = TestClient(app)
    for _ in range(FREE + 1):
        assert ui.post("/login", data={"username": "carol", "password": "x"}).status_code == 400
    assert ui.post("/login", data={"username": "carol", "password": "right"}).status_code == 429
    now[0] += 1.01  # the first lock is one second; each further failure doubles it
    assert ui.post("/login", data={"username": "carol", "password": "x"}).status_code == 400
    refused = ui.post("/login", data={"username": "carol", "password": "right"})
    assert refused.status_code == 429 and refused.headers["Retry-After"] == "2"
    now[0] += 2.01
    assert ui.post("/login", data={"username": "carol", "password": "right"}).status_code == 200
    assert throttle.retry_after(["name\0carol"]) == 0  # a success clears the record


def test_unknown_names_cost_a_real_argon2_check(auth_services):
    auth = auth_services.auth
    assert not auth.verify("nobody", "whatever")
    known = extract_parameters(next(iter(auth.users.values())))
    assert auth._dummy is not None and extract_parameters(auth._dummy) == known


def test_api_docs_need_the_login_when_it_is_on(auth_client, client):
    for url in ("/docs", "/redoc", "/openapi.json"):
        assert auth_client.get(url).status_code == 401, url
        assert auth_client.get(url, headers=ALICE).status_code == 200, url
        assert client.get(url).status_code == 200, url  # login off: open as before
    assert "/api/v1/chat" in auth_client.get("/openapi.json", headers=ALICE).json()["paths"]


# ---- literal text filters ------------------------------------------------------------------

def test_text_filters_match_literally_everywhere(client, services):
    store_sources = "\n".join(p.read_text() for p in Path("core/store").glob("*.py"))
    likes = re.findall(r"\bI?LIKE\b[^\n]*", store_sources)
    assert likes and all("ESCAPE" in line for line in likes), likes
    for prompt in ("plain words", "50% off_now \\ here"):
        reply = client.post("/api/v1/chat", json={"prompt": prompt, "max_new_tokens": 1})
        assert reply.status_code == 200, reply.text
        client.post("/api/v1/feedback", json={"response_id": reply.json()["response_id"],
                                              "rating": 4})
    for url in ("/api/v1/interactions", "/api/v1/feedback/rated", "/api/v1/quality"):
        def prompts(text: str, url=url) -> set[str]:
            reply = client.get(url, params={"text": text})
            assert reply.status_code == 200, (url, reply.text)
            return {row["prompt"] for row in rows_of(reply.json()) if "prompt" in row}

        if url == "/api/v1/quality":
            for text in ("%", "_", "\\"):
                assert client.get(url, params={"text": text}).status_code == 200
            continue
        assert prompts("%") == prompts("off_") == prompts("\\") == {"50% off_now \\ here"}
        assert prompts("o%f") == prompts("o_f") == set()


def rows_of(body) -> list[dict]:
    if isinstance(body, list):
        return body
    return next(v for v in body.values() if isinstance(v, list))


# ---- bad input is a 4xx -------------------------------------------------------------------

def request_schemas(spec: dict):
    """(where, schema) of every value a request can carry: query parameters and every
    property of every request body, nested models included."""
    schemas = spec["components"]["schemas"]
    seen: set[str] = set()

    def walk(schema: dict, where: str):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            if name not in seen:
                seen.add(name)
                yield from walk(schemas[name], name)
            return
        for option in schema.get("anyOf", []) + schema.get("allOf", []):
            yield from walk(option, where)
        yield where, schema
        for name, prop in schema.get("properties", {}).items():
            yield from walk(prop, f"{where}.{name}")
        if isinstance(schema.get("items"), dict):
            yield from walk(schema["items"], f"{where}[]")
        if isinstance(schema.get("additionalProperties"), dict):
            yield from walk(schema["additionalProperties"], f"{where}.*")

    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                if parameter["in"] == "query":  # path segments are bounded by the URL limit
                    yield from walk(parameter["schema"], f"{method} {path}?{parameter['name']}")
            for content in operation.get("requestBody", {}).get("content", {}).values():
                yield from walk(content["schema"], f"{method} {path}")


def test_every_string_and_integer_a_request_carries_is_bounded(client):
    unbounded = []
    for where, schema in request_schemas(client.app.openapi()):
        kind = schema.get("type")
        # uploaded files are bounded by --max-upload-mb
        bounds = {"maxLength", "enum", "format", "const", "contentMediaType"}
        if kind == "string" and not bounds & set(schema):
            unbounded.append((where, "string without maxLength"))
        if kind == "integer" and not {"minimum", "maximum"} <= set(schema):
            unbounded.append((where, "integer without minimum and maximum"))
    assert unbounded == []


def int_inputs(spec: dict) -> list[tuple[str, str, str, str]]:
    """(method, path, where, name) of every integer a route takes in its query or at the top
    of its JSON body."""
    schemas = spec["components"]["schemas"]
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                options = parameter["schema"].get("anyOf", [parameter["schema"]])
                if parameter["in"] == "query" and any(o.get("type") == "integer"
                                                      for o in options):
                    found.append((method, path, "query", parameter["name"]))
            body = operation.get("requestBody", {}).get("content", {})
            reference = body.get("application/json", {}).get("schema", {})
            for option in reference.get("anyOf", [reference]):
                if "$ref" not in option:
                    continue
                model = schemas[option["$ref"].rsplit("/", 1)[1]]
                for name, prop in model.get("properties", {}).items():
                    if any(o.get("type") == "integer" for o in prop.get("anyOf", [prop])):
                        found.append((method, path, "json", name))
    return found


def test_integers_beyond_the_database_range_are_refused(client):
    found = int_inputs(client.app.openapi())
    assert {("get", "/api/v1/drift", "query", "window"),
            ("get", "/api/v1/interactions", "query", "offset"),
            ("get", "/api/v1/feedback/rated", "query", "page")} <= set(found)
    for method, path, where, name in found:
        for huge in (2**63, 10**30, -(2**63) - 1):
            if where == "query":
                reply = client.request(method.upper(), concrete(path), params={name: huge})
            else:
                reply = client.request(method.upper(), concrete(path), json={name: huge})
            assert reply.status_code in (400, 422), (method, path, name, reply.text)
            assert reply.json()["error"]


def json_text_routes(spec: dict) -> list[tuple[str, str, str]]:
    """(method, path, field) of every JSON body with a top-level text field."""
    schemas = spec["components"]["schemas"]
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get(
                "application/json", {}).get("schema", {})
            for option in schema.get("anyOf", [schema]):
                if "$ref" in option:
                    model = schemas[option["$ref"].rsplit("/", 1)[1]]
                    texts = [n for n, p in model.get("properties", {}).items()
                             if any(o.get("type") == "string" and "enum" not in o
                                    for o in p.get("anyOf", [p]))]
                    if texts:
                        found.append((method, path, texts[0]))
    return found


def test_lone_surrogates_are_refused_everywhere(client):
    found = json_text_routes(client.app.openapi())
    assert ("post", "/api/v1/chat", "prompt") in found
    for method, path, name in found:
        raw = '{"' + name + '": "half \\ud83d of an emoji"}'
        reply = client.request(method.upper(), concrete(path), content=raw,
                               headers={"content-type": "application/json"})
        assert reply.status_code == 400, (method, path, reply.text)
        assert "surrogate" in reply.json()["error"]
    paired = client.post("/api/v1/search", content='{"query": "\\ud83d\\ude00", "k": 1}',
                         headers={"content-type": "application/json"})
    assert paired.status_code == 200, paired.text  # a whole pair is an ordinary emoji
    started = client.post("/gradio_api/call/respond", content='{"data": ["\\udc00"]}',
                          headers={"content-type": "application/json"})
    assert started.status_code == 400  # the UI's endpoints too


def test_a_huge_correction_is_refused(client, services):
    turn = client.post("/api/v1/chat", json={"prompt": "hi", "max_new_tokens": 1}).json()
    reply = client.post("/api/v1/feedback", json={"response_id": turn["response_id"],
                                                  "rating": 2, "correction": "x" * 5_000_000})
    assert reply.status_code == 422 and "correction" in str(reply.json()["detail"])
    assert services.log.get_rating(turn["response_id"], "anonymous") is None


# ---- every field naming a model, adapter or folder is checked ----------------------------

NAMES_A_MODEL = re.compile(r"model|adapter|folder|path|dir|retriever|challenger|incumbent")
# TrainingSpec options travel in a free-form `config` object: the ones that name folders
CONFIG_PATH_KEYS = ("base_model", "init_adapter")


def model_fields(spec: dict) -> list[tuple[str, str, str, bool]]:
    """(method, path, field, is a list) of every JSON body field that names a model, adapter
    or folder (`config.<key>` for the training options)."""
    schemas = spec["components"]["schemas"]
    found = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            schema = operation.get("requestBody", {}).get("content", {}).get(
                "application/json", {}).get("schema", {})
            for option in schema.get("anyOf", [schema]):
                if "$ref" not in option:
                    continue
                model = schemas[option["$ref"].rsplit("/", 1)[1]]
                for name, prop in model.get("properties", {}).items():
                    kinds = prop.get("anyOf", [prop])
                    texts = [k for k in kinds if k.get("type") == "string" and "enum" not in k]
                    lists = [k for k in kinds if k.get("items", {}).get("type") == "string"]
                    if NAMES_A_MODEL.search(name) and (texts or lists):
                        found.append((method, path, name, not texts))
                    if name == "config":
                        found += [(method, path, f"config.{key}", False)
                                  for key in CONFIG_PATH_KEYS]
    return found


def filled(model: dict, schemas: dict) -> dict:
    """Plausible values for a body's required fields, so only the field under test is bad."""
    return {name: plausible(name, model["properties"][name], schemas)
            for name in model.get("required", [])}


def plausible(name: str, schema: dict, schemas: dict):
    kind = schema.get("anyOf", [schema])[0]
    if "$ref" in kind:
        return filled(schemas[kind["$ref"].rsplit("/", 1)[1]], schemas)
    if "enum" in kind:
        return kind["enum"][0]
    if kind.get("type") == "array":
        return [plausible(name, kind.get("items", {}), schemas)] * kind.get("minItems", 0)
    if NAMES_A_MODEL.search(name):
        return "base"
    return {"string": "hello", "integer": 1, "number": 0.5, "boolean": True,
            "object": {}}.get(kind.get("type"), "hello")


def test_every_field_naming_a_model_or_folder_is_checked_first(client, services):
    spec = client.app.openapi()
    schemas = spec["components"]["schemas"]
    found = model_fields(spec)
    assert {("post", "/api/v1/training/searches", "config.base_model", False),
            ("post", "/api/v1/chat", "model", False),
            ("post", "/api/v1/fairness", "base_model", False)} <= set(found)
    db = services.settings.db_path
    bad = ["/etc", "/usr/lib", str(db), str(db.parent / ".." / ".."), "~", "~/models",
           "file:///etc/passwd", "../../../../etc"]
    for method, path, name, many in found:
        operation = spec["paths"][path][method]
        reference = operation["requestBody"]["content"]["application/json"]["schema"]
        reference = next(o for o in reference.get("anyOf", [reference]) if "$ref" in o)
        template = filled(schemas[reference["$ref"].rsplit("/", 1)[1]], schemas)
        for value in bad:
            body = dict(template)
            if name.startswith("config."):
                body["config"] = {name.removeprefix("config."): value}
                body["train"] = ([{"query": "a", "positive": "b", "negatives": ["c"]}] * 4
                                 if "retrievers" in path else
                                 [{"prompt": "a", "response": "b"}] * 4)
            else:
                body[name] = [value] if many else value
            reply = client.request(method.upper(), concrete(path), json=body)
            assert reply.status_code in (400, 404, 409), (path, name, value, reply.text)
            if name.startswith("config.") or path == "/api/v1/chat":  # refused for the path
                assert value in reply.json()["error"], (path, name, value, reply.json())
    assert services.searches.list() == [] and services.training.list() == []
