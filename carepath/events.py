"""Announcing new inbox rows to Prefect, through Prefect's own events client.

The client (`prefect.events.clients`) speaks the server's events websocket and authenticates the way every
other Prefect client does: `PREFECT_API_KEY` for Prefect Cloud, `PREFECT_API_AUTH_STRING` for a server
started with `PREFECT_SERVER_API_AUTH_STRING`. Each event waits for the server's acknowledgement (a
websocket ping answered after it), so "announced" means Prefect took it. Event names come from the source
registry (carepath/sources.py); an event's id is derived from its inbox rows, so a resend is dropped by the
triggers service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from prefect.events import Event
from prefect.events.clients import EventsClient, PrefectCloudEventsClient, PrefectEventsClient

from carepath.sources import by_kind, event_names

# (inbox source, kind) → Prefect event name; deployments' triggers in prefect.yaml expect these.
EVENT_NAMES: dict[tuple[str, str], str] = event_names()
_NAMESPACE = uuid.UUID("7d0b1c2e-5f3a-4c59-9d7e-2f6c0a9b8e41")

InboxGroups = Mapping[tuple[str, str], list[int]]


def inbox_event(source: str, kind: str, inbox_ids: Iterable[int]) -> Event:
    """One Prefect event announcing new inbox rows; its id is derived from them, so a resend is dropped."""
    ids = sorted(inbox_ids)
    declared = by_kind(source, kind)
    return Event(
        id=uuid.uuid5(_NAMESPACE, f"{source}:{kind}:{','.join(map(str, ids))}"),
        occurred=datetime.now(UTC),
        event=declared.event,
        resource={
            "prefect.resource.id": declared.resource_id,
            "prefect.resource.name": f"Carepath inbox: {source} {kind}",
        },
        payload={"inbox_ids": ids[:1000], "count": len(ids)},
    )


def prefect_api_url(override: str | None = None) -> str | None:
    """The Prefect API Carepath announces to: Prefect's own setting (PREFECT_API_URL, from the environment or
    the active profile), unless `override` (CAREPATH_PREFECT_API_URL) names another. None: not announcing."""
    from prefect.settings import PREFECT_API_URL

    url = override or PREFECT_API_URL.value()
    return url.rstrip("/") if url else None


def events_client(api_url: str) -> EventsClient:
    """Prefect's events client for `api_url`, authenticated from Prefect's settings, that confirms each
    event and gives up quickly when Prefect is down (the inbox sweep announces later)."""
    from prefect.settings import PREFECT_CLOUD_API_URL

    client = (
        PrefectCloudEventsClient if api_url.startswith(PREFECT_CLOUD_API_URL.value()) else PrefectEventsClient
    )
    return client(api_url=api_url, reconnection_attempts=1, checkpoint_every=1)


async def emit_inbox_events(client: EventsClient, groups: InboxGroups) -> None:
    """Emit one event per (source, kind) group through an open client; raises if Prefect did not take one."""
    for (source, kind), ids in groups.items():
        if ids:
            await client.emit(inbox_event(source, kind, ids))


def announce(groups: InboxGroups, *, api_url: str | None) -> bool:
    """Announce groups of new inbox rows (from synchronous code: the sweep, the CLI); False when Prefect did
    not take them (the rows stay unannounced and the sweep tries again)."""
    import logging

    from prefect.utilities.asyncutils import run_coro_as_sync

    if not api_url or not any(groups.values()):
        return False

    async def send() -> None:
        async with events_client(api_url) as client:
            await emit_inbox_events(client, groups)

    try:
        run_coro_as_sync(send())
    except Exception as exc:  # Prefect unreachable or refusing: announcing is best effort
        logging.getLogger("carepath.events").warning("could not announce inbox rows to Prefect: %s", exc)
        return False
    return True
