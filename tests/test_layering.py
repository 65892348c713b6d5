"""Imports only go downward (app -> ui, api -> core); one module opens DuckDB; no cycles in core;
the UI reaches the store only through the service layer; tabs do not import tabs; only
core/settings.py reads the environment."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUCKDB_OWNER = Path("core/store/database.py")
SETTINGS = Path("core/settings.py")  # the one reader of os.environ (process_variable for hooks)


def parsed(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def runtime_nodes(tree: ast.AST):
    """Every node but the bodies of `if TYPE_CHECKING:` (imports for annotations only)."""
    for node in ast.iter_child_nodes(tree):
        test = node.test if isinstance(node, ast.If) else None
        if test is not None and "TYPE_CHECKING" in (getattr(test, "id", None),
                                                    getattr(test, "attr", None)):
            for branch in node.orelse:
                yield branch
                yield from runtime_nodes(branch)
            continue
        yield node
        yield from runtime_nodes(node)


def imported_names(tree: ast.Module) -> set[str]:
    """Every absolute import run at some point (module level or inside a function), as dotted
    names: `from a.b import c` gives both a.b and a.b.c (c may be a module)."""
    names = set()
    for node in runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
    return names


def imported_modules(path: Path) -> set[str]:
    return {name.split(".")[0] for name in imported_names(parsed(path))}


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(sources: dict[str, ast.Module]) -> dict[str, set[str]]:
    """module -> the modules among `sources` it imports (anywhere in its body)."""
    graph = {}
    for name, tree in sources.items():
        targets = set()
        for imported in imported_names(tree):
            while imported and imported not in sources:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for target in graph[todo.pop()] - seen:
            seen.add(target)
            todo.append(target)
    return seen


def core_graph() -> dict[str, set[str]]:
    return import_graph({module_name(p): parsed(p) for p in python_files("core")})


def source(text: str) -> ast.Module:
    return ast.parse(text)


def test_the_graph_rules_catch_a_violation():
    """The cycle and reach checks below are only worth something if they fire."""
    graph = import_graph({
        "core.a": source("def f():\n    from core.b import thing\n"),
        "core.b": source("import core.c\n"),
        "core.c": source("from core import a\n"),
        "core": source(""),
        "core.d": source("from core.c import x\n"),
    })
    assert cycles(graph) == [["core.a", "core.b", "core.c"]]
    assert "core.b" in reachable(graph, "core.d")
    assert cycles(import_graph({"core.a": source("import core.b\n"), "core.b": source("")})) == []
    typed = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import core.a\n"
    assert cycles(import_graph({"core.a": source("import core.b\n"),
                                "core.b": source(typed)})) == []


HTTP = {"fastapi", "starlette", "uvicorn", "prometheus_client"}


def importing(folder: str, forbidden: set[str]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in python_files(folder)
            if imported_modules(p) & forbidden]


def test_core_never_imports_gradio_http_ui_or_api():
    """The engine runs without a web stack: the HTTP layer lives in api/, the UI in ui/."""
    assert importing("core", {"gradio", "ui", "api", "app", *HTTP}) == []


def test_ui_never_imports_the_app_or_the_http_layer():
    assert importing("ui", {"app", "api"}) == []


def test_the_http_layer_never_imports_the_ui_or_the_app():
    assert importing("api", {"ui", "app", "gradio"}) == []


def test_only_the_store_database_module_imports_duckdb():
    everything = [*python_files("core"), *python_files("ui"), *python_files("api"),
                  ROOT / "app.py"]
    owners = [p.relative_to(ROOT) for p in everything if "duckdb" in imported_modules(p)]
    assert owners == [DUCKDB_OWNER]


def test_core_has_no_import_cycles():
    assert cycles(core_graph()) == []


def test_the_ui_reaches_the_store_only_through_the_service_layer():
    offenders = [
        str(path.relative_to(ROOT))
        for path in [*python_files("ui"), ROOT / "app.py"]
        if any(name == "core.store" or name.startswith("core.store.")
               for name in imported_names(parsed(path)))
    ]
    assert offenders == []


def test_the_training_worker_never_reaches_the_store():
    """The worker process reads its run folder; the studio's process owns the database."""
    reached = reachable(core_graph(), "core.training.worker")
    assert sorted(m for m in reached if m == "core.store" or m.startswith("core.store.")) == []
    assert "core.services" not in reached


def test_tabs_do_not_import_tabs():
    offenders = [
        str(path.relative_to(ROOT))
        for path in python_files("ui/tabs")
        if any(name.startswith("ui.tabs") for name in imported_names(parsed(path)))
    ]
    assert offenders == []


def test_only_settings_reads_the_environment():
    def reads_environment(tree: ast.Module) -> bool:
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "environb"):
                return True
            if isinstance(node, ast.ImportFrom) and node.module == "os" and any(
                    alias.name in ("environ", "getenv") for alias in node.names):
                return True
        return False

    everything = [*python_files("core"), *python_files("ui"), *python_files("api"),
                  ROOT / "app.py"]
    readers = [p.relative_to(ROOT) for p in everything if reads_environment(parsed(p))]
    assert readers == [SETTINGS]
    assert reads_environment(source("import os\nos.environ.get('X')\n"))
    assert reads_environment(source("from os import getenv\n"))
