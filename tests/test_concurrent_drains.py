"""Several drains on one inbox (PostgreSQL, SKIP LOCKED): every fault once, one case and one SMS per device."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from carepath.rules.faults import FaultRules
from carepath.settings import get_settings
from models import Case, DeviceFault, InboxEvent, InboxState, Message
from tasks.faults import DrainSummary, drain_one_batch
from tasks.ingest import store_fault_events
from tests.utils.databases import BACKEND
from tests.utils.factories import fault_event, make_device

pytestmark = pytest.mark.skipif(
    BACKEND != "postgresql", reason="concurrent drains need row locks (PostgreSQL)"
)


def test_four_drains_racing_on_the_same_devices(session) -> None:
    devices = [make_device(session) for _ in range(40)]
    t0 = datetime.now(UTC) - timedelta(minutes=20)
    events = [
        fault_event(d.device_id, 12 + n, occurred_at=t0 + timedelta(minutes=n))
        for n in range(3)
        for d in devices
    ]  # three critical faults per device, spread over batches
    store_fault_events(session=session, events=events)
    session.commit()
    totals: list[DrainSummary] = []
    errors: list[BaseException] = []

    def drain() -> None:
        total = DrainSummary()
        try:
            while True:
                batch = drain_one_batch(rules=FaultRules(), batch_size=7, settings=get_settings())
                total.add(batch)
                if batch.claimed == 0:
                    break
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        totals.append(total)

    threads = [threading.Thread(target=drain) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)

    assert errors == []
    assert sum(t.claimed for t in totals) == 120  # every fault claimed exactly once
    assert session.scalar(select(func.count()).select_from(Case)) == 40
    assert session.scalar(select(func.count()).select_from(Message)) == 40
    assert session.scalar(select(func.sum(Case.fault_occurrences))) == 120
    assert session.scalar(select(func.count()).select_from(DeviceFault)) == 120
    states = session.scalars(select(InboxEvent.state).distinct()).all()
    assert states == [InboxState.PROCESSED]
