"""The source registry is the one declaration of every event source: prefect.yaml's triggers, the receiver's
routes, the event names, the drain loop and the inbox sweep all agree with it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from carepath import sources
from carepath.events import EVENT_NAMES, inbox_event
from receiver.webhooks import MEDIA_TYPES

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENTS = {d["name"]: d for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
JOURNEYS = sources.journeys()


@pytest.mark.parametrize("name", list(JOURNEYS))
def test_prefect_yaml_triggers_are_the_ones_the_registry_derives(name: str) -> None:
    journey = JOURNEYS[name]
    deployment = DEPLOYMENTS[name]
    assert deployment["entrypoint"] == journey.entrypoint
    expected = journey.triggers()
    actual = [{k: t[k] for k in ("type", "enabled", "expect", "match")} for t in deployment["triggers"]]
    assert actual == expected, f"regenerate with `python -m carepath.sources`:\n{sources.render_triggers()}"


def test_only_journeys_have_event_triggers() -> None:
    triggered = {name for name, d in DEPLOYMENTS.items() if d.get("triggers")}
    assert triggered == set(JOURNEYS)


def test_rendered_triggers_parse_back_to_the_registry() -> None:
    rendered = yaml.safe_load("deployments:\n" + sources.render_triggers())["deployments"]
    assert {d["name"]: d["triggers"] for d in rendered} == {n: j.triggers() for n, j in JOURNEYS.items()}


def test_journey_flows_are_the_deployments_flows_with_the_declared_batch_size() -> None:
    from prefect.utilities.callables import parameter_schema

    for name, journey in JOURNEYS.items():
        flow = sources.load_flow(journey.entrypoint)
        assert flow.name == name
        schema = parameter_schema(flow).model_dump_for_openapi()
        assert schema["properties"]["batch_size"]["default"] == journey.batch_size


def test_every_declared_route_is_served_and_every_served_webhook_is_declared(receiver) -> None:
    paths = receiver.app.openapi()["paths"]
    served = {path: set(ops) for path, ops in paths.items() if path.startswith("/webhooks/")}
    assert set(served) == set(sources.routes())
    assert all(methods == {"post"} for methods in served.values())
    for path in sources.routes():
        # Served by a handler that verifies as declared: an unsigned request is refused, not routed elsewhere.
        media = MEDIA_TYPES[sources.by_route(path).verifier]
        answer = receiver.post(path, content=b"{}", headers={"Content-Type": media})
        assert answer.status_code in (400, 401), (path, answer.status_code, answer.text)


def test_event_names_and_resources_come_from_the_registry() -> None:
    assert EVENT_NAMES == {(s.source, s.kind): s.event for s in sources.SOURCES}
    for s in sources.SOURCES:
        event = inbox_event(s.source, s.kind, [3, 1, 2])
        assert event.event == s.event
        assert event.resource.id == s.resource_id
        assert event.payload == {"inbox_ids": [1, 2, 3], "count": 3}
        # A resend of the same rows is the same event: the triggers service drops it.
        assert inbox_event(s.source, s.kind, [2, 3, 1]).id == event.id


def test_drain_loop_and_sweep_dispatch_every_declared_kind() -> None:
    from deployments.drain_loop import JOURNEYS as LOOP
    from flows.inbox_sweep import RETRYABLE

    assert {name: set(kinds) for name, kinds in LOOP.items()} == {
        name: {(s.source, s.kind) for s in sources.SOURCES if s.deployment == name} for name in JOURNEYS
    }
    assert set().union(*LOOP.values()) == set(EVENT_NAMES)
    assert set(RETRYABLE) == {("twilio", "status"), ("sendgrid", "event"), ("cases", "status")}


def test_a_source_is_declared_once() -> None:
    twice = (*sources.SOURCES, sources.SOURCES[0])
    with pytest.raises(ValueError, match="declared by both"):
        sources._unique((((s.source, s.kind), s) for s in twice), "inbox kind")
    with pytest.raises(ValueError, match="needs a schema and a verifier"):
        sources.Source(
            name="x",
            source="x",
            kind="y",
            event="e",
            deployment="d",
            entrypoint="f.py:f",
            batch_size=1,
            route="/r",
        )
