"""The naive benchmark's per-event claim uses the inbox's partial index, as the set-based claim does.

A baseline that scans the inbox measures the scan, not the per-event loop: the ratio it prints is then
inflated (it once claimed 9 faults/s against ~480/s for a fair loop on the same indexes).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from bench.naive import next_pending_fault
from tests.utils.databases import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="the plan that matters is PostgreSQL's")


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_naive_claim_walks_the_pending_index(engine) -> None:
    with engine.begin() as conn:
        # Many processed events and a few pending ones, as after a drain; fresh statistics.
        conn.execute(
            text("""
            INSERT INTO inbox_event (source, kind, event_id, payload, state, attempts, received_at)
            SELECT 'iot', 'fault', 'e-' || g, '{}'::jsonb,
                   CASE WHEN g > 20000 THEN 'pending' ELSE 'processed' END, 0, now()
            FROM generate_series(1, 20050) g""")
        )
        conn.execute(text("ANALYZE inbox_event"))
        sql = str(next_pending_fault().compile(engine, compile_kwargs={"literal_binds": True}))
        plan = conn.execute(text(f"EXPLAIN (FORMAT JSON) {sql}")).scalar_one()[0]["Plan"]

    scans = [n for n in plan_nodes(plan) if n.get("Index Name") == "ix_inbox_event_pending"]
    assert scans, f"the claim does not use ix_inbox_event_pending: {plan}"
    assert "kind" in scans[0].get("Index Cond", ""), scans[0]
    assert not any(n["Node Type"] in ("Seq Scan", "Sort") for n in plan_nodes(plan)), plan
