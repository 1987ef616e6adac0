"""A small chaos harness: real processes (receiver, drain loop, flows, Prefect server, a private PostgreSQL)
started, SIGKILLed at seeded random moments and started again; senders that retry like real ones.

Used by tests/test_chaos.py (bounded, in CI) and bench/chaos.py (the long run). Every random choice comes from
one `random.Random(seed)`; the seed is printed and carried in failure messages, and CAREPATH_CHAOS_SEED replays it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from carepath.settings import PROJECT_ROOT
from deployments.serve import free_port, loopback_env
from tests.utils.signing import CASES_SECRET, IOT_SECRET, carepath_headers


def chaos_seed() -> int:
    """CAREPATH_CHAOS_SEED, or a fresh seed; printed so a failure can be replayed."""
    seed = int(os.environ.get("CAREPATH_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"chaos seed: {seed} (replay with CAREPATH_CHAOS_SEED={seed})", flush=True)
    return seed


def wait_until(check: Callable[[], Any], timeout: float, what: str, *, seed: int | None = None) -> Any:
    """Poll `check` until it returns a truthy value; fail after `timeout` saying what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (chaos seed {seed})")


def chaos_env(
    *, database_url: str, stub_url: str, receiver_port: int, home: Path, prefect_api_url: str | None
) -> dict[str, str]:
    """The processes' environment: the stack's loopback settings, short leases and grace periods so a killed
    sender's messages are settled within seconds, and the given Prefect API (or none)."""
    env = loopback_env(
        database_url=database_url,
        prefect_home=str(home / "prefect"),
        receiver_port=receiver_port,
        provider_url=stub_url,
        iot_secret=IOT_SECRET,
        cases_secret=CASES_SECRET,
    )
    env |= {
        "CAREPATH_TWILIO_FROM_NUMBER": "+15005550006",
        "CAREPATH_SEND_LEASE_SECONDS": "4",
        "CAREPATH_RECONCILE_GRACE_SECONDS": "3",
        "CAREPATH_SEND_TIMEOUT_SECONDS": "2",
        "CAREPATH_SEND_BACKOFF_SECONDS": "0.05",
        "CAREPATH_ANNOUNCE_INTERVAL_MS": "200",
        "PYTHONUNBUFFERED": "1",
    }
    if prefect_api_url:
        env["PREFECT_API_URL"] = prefect_api_url
    return env


