"""The scheduled deployments of prefect.yaml run on their cadence, in one long-lived process (for the soak).

Every deployment with a schedule in prefect.yaml (sla-monitor, route-cases, inbox-sweep each minute;
reconcile-entitlements, delivery-analytics, kpi-report daily; bulk-delete-merged-contacts weekly) has its
flow called in-process, a thread per deployment, as `deployments/drain_loop.py` calls the journeys: a flow
run on the Prefect server each time, with the deployment's parameters. A minute schedule runs every
`--minute-every` seconds (60: as deployed); a daily or weekly one every `--long-every` seconds (a soak of
minutes would otherwise never see it). One line of JSON per run (on stdout, or appended to `--runs`): deployment, final state, seconds.

Run: `python -m bench.batch_jobs [--minute-every 60 --long-every 300]` (SIGTERM stops it between runs).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class ScheduledJob:
    """A deployment with a schedule: its flow and how often the soak runs it."""

    deployment: str
    entrypoint: str
    parameters: dict[str, Any]
    every_seconds: float


def is_every_minute(cron: str) -> bool:
    """Whether a cron expression fires every minute."""
    return cron.split() == ["*"] * 5


def scheduled_jobs(*, minute_every: float, long_every: float, path: Path = ROOT / "prefect.yaml") -> list:
    """Every deployment of prefect.yaml with an active cron schedule, with the soak's cadence for it."""
    jobs = []
    for d in yaml.safe_load(path.read_text())["deployments"]:
        crons = [s["cron"] for s in d.get("schedules") or [] if s.get("active", True) and "cron" in s]
        if crons:
            every = minute_every if any(is_every_minute(c) for c in crons) else long_every
            jobs.append(ScheduledJob(d["name"], d["entrypoint"], d.get("parameters") or {}, every))
    return jobs


def run(jobs: list[ScheduledJob], stopping, runs: Path | None = None) -> None:
    """Each job in a thread of its own, as each deployment runs apart: at start, then every
    `every_seconds` (a run that outlasts its period delays the next, one at a time as deployed)."""
    from carepath.sources import load_flow

    # Imported here, one after another: modules imported by several threads at once can deadlock.
    flows = {job.deployment: load_flow(job.entrypoint) for job in jobs}
    threads = [
        threading.Thread(
            target=run_job, args=(job, flows[job.deployment], stopping, runs), name=job.deployment
        )
        for job in jobs
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


_RECORDING = threading.Lock()


def record(path: Path | None, line: dict) -> None:
    """One JSON line per run: to `path` (whole lines, one thread at a time), else to stdout."""
    text = json.dumps(line) + "\n"
    with _RECORDING:
        if path is None:
            print(text, end="", flush=True)
        else:
            with open(path, "a") as out:
                out.write(text)


def run_job(job: ScheduledJob, flow, stopping, runs: Path | None = None) -> None:
    """Run the job's flow whenever due until `stopping()`; a JSON line per run (see `record`)."""
    due = time.monotonic()
    while not stopping():
        if time.monotonic() < due:
            time.sleep(0.2)
            continue
        due += job.every_seconds
        started = time.monotonic()
        state = flow(**job.parameters, return_state=True)
        line = {
            "deployment": job.deployment,
            "state": state.type.value,
            "seconds": time.monotonic() - started,
        }
        record(runs, line)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minute-every", type=float, default=60.0, help="seconds between runs of minute jobs")
    p.add_argument("--long-every", type=float, default=300.0, help="seconds between daily/weekly jobs")
    p.add_argument("--runs", type=Path, help="append the runs' JSON lines to this file (default: stdout)")
    args = p.parse_args(argv)
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    if api_url := os.environ.get("PREFECT_API_URL"):  # started alongside the server: wait for it
        from deployments.serve import wait_for

        wait_for(f"{api_url}/health", 300, "the Prefect server")
    jobs = scheduled_jobs(minute_every=args.minute_every, long_every=args.long_every)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):  # as the drain loop runs
        run(jobs, lambda: stopping, args.runs)


if __name__ == "__main__":
    main()
