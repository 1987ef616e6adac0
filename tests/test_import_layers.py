"""Module layering: the task modules import one another without a circle (type-only imports included),
and the runtime package carepath/ stays below everything else (its one way up is the launcher's lazy import
of the command line)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# The project's folders above carepath/ (found from the project root, never installed).
ABOVE_CAREPATH = set("cli flows tasks models data deployments receiver bench stubs tests".split())


def imported_modules(path: Path, *, module_level_only: bool = False) -> set[str]:
    """Every module a file imports, at any depth (so `if TYPE_CHECKING:` imports count too), or only the
    statements run on import (module level, including under `if`/`try`) when `module_level_only`."""
    tree = ast.parse(path.read_text())
    nodes = ast.walk(tree) if not module_level_only else _module_level(tree.body)
    names: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def _module_level(body: list[ast.stmt]):
    for node in body:
        yield node
        if isinstance(node, ast.If | ast.Try | ast.With):
            for block in ("body", "orelse", "finalbody", "handlers"):
                for child in getattr(node, block, []):
                    yield from _module_level(child.body if isinstance(child, ast.ExceptHandler) else [child])


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


def test_carepath_imports_nothing_above_it() -> None:
    """Not at any depth, save the launcher, which imports the command line inside main()."""
    offenders = {}
    for path in sorted((ROOT / "carepath").rglob("*.py")):
        module_level_only = path == ROOT / "carepath" / "launcher.py"
        above = {
            m
            for m in imported_modules(path, module_level_only=module_level_only)
            if m.split(".")[0] in ABOVE_CAREPATH
        }
        if above:
            offenders[str(path.relative_to(ROOT))] = sorted(above)
    assert not offenders


def test_the_launcher_reaches_the_command_line() -> None:
    assert "cli.commands" in imported_modules(ROOT / "carepath" / "launcher.py")


def test_the_check_sees_a_lazy_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from flows.outbox import outbox\n")
    assert "flows.outbox" in imported_modules(module)
    assert "flows.outbox" not in imported_modules(module, module_level_only=True)
