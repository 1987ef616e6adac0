"""Soak: signed webhooks of every source at a steady mixed rate through the real stack, then a reconciliation.

On PostgreSQL (`--pg`, default PG_URL) in a database of its own (`--database`, dropped and recreated), as
separate processes: a Prefect server (its own database), the provider stub (`python -m stubs.provider_stub`,
the Twilio and SendGrid SDKs pointed at it), the receiver (uvicorn), `--drain-workers` drain loops
(`deployments/drain_loop.py`, as `make serve` runs it) and the batch jobs (`bench/batch_jobs.py`: every
scheduled deployment of prefect.yaml, its flow called on its cadence, a flow run each time).

Seeded first: an organisation, open cases with their fault SMS marked sent (the targets of status webhooks
and Twilio callbacks) and sent emails (the targets of SendGrid events). Then for `--minutes` an async httpx
load generator posts, signed as each source signs, `--rate` events/s in a fixed mix of every webhook source
(IoT faults, one in ten critical and on a device of its own; case resolutions; Twilio status callbacks and
inbound SMS; SendGrid events; inbound emails from new senders; web-shop orders; portal registrations); the
array sources carry up to `--batch` events a request. Afterwards it waits for the backlog to drain and
reconciles, from the database and the stub's record of every send:

- accepted (202s, counted by the generator) = inbox rows = processed + pending (failed and rejected: 0);
- messages per journey step = expected (fault SMS = critical faults, resolution emails = resolutions,
  acknowledgements = inbound emails; SLA and registration emails as their journeys decided), every message
  handed to a provider reached the stub once, duplicates = 0 (by idempotency key in the database, by
  recipient and body for SMS and by our key for email at the stub);

and prints throughput (accepted/s, processed/s), p95 latency per journey (inbox received_at → processed_at;
received_at → the message's sent_at where a journey sends one) and peak memory per process (VmHWM).

Run: `.venv/bin/python -m bench.soak --rate 500 --minutes 10` (tests/test_soak.py runs the same harness for
seconds at a low rate and asserts the reconciliation).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from bench.prefect_server import asyncpg_url, drop_database, server_env, wait_healthy
from bench.setup_data import DEFAULT_PG_URL, generate_organisation, recreate_database
from deployments.serve import free_port, wait_for_port
from stubs.provider_stub import SUMMARY_PATH
from tests.utils.signing import SendGridKeys, carepath_headers, twilio_headers

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"iot": "soak-iot", "cases": "soak-cases", "webshop": "soak-shop", "portal": "soak-portal"}
INBOUND_AUTH = ("sendgrid", "soak-inbound")
TWILIO_TOKEN = "test-token"  # what loopback-style settings give the Twilio SDK and the receiver
# Events of each webhook source per 100 (source names of carepath/sources.py).
MIX = {
    "iot-faults": 45,
    "case-status-posted": 5,
    "twilio-status": 15,
    "twilio-inbound": 3,
    "sendgrid-events": 20,
    "sendgrid-inbound": 2,
    "webshop-orders": 5,
    "portal-registrations": 5,
}
CRITICAL_EVERY = 10  # one fault in ten is critical (a case and an SMS)
ROUTINE_DEVICES = 1000
SEED_EMAILS = 2000


@dataclass(frozen=True)
class SoakConfig:
    """What to run: the load, the stack and its cadences."""

    pg_url: str = DEFAULT_PG_URL
    database: str = "carepath_soak"
    rate: float = 500.0  # events per second, all sources together
    seconds: float = 600.0
    batch: int = 10  # events per request for sources that take arrays
    drain_workers: int = 2
    receiver_workers: int = 1
    minute_every: float = 60.0  # the batch jobs' cadence for minute schedules
    long_every: float = 300.0  # … for daily and weekly schedules
    settle_seconds: float = 300.0  # longest wait for the backlog after the load
    concurrency: int = 64  # requests in flight at most
    max_waiting: int = 256  # requests waiting for a slot at most; past that, events are shed (counted)
    seed: int = 18
    sms_per_second: int = 1000  # the Prefect SMS rate limit (the provider's rate)
    keep: bool = False  # keep the soak database afterwards
    log_dir: str | None = None  # keep each process's log there (default: a temporary folder)


def planned(config: SoakConfig) -> dict[str, int]:
    """Events of each source the load will post (an upper bound: the clock decides the last ones)."""
    return {name: math.ceil(config.rate * share / 100 * config.seconds) + 1 for name, share in MIX.items()}


@dataclass
class Seeds:
    """What the seeded data offers the load: devices, cases, sent messages, phones."""

    critical_devices: list[str]
    routine_devices: list[str]
    tickets: list[str]
    sms_sids: list[str]
    emails: list[tuple[int, str]]  # (message id, SendGrid id)
    phones: list[str]
    base_inbox_id: int
    base_message_id: int


# Set-up: organisation, open cases (via the drain), sent messages.


@contextmanager
def using_database(url: str) -> Iterator[None]:
    """This process's settings and engine on `url` for a while (set-up drains with the app's own code)."""
    from carepath import db
    from carepath.settings import reset_settings

    before = os.environ.get("CAREPATH_DATABASE_URL")
    os.environ["CAREPATH_DATABASE_URL"] = url
    reset_settings()
    db.reset_engine()
    try:
        yield
    finally:
        db.reset_engine()
        if before is None:
            os.environ.pop("CAREPATH_DATABASE_URL", None)
        else:
            os.environ["CAREPATH_DATABASE_URL"] = before
        reset_settings()


def device_name(n: int) -> str:
    return f"BDEV-{n:07d}"


def seed(url: str, config: SoakConfig) -> Seeds:
    """Organisation, one open case per planned resolution, their SMS sent, sent emails for SendGrid events."""
    plan = planned(config)
    cases = plan["case-status-posted"] + 1
    criticals = plan["iot-faults"] // CRITICAL_EVERY + 2
    # Devices 1..cases: seeded cases. Then one device per critical fault, skipping owners without SMS
    # consent (every tenth, see generate_organisation): each critical fault opens a case and sends an SMS.
    critical = [n for n in range(cases + 1, cases + 2 * criticals + 20) if n % 10][:criticals]
    routine_first = critical[-1] + 1
    devices = routine_first + ROUTINE_DEVICES
    from carepath.migrate import upgrade

    upgrade(url)
    generate_organisation(url, devices=devices)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text("""
            INSERT INTO inbox_event (source, kind, event_id, payload, state, attempts, received_at)
            SELECT 'iot', 'fault', 'seed-' || g, jsonb_build_object('event_id', 'seed-' || g,
                   'device_id', 'BDEV-' || lpad(g::text, 7, '0'), 'error_code', 14,
                   'occurred_at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')),
                   'pending', 0, now()
            FROM generate_series(1, :n) g"""),
            {"n": cases},
        )
    with using_database(url):
        drain_all()
    with engine.begin() as conn:
        conn.execute(
            text("""
            UPDATE message SET status = 'sent', provider = 'twilio', provider_message_id = 'SMseed' || id,
                   sent_at = now(), attempts = 1
            WHERE status = 'queued' AND channel = 'sms'""")
        )
        conn.execute(
            text("""
            INSERT INTO message (idempotency_key, channel, case_id, contact_id, journey_step, to_address,
                                 subject, body, provider, provider_message_id, status, attempts, resends,
                                 created_at, sent_at, updated_at)
            SELECT 'soak-seed:' || c.id, 'email', c.id, c.contact_id, 'soak_seed', k.email, 'Seeded',
                   'Seeded email', 'sendgrid', 'sgseed' || c.id, 'sent', 1, 0, now(), now(), now()
            FROM support_case c JOIN contact k ON k.id = c.contact_id ORDER BY c.id LIMIT :n"""),
            {"n": SEED_EMAILS},
        )
        seeds = Seeds(
            critical_devices=[device_name(n) for n in critical],
            routine_devices=[device_name(n) for n in range(routine_first, devices + 1)],
            tickets=list(conn.scalars(text("SELECT ticket_number FROM support_case ORDER BY id"))),
            sms_sids=list(
                conn.scalars(
                    text(
                        "SELECT provider_message_id FROM message WHERE channel = 'sms' "
                        "AND provider_message_id IS NOT NULL ORDER BY id"
                    )
                )
            ),
            emails=[
                tuple(r)
                for r in conn.execute(
                    text(
                        "SELECT id, provider_message_id FROM message WHERE journey_step = 'soak_seed' ORDER BY id"
                    )
                )
            ],
            phones=list(conn.scalars(text("SELECT phone FROM contact ORDER BY id LIMIT 1000"))),
            base_inbox_id=conn.scalar(text("SELECT coalesce(max(id), 0) FROM inbox_event")),
            base_message_id=conn.scalar(text("SELECT coalesce(max(id), 0) FROM message")),
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    if len(seeds.tickets) < cases:
        raise SystemExit(f"set-up opened {len(seeds.tickets)} cases, {cases} needed")
    return seeds


def drain_all() -> None:
    """The set-up faults, drained by the journey's own batch code until none is pending."""
    from carepath.rules.faults import FaultRules
    from carepath.settings import get_settings
    from tasks.faults import drain_one_batch

    while drain_one_batch(rules=FaultRules(), batch_size=5000, settings=get_settings()).claimed:
        pass


