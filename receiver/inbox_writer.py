"""Micro-batched inbox writes: many requests, one INSERT per flush, each answered only after its commit."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from models import InboxEvent, InboxState
from models.base import utcnow

logger = logging.getLogger("carepath.receiver")


@dataclass(frozen=True)
class Accepted:
    inbox_id: int
    duplicate: bool


@dataclass
class _Pending:
    source: str
    kind: str
    event_id: str
    payload: dict[str, Any]
    future: asyncio.Future[Accepted]


OnFlush = Callable[[dict[tuple[str, str], list[int]]], Awaitable[None]]


class InboxWriter:
    """Collects accepted events and writes them together: a flush every `max_wait` seconds or `max_rows`.

    Each caller awaits its own row's commit, so a 202 always means "in the inbox"; a resend of a known
    (source, event id) gets the stored row's id and adds nothing.
    """

    def __init__(
        self, engine: AsyncEngine, *, max_rows: int, max_wait: float, on_flush: OnFlush | None = None
    ):
        self._engine = engine
        self._max_rows = max_rows
        self._max_wait = max_wait
        self._on_flush = on_flush
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="inbox-writer")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def store(self, *, source: str, kind: str, event_id: str, payload: dict[str, Any]) -> Accepted:
        """Queue one event and wait until it is committed (or known already)."""
        future: asyncio.Future[Accepted] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(source, kind, event_id, payload, future))
        return await future

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self._max_wait
            while len(batch) < self._max_rows:
                timeout = deadline - asyncio.get_running_loop().time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), timeout))
                except TimeoutError:
                    break
            try:
                created = await self._write(batch)
            except Exception as exc:  # the requests get a 503; nothing was stored
                logger.exception("inbox flush of %d events failed", len(batch))
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            if self._on_flush and created:
                try:
                    await self._on_flush(created)
                except Exception:  # announcing is best effort: the sweep covers it
                    logger.exception("announcing a flush failed")

    async def _write(self, batch: list[_Pending]) -> dict[tuple[str, str], list[int]]:
        """Insert the batch in one transaction; resolve every waiter; return new ids by (source, kind)."""
        now = utcnow()
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for p in batch:
            rows.setdefault(
                (p.source, p.event_id),
                {
                    "source": p.source,
                    "kind": p.kind,
                    "event_id": p.event_id,
                    "payload": p.payload,
                    "state": InboxState.PENDING,
                    "attempts": 0,
                    "received_at": now,
                },
            )
        table = InboxEvent.__table__
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert
            stmt = (
                insert(table)
                .on_conflict_do_nothing(index_elements=["source", "event_id"])
                .returning(table.c.id, table.c.source, table.c.event_id, table.c.kind)
            )
            result = await conn.execute(stmt, list(rows.values()))
            inserted = {(r.source, r.event_id): (r.id, r.kind) for r in result}
            known: dict[tuple[str, str], int] = {}
            missing = rows.keys() - inserted.keys()
            for source in {s for s, _ in missing}:
                ids = [e for s, e in missing if s == source]
                found = await conn.execute(
                    select(table.c.event_id, table.c.id).where(
                        table.c.source == source, table.c.event_id.in_(ids)
                    )
                )
                known.update({(source, e): i for e, i in found})
        answered: set[tuple[str, str]] = set()
        for p in batch:
            key = (p.source, p.event_id)
            if key in inserted and key not in answered:
                p.future.set_result(Accepted(inserted[key][0], duplicate=False))
            else:
                p.future.set_result(
                    Accepted(inserted[key][0] if key in inserted else known[key], duplicate=True)
                )
            answered.add(key)
        created: dict[tuple[str, str], list[int]] = {}
        for (source, _), (inbox_id, kind) in inserted.items():
            created.setdefault((source, kind), []).append(inbox_id)
        return created
