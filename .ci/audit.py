"""Known vulnerabilities in the pinned dependencies (constraints.txt), with pip-audit.

pip-audit asks a vulnerability service about each pin: PyPI's per-release JSON API (its default) or OSV. A machine
that reaches neither (this project's CI reaches package indexes only: the per-release JSON answers 404, OSV does
not resolve) gets every dependency back as "not found on PyPI and could not be audited", with exit status 0: an
audit that audited nothing. This script tells the cases apart and says which one happened:

- a known vulnerability in a pin: exit 1, each listed;
- nothing could be audited: a NOTICE saying the lock file was NOT audited, exit 0
  (CAREPATH_AUDIT_REQUIRED=1 turns that into a failure, for a CI that does reach the service);
- otherwise: how many pins were audited, and how many could not be.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = int(os.environ.get("CAREPATH_AUDIT_TIMEOUT_SECONDS", "300"))


def run_pip_audit(report: Path) -> subprocess.CompletedProcess[str]:
    """pip-audit on the lock file as it stands: exact pins, no resolution, no pip."""
    command = [
        str(Path(sys.executable).with_name("pip-audit")),
        "--requirement", str(ROOT / "constraints.txt"),
        "--no-deps", "--disable-pip", "--progress-spinner", "off",
        "--format", "json", "--output", str(report),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def not_audited(reason: str) -> int:
    print(f"NOTICE: pip-audit: the lock file (constraints.txt) was NOT audited: {reason}")
    if os.environ.get("CAREPATH_AUDIT_REQUIRED") == "1":
        print("CAREPATH_AUDIT_REQUIRED=1: failing", file=sys.stderr)
        return 1
    return 0


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "audit.json"
        try:
            done = run_pip_audit(report)
        except subprocess.TimeoutExpired:
            return not_audited(f"its vulnerability service did not answer within {TIMEOUT} s")
        if not report.exists():
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            return not_audited(f"pip-audit stopped (exit {done.returncode}): {last[:300]}")
        dependencies = json.loads(report.read_text())["dependencies"]
    skipped = [d for d in dependencies if "skip_reason" in d]
    vulnerable = [d for d in dependencies if d.get("vulns")]
    for d in vulnerable:
        for v in d["vulns"]:
            fixed = ", ".join(v.get("fix_versions") or []) or "no fixed version yet"
            print(f"VULNERABLE: {d['name']}=={d['version']}: {v['id']} (fixed in {fixed})")
    if vulnerable:
        return 1
    if len(skipped) == len(dependencies):
        return not_audited(
            f"its vulnerability service is unreachable from this machine ({len(skipped)} pins answered "
            f'"{skipped[0]["skip_reason"].split(":")[0]}")'
            if skipped
            else "no pins found"
        )
    print(f"pip-audit: {len(dependencies) - len(skipped)} pins audited, no known vulnerability", end="")
    print(f"; {len(skipped)} could not be audited" if skipped else "")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