@dataclass
class Proc:
    """One restartable process; its output goes to a log file (the tail is shown when it misbehaves)."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    ready_when: Callable[[], bool] | None = None  # at work (e.g. answering); default: alive
    job: bool = False  # a run that ends by itself (not a service): started again later, not at once
    proc: subprocess.Popen | None = None
    kills: int = 0
    starts: int = 0

    def start(self) -> Proc:
        with open(self.log, "ab") as out:
            out.write(f"\n--- start {self.starts + 1} ---\n".encode())
            self.proc = subprocess.Popen(
                self.command, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready(self) -> bool:
        """Alive and at work: a kill now lands in the middle of it, not in its start-up."""
        return self.alive() and (self.ready_when is None or self.ready_when())

    def logged_since_start(self, marker: str) -> bool:
        """Whether this start's log has `marker` yet."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return marker in text.rpartition(f"--- start {self.starts} ---")[2]

    def kill(self) -> None:
        """SIGKILL: no clean-up, no rollback in the process, exactly what a crash is."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1

    def stop(self, grace: float = 10) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds."""
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def receiver_proc(env: dict[str, str], port: int, logs: Path) -> Proc:
    """`uvicorn receiver.app:create_app --factory` on a loopback port."""
    command = [sys.executable, "-m", "uvicorn", "receiver.app:create_app", "--factory"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    return Proc(
        "receiver", command, env, logs / "receiver.log", lambda: receiver_up(f"http://127.0.0.1:{port}")
    )


def drain_loop_proc(env: dict[str, str], logs: Path, name: str = "drain-loop") -> Proc:
    """`python -m deployments.drain_loop`: journeys and the outbox, in-process flow runs."""
    proc = Proc(name, [sys.executable, "-m", "deployments.drain_loop"], env, logs / f"{name}.log")
    proc.ready_when = lambda: proc.logged_since_start("polling the inbox")
    return proc


def cli_proc(env: dict[str, str], logs: Path, name: str, *args: str) -> Proc:
    """One `carepath` command in a process of its own (e.g. `sla-monitor --json`)."""
    command = [sys.executable, "-m", "cli", *args]
    return Proc(name, command, env, logs / f"{name}.log", job=True)


def receiver_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass
class Sender:
    """A webhook sender that behaves like a real one: retries on connection errors and 5xx (honouring
    Retry-After up to `max_wait`) until it gets a 202; remembers every answer it got."""

    base_url: str
    max_wait: float = 0.5
    accepted: dict[str, int] = field(default_factory=dict)  # event id -> inbox id
    answers: list[tuple[str, int, str | None]] = field(
        default_factory=list
    )  # (event id, status, Retry-After)
    errors: int = 0  # connection errors (the receiver was down)

    def post(self, path: str, payload: dict, secret: str, *, deadline: float) -> bool:
        """Send until accepted or `deadline` (monotonic); True when a 202 came."""
        body = json.dumps(payload).encode()
        while time.monotonic() < deadline:
            try:
                response = httpx.post(
                    f"{self.base_url}{path}", content=body, headers=carepath_headers(secret, body), timeout=10
                )
            except httpx.HTTPError:
                self.errors += 1
                time.sleep(0.1)
                continue
            self.answers.append(
                (payload["event_id"], response.status_code, response.headers.get("retry-after"))
            )
            if response.status_code == 202:
                self.accepted[payload["event_id"]] = response.json()["inbox_id"]
                return True
            if response.status_code < 500:
                raise AssertionError(
                    f"{path} refused {payload['event_id']}: {response.status_code} {response.text}"
                )
            time.sleep(min(float(response.headers.get("retry-after") or 0.1), self.max_wait))
        return False


# A PostgreSQL cluster of its own, for the test that stops and starts the server.


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin that has initdb and pg_ctl, or PATH's; None when absent."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True
    )
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


class PrivateCluster:
    """initdb into a temporary folder and serve it on a free loopback port. PostgreSQL refuses to run as
    root, so as root the cluster belongs to the `postgres` user and every pg_ctl runs through `runuser`."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir
        self.dir = Path(tempfile.mkdtemp(prefix="carepath-pg-"))
        self.data, self.port = self.dir / "data", free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as:
            shutil.chown(self.dir, "postgres")

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> PrivateCluster:
        self._run(
            str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync"
        )
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`: connections are cut; `immediate`: no shutdown checkpoint, like a crash)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def remove(self) -> None:
        with_suppressed = subprocess.run(  # noqa: F841 - best effort: the server may be stopped already
            [*self._as, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def private_cluster(bin_dir: Path) -> Iterator[PrivateCluster]:
    cluster = PrivateCluster(bin_dir).init()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()


# Provider faults over time: the drain loop's and the sweep's work, in this process, while the stub misbehaves.

FAULT_MODES = ("500", "429", "timeout-after-accepting", "slow")


def open_fault_schedule(stub: Any, provider: str, seconds_each: float, *, slow_seconds: float = 5.0) -> None:
    """One window of each fault, one after the other: 500s, 429 with Retry-After, answers dropped after the
    provider took the message, and a provider that takes `slow_seconds` per request (then healthy). The slow
    window lasts twice as long plus one slow answer: a wave blocked in another window's retries, or in a slow
    answer, must still meet it."""
    ok = 201 if provider == "twilio" else 202
    stub.fault_window(provider, seconds_each, status=500)
    stub.fault_window(provider, seconds_each, status=429, headers={"Retry-After": "1"})
    stub.fault_window(provider, seconds_each, status=ok, drop=True, create=True, every=2)
    stub.fault_window(provider, 2 * seconds_each + slow_seconds, status=ok, delay=slow_seconds)


def feed_sendgrid_events(stub: Any, fed: set[int]) -> int:
    """What SendGrid does after taking a mail: a `processed` event carrying our custom args, stored in the
    inbox as its signed webhook would be, and applied by the delivery journey's batch. Returns how many."""
    from carepath.db import unit_of_work
    from tasks.delivery import drain_delivery_batch
    from tasks.inbox import store_events

    events = []
    for request in stub.sendgrid_accepted():
        ours = (request.json or {}).get("custom_args") or {}
        message_id = int(ours.get("carepath_message_id", 0))
        if message_id and message_id not in fed:
            fed.add(message_id)
            sg_id = f"sg-{message_id}-{len(fed)}"
            payload = {"event": "processed", "sg_event_id": sg_id, "sg_message_id": f"SG{message_id}.filter0",
                       "carepath_message_id": str(message_id), "timestamp": int(time.time())}  # fmt: skip
            events.append((sg_id, payload))
    if events:
        with unit_of_work() as session:
            store_events(session=session, source="sendgrid", kind="event", events=events)
        with unit_of_work() as session:
            drain_delivery_batch(session=session, limit=len(events))
    return len(events)