# The stack: processes, their logs and their peak memory.


@dataclass
class Stack:
    """The processes of the soak, their log folder and their environment."""

    logs: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        with open(self.logs / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(cmd, env=env or self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def check_alive(self) -> None:
        dead = {name: p.returncode for name, p in self.procs.items() if p.poll() is not None}
        if dead:
            tails = "\n".join(f"--- {n}:\n{self.log(n)[-2000:]}" for n in dead)
            raise RuntimeError(f"stack processes exited: {dead}\n{tails}")

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) each process and its descendants used so far, read while they run."""
        used = {}
        for name, proc in self.procs.items():
            ticks = sum(cpu_ticks(pid) for pid in [proc.pid, *descendants(proc.pid)])
            used[name] = round(ticks / os.sysconf("SC_CLK_TCK"), 1)
        times = os.times()
        used["load generator + harness"] = round(times.user + times.system, 1)
        return used

    def peak_memory_mib(self) -> dict[str, float]:
        """VmHWM of each process and its descendants, in MiB, read while they run."""
        peaks = {}
        for name, proc in self.procs.items():
            for n, pid in enumerate([proc.pid, *descendants(proc.pid)]):
                kib = vm_hwm_kib(pid)
                if kib is not None:
                    peaks[name if n == 0 else f"{name} (child {pid})"] = round(kib / 1024, 1)
        peaks["load generator + harness"] = round((vm_hwm_kib(os.getpid()) or 0) / 1024, 1)
        return peaks

    def stop(self) -> None:
        """The processes that use the others first (each finishes what it is doing), then the rest."""
        last = {"prefect-server", "provider-stub"}
        self._stop([p for name, p in self.procs.items() if name not in last], grace=20)
        self._stop([p for name, p in self.procs.items() if name in last], grace=10)

    @staticmethod
    def _stop(procs: list[subprocess.Popen], *, grace: float) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def vm_hwm_kib(pid: int) -> int | None:
    """A process's peak resident set (VmHWM) in KiB, None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_ticks(pid: int) -> int:
    """utime + stime of a process in clock ticks (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid`, from /proc/<pid>/task/*/children."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def stack_env(
    *,
    url: str,
    api_url: str,
    receiver_port: int,
    stub_url: str,
    home: str,
    keys: SendGridKeys,
    config: SoakConfig,
) -> dict[str, str]:
    """Every process's environment: the soak database, the Prefect server, the SDKs at the stub, secrets."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "CAREPATH_"))}
    env.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_API_URL": api_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "CAREPATH_DATABASE_URL": url,
            "CAREPATH_ENV_FILE": "",
            "CAREPATH_PUBLIC_BASE_URL": f"http://127.0.0.1:{receiver_port}",
            "CAREPATH_TWILIO_ACCOUNT_SID": "ACtest",
            "CAREPATH_TWILIO_AUTH_TOKEN": TWILIO_TOKEN,
            "CAREPATH_TWILIO_BASE_URL": stub_url,
            "CAREPATH_SENDGRID_API_KEY": "SG.test-key",
            "CAREPATH_SENDGRID_HOST": stub_url,
            "CAREPATH_SENDGRID_WEBHOOK_PUBLIC_KEY": keys.public_key,
            "CAREPATH_SENDGRID_INBOUND_AUTH": ":".join(INBOUND_AUTH),
            "CAREPATH_SMS_PER_SECOND": str(config.sms_per_second),
        }
    )
    env.update({f"CAREPATH_{source.upper()}_WEBHOOK_SECRET": secret for source, secret in SECRETS.items()})
    return env


