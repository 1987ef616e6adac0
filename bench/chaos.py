"""The long chaos run: tests/test_chaos.py with its knobs turned up, on PostgreSQL, printing its figures.

    python -m bench.chaos --minutes 5 [--prefect-down-seconds 60] [--kills 12] [--seed N] [--pg-url URL]

`--minutes`: how long the provider misbehaves (500s, 429 with Retry-After, answers dropped after taking the
message, then 5 s per request for twice as long plus 5 s, for each provider) while messages keep coming; the other
tests get the Prefect server away for `--prefect-down-seconds` and at least `--kills` SIGKILLs. Every test
asserts exactly once at the provider stub; this prints what each one did ("chaos figures") and its wall time.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from carepath.settings import PROJECT_ROOT


def knobs(args: argparse.Namespace) -> dict[str, str]:
    """The tests' environment knobs for this run."""
    env = {
        "CAREPATH_TEST_DB": "postgresql",
        "CAREPATH_TEST_POSTGRES_URL": args.pg_url,
        # Four windows of faults, the slow one twice as long: five windows in all.
        "CAREPATH_CHAOS_PROVIDER_WINDOW_SECONDS": str(args.minutes * 60 / 5),
        "CAREPATH_CHAOS_PREFECT_DOWN_SECONDS": str(args.prefect_down_seconds),
        "CAREPATH_CHAOS_KILLS": str(args.kills),
    }
    if args.seed is not None:
        env["CAREPATH_CHAOS_SEED"] = str(args.seed)
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="provider faults last this long")
    parser.add_argument("--prefect-down-seconds", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=12, help="SIGKILLs at least (each process once)")
    parser.add_argument("--seed", type=int, default=None, help="replay a run (its seed is printed)")
    parser.add_argument("--pg-url", default="postgresql+psycopg2://postgres@127.0.0.1:5432/test")
    parser.add_argument("-k", dest="select", default=None, help="only the tests matching (pytest -k)")
    args = parser.parse_args(argv)
    command = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:randomly", "--durations=0"]
    command += ["tests/test_chaos.py"] + (["-k", args.select] if args.select else [])
    started = time.monotonic()
    proc = subprocess.run(
        command, cwd=PROJECT_ROOT, env={**os.environ, **knobs(args)}, capture_output=True, text=True
    )
    keep = ("chaos seed", "chaos figures", "passed", "failed", "call ", "FAILED", "AssertionError", "Error")
    for line in proc.stdout.splitlines():
        if any(word in line for word in keep):
            print(line)
    print(f"bench.chaos: {time.monotonic() - started:.0f} s in all, pytest exit code {proc.returncode}")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
