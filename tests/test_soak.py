"""The soak benchmark's short variant: the same harness (bench/soak.py) for seconds at a low rate.

The stack's own processes on PostgreSQL — a Prefect server, the provider stub, the receiver, two drain loops
and the scheduled batch jobs — take signed webhooks of every source; afterwards the reconciliation must
hold: every accepted event is in the inbox and processed (or still pending), each journey's messages reached
the stub as many times as expected, nothing twice. The load is bounded (CAREPATH_SOAK_RATE events/s for
CAREPATH_SOAK_SECONDS, default 10/s for 15 s); the long soak is `python -m bench.soak`.
"""

from __future__ import annotations

import os
import uuid

import pytest

from bench.soak import MIX, SoakConfig, print_report, run_soak
from tests.utils.databases import BACKEND, POSTGRES_URL

pytestmark = pytest.mark.skipif(
    BACKEND != "postgresql",
    reason="the soak runs the stack's processes on PostgreSQL (two drain loops need row locks; the Prefect "
    "server keeps its own PostgreSQL database)",
)


def test_a_short_soak_of_every_source_reconciles() -> None:
    config = SoakConfig(
        pg_url=POSTGRES_URL,
        database=f"carepath_soak_{uuid.uuid4().hex[:8]}",
        rate=float(os.environ.get("CAREPATH_SOAK_RATE", "10")),
        seconds=float(os.environ.get("CAREPATH_SOAK_SECONDS", "15")),
        batch=5,
        minute_every=4.0,
        long_every=8.0,
        settle_seconds=120.0,
    )
    summary = run_soak(config)
    print_report(summary)  # shown when the test fails
    r = summary["reconciliation"]

    # Every source was posted to, nothing shed, every request answered 2xx.
    load = summary["load"]
    assert set(load["accepted"]) == set(MIX)
    assert load["shed"] == {} and load["unknown"] == 0
    assert set(load["statuses"]) <= {"200", "202"}
    # accepted = processed + pending, nothing failed or rejected, nothing stored twice.
    inbox = r["inbox"]
    assert r["accepted"] == inbox["rows"] == inbox.get("processed", 0) + inbox.get("pending", 0)
    assert r["accepted"] >= 0.9 * config.rate * config.seconds
    assert inbox.get("failed", 0) == inbox.get("rejected", 0) == 0
    # Messages at the stub = expected per journey; duplicates = 0 by idempotency key and at the stub.
    journeys = r["journeys"]
    for step in ("iot_fault_sms", "case_resolved", "email_acknowledgement"):
        assert journeys[step]["expected"] > 0
        assert journeys[step]["queued"] == journeys[step]["handed_over"] == journeys[step]["expected"], step
    assert r["stub"]["sends"] == r["handed_over"]
    assert sum(r["stub"]["sends"].values()) == sum(j["handed_over"] for j in journeys.values())
    assert r["duplicates"] == {"receiver": 0, "idempotency_keys": 0, "stub": 0}
    assert r["ok"], {"checks": r["checks"], "journeys": journeys}
    # The minute jobs ran on their cadence during the soak, each run completed.
    runs = summary["batch_runs"]
    for deployment in ("sla-monitor", "route-cases", "inbox-sweep"):
        assert runs.get(deployment, {}).get("COMPLETED", 0) >= 1, runs
    assert all(set(states) == {"COMPLETED"} for states in runs.values()), runs