def start_stack(stack: Stack, *, receiver_port: int, config: SoakConfig) -> None:
    """The receiver, the drain loops and the batch jobs (which wait for the Prefect server)."""
    py = sys.executable
    uvicorn = [
        str(Path(py).parent / "uvicorn"),
        "receiver.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(receiver_port),
        "--workers",
        str(config.receiver_workers),
        "--no-access-log",
    ]
    stack.start("receiver", uvicorn)
    for n in range(1, config.drain_workers + 1):
        stack.start(f"drain-{n}", [py, "-m", "deployments.drain_loop"])
    cadence = ["--minute-every", str(config.minute_every), "--long-every", str(config.long_every)]
    (stack.logs / "batch-runs.jsonl").unlink(missing_ok=True)
    runs = ["--runs", str(stack.logs / "batch-runs.jsonl")]
    stack.start("batch-jobs", [py, "-m", "bench.batch_jobs", *cadence, *runs])


def wait_ready(stack: Stack, *, receiver_port: int, stub_port: int, config: SoakConfig) -> None:
    """Until the stub listens, the receiver answers and every drain loop has warmed up and polls."""
    wait_for_port(stub_port, 30, "the provider stub")
    deadline = time.monotonic() + 300
    drains = [f"drain-{n}" for n in range(1, config.drain_workers + 1)]
    while not all("drain loop polling" in stack.log(d) for d in drains) or not receiver_up(receiver_port):
        stack.check_alive()
        if time.monotonic() > deadline:
            raise RuntimeError("the stack did not come up within 300 s")
        time.sleep(0.2)


