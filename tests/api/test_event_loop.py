"""No request does heavy work on the event loop: every `async def` route of the app hands its
service calls (database, parsing, embedding, regexes, generation) to the thread pool.

The check reads each async endpoint's source: outside the arguments of `run_in_threadpool` /
`iterate_in_threadpool` and nested functions, no call may reach a service object (the app's
`Services` or anything taken from it) or a core function outside the API layer. The admission
counter is the one exception: a lock around an integer."""

from __future__ import annotations

import ast
import inspect
import textwrap

from fastapi.routing import APIRoute

OFFLOADERS = {"run_in_threadpool", "iterate_in_threadpool"}
# typed errors, users and passwords (the HTTP layer itself is outside core)
CHEAP_MODULES = ("core.errors", "core.operations.auth")


def _names(node: ast.AST) -> list[str]:
    """The bare names a call uses (its function's root and its arguments), not nested calls."""
    found = []
    stack = [node.func, *node.args, *(k.value for k in node.keywords)]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Name):
            found.append(item.id)
        elif isinstance(item, ast.Attribute):
            stack.append(item.value)
        elif isinstance(item, ast.Starred | ast.Await):
            stack.append(item.value)
    return found


def _root(node: ast.AST) -> list[str]:
    """The attribute chain of a call's function, e.g. ['services', 'admission', 'slot']."""
    chain = []
    while isinstance(node, ast.Attribute):
        chain.insert(0, node.attr)
        node = node.value
    return [node.id, *chain] if isinstance(node, ast.Name) else chain


def _calls_on_loop(tree: ast.AST):
    """Calls that run on the event loop: skip nested functions and offloaded arguments."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.Call):
            if _root(node.func)[-1:] and _root(node.func)[-1] in OFFLOADERS:
                continue
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _is_service(value) -> bool:
    module = getattr(type(value), "__module__", "") or ""
    return module.startswith("core.") and not module.startswith(CHEAP_MODULES) and not (
        inspect.isclass(value) or inspect.isroutine(value) or inspect.ismodule(value)
    )


def _is_blocking_callable(value) -> bool:
    if not (inspect.isclass(value) or inspect.isroutine(value)):
        return False
    module = getattr(value, "__module__", "") or ""
    return module.startswith("core.") and not module.startswith(CHEAP_MODULES)


def blocking_calls(endpoint) -> list[str]:
    source = textwrap.dedent(inspect.getsource(endpoint))
    function = ast.parse(source).body[0]
    scope = inspect.getclosurevars(endpoint)
    known = {**scope.globals, **scope.builtins, **scope.nonlocals}
    problems = []
    for call in _calls_on_loop(function):
        chain = _root(call.func)
        if chain[:2] == ["services", "admission"]:
            continue
        values = [known[name] for name in _names(call) if name in known]
        func = known.get(chain[0]) if chain else None
        if any(_is_service(value) for value in values) or (
            len(chain) == 1 and _is_blocking_callable(func)
        ):
            problems.append(f"line {call.lineno}: {ast.unparse(call)[:80]}")
    return problems


def api_routes(routes) -> list[APIRoute]:
    found = []
    for route in routes:
        if isinstance(route, APIRoute):
            found.append(route)
        if (inner := getattr(route, "original_router", None)) is not None:  # included router
            found += api_routes(inner.routes)
    return found


def test_no_async_route_calls_a_service_on_the_event_loop(client):
    routes = api_routes(client.app.routes)
    operations = sum(len(item) for item in client.app.openapi()["paths"].values())
    assert sum(len(r.methods) for r in routes if r.include_in_schema) == operations > 50
    offenders = {
        f"{sorted(route.methods)} {route.path}": problems
        for route in routes
        if inspect.iscoroutinefunction(route.endpoint)
        and (problems := blocking_calls(route.endpoint))
    }
    assert not offenders, f"async routes doing blocking work on the event loop: {offenders}"


def test_the_check_catches_a_service_call_on_the_loop(services):
    """The detector itself: a route calling a service directly is caught, offloaded is not."""
    from starlette.concurrency import run_in_threadpool

    documents = services.documents

    async def direct(query: str) -> dict:
        return {"hits": documents.search(query)}

    async def helper(query: str) -> dict:
        return _format(services, query)

    async def offloaded(query: str) -> dict:
        return {"hits": await run_in_threadpool(documents.search, query)}

    async def counted(query: str) -> dict:
        with services.admission.slot():
            return {"hits": await run_in_threadpool(lambda: documents.search(query))}

    assert blocking_calls(direct) and blocking_calls(helper)
    assert blocking_calls(offloaded) == [] and blocking_calls(counted) == []


def _format(services, query: str) -> dict:
    return {"query": query, "documents": services.documents.list()}
