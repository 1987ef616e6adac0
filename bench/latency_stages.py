"""Where a fault's time to SMS goes: per-fault timestamps from the bench, the Carepath database and the
Prefect server's own records of the runs, turned into p50/p95 per stage.

Stages (each the time from the previous mark; all clocks are this machine's):
  accepted        webhook posted → 202 received by the client
  inbox row       webhook posted → inbox row written by the receiver (`received_at`)
  wait for loop   inbox row → the journey flow run that processed it was created (the drain loop polling, or
                  finishing the run — and the outbox run — it was in when the fault arrived)
  flow-run start  flow run created → Running (engine: create the run, set Pending and Running via the API)
  claim           Running → the drain task's transaction claimed the fault (`processed_at`; the task run
                  created and started via the API first)
  case + SMS row  claim → SMS queued in the outbox (`message.created_at`, same transaction as the case)
  to send step    queued → claimed for sending (`sending_at`: drain committed, send task run created)
  rate slot       claimed → `attempted_at` (the Prefect global rate limit `carepath-sms`: an API call)
  provider call   attempted → the SMS request reached the stub
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from sqlalchemy import create_engine, text

STAGES = [
    "accepted",
    "inbox row",
    "wait for loop",
    "flow-run start",
    "claim",
    "case + SMS row",
    "to send step",
    "rate slot",
    "provider call",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


@dataclass
class FlowRun:
    id: str
    flow: str
    deployment: bool
    created: float
    start: float | None
    end: float | None
    tasks: dict[str, float] = field(default_factory=dict)  # task name → duration (s)


def prefect_runs(api_url: str) -> list[FlowRun]:
    """Every flow run of the journey and the outbox, from the Prefect server's API."""
    with httpx.Client(base_url=api_url, timeout=30) as api:
        flows = {f["id"]: f["name"] for f in api.post("/flows/filter", json={"limit": 200}).json()}
        runs: list[FlowRun] = []
        offset = 0
        while True:
            page = api.post("/flow_runs/filter", json={"limit": 200, "offset": offset}).json()
            runs += [
                FlowRun(
                    id=r["id"],
                    flow=flows.get(r["flow_id"], "?"),
                    deployment=r["deployment_id"] is not None,
                    created=_ts(r["created"]) or 0.0,
                    start=_ts(r["start_time"]),
                    end=_ts(r["end_time"]),
                )
                for r in page
            ]
            if len(page) < 200:
                break
            offset += 200
        by_id = {r.id: r for r in runs}
        offset = 0
        while True:
            page = api.post("/task_runs/filter", json={"limit": 200, "offset": offset}).json()
            for t in page:
                run = by_id.get(t["flow_run_id"])
                if run and t["start_time"] and t["end_time"]:
                    name = t["name"].rsplit("-", 1)[0]
                    run.tasks[name] = run.tasks.get(name, 0.0) + _ts(t["end_time"]) - _ts(t["start_time"])
            if len(page) < 200:
                break
            offset += 200
    return runs


def fault_marks(database_url: str, event_ids: list[str]) -> dict[str, dict[str, float | None]]:
    """Per event id: the inbox row's and its SMS's timestamps (epoch seconds)."""
    engine = create_engine(database_url)
    query = text(
        """
        SELECT i.event_id, i.received_at, i.processed_at, m.to_address, m.created_at, m.sending_at,
               m.attempted_at
        FROM inbox_event i
        JOIN device_fault f ON f.inbox_event_id = i.id
        JOIN message m ON m.case_id = f.case_id
        WHERE i.event_id = ANY(:ids)
        """
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"ids": event_ids}).all()
    engine.dispose()
    return {
        r.event_id: {
            "to": r.to_address,
            "received": r.received_at.timestamp(),
            "processed": r.processed_at.timestamp() if r.processed_at else None,
            "queued": r.created_at.timestamp(),
            "sending": r.sending_at.timestamp() if r.sending_at else None,
            "attempted": r.attempted_at.timestamp() if r.attempted_at else None,
        }
        for r in rows
    }


def breakdown(
    *,
    posted: dict[str, float],
    accepted: dict[str, float],
    at_stub: dict[str, float],
    phones: dict[str, str],
    marks: dict[str, dict],
    runs: list[FlowRun],
) -> list[str]:
    """Lines to print: p50/p95 per stage, the runs that did the work, and what each run cost."""
    journeys = [r for r in runs if r.flow == "iot-fault-journey" and r.start and r.end]
    stages: dict[str, list[float]] = {s: [] for s in STAGES}
    by_path = {"drain loop": 0, "deployment": 0}
    for event_id, t0 in posted.items():
        m = marks.get(event_id)
        stub = at_stub.get(phones[event_id])
        if not m or stub is None or m["processed"] is None:
            continue
        run = next((r for r in journeys if r.start - 0.05 <= m["processed"] <= r.end + 0.05), None)
        if run is None:
            continue
        by_path["deployment" if run.deployment else "drain loop"] += 1
        marks_in_order = [
            t0,
            m["received"],
            run.created,
            run.start,
            m["processed"],
            m["queued"],
            m["sending"],
            m["attempted"],
            stub,
        ]
        stages["accepted"].append(accepted[event_id] - t0)
        for name, a, b in zip(STAGES[1:], marks_in_order[:-1], marks_in_order[1:], strict=True):
            if a is not None and b is not None:
                stages[name].append(b - a)
    lines = [f"per stage (s), {sum(by_path.values())} faults matched to their run ({by_path}):"]
    lines.append(f"  {'stage':<16}{'p50':>7}{'p95':>7}{'max':>7}")
    for name, values in stages.items():
        if values:
            lines.append(
                f"  {name:<16}{statistics.median(values):7.3f}{percentile(values, 0.95):7.3f}{max(values):7.3f}"
            )
    for flow_name in ("iot-fault-journey", "outbox"):
        done = [r for r in runs if r.flow == flow_name and r.start and r.end]
        if not done:
            lines.append(f"  {flow_name}: no runs")
            continue
        total = [r.end - r.created for r in done]
        engine = [r.start - r.created for r in done]
        tasks: dict[str, list[float]] = {}
        for r in done:
            for name, d in r.tasks.items():
                tasks.setdefault(name, []).append(d)
        task_text = ", ".join(f"{n} p50 {statistics.median(d):.3f}" for n, d in sorted(tasks.items()))
        lines.append(
            f"  {flow_name}: {len(done)} runs ({sum(r.deployment for r in done)} by a deployment); "
            f"created → end p50 {statistics.median(total):.3f} s p95 {percentile(total, 0.95):.3f} s; "
            f"created → running p50 {statistics.median(engine):.3f} s; tasks: {task_text}"
        )
    return lines