def ensure_rate_limit(api_url: str, per_second: int) -> None:
    """The Prefect SMS rate limit, as `make serve` creates it, at the soak's provider rate."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from carepath.settings import Settings
    from tasks.messaging import ensure_sms_rate_limit

    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        ensure_sms_rate_limit(Settings(sms_per_second=per_second))


def receiver_up(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# The load: one request maker per source, a steady open-loop schedule.


class Requests:
    """Signed requests of every source, each event new (never a resend), from the seeded data."""

    def __init__(self, receiver: str, seeds: Seeds, keys: SendGridKeys, rng: random.Random) -> None:
        self.receiver, self.seeds, self.keys, self.rng = receiver, seeds, keys, rng
        self.counts: Counter[str] = Counter()
        self.criticals = 0

    def make(self, name: str, n: int) -> tuple[str, dict[str, Any]]:
        """(path, httpx keyword arguments) of one request carrying `n` events of source `name`."""
        first = self.counts[name]
        self.counts[name] += n
        return getattr(self, name.replace("-", "_"))(first, n)

    def _signed(self, path: str, secret: str, payload: Any) -> tuple[str, dict[str, Any]]:
        body = json.dumps(payload).encode()
        return path, {"content": body, "headers": carepath_headers(secret, body)}

    def iot_faults(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        faults = []
        for i in range(first, first + n):
            if i % CRITICAL_EVERY == 0 and self.criticals < len(self.seeds.critical_devices):
                device, code = self.seeds.critical_devices[self.criticals], 14
                self.criticals += 1
            else:
                device, code = self.rng.choice(self.seeds.routine_devices), self.rng.randint(1, 10)
            faults.append(
                {"event_id": f"soak-f{i}", "device_id": device, "error_code": code, "occurred_at": now}
            )
        return self._signed("/webhooks/iot/faults", SECRETS["iot"], faults)

    def case_status_posted(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        change = {
            "event_id": f"soak-s{first}",
            "ticket_number": self.seeds.tickets[first],
            "status": "resolved",
            "resolution": "We replaced the pressure sensor.",
            "changed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        return self._signed("/webhooks/cases/status", SECRETS["cases"], change)

    def _twilio(
        self, path: str, form: dict[str, str], token: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        headers = twilio_headers(self.receiver + path, form, TWILIO_TOKEN)
        if token:
            headers["I-Twilio-Idempotency-Token"] = token
        return path, {"data": form, "headers": headers}

    def twilio_status(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        sid = self.seeds.sms_sids[first % len(self.seeds.sms_sids)]
        form = {"MessageSid": sid, "MessageStatus": "delivered", "To": "+306900000000"}
        return self._twilio("/webhooks/twilio/status", form, token=f"soak-t{first}")

    def twilio_inbound(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        form = {
            "MessageSid": f"SMsoakin{first}",
            "From": self.rng.choice(self.seeds.phones),
            "To": "+15005550006",
            "Body": "Thank you",
        }
        return self._twilio("/webhooks/twilio/inbound", form)

    def sendgrid_events(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        events = []
        for i in range(first, first + n):
            message_id, sg_id = self.seeds.emails[i % len(self.seeds.emails)]
            events.append(
                {
                    "sg_event_id": f"soak-e{i}",
                    "event": "delivered" if i % 2 else "open",
                    "timestamp": int(time.time()),
                    "sg_message_id": f"{sg_id}.filter0001",
                    "carepath_message_id": str(message_id),
                }
            )
        body = json.dumps(events).encode()
        return "/webhooks/sendgrid/events", {"content": body, "headers": self.keys.headers(body)}

    def sendgrid_inbound(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        raw = (
            f"From: Soak Sender {first} <sender{first}@inbound-soak.example>\nTo: support@carepath.example\n"
            f"Subject: My boiler makes a noise ({first})\nMessage-ID: <soak-{first}@inbound-soak.example>\n"
            "Content-Type: text/plain; charset=utf-8\n\nIt clicks every few minutes since yesterday.\n"
        )
        fields = {"email": raw, "to": "support@carepath.example", "from": "x", "subject": "x"}
        return "/webhooks/sendgrid/inbound", {
            "files": {k: (None, v) for k, v in fields.items()},
            "auth": INBOUND_AUTH,
        }

    def webshop_orders(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        order = {
            "order_id": f"soak-o{first}",
            "email": f"buyer{first}@shop-soak.example",
            "first_name": "Ada",
            "last_name": f"Buyer {first}",
            "products": [],
        }
        return self._signed("/webhooks/webshop/orders", SECRETS["webshop"], order)

    def portal_registrations(self, first: int, n: int) -> tuple[str, dict[str, Any]]:
        registration = {
            "event_id": f"soak-p{first}",
            "email": f"person{first}@portal-soak.example",
            "first_name": "Nikos",
            "last_name": f"Portal {first}",
        }
        return self._signed("/webhooks/portal/registrations", SECRETS["portal"], registration)


BATCHED = {"iot-faults", "sendgrid-events"}


@dataclass
class LoadResult:
    seconds: float = 0.0
    posted: Counter = field(default_factory=Counter)  # events scheduled per source (posted or shed)
    shed: Counter = field(default_factory=Counter)  # events not posted: the stack was too far behind
    accepted: Counter = field(default_factory=Counter)  # events answered 2xx per source
    duplicates: int = 0  # events the receiver called a duplicate
    statuses: Counter = field(default_factory=Counter)  # HTTP status (or exception name) → requests
    accept_latencies: list[float] = field(default_factory=list)  # post → answer, seconds
    max_backlog: int = 0  # requests waiting for a connection at most (the generator falling behind)
    unknown: int = 0  # events whose request got no answer (time-out, reset): stored or not
    answered_seconds: float = 0.0  # from the first post to the last answer
    criticals: int = 0  # critical faults accepted (each owes one SMS)


async def generate(receiver: str, requests: Requests, config: SoakConfig) -> LoadResult:
    """Post the mix at `config.rate` events/s for `config.seconds`, open loop; every answer counted."""
    result = LoadResult()
    slots = asyncio.Semaphore(config.concurrency)
    pending: set[asyncio.Task] = set()
    # Idle connections are dropped before uvicorn's 5 s keep-alive closes them: no request on a closing one.
    limits = httpx.Limits(
        max_connections=config.concurrency, max_keepalive_connections=config.concurrency, keepalive_expiry=2
    )
    async with httpx.AsyncClient(base_url=receiver, timeout=30, limits=limits) as client:

        async def post(name: str, n: int) -> None:
            async with slots:  # signed when it leaves: a request that waited for a slot is not stale
                before = requests.criticals
                path, kwargs = requests.make(name, n)
                criticals = requests.criticals - before  # critical faults this request carries
                started = time.monotonic()
                try:
                    response = await client.post(path, **kwargs)
                except httpx.HTTPError as exc:  # stored or not: unknown to the sender
                    result.statuses[type(exc).__name__] += 1
                    result.unknown += n
                    return
                result.accept_latencies.append(time.monotonic() - started)
            result.statuses[response.status_code] += 1
            if response.is_success:
                result.accepted[name] += n
                result.criticals += criticals
                if response.headers.get("content-type", "").startswith("application/json"):
                    answer = response.json()
                    result.duplicates += answer.get("duplicates", int(bool(answer.get("duplicate"))))

        order = random.Random(config.seed)  # sources in a new order each tick: shedding spares none
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < config.seconds:
            for name in order.sample(list(MIX), len(MIX)):
                share = MIX[name]
                due = int(config.rate * share / 100 * elapsed) - result.posted[name]
                while due > 0:
                    n = min(due, config.batch if name in BATCHED else 1)
                    due -= n
                    if len(pending) >= config.concurrency + config.max_waiting:  # the stack is behind
                        result.shed[name] += n
                        result.posted[name] += n  # scheduled: the clock moves on
                        continue
                    task = asyncio.create_task(post(name, n))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    result.posted[name] += n
            result.max_backlog = max(result.max_backlog, len(pending) - config.concurrency)
            await asyncio.sleep(0.02)
        result.seconds = time.monotonic() - start
        await asyncio.gather(*pending)
        result.answered_seconds = time.monotonic() - start
    return result


# Afterwards: wait for the backlog, then reconcile.

WEBHOOK_KINDS = (
    "(source, kind) IN (('iot','fault'), ('cases','status'), ('twilio','status'), "
    "('twilio','inbound'), ('sendgrid','event'), ('sendgrid','inbound'), ('webshop','order'), ('portal','registration'))"
)


def backlog(conn, seeds: Seeds) -> tuple[int, int]:
    """(inbox rows of the soak still pending, messages still queued, being sent or unknown)."""
    pending = conn.scalar(
        text(f"SELECT count(*) FROM inbox_event WHERE id > :b AND state = 'pending' AND {WEBHOOK_KINDS}"),
        {"b": seeds.base_inbox_id},
    )
    outbox = conn.scalar(
        text("SELECT count(*) FROM message WHERE id > :b AND status IN ('queued','sending','unknown')"),
        {"b": seeds.base_message_id},
    )
    return pending, outbox


def settle(url: str, seeds: Seeds, stack: Stack, timeout: float) -> float:
    """Wait until the soak's inbox rows are handled, its messages sent and every batch job has completed a
    run; seconds waited (at most `timeout`)."""
    from bench.batch_jobs import scheduled_jobs

    jobs = {job.deployment for job in scheduled_jobs(minute_every=60, long_every=60)}
    engine = create_engine(url)
    started = time.monotonic()
    try:
        while time.monotonic() - started < timeout:
            stack.check_alive()
            with engine.connect() as conn:
                drained = backlog(conn, seeds) == (0, 0)
            runs = batch_runs(stack)
            if drained and all(runs.get(job, {}).get("COMPLETED") for job in jobs):
                break
            time.sleep(0.5)
    finally:
        engine.dispose()
    return time.monotonic() - started


def stub_sends(stub_url: str) -> list[dict]:
    return httpx.get(stub_url + SUMMARY_PATH, timeout=30).json()


def reconcile(url: str, seeds: Seeds, load: LoadResult, requests: Requests, sends: list[dict]) -> dict:
    """The counts, from the database and the stub's record; `ok` when every one holds."""
    from tasks.email_to_case import ACK_STEP
    from tasks.messaging.outbox import FAULT_SMS_STEP

    engine = create_engine(url)
    with engine.connect() as conn:
        states = dict(
            conn.execute(
                text(
                    f"SELECT state, count(*) FROM inbox_event WHERE id > :b AND {WEBHOOK_KINDS} "
                    "GROUP BY state"
                ),
                {"b": seeds.base_inbox_id},
            ).all()
        )
        steps = {
            r.journey_step: r._asdict()
            for r in conn.execute(
                text("""
            SELECT journey_step, count(*) AS queued,
                   count(*) FILTER (WHERE provider_message_id IS NOT NULL) AS handed_over,
                   count(*) FILTER (WHERE status = 'blocked') AS blocked
            FROM message WHERE id > :b GROUP BY journey_step ORDER BY journey_step"""),
                {"b": seeds.base_message_id},
            )
        }
        key_duplicates = conn.scalar(
            text(
                "SELECT count(*) FROM (SELECT idempotency_key FROM message "
                "GROUP BY idempotency_key HAVING count(*) > 1) d"
            )
        )
        handed_over = dict(
            conn.execute(
                text(
                    "SELECT provider, count(*) FROM message WHERE id > :b "
                    "AND provider_message_id IS NOT NULL GROUP BY provider"
                ),
                {"b": seeds.base_message_id},
            ).all()
        )
    engine.dispose()
    accepted = sum(load.accepted.values()) - load.duplicates
    rows = sum(states.values())
    expected = {
        FAULT_SMS_STEP: load.criticals,
        "case_resolved": load.accepted["case-status-posted"],
        ACK_STEP: load.accepted["sendgrid-inbound"],
    }
    ok_sends = [s for s in sends if 200 <= s["status"] < 300]
    at_stub = Counter(s["provider"] for s in ok_sends)
    stub_dupes = sum(
        c - 1
        for c in Counter((s["to"], s["body"]) for s in ok_sends if s["provider"] == "twilio").values()
        if c > 1
    )
    stub_dupes += sum(
        c - 1 for c in Counter(s["key"] for s in ok_sends if s["provider"] == "sendgrid").values() if c > 1
    )
    journeys = {
        step: {
            **{k: v for k, v in row.items() if k != "journey_step"},
            "expected": expected.get(step, "as decided"),
            "ok": row["handed_over"] + row["blocked"] == row["queued"]
            and expected.get(step, row["queued"]) == row["queued"],
        }
        for step, row in steps.items()
    }
    for step, want in expected.items():
        journeys.setdefault(
            step, {"queued": 0, "handed_over": 0, "blocked": 0, "expected": want, "ok": want == 0}
        )
    checks = {
        "accepted = inbox rows": accepted <= rows <= accepted + load.unknown,
        "inbox rows = processed + pending": rows == states.get("processed", 0) + states.get("pending", 0),
        "failed + rejected = 0": states.get("failed", 0) + states.get("rejected", 0) == 0,
        "every answer 2xx": set(load.statuses) <= {200, 202},
        "messages per journey = expected": all(j["ok"] for j in journeys.values()),
        "sends at the stub = messages handed over": dict(at_stub) == handed_over,
        "duplicates = 0 (idempotency keys, stub)": key_duplicates == 0
        and stub_dupes == 0
        and load.duplicates == 0,
    }
    return {
        "ok": all(checks.values()),
        "checks": checks,
        "accepted": accepted,
        "inbox": {"rows": rows, **{str(k): v for k, v in states.items()}},
        "journeys": journeys,
        "stub": {"sends": dict(at_stub), "refused": len(sends) - len(ok_sends), "duplicates": stub_dupes},
        "handed_over": handed_over,
        "duplicates": {"receiver": load.duplicates, "idempotency_keys": key_duplicates, "stub": stub_dupes},
    }


