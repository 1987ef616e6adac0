"""Scale-out on Prefect's own engine: one Prefect server (the session's, a process of its own), the
`carepath-process` work pool and two process workers, each with its own PREFECT_HOME as if on a host of its own,
run the `iot-fault-journey` deployment (deployed from prefect.yaml by `prefect deploy`) and drain one PostgreSQL
inbox at the same time.

Every fault is processed once, every SMS is created once at the provider stub, and each worker ran a run that did
its share of the work (each worker's own log names the runs it started).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from deployments.serve import free_port, loopback_env
from models import Case, DeviceFault, InboxEvent, InboxState, Message, MessageStatus
from tasks.ingest import store_fault_events
from tests.utils.databases import BACKEND
from tests.utils.factories import fault_event, make_contact, make_device
from tests.utils.signing import CASES_SECRET, IOT_SECRET

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        BACKEND != "postgresql",
        reason="hosts share one inbox through PostgreSQL's row locks (FOR UPDATE SKIP LOCKED); "
        "a SQLite file is neither shared between hosts nor locked by row",
    ),
]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
POOL = "carepath-process"
HOSTS = ("host-a", "host-b")
DEVICES, FAULTS_EACH = 40, 3
BATCH = 10
# A run a host, each stopping after its share of batches: together the runs can claim exactly the inbox, so each
# claim finds a full batch (SKIP LOCKED passes over what the other host holds) and both hosts do work.
BATCHES_EACH = DEVICES * FAULTS_EACH // len(HOSTS) // BATCH
FIGURES = "IoT fault journey: "  # the flow's closing log line


def wait_until(check, timeout: float, what: str):
    """Poll `check` until it returns something true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@pytest.fixture()
