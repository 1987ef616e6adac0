"""Announcing new inbox rows to Prefect: coalesced, best effort, recorded when it worked.

Bursts are coalesced into one Prefect event per (source, kind) and interval, so a thousand faults a second
start a handful of triggered runs, not a thousand. Rows a drain loop handled within the interval are not
announced: a triggered run would start a process (seconds of CPU on a small machine, slowing the loop) only
to find nothing, and the sweep too announces only what is still pending. So a row is announced once it has
been pending for an interval (at most one announcement per interval), and only if it still is. If Prefect is unreachable nothing is lost: the rows stay
pending and unannounced, and the drain loop or the scheduled inbox sweep picks them up.

Events go through Prefect's async events client (carepath/events.py), one connection kept open between
announcements and opened again after a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prefect.events.clients import EventsClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from carepath.events import emit_inbox_events, events_client
from models import InboxEvent, InboxState
from models.base import utcnow

logger = logging.getLogger("carepath.receiver")


class Announcer:
    def __init__(self, engine: AsyncEngine, *, api_url: str | None, interval: float) -> None:
        self._engine = engine
        self._api_url = api_url.rstrip("/") if api_url else None
        self._interval = interval
        self._pending: list[tuple[float, dict[tuple[str, str], list[int]]]] = []  # (notified at, rows)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: EventsClient | None = None

    def start(self) -> None:
        if self._api_url:
            self._task = asyncio.create_task(self._run(), name="announcer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._close_client()

    async def notify(self, created: dict[tuple[str, str], list[int]]) -> None:
        """Queue new inbox ids for the next announcement."""
        if not self._api_url:
            return
        self._pending.append((asyncio.get_running_loop().time(), created))
        self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last = float("-inf")
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._pending:
                continue
            # Let the burst gather, and give a drain loop the interval to handle the rows first.
            await asyncio.sleep(max(0.0, max(self._pending[0][0], last) + self._interval - loop.time()))
            last = loop.time()
            cutoff = last - self._interval + 0.01  # the loop may wake a clock tick early
            due = [rows for at, rows in self._pending if at <= cutoff]
            self._pending = [(at, rows) for at, rows in self._pending if at > cutoff]
            if self._pending:
                self._wake.set()
            pending: dict[tuple[str, str], list[int]] = {}
            for rows in due:
                for key, ids in rows.items():
                    pending.setdefault(key, []).extend(ids)
            try:
                await self._announce(pending)
            except Exception as exc:  # Prefect down: the sweep will find these rows
                logger.warning(
                    "could not announce %d inbox rows to Prefect: %s", sum(map(len, pending.values())), exc
                )

    async def _announce(self, pending: dict[tuple[str, str], list[int]]) -> None:
        """Emit the events for the rows still pending (each confirmed by Prefect), then record them as
        announced."""
        pending = await self._still_pending(pending)
        if not pending:
            return
        try:
            if self._client is None:
                assert self._api_url is not None
                client = events_client(self._api_url)
                await client.__aenter__()
                self._client = client
            await emit_inbox_events(self._client, pending)
        except BaseException:
            await self._close_client()  # a fresh connection next time
            raise
        ids = [i for group in pending.values() for i in group]
        table = InboxEvent.__table__
        async with self._engine.begin() as conn:
            await conn.execute(update(table).where(table.c.id.in_(ids)).values(announced_at=utcnow()))

    async def _still_pending(
        self, groups: dict[tuple[str, str], list[int]]
    ) -> dict[tuple[str, str], list[int]]:
        table = InboxEvent.__table__
        ids = [i for group in groups.values() for i in group]
        async with self._engine.connect() as conn:
            pending = set(
                (
                    await conn.execute(
                        select(table.c.id).where(table.c.id.in_(ids), table.c.state == InboxState.PENDING)
                    )
                ).scalars()
            )
        kept = {key: [i for i in group if i in pending] for key, group in groups.items()}
        return {key: group for key, group in kept.items() if group}

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.__aexit__(None, None, None)