def outbox_settled() -> bool:
    """No message queued, in flight, deferred or of unknown outcome."""
    from sqlalchemy import func, select

    from carepath.db import unit_of_work
    from models import Message, MessageStatus

    open_states = [MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.UNKNOWN]
    with unit_of_work() as session:
        return not session.scalar(select(func.count()).where(Message.status.in_(open_states)))


def exactly_once_at_the_stub(stub: Any) -> dict[str, Any]:
    """Per message body (SMS: the tracking link makes each unique) and per email (our message id): how many
    times the provider took it; the duplicates, if any."""
    sms: dict[str, int] = {}
    for message in stub.twilio_created():
        sms[message["body"]] = sms.get(message["body"], 0) + 1
    mail: dict[str, int] = {}
    for request in stub.sendgrid_accepted():
        key = ((request.json or {}).get("custom_args") or {}).get("carepath_message_id", "?")
        mail[key] = mail.get(key, 0) + 1
    twice = {k: n for k, n in {**sms, **mail}.items() if n > 1}
    return {"sms": sms, "mail": mail, "duplicates": twice}


def request_census(stub: Any) -> dict[str, dict[str, int]]:
    """Answers the stub gave to sends, per provider: {status (0 = dropped, "slow" = a slow success): count}."""
    census: dict[str, dict[str, int]] = {}
    for r in stub.requests:
        if r.method == "POST" and r.provider in ("twilio", "sendgrid"):
            by_status = census.setdefault(r.provider, {})
            key = "slow" if r.delayed and 0 < r.status < 300 else str(r.status)
            by_status[key] = by_status.get(key, 0) + 1
    return census