def latencies(url: str, seeds: Seeds) -> dict:
    """p50/p95 seconds per journey: inbox received → processed, and received → the message sent."""
    from carepath.sources import SOURCES
    from tasks.email_to_case import ACK_STEP
    from tasks.messaging.outbox import FAULT_SMS_STEP

    names = {(s.source, s.kind): s.name for s in SOURCES}
    engine = create_engine(url)
    with engine.connect() as conn:
        processed = conn.execute(
            text(f"""
            SELECT source, kind, count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)) AS p95
            FROM inbox_event WHERE id > :b AND state = 'processed' AND {WEBHOOK_KINDS}
            GROUP BY source, kind ORDER BY source, kind"""),
            {"b": seeds.base_inbox_id},
        ).all()
        sent = conn.execute(
            text("""
            WITH pairs AS (
              SELECT 'fault → SMS sent' AS journey, m.sent_at - e.received_at AS took
              FROM inbox_event e JOIN device_fault f ON f.inbox_event_id = e.id
              JOIN message m ON m.case_id = f.case_id AND m.journey_step = :fault
              WHERE e.id > :b AND m.sent_at IS NOT NULL
              UNION ALL
              SELECT 'resolution → email sent', m.sent_at - e.received_at
              FROM inbox_event e JOIN support_case c ON c.ticket_number = e.payload ->> 'ticket_number'
              JOIN message m ON m.case_id = c.id AND m.journey_step = 'case_resolved'
              WHERE e.id > :b AND e.source = 'cases' AND m.sent_at IS NOT NULL
              UNION ALL
              SELECT 'message queued → sent (' || journey_step || ')', sent_at - created_at
              FROM message WHERE id > :mb AND sent_at IS NOT NULL AND journey_step <> :ack
              UNION ALL
              SELECT 'inbound email → acknowledgement sent', m.sent_at - e.received_at
              FROM inbox_event e JOIN message m ON m.journey_step = :ack AND m.id > :mb
              AND m.to_address = substring(e.payload ->> 'raw' FROM '<([^>]+@inbound-soak.example)>')
              WHERE e.id > :b AND e.source = 'sendgrid' AND e.kind = 'inbound' AND m.sent_at IS NOT NULL
            )
            SELECT journey, count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM took)) AS p50,
                   percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM took)) AS p95
            FROM pairs GROUP BY journey ORDER BY journey"""),
            {"b": seeds.base_inbox_id, "mb": seeds.base_message_id, "fault": FAULT_SMS_STEP, "ack": ACK_STEP},
        ).all()
    engine.dispose()
    out = {f"{names[(r.source, r.kind)]}: received → processed": (r.n, r.p50, r.p95) for r in processed}
    out |= {r.journey: (r.n, r.p50, r.p95) for r in sent}
    return {k: {"n": n, "p50_s": round(p50, 3), "p95_s": round(p95, 3)} for k, (n, p50, p95) in out.items()}


