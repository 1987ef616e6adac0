"""The drain's claim walks the partial index of pending inbox rows, whatever the statistics say.

Statistics taken while a backlog was pending (every row 'pending') once made the planner walk the primary
key from the first row, past every row already processed: each claim of a backlog slower than the last,
and an empty claim read the whole inbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tasks.fault_claims import _PG_CLAIM_SQL
from tests.utils.databases import BACKEND

pytestmark = pytest.mark.skipif(BACKEND != "postgresql", reason="the plan that matters is PostgreSQL's")


def plan_nodes(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every node of an EXPLAIN (FORMAT JSON) plan, depth first (init plans and CTEs too)."""
    yield node
    for child in node.get("Plans", []):
        yield from plan_nodes(child)


def test_claim_walks_the_pending_index_with_statistics_of_a_pending_backlog(engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO inbox_event (source, kind, event_id, payload, state, attempts, received_at)
            SELECT 'iot', 'fault', 'e-' || g, '{}'::jsonb, 'pending', 0, now()
            FROM generate_series(1, 20050) g""")
        )
        conn.execute(text("ANALYZE inbox_event"))  # the backlog as the statistics see it: all pending
        conn.execute(text("UPDATE inbox_event SET state = 'processed' WHERE id <= 20000"))
        with conn.connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + _PG_CLAIM_SQL, {"limit": 100, "threshold": 10})
            plan = cursor.fetchone()[0][0]["Plan"]

    nodes = list(plan_nodes(plan))
    pending = [n for n in nodes if n.get("Index Name") == "ix_inbox_event_pending"]
    assert pending, f"the claim does not walk ix_inbox_event_pending: {plan}"
    assert "kind" in pending[0].get("Index Cond", ""), pending[0]
    # The primary key only fetches the claimed ids; nothing scans the inbox or sorts it.
    for n in nodes:
        if n.get("Index Name") == "pk_inbox_event":
            assert "ANY" in n.get("Index Cond", ""), n
        assert not (n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "inbox_event"), n
