"""Every source of inbox events, declared once.

A source is what posts events to Carepath (a device gateway, another case system, Twilio, SendGrid, or
Carepath itself): its webhook route, the pydantic schema of its body, how its requests are verified, the
inbox (source, kind) it is stored under, the Prefect event that announces it, and the deployment whose flow
drains it. From this one declaration come the receiver's routes, the event names, the drain loop's and the
inbox sweep's dispatch, the sweep's retry of early callbacks, and the deployment triggers of prefect.yaml
(`python -m carepath.sources` prints them; tests/test_sources.py checks prefect.yaml agrees).

Adding a source: declare it in SOURCES, add its schema to carepath/schemas.py and its secret to settings if
it signs with our HMAC, a handler in receiver/webhooks.py when its body is not one JSON event (or an array
of them), the drain in its journey's flow, and paste the printed triggers into prefect.yaml.

This module sits below tasks/ and flows/: deployments and flows are named by strings, never imported here.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel

from carepath.schemas import (
    CaseStatusIn,
    FaultIn,
    InboundEmailIn,
    PortalRegistrationIn,
    SendGridEventIn,
    TwilioInboundIn,
    TwilioStatusIn,
    WebshopOrderIn,
)

Verifier = Literal["carepath-hmac", "twilio", "sendgrid", "basic-auth"]


@dataclass(frozen=True)
class Source:
    """One kind of inbox event, from the request that brings it to the flow that handles it."""

    name: str  # for people: logs, docs, test ids
    source: str  # inbox_event.source (and, for carepath-hmac, the settings' `<source>_webhook_secret`)
    kind: str  # inbox_event.kind
    event: str  # the Prefect event announcing new rows; deployment triggers expect it
    deployment: str  # the deployment (and flow name) that drains these rows
    entrypoint: str  # that flow, as prefect.yaml names it: "flows/<module>.py:<function>"
    batch_size: int  # rows the flow claims per transaction by default
    route: str | None = None  # the receiver's POST path; None: written by Carepath itself
    schema: type[BaseModel] | None = None  # the body (or each element of a batch)
    verifier: Verifier | None = None
    batches: bool = False  # a request may carry a JSON array of events
    retry_early_failures: bool = False  # may arrive before what it refers to: the sweep retries failures

    def __post_init__(self) -> None:
        if self.route and (self.schema is None or self.verifier is None):
            raise ValueError(f"source {self.name}: a webhook route needs a schema and a verifier")

    @property
    def resource_id(self) -> str:
        """The Prefect resource its events are about (the inbox of this source and kind)."""
        return f"carepath.inbox.{self.source}.{self.kind}"


SOURCES: tuple[Source, ...] = (
    Source(
        name="iot-faults",
        source="iot",
        kind="fault",
        event="carepath.iot.fault",
        deployment="iot-fault-journey",
        entrypoint="flows/iot_fault_journey.py:iot_fault_journey",
        batch_size=5000,
        route="/webhooks/iot/faults",
        schema=FaultIn,
        verifier="carepath-hmac",
        batches=True,
    ),
    Source(
        name="case-status-posted",
        source="cases",
        kind="status",
        event="carepath.case.status_changed",
        deployment="case-status-journey",
        entrypoint="flows/case_status_journey.py:case_status_journey",
        batch_size=500,
        route="/webhooks/cases/status",
        schema=CaseStatusIn,
        verifier="carepath-hmac",
        retry_early_failures=True,  # a status for a case another system has not told us about yet
    ),
    Source(
        name="case-status-carepath",
        source="carepath",
        kind="case_status",
        event="carepath.case.status_changed",
        deployment="case-status-journey",
        entrypoint="flows/case_status_journey.py:case_status_journey",
        batch_size=500,
    ),
    Source(
        name="twilio-status",
        source="twilio",
        kind="status",
        event="carepath.delivery.twilio_status",
        deployment="delivery-status",
        entrypoint="flows/delivery_status.py:delivery_status",
        batch_size=2000,
        route="/webhooks/twilio/status",
        schema=TwilioStatusIn,
        verifier="twilio",
        retry_early_failures=True,  # may come before the message's SID is recorded
    ),
    Source(
        name="twilio-inbound",
        source="twilio",
        kind="inbound",
        event="carepath.delivery.twilio_inbound",
        deployment="delivery-status",
        entrypoint="flows/delivery_status.py:delivery_status",
        batch_size=2000,
        route="/webhooks/twilio/inbound",
        schema=TwilioInboundIn,
        verifier="twilio",
    ),
    Source(
        name="sendgrid-events",
        source="sendgrid",
        kind="event",
        event="carepath.delivery.sendgrid_event",
        deployment="delivery-status",
        entrypoint="flows/delivery_status.py:delivery_status",
        batch_size=2000,
        route="/webhooks/sendgrid/events",
        schema=SendGridEventIn,
        verifier="sendgrid",
        batches=True,
        retry_early_failures=True,  # may come before the message's id is recorded
    ),
    Source(
        name="sendgrid-inbound",
        source="sendgrid",
        kind="inbound",
        event="carepath.email.inbound",
        deployment="email-to-case",
        entrypoint="flows/email_to_case.py:email_to_case",
        batch_size=100,
        route="/webhooks/sendgrid/inbound",
        schema=InboundEmailIn,
        # Inbound Parse signs nothing: SendGrid posts to https://user:password@host/…, checked here.
        verifier="basic-auth",
    ),
    Source(
        name="webshop-orders",
        source="webshop",
        kind="order",
        event="carepath.webshop.order",
        deployment="webshop-order",
        entrypoint="flows/webshop_order.py:webshop_order",
        batch_size=200,
        route="/webhooks/webshop/orders",
        schema=WebshopOrderIn,  # its order_id is the inbox event id: a resent order is stored once
        verifier="carepath-hmac",
    ),
    Source(
        name="portal-registrations",
        source="portal",
        kind="registration",
        event="carepath.portal.registration",
        deployment="portal-registration",
        entrypoint="flows/portal_registration.py:portal_registration",
        batch_size=200,
        route="/webhooks/portal/registrations",
        schema=PortalRegistrationIn,
        verifier="carepath-hmac",
    ),
)


@dataclass(frozen=True)
class Journey:
    """A deployment that drains one or more sources, as the registry derives it."""

    deployment: str
    entrypoint: str
    batch_size: int
    sources: tuple[Source, ...]

    @property
    def kinds(self) -> frozenset[tuple[str, str]]:
        return frozenset((s.source, s.kind) for s in self.sources)

    def triggers(self) -> list[dict[str, Any]]:
        """Its prefect.yaml `triggers:`: one event trigger on its sources' events and inbox resources."""
        expect = list(dict.fromkeys(s.event for s in self.sources))
        resources = [s.resource_id for s in self.sources]
        return [
            {
                "type": "event",
                "enabled": True,
                "expect": expect,
                "match": {"prefect.resource.id": resources[0] if len(resources) == 1 else resources},
            }
        ]