def throughput(url: str, seeds: Seeds, load: LoadResult) -> dict:
    """Offered events/s (the schedule), accepted events/s (to the last answer), processed events/s (the
    first receipt to the last processing)."""
    engine = create_engine(url)
    with engine.connect() as conn:
        n, span = conn.execute(
            text(f"""
            SELECT count(*), extract(epoch FROM max(processed_at) - min(received_at))
            FROM inbox_event WHERE id > :b AND state = 'processed' AND {WEBHOOK_KINDS}"""),
            {"b": seeds.base_inbox_id},
        ).one()
    engine.dispose()
    accepted = sum(load.accepted.values())
    return {
        "offered_per_s": round(sum(load.posted.values()) / load.seconds, 1) if load.seconds else 0.0,
        "accepted_per_s": round(accepted / load.answered_seconds, 1) if load.answered_seconds else 0.0,
        "processed_per_s": round(n / float(span), 1) if span else 0.0,
        "accept_p95_s": round(percentile(load.accept_latencies, 0.95), 3),
    }


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def batch_runs(stack: Stack) -> dict[str, Counter]:
    """Batch job runs by deployment and final state, from the batch-jobs process's JSON lines."""
    runs: dict[str, Counter] = {}
    path = stack.logs / "batch-runs.jsonl"
    for line in path.read_text().splitlines() if path.exists() else []:
        run = json.loads(line)
        runs.setdefault(run["deployment"], Counter())[run["state"]] += 1
    return runs


