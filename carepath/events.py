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
