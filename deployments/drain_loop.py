"""The drain loop: a long-lived process that runs a journey flow (in-process) as soon as its inbox has work.

Triggered deployments start a fresh process per run (several seconds); this loop keeps the imports warm and
polls the inbox, so a fault's SMS leaves within a second or two of its webhook. Both may run: every flow
drains with `FOR UPDATE SKIP LOCKED` and idempotency keys, so whichever comes first does the work.
"""

from __future__ import annotations

import logging
import signal
import time

from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from sqlalchemy import func, select

from carepath.db import unit_of_work
from carepath.sources import journeys, load_flow
from models import InboxEvent, InboxState

logger = logging.getLogger("carepath.drain_loop")

# Deployment → the inbox kinds its flow drains (from the source registry).
JOURNEYS = {name: journey.kinds for name, journey in journeys().items()}


def pending_kinds() -> set[tuple[str, str]]:
    with unit_of_work() as session:
        rows = session.execute(
            select(InboxEvent.source, InboxEvent.kind)
            .where(InboxEvent.state == InboxState.PENDING)
            .group_by(InboxEvent.source, InboxEvent.kind)
            .having(func.count() > 0)
        ).all()
    return {(s, k) for s, k in rows}


def _outbox_waiting() -> bool:
    from tasks.messaging import outbox_waiting

    with unit_of_work() as session:
        return outbox_waiting(session=session)


def run(poll_seconds: float = 0.2) -> None:
    """Poll the inbox and run whichever journeys have pending work, until SIGTERM or Ctrl-C."""
    flows = {name: load_flow(journey.entrypoint) for name, journey in journeys().items()}
    flows["outbox"] = load_flow("flows/outbox.py:outbox")
    from carepath.quality import warm_up

    warm_up("inbox_faults")  # Great Expectations loads in seconds: now, not in the first fault's time to SMS
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    logger.info("drain loop polling the inbox every %.2f s", poll_seconds)
    # Heartbeats let Prefect notice a run whose process died; these runs last a second or two in a process
    # that is itself watched, and at their end the engine waits up to a second for the heartbeat thread,
    # which is most of a fault's time to SMS on a SQLite-backed server. So this loop runs without them.
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        _loop(flows, poll_seconds, lambda: stopping)


def _loop(flows: dict, poll_seconds: float, stopping) -> None:
    while not stopping():
        try:
            waiting = pending_kinds()
            ran = False
            for name, kinds in JOURNEYS.items():
                if waiting & kinds:
                    flows[name](return_state=True)  # a failed run is logged by Prefect; the loop goes on
                    ran = True
            # Queued messages go out whether or not new events arrive (a backlog after a provider outage,
            # messages a dead sender gave back).
            if _outbox_waiting():
                flows["outbox"](reconcile=False, return_state=True)
                ran = True
            if not ran:
                time.sleep(poll_seconds)
        except KeyboardInterrupt:
            break
        except Exception:
            logger.exception("drain loop iteration failed; retrying")
            time.sleep(1)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    run()
