"""The CI's dependency audit (.ci/audit.py) fails on a known vulnerability and says plainly when it audited nothing."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def audit():
    spec = importlib.util.spec_from_file_location("ci_audit", ROOT / ".ci" / "audit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def answering(dependencies: list[dict]):
    def run(report: Path):
        report.write_text(json.dumps({"dependencies": dependencies, "fixes": []}))

    return run


def test_a_known_vulnerability_fails_the_audit(audit, monkeypatch, capsys) -> None:
    vuln = {"id": "PYSEC-0000-1", "fix_versions": ["2.0"], "aliases": [], "description": ""}
    monkeypatch.setattr(
        audit,
        "run_pip_audit",
        answering(
            [{"name": "a", "version": "1.0", "vulns": [vuln]}, {"name": "b", "version": "1", "vulns": []}]
        ),
    )
    assert audit.main() == 1
    assert "VULNERABLE: a==1.0: PYSEC-0000-1 (fixed in 2.0)" in capsys.readouterr().out


def test_nothing_audited_is_a_notice_not_a_silent_pass(audit, monkeypatch, capsys) -> None:
    skipped = [
        {"name": n, "skip_reason": f"Dependency not found on PyPI and could not be audited: {n} (1)"}
        for n in "ab"
    ]
    monkeypatch.setattr(audit, "run_pip_audit", answering(skipped))
    assert audit.main() == 0
    assert "NOTICE: pip-audit: the lock file (constraints.txt) was NOT audited" in capsys.readouterr().out
    monkeypatch.setenv("CAREPATH_AUDIT_REQUIRED", "1")
    assert audit.main() == 1


def test_a_clean_audit_counts_what_it_audited(audit, monkeypatch, capsys) -> None:
    monkeypatch.setattr(audit, "run_pip_audit", answering([{"name": "a", "version": "1", "vulns": []}]))
    assert audit.main() == 0
    assert capsys.readouterr().out.strip() == "pip-audit: 1 pins audited, no known vulnerability"
