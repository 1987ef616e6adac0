"""Every deployment in prefect.yaml loads: its entrypoint imports, its parameters validate, its triggers
expect events Carepath emits, and its run form can be filled from defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prefect.utilities.callables import parameter_schema

from carepath.sources import event_names, load_flow

ROOT = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((ROOT / "prefect.yaml").read_text())
DEPLOYMENTS = CONFIG["deployments"]


def test_every_flow_has_a_deployment() -> None:
    flows = {p.stem for p in (ROOT / "flows").glob("*.py") if p.stem != "__init__"}
    deployed = {d["entrypoint"].split("/")[1].split(".py")[0] for d in DEPLOYMENTS}
    assert flows == deployed


NEEDS_INPUT = {
    "resolve-case": {"ticket", "resolution", "minutes"},
    "kb-search": {"query"},
    "kb-send": {"ticket", "article_id"},
    "add-activity": {"ticket", "type", "subject"},
    "close-activity": {"activity_id"},
    "reply-to-customer": {"ticket", "channel", "text", "agent"},
    "customer-summary": {"key"},
    "merge-contacts": {"master_id", "duplicate_id"},
    "import-contacts": {"path"},
    "import-accounts": {"path"},
    "import-faults": {"path"},
}


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=[d["name"] for d in DEPLOYMENTS])
def test_deployment_loads_and_defaults_validate(deployment: dict) -> None:
    flow = load_flow(deployment["entrypoint"])
    assert flow.name == deployment["name"]
    assert deployment["work_pool"]["name"] == "carepath-process"
    assert deployment["tags"] and deployment["description"]
    schema = parameter_schema(flow).model_dump_for_openapi()
    # A run started from the UI with defaults must not be refused: nothing may be required, except the
    # record an operation acts on (resolve-case: which case, how it was solved).
    assert set(schema.get("required", [])) == NEEDS_INPUT.get(deployment["name"], set())
    for name, prop in schema["properties"].items():
        assert prop.get("description"), f"{deployment['name']}.{name} has no description for the UI form"
    if deployment["name"] not in NEEDS_INPUT:
        flow.validate_parameters(deployment.get("parameters") or {})


@pytest.mark.parametrize("deployment", [d for d in DEPLOYMENTS if d.get("triggers")], ids=lambda d: d["name"])
def test_triggers_expect_events_carepath_emits(deployment: dict) -> None:
    emitted = set(event_names().values())
    for trigger in deployment["triggers"]:
        assert set(trigger["expect"]) <= emitted


def test_schedules() -> None:
    by_name = {d["name"]: d for d in DEPLOYMENTS}
    assert by_name["inbox-sweep"]["schedules"][0]["cron"] == "* * * * *"
    assert by_name["delivery-analytics"]["schedules"]
    assert by_name["kpi-report"]["schedules"] == [{"cron": "0 5 * * *", "timezone": "UTC", "active": True}]
    assert by_name["bulk-delete-merged-contacts"]["schedules"][0] == {
        "cron": "0 2 * * 0",  # Sundays, 02:00 UTC
        "timezone": "UTC",
        "active": True,
    }