def by_kind(source: str, kind: str) -> Source:
    """The declared source of inbox rows with this source and kind."""
    return _BY_KIND[(source, kind)]


def by_route(route: str) -> Source:
    """The declared source served at this webhook path."""
    return _BY_ROUTE[route]


def routes() -> dict[str, Source]:
    """Webhook path → source, for every source the receiver serves."""
    return dict(_BY_ROUTE)


def event_names() -> dict[tuple[str, str], str]:
    """(inbox source, kind) → the Prefect event that announces it."""
    return {(s.source, s.kind): s.event for s in SOURCES}


def retryable_kinds() -> list[tuple[str, str]]:
    """Kinds whose failures may be early arrivals: the inbox sweep puts them back a few times."""
    return [(s.source, s.kind) for s in SOURCES if s.retry_early_failures]


def journeys() -> dict[str, Journey]:
    """Deployment name → the journey draining its sources, in declaration order."""
    return dict(_JOURNEYS)


def journey_batch_size(deployment: str) -> int:
    """The default batch size of a journey's flow (its run form's default)."""
    return _JOURNEYS[deployment].batch_size


def load_flow(entrypoint: str) -> Any:
    """Import the flow an entrypoint names ("flows/x.py:f"), as Prefect does for a deployment."""
    path, name = entrypoint.split(":")
    return getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), name)


def render_triggers() -> str:
    """The `triggers:` of every journey deployment, as YAML to paste into its entry in prefect.yaml."""
    import textwrap

    import yaml

    class Indented(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)  # lists indented under their key, as prefect.yaml has them

    blocks = []
    for journey in _JOURNEYS.values():
        body = yaml.dump({"triggers": journey.triggers()}, Dumper=Indented, sort_keys=False)
        blocks.append(f"  - name: {journey.deployment}\n" + textwrap.indent(body, "    "))
    return "\n".join(blocks)


def _journeys(sources: Iterable[Source]) -> dict[str, Journey]:
    grouped: dict[str, list[Source]] = {}
    for s in sources:
        grouped.setdefault(s.deployment, []).append(s)
    made = {}
    for deployment, members in grouped.items():
        entrypoints = {s.entrypoint for s in members}
        sizes = {s.batch_size for s in members}
        if len(entrypoints) != 1 or len(sizes) != 1:
            raise ValueError(
                f"sources of {deployment} disagree on entrypoint {entrypoints} or batch size {sizes}"
            )
        made[deployment] = Journey(deployment, entrypoints.pop(), sizes.pop(), tuple(members))
    return made


def _unique(pairs: Iterable[tuple[Any, Source]], what: str) -> dict[Any, Source]:
    found: dict[Any, Source] = {}
    for key, s in pairs:
        if key in found:
            raise ValueError(f"{what} {key!r} is declared by both {found[key].name} and {s.name}")
        found[key] = s
    return found


_BY_KIND = _unique((((s.source, s.kind), s) for s in SOURCES), "inbox kind")
_BY_ROUTE = _unique(((s.route, s) for s in SOURCES if s.route), "route")
_JOURNEYS = _journeys(SOURCES)


if __name__ == "__main__":
    print(render_triggers(), end="")
