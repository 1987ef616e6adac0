"""The drain's claim walks the partial index of pending inbox rows, whatever the statistics say.

Statistics taken while a backlog was pending (every row 'pending') once made the planner walk the primary
key from the first row, past every row already processed: each claim of a backlog slower than the last,
and an empty claim read the whole inbox.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import text

from carepath.bulk import pg_array_literal
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


def test_per_device_look_ups_probe_their_indexes_for_thousands_of_devices(engine) -> None:
    """Owners, recent faults and open cases of a batch's devices, and the cases it attaches faults to: an
    index look-up each, not a hash join or a scan over whole tables, even with the fault log and cases
    analysed while empty (as in a fresh install)."""
    from tasks.cases import _PG_LOCK_CASES, _PG_OPEN_CASES
    from tasks.faults import _PG_OWNERS, _PG_RECENT_FAULT_TIMES

    ids = pg_array_literal(f"DEV-{i:07d}" for i in range(3000))
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO contact (first_name, last_name, language, active, created_at)
            SELECT 'Owner', 'No ' || g, 'en', true, now() FROM generate_series(1, 20000) g""")
        )
        conn.execute(
            text("""
            INSERT INTO device (device_id, owner_contact_id)
            SELECT 'DEV-' || lpad(c.id::text, 7, '0'), c.id FROM contact c""")
        )
        conn.execute(text("ANALYZE"))  # the fault log and the cases analysed while empty
        conn.execute(
            text("""
            INSERT INTO device_fault (inbox_event_id, device_id, error_code, occurred_at, critical, recorded_at)
            SELECT g, 'DEV-' || lpad((1 + g % 20000)::text, 7, '0'), 12, now(), true, now()
            FROM generate_series(1, 50000) g""")
        )
        conn.execute(
            text("""
            INSERT INTO support_case (ticket_number, tracking_token, title, device_id, priority, origin, status,
                                      status_reason, fault_occurrences, created_at, updated_at)
            SELECT 'T-' || g, 'token-' || g, 'Case ' || g, 'DEV-' || lpad(g::text, 7, '0'), 'critical', 'iot',
                   CASE WHEN g % 2 = 0 THEN 'active' ELSE 'resolved' END, 'in_progress', 1, now(), now()
            FROM generate_series(1, 20000) g""")
        )
        dialect = conn.dialect
        plans = {}
        case_ids = pg_array_literal(range(1, 20001, 7))
        for name, stmt, params in [
            ("open cases", _PG_OPEN_CASES, {"ids": ids}),
            ("cases locked to attach faults", _PG_LOCK_CASES, {"ids": case_ids}),
            (
                "recent faults",
                _PG_RECENT_FAULT_TIMES,
                {"ids": ids, "since": datetime.now(UTC), "until": datetime.now(UTC)},
            ),
        ]:
            sql = str(stmt.compile(dialect=dialect, compile_kwargs={"literal_binds": False}))
            with conn.connection.cursor() as cursor:
                cursor.execute("EXPLAIN (FORMAT JSON) " + sql, params)
                plans[name] = cursor.fetchone()[0][0]["Plan"]
        with conn.connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + _PG_OWNERS, {"ids": ids})
            plans["owners"] = cursor.fetchone()[0][0]["Plan"]

    for name, plan in plans.items():
        nodes = list(plan_nodes(plan))
        scanned = {n.get("Relation Name") for n in nodes if n["Node Type"] == "Seq Scan"}
        assert not scanned & {"device", "contact", "device_fault", "support_case"}, (name, plan)
        assert any(n["Node Type"] == "Nested Loop" for n in nodes), (name, plan)
