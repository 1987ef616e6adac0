"""Installing Carepath installs one top-level package, `carepath`; the project's other folders are found from
the project root, so no generic `flows`, `tasks` or `models` lands in site-packages."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from importlib.metadata import distribution
from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FOLDERS = ["cli", "flows", "tasks", "models", "data", "deployments", "receiver", "bench", "stubs"]


def test_the_distribution_declares_only_carepath() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    packages = find_packages(ROOT, **pyproject["tool"]["setuptools"]["packages"]["find"])
    assert packages and {p.split(".")[0] for p in packages} == {"carepath"}
    assert pyproject["project"]["scripts"] == {"carepath": "carepath.launcher:main"}


def test_the_message_templates_ship_with_carepath() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["carepath"]
    shipped = {p for pattern in patterns for p in (ROOT / "carepath").glob(pattern)}
    assert shipped == set((ROOT / "carepath").rglob("*.j2"))


def test_the_installed_distribution_has_one_top_level_name() -> None:
    assert distribution("carepath").read_text("top_level.txt").split() == ["carepath"]


def test_outside_the_project_only_carepath_imports(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "\n".join(
        [
            "import importlib.util",
            f"found = [n for n in {PROJECT_FOLDERS!r} if importlib.util.find_spec(n)]",
            "import carepath.messages",
            "print(found)",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout.strip()) == (0, "[]"), done.stderr


def test_the_console_script_runs_from_anywhere(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("carepath")), "run", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "iot-fault-journey" in done.stdout  # the deployments, read from the project root's prefect.yaml