def queue_outbox_messages(*, sms: int, email: int, tag: str) -> None:
    """Queue `sms` text messages and `email` emails, each with a body of its own, for one new contact."""
    from carepath.db import unit_of_work
    from models import Account, Contact, Message, MessageChannel
    from models.base import utcnow
    from tasks.messaging import outbox_row

    with unit_of_work() as session:
        account = Account(
            name=f"Chaos {tag}", account_number=f"CH-{tag}"[:20], email_domains=[f"chaos-{tag}.example"]
        )
        session.add(account)
        session.flush()
        contact = Contact(first_name="Chaos", last_name=tag, email=f"c@chaos-{tag}.example",
                          phone="+306912345678", language="en", account_id=account.id)  # fmt: skip
        session.add(contact)
        session.flush()
        now, rows = utcnow(), []
        for channel, n in ((MessageChannel.SMS, sms), (MessageChannel.EMAIL, email)):
            for i in range(n):
                address = contact.phone if channel is MessageChannel.SMS else contact.email
                rows.append(outbox_row(
                    key=f"chaos:{tag}:{channel}:{i}", channel=channel, case_id=None, contact_id=contact.id,
                    journey_step="chaos", to_address=address,
                    subject="Your case" if channel is MessageChannel.EMAIL else None,
                    body=f"Chaos {tag} {channel} {i}: https://care.example.test/track/T-{tag}-{i}",
                    template="chaos", blocked=None, now=now,
                ))  # fmt: skip
        if rows:
            session.execute(Message.__table__.insert(), rows)


@dataclass
class ProviderChaosRun:
    """What a run of the outbox through a fault schedule did."""

    queued: int = 0
    rounds: int = 0
    reconciles: int = 0
    sendgrid_events: int = 0
    census: dict = field(default_factory=dict)
    settled: bool = False


def drive_outbox_through_faults(
    stub: Any,
    *,
    schedule: Callable[[], None],
    per_tick: tuple[int, int],
    deadline: float,
    reconcile_every: float = 2.0,
) -> ProviderChaosRun:
    """Send a first tick healthy (the clients warm up), open the stub's fault windows (`schedule`), then while
    they run queue `per_tick` (sms, email) every half second and do what the drain loop and the minute sweep
    do — give back expired leases, send what is queued, apply SendGrid's events, reconcile unknown outcomes —
    until the faults are over and every message is settled, or `deadline` (monotonic)."""
    from carepath.settings import get_settings
    from tasks.messaging import drain_outbox, reconcile_outbox, release_leases

    queue_outbox_messages(sms=per_tick[0], email=per_tick[1], tag="warm-up")
    drain_outbox(settings=get_settings())
    schedule()
    run, fed = ProviderChaosRun(queued=sum(per_tick)), set()
    last_reconcile = time.monotonic()
    last_tick = last_reconcile - 1
    while time.monotonic() < deadline:
        now = time.monotonic()
        faulty = stub.faults_over() > 0  # traffic goes on while any window is open
        if faulty and now - last_tick >= 0.5:
            queue_outbox_messages(sms=per_tick[0], email=per_tick[1], tag=f"{run.queued}")
            run.queued += sum(per_tick)
            last_tick = now
        settings = get_settings()
        release_leases()
        sent = drain_outbox(settings=settings)
        run.sendgrid_events += feed_sendgrid_events(stub, fed)
        if time.monotonic() - last_reconcile >= reconcile_every:
            reconcile_outbox(settings=settings)
            run.reconciles += 1
            last_reconcile = time.monotonic()
        run.rounds += 1
        if not faulty and outbox_settled():
            run.settled = True
            break
        if not sent.claimed:
            time.sleep(0.2)
    run.census = request_census(stub)
    return run


def send_all(
    sender: Sender, events: list[tuple[str, dict, str]], rng: random.Random, *, deadline: float
) -> None:
    """Post every (path, payload, secret) until accepted, a short random pause between them."""
    for path, payload, secret in events:
        if not sender.post(path, payload, secret, deadline=deadline):
            raise AssertionError(f"{payload['event_id']} was never accepted")
        time.sleep(rng.uniform(0, 0.15))


