"""Module layering: the task modules import one another without a circle (type-only imports included),
and the source registry stays below tasks/ and flows/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (so `if TYPE_CHECKING:` imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_task_modules_import_no_circle() -> None:
    modules = {f"tasks.{p.stem}": p for p in (ROOT / "tasks").glob("*.py") if p.stem != "__init__"}
    graph = {name: imported_modules(path) & modules.keys() for name, path in modules.items()}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError("import circle: " + " → ".join([*trail[trail.index(name) :], name]))
        if name in done:
            return
        for other in sorted(graph[name]):
            visit(other, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_source_registry_imports_no_flow_or_task() -> None:
    imported = imported_modules(ROOT / "carepath" / "sources.py")
    assert not {m for m in imported if m.split(".")[0] in {"flows", "tasks", "deployments", "receiver"}}