def run_soak(config: SoakConfig) -> dict:
    """The whole soak: set-up, stack, load, settle, reconciliation; the summary (see the module doc).

    The Prefect server and the stub start first and come up while the data is seeded; the receiver, drain
    loops and batch jobs start on the seeded database (the batch jobs wait for the server)."""
    started = time.monotonic()
    url = recreate_database(config.pg_url, config.database)
    prefect_db = f"{config.database}_prefect"
    recreate_database(config.pg_url, prefect_db)
    keys = SendGridKeys()
    prefect_port, receiver_port, stub_port = free_port(), free_port(), free_port()
    api_url, stub_url = f"http://127.0.0.1:{prefect_port}/api", f"http://127.0.0.1:{stub_port}"
    timings = {}
    try:
        with tempfile.TemporaryDirectory(prefix="carepath-soak-") as home:
            env = stack_env(
                url=url,
                api_url=api_url,
                receiver_port=receiver_port,
                stub_url=stub_url,
                home=home,
                keys=keys,
                config=config,
            )
            logs = Path(config.log_dir or home)
            logs.mkdir(parents=True, exist_ok=True)
            stack = Stack(logs, env)
            try:
                server = stack.start(
                    "prefect-server",
                    [
                        sys.executable,
                        "-m",
                        "prefect",
                        "server",
                        "start",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(prefect_port),
                    ],
                    env=server_env(
                        home=f"{home}/server", database_url=asyncpg_url(config.pg_url, prefect_db)
                    ),
                )
                stack.start(
                    "provider-stub", [sys.executable, "-m", "stubs.provider_stub", "--port", str(stub_port)]
                )
                seeds = seed(url, config)
                timings["setup_s"] = round(time.monotonic() - started, 1)
                start_stack(stack, receiver_port=receiver_port, config=config)
                wait_healthy(api_url, server, 300)
                ensure_rate_limit(api_url, config.sms_per_second)
                wait_ready(stack, receiver_port=receiver_port, stub_port=stub_port, config=config)
                timings["stack_ready_s"] = round(time.monotonic() - started, 1)
                receiver = f"http://127.0.0.1:{receiver_port}"
                requests = Requests(receiver, seeds, keys, random.Random(config.seed))
                timings["load_average_before"] = os.getloadavg()[0]
                load = asyncio.run(generate(receiver, requests, config))
                timings["load_average_after"] = os.getloadavg()[0]
                timings["settle_s"] = round(settle(url, seeds, stack, config.settle_seconds), 1)
                memory = stack.peak_memory_mib()  # before anything exits
                cpu = stack.cpu_seconds()
                runs = batch_runs(stack)
                sends = stub_sends(stub_url)
            finally:
                stack.stop()
    finally:
        drop_database(config.pg_url, prefect_db)
    summary = {
        "config": asdict(config) | {"pg_url": "…"},
        "timings": timings,
        "load": {
            "seconds": round(load.seconds, 1),
            "answered_seconds": round(load.answered_seconds, 1),
            "unknown": load.unknown,
            "shed": dict(load.shed),
            "posted": dict(load.posted),
            "accepted": dict(load.accepted),
            "statuses": {str(k): v for k, v in load.statuses.items()},
            "max_backlog": load.max_backlog,
        },
        "reconciliation": reconcile(url, seeds, load, requests, sends),
        "throughput": throughput(url, seeds, load),
        "latency": latencies(url, seeds),
        "peak_memory_mib": memory,
        "cpu_seconds": cpu,
        "batch_runs": {k: dict(v) for k, v in runs.items()},
    }
    if not config.keep:
        drop_database(config.pg_url, config.database)
    return summary