def run_with_kills(
    rng: random.Random,
    procs: list[Proc],
    *,
    work: Callable[[], None],
    gap: tuple[float, float],
    min_kills: int,
) -> list[tuple[float, str]]:
    """Run `work` in a thread; meanwhile, after random gaps, SIGKILL a random one of `procs` that is at work:
    a service is started again at once, a job (which may also have finished by itself) the next time it is
    picked, up to three times. Until the work is done, `min_kills` kills were made and each process was
    killed at least once."""
    import threading

    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as exc:  # re-raised in the caller's thread
            failure.append(exc)

    worker = threading.Thread(target=target, name="chaos-work", daemon=True)
    started, kills = time.monotonic(), []
    worker.start()
    while worker.is_alive() or len(kills) < min_kills or {p.name for p in procs} - {n for _, n in kills}:
        time.sleep(rng.uniform(*gap))
        if failure:
            break
        victim = rng.choice(procs)
        if victim.ready():
            victim.kill()
            kills.append((round(time.monotonic() - started, 2), victim.name))
            if not victim.job:
                victim.start()
        elif victim.job and not victim.alive() and victim.starts <= 3:
            victim.start()
    worker.join(120)
    if failure:
        raise failure[0]
    return kills


def inbox_and_outbox_idle() -> bool:
    """No inbox row pending and no message queued (what a running drain loop works through)."""
    from sqlalchemy import func, select

    from carepath.db import unit_of_work
    from models import InboxEvent, InboxState, Message, MessageStatus

    with unit_of_work() as session:
        pending = session.scalar(select(func.count()).where(InboxEvent.state == InboxState.PENDING))
        queued = session.scalar(select(func.count()).where(Message.status == MessageStatus.QUEUED))
    return not pending and not queued


def settle_outbox(stub: Any, env: dict[str, str], logs: Path, *, seed: int, lease_seconds: float) -> None:
    """After the chaos, with the drain loop running: wait for the inbox and the queue to empty, let dead
    senders' leases run out, let SendGrid's events come in, and reconcile (as the minute sweep does) until
    every message is settled."""
    from tasks.messaging import release_leases

    wait_until(inbox_and_outbox_idle, 120, "the drain loop to catch up", seed=seed)
    time.sleep(lease_seconds + 0.5)
    fed: set[int] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        release_leases()
        feed_sendgrid_events(stub, fed)
        cli_proc(env, logs, "reconcile", "reconcile-messages", "--json").start().proc.wait(60)
        if outbox_settled() and inbox_and_outbox_idle():
            return
        time.sleep(1)
    raise AssertionError(f"the outbox did not settle (chaos seed {seed})")


def flow_proc(env: dict[str, str], logs: Path, name: str, entrypoint: str, **parameters: Any) -> Proc:
    """One flow run in a process of its own (as a deployment's run would be); its result printed as JSON."""
    module, _, function = entrypoint.partition(":")
    code = f"import json\nfrom {module} import {function}\nprint(json.dumps({function}(**{parameters!r})))\n"
    return Proc(name, [sys.executable, "-c", code], env, logs / f"{name}.log")


def last_json(proc: Proc) -> dict:
    """The last line of the process's output that parses as a JSON object."""
    for line in reversed(proc.log.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            with suppress(ValueError):
                return json.loads(line)
    raise AssertionError(f"{proc.name} printed no JSON:\n{proc.tail()}")


@contextmanager
def prefect_server_proc(database_url: str, port: int, logs: Path) -> Iterator[Proc]:
    """A real Prefect server (`prefect server start`) on `port`, on a PostgreSQL database of its own on the
    same server as `database_url`; stop() and start() it to take it away and bring it back on the same port."""
    import uuid

    from sqlalchemy import create_engine, make_url, text

    from bench.prefect_server import asyncpg_url, drop_database, server_env

    name = f"carepath_chaos_prefect_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(database_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    home = logs / "prefect-server"
    home.mkdir(exist_ok=True)
    env = server_env(home=str(home), database_url=asyncpg_url(database_url, name))
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    server = Proc("prefect-server", command, env, logs / "prefect-server.log")
    server.ready_when = lambda: _healthy(f"http://127.0.0.1:{port}/api/health")
    try:
        server.start()
        wait_until(server.ready, 180, f"the Prefect server on port {port}")
        yield server
    finally:
        server.stop()
        drop_database(database_url, name)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
