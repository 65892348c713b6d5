"""Imports only go downward (app -> ui -> core); one module opens DuckDB."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUCKDB_OWNER = Path("core/store/database.py")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_core_never_imports_gradio_or_ui():
    offenders = [
        str(path.relative_to(ROOT))
        for path in python_files("core")
        if imported_modules(path) & {"gradio", "ui", "app"}
    ]
    assert offenders == []


def test_ui_never_imports_the_app():
    offenders = [
        str(p.relative_to(ROOT)) for p in python_files("ui") if "app" in imported_modules(p)
    ]
    assert offenders == []


def test_only_the_store_database_module_imports_duckdb():
    everything = [*python_files("core"), *python_files("ui"), ROOT / "app.py"]
    owners = [p.relative_to(ROOT) for p in everything if "duckdb" in imported_modules(p)]
    assert owners == [DUCKDB_OWNER]