def work_pool(prefect_server) -> Iterator[str]:
    """The `carepath-process` pool on the session's Prefect server; it and what is deployed to it (with the
    deployments' triggers) are removed afterwards, so no other test's events start runs of it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.client.schemas.filters import WorkPoolFilter, WorkPoolFilterName
    from prefect.settings import PREFECT_API_URL
    from prefect.workers.process import ProcessWorker

    template = ProcessWorker.get_default_base_job_template()
    with get_client(sync_client=True) as client:
        client.create_work_pool(
            WorkPoolCreate(name=POOL, type="process", base_job_template=template), overwrite=True
        )
    yield PREFECT_API_URL.value()
    with get_client(sync_client=True) as client:
        for deployment in client.read_deployments(
            work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[POOL]))
        ):
            client.delete_resource_owned_automations(f"prefect.deployment.{deployment.id}")
            client.delete_deployment(deployment.id)
        client.delete_work_pool(POOL)


def host_env(api_url: str, home: Path, database_url: str, stub_url: str) -> dict[str, str]:
    """What a worker host shares with the others: the database URL, the Prefect API URL and the secrets (here
    the provider stub's); what it keeps: its PREFECT_HOME."""
    env = loopback_env(
        database_url=database_url,
        prefect_home=str(home),
        receiver_port=free_port(),
        provider_url=stub_url,
        iot_secret=IOT_SECRET,
        cases_secret=CASES_SECRET,
    )
    return env | {
        "PREFECT_API_URL": api_url,
        "CAREPATH_HOME": str(ROOT),  # prefect.yaml's pull step: the checkout the runs start in
        "PREFECT_WORKER_QUERY_SECONDS": "1",
    }


@contextmanager
def worker(name: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """`prefect worker start --pool carepath-process` as on a host of its own; one flow run at a time, so
    that each host takes one of the runs."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(BIN / "prefect"),
                "worker",
                "start",
                "--pool",
                "carepath-process",
                "--name",
                name,
                "--limit",
                "1",
            ],
            cwd="/",
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def arrange_inbox(session) -> None:
    """Three critical faults from each device, stored in id order so that runs racing on the same devices
    claim faults of the same devices in different batches."""
    devices = [
        make_device(session, owner=make_contact(session, phone=f"+30691{n:07d}")) for n in range(DEVICES)
    ]
    t0 = datetime.now(UTC) - timedelta(minutes=20)
    events = [
        fault_event(d.device_id, 12 + n, occurred_at=t0 + timedelta(minutes=n))
        for n in range(FAULTS_EACH)
        for d in devices
    ]
    store_fault_events(session=session, events=events)
    session.commit()


def run_logs(client, run_id) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
    return [entry.message for entry in logs]


def ran_on(run_name: str, host_logs: dict[str, Path]) -> list[str]:
    """The hosts whose worker started the run: its log says "Flow run '<name>' submitted to infrastructure".
    (Both workers may try to submit a run; the server lets one through and the other logs an abort.)"""
    line = f"Flow run '{run_name}' submitted to infrastructure"
    return [host for host, log in host_logs.items() if line in log.read_text(errors="replace")]


def figures(messages: list[str]) -> dict[str, int]:
    """The journey's figures, from its closing log line."""
    [line] = [m for m in messages if m.startswith(FIGURES)]
    return ast.literal_eval(line.removeprefix(FIGURES))


def test_two_worker_hosts_drain_one_inbox_once(
    session, database_url, work_pool, provider_stub_server, tmp_path
) -> None:
    from prefect.client.orchestration import get_client

    stub = provider_stub_server
    stub.reset()
    arrange_inbox(session)
    homes = {host: tmp_path / host for host in HOSTS}
    envs = {host: host_env(work_pool, homes[host], database_url, stub.base_url) for host in HOSTS}
    host_logs = {host: tmp_path / f"{host}.log" for host in HOSTS}

    with ExitStack() as hosts, get_client(sync_client=True) as client:
        for host in HOSTS:
            homes[host].mkdir()
            hosts.enter_context(worker(host, envs[host], host_logs[host]))
        # The deployment as prefect.yaml declares it, with one run a host at a time instead of one in all.
        deploy = ["deploy", "--name", "iot-fault-journey", "--concurrency-limit", "2"]
        deployed = subprocess.run(
            [str(BIN / "prefect"), "--no-prompt", *deploy],
            cwd=ROOT,
            env=envs[HOSTS[0]] | {"PREFECT_HOME": str(tmp_path / "operator")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert deployed.returncode == 0, deployed.stdout[-2000:] + deployed.stderr[-2000:]
        wait_until(
            lambda: {w.name for w in client.read_workers_for_work_pool(POOL)} >= set(HOSTS),
            60,
            "both workers to report to the server",
        )
        deployment = client.read_deployment_by_name("iot-fault-journey/iot-fault-journey")
        parameters = {"batch_size": BATCH, "max_batches": BATCHES_EACH}
        runs = [
            client.create_flow_run_from_deployment(deployment.id, parameters=parameters).id for _ in HOSTS
        ]

        def all_final() -> list | None:
            states = [client.read_flow_run(r).state for r in runs]
            return states if all(s.is_final() for s in states) else None

        states = wait_until(all_final, 150, "both flow runs to finish")
        assert [s.type.value for s in states] == ["COMPLETED"] * len(runs), [s.message for s in states]

        def closing_lines() -> dict | None:  # a run's logs reach the server in batches, up to its exit
            logs = {r: run_logs(client, r) for r in runs}
            return logs if all(any(m.startswith(FIGURES) for m in ms) for ms in logs.values()) else None

        logs = wait_until(closing_lines, 30, "both runs' figures in their logs")
        names = {r: client.read_flow_run(r).name for r in runs}

    # Every fault processed exactly once, whichever host claimed it …
    per_run = {r: figures(m) for r, m in logs.items()}
    assert session.scalars(select(InboxEvent.state).distinct()).all() == [InboxState.PROCESSED]
    assert session.scalar(select(func.count()).select_from(DeviceFault)) == DEVICES * FAULTS_EACH
    assert session.scalar(select(func.count()).select_from(Case)) == DEVICES
    assert session.scalar(select(func.sum(Case.fault_occurrences))) == DEVICES * FAULTS_EACH
    assert sum(f["cases_opened"] for f in per_run.values()) == DEVICES
    # … one SMS per device, created once at the provider …
    messages = session.scalars(select(Message)).all()
    assert len(messages) == DEVICES and {m.status for m in messages} == {MessageStatus.SENT}
    creates = stub.twilio_creates()
    assert len(creates) == DEVICES
    assert len({r.form["To"] for r in creates}) == DEVICES
    assert {m.provider_message_id for m in messages} == {m["sid"] for m in stub.twilio_created()}
    assert sum(f["sms_sent"] for f in per_run.values()) == DEVICES
    # … and each host ran a run that claimed its share.
    hosts_of = {r: ran_on(names[r], host_logs) for r in runs}
    assert sorted(hosts_of.values()) == [[host] for host in HOSTS], hosts_of
    claimed_by = {hosts_of[r][0]: per_run[r]["faults_claimed"] for r in runs}
    assert claimed_by == {host: BATCH * BATCHES_EACH for host in HOSTS}
    session.commit()
