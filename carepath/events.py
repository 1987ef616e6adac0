"""Names of the Prefect events Carepath emits, and how inbox rows map onto them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

# (inbox source, kind) → Prefect event name; deployments' triggers in prefect.yaml expect these.
EVENT_NAMES: dict[tuple[str, str], str] = {
    ("iot", "fault"): "carepath.iot.fault",
    ("cases", "status"): "carepath.case.status_changed",
    ("carepath", "case_status"): "carepath.case.status_changed",
    ("twilio", "status"): "carepath.delivery.twilio_status",
    ("twilio", "inbound"): "carepath.delivery.twilio_inbound",
    ("sendgrid", "event"): "carepath.delivery.sendgrid_event",
}
_NAMESPACE = uuid.UUID("7d0b1c2e-5f3a-4c59-9d7e-2f6c0a9b8e41")


def event_name(source: str, kind: str) -> str:
    return EVENT_NAMES.get((source, kind), f"carepath.{source}.{kind}")


def prefect_event(source: str, kind: str, inbox_ids: list[int]) -> dict[str, Any]:
    """One Prefect event announcing new inbox rows; its id is derived from them, so a resend is dropped."""
    ids = sorted(inbox_ids)
    return {
        "id": str(uuid.uuid5(_NAMESPACE, f"{source}:{kind}:{','.join(map(str, ids))}")),
        "occurred": datetime.now(UTC).isoformat(),
        "event": event_name(source, kind),
        "resource": {
            "prefect.resource.id": f"carepath.inbox.{source}.{kind}",
            "prefect.resource.name": f"Carepath inbox: {source} {kind}",
        },
        "payload": {"inbox_ids": ids[:1000], "count": len(ids)},
        "related": [],
    }


def prefect_api_url(configured: str | None = None) -> str | None:
    """Where to announce: the setting, else PREFECT_API_URL (None: not announcing)."""
    import os

    url = configured or os.environ.get("PREFECT_API_URL")
    return url.rstrip("/") if url else None


def announce(groups: dict[tuple[str, str], list[int]], *, api_url: str | None, timeout: float = 5.0) -> bool:
    """Post one Prefect event per (source, kind) group of new inbox rows; False when Prefect did not take
    them (the rows stay unannounced and the sweep tries again)."""
    import httpx

    if not api_url or not groups:
        return False
    events = [prefect_event(source, kind, ids) for (source, kind), ids in groups.items() if ids]
    try:
        httpx.post(f"{api_url}/events", json=events, timeout=timeout).raise_for_status()
    except httpx.HTTPError:
        return False
    return True