def print_report(summary: dict) -> None:
    """The human table, then the JSON summary."""
    r, t = summary["reconciliation"], summary["throughput"]
    print(f"\nsoak: {summary['load']['seconds']} s of load, {summary['timings']}")
    print(
        f"throughput: {t['offered_per_s']} offered events/s, {t['accepted_per_s']} accepted events/s (last "
        f"answer after {summary['load']['answered_seconds']} s), {t['processed_per_s']} processed events/s; "
        f"answer p95 {t['accept_p95_s']} s; {summary['load']['unknown']} events without an answer; "
        f"{sum(summary['load']['shed'].values())} shed (the stack behind by {summary['load']['max_backlog']} "
        "requests at most)"
    )
    print("\nreconciliation:")
    for check, held in r["checks"].items():
        print(f"  {'ok  ' if held else 'FAIL'} {check}")
    print(f"  accepted {r['accepted']}, inbox {r['inbox']}, duplicates {r['duplicates']}")
    print(f"\n  {'journey step':<32}{'expected':>12}{'queued':>9}{'sent':>9}{'blocked':>9}")
    for step, j in r["journeys"].items():
        print(f"  {step:<32}{j['expected']!s:>12}{j['queued']:>9}{j['handed_over']:>9}{j['blocked']:>9}")
    print(f"  at the stub: {r['stub']}")
    print(f"\n  {'latency (s)':<58}{'n':>8}{'p50':>9}{'p95':>9}")
    for journey, lat in summary["latency"].items():
        print(f"  {journey:<58}{lat['n']:>8}{lat['p50_s']:>9.3f}{lat['p95_s']:>9.3f}")
    print(f"\n  {'process':<40}{'peak memory (VmHWM, MiB)':>26}{'CPU s':>9}")
    for name, mib in summary["peak_memory_mib"].items():
        print(f"  {name:<40}{mib:>26.1f}{summary['cpu_seconds'].get(name, 0.0):>9.1f}")
    print(f"\n  batch job runs: {summary['batch_runs']}")
    print("\n" + json.dumps(summary, default=str))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SoakConfig()
    p.add_argument("--pg", default=d.pg_url, help="the PostgreSQL server (PG_URL)")
    p.add_argument("--database", default=d.database)
    p.add_argument("--rate", type=float, default=d.rate, help="events per second, every source together")
    p.add_argument("--minutes", type=float, default=d.seconds / 60)
    p.add_argument("--batch", type=int, default=d.batch, help="events per request of the array sources")
    p.add_argument("--drain-workers", type=int, default=d.drain_workers)
    p.add_argument("--receiver-workers", type=int, default=d.receiver_workers)
    p.add_argument("--minute-every", type=float, default=d.minute_every)
    p.add_argument("--long-every", type=float, default=d.long_every)
    p.add_argument("--settle-seconds", type=float, default=d.settle_seconds)
    p.add_argument("--concurrency", type=int, default=d.concurrency)
    p.add_argument("--max-waiting", type=int, default=d.max_waiting, help="queued requests before shedding")
    p.add_argument("--keep", action="store_true", help="keep the soak database afterwards")
    p.add_argument("--log-dir", help="keep each process's log in this folder")
    a = p.parse_args(argv)
    config = SoakConfig(
        pg_url=a.pg,
        database=a.database,
        rate=a.rate,
        seconds=a.minutes * 60,
        batch=a.batch,
        drain_workers=a.drain_workers,
        receiver_workers=a.receiver_workers,
        minute_every=a.minute_every,
        long_every=a.long_every,
        settle_seconds=a.settle_seconds,
        concurrency=a.concurrency,
        max_waiting=a.max_waiting,
        keep=a.keep,
        log_dir=a.log_dir,
    )
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    summary = run_soak(config)
    print_report(summary)
    raise SystemExit(0 if summary["reconciliation"]["ok"] else 1)


if __name__ == "__main__":
    main()
