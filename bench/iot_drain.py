"""IoT fault journey benchmark on PostgreSQL.

1. 100,000 devices with owners and 200,000 pending faults (30% critical, with repeats), made in SQL.
2. The drain — claim, rules, cases, occurrences, status history, queued SMS — timed: faults/s.
3. The naive paths on a sample: a per-event ORM loop, and one Prefect flow run per event: ratios.
4. Sending queued SMS through the real Twilio SDK to the local stub (a separate process): messages/s.

Run: `make bench` or `.venv/bin/python -m bench.iot_drain [--devices N --faults N --pg URL]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager

from sqlalchemy import func, select, text

from bench.setup_data import DEFAULT_PG_URL
from deployments.serve import free_port, wait_for_port
from tasks.faults import DrainSummary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=DEFAULT_PG_URL)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--faults", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="drain processes working the same inbox")
    p.add_argument("--rounds", type=int, default=3, help="drains of a fresh backlog; the median is reported")
    p.add_argument("--naive-sample", type=int, default=500)
    p.add_argument("--flow-sample", type=int, default=10)
    p.add_argument("--flow-drain", type=int, default=100_000, help="faults drained by one flow run (0: skip)")
    p.add_argument("--send", type=int, default=5_000, help="queued SMS to send to the stub")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    return p.parse_args()


@contextmanager
def stub_process():
    """The provider stub in its own process, so the sender and the stub do not share a GIL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "carepath.provider_stub", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 5, "the provider stub")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def start_worker(url: str, ready) -> None:
    """Pool initializer: import and connect, then wait until every worker is ready (start-up is not
    drain time: a drain worker starts once and runs for hours)."""
    os.environ["CAREPATH_DATABASE_URL"] = url
    import tasks.faults  # noqa: F401  (prefect and the rest)
    from carepath import db
    from carepath.settings import reset_settings

    reset_settings()
    db.reset_engine()
    with db.get_engine().connect():
        pass
    ready.wait()


def drain_worker(batch_size: int):
    """Drain until the inbox has no pending faults (one process; several run side by side)."""
    from carepath.rules.faults import FaultRules
    from carepath.settings import get_settings
    from tasks.faults import DrainSummary, drain_one_batch

    total = DrainSummary()
    while True:
        batch = drain_one_batch(rules=FaultRules(), batch_size=batch_size, settings=get_settings())
        total.add(batch)
        if batch.claimed == 0:
            return total


def drain_round(args: argparse.Namespace, url: str) -> tuple[float, float, DrainSummary]:
    """Fresh database, organisation and backlog; then the timed drain. Returns (seconds, start-up, summary)."""
    from bench.setup_data import generate_faults, generate_organisation, recreate_database
    from carepath import db
    from carepath.migrate import upgrade

    recreate_database(args.pg)
    db.reset_engine()
    upgrade(url)
    t = time.perf_counter()
    generate_organisation(url, devices=args.devices)
    generate_faults(url, faults=args.faults, devices=args.devices)
    with db.get_engine().connect() as conn:
        # Flush the generated data now, so its checkpoint is not billed to the drain.
        conn.execute(text("CHECKPOINT"))
    print(
        f"setup: {args.devices:,} devices, {args.faults:,} pending faults in {time.perf_counter() - t:.1f} s"
    )
    if args.workers == 1:
        t = time.perf_counter()
        total = drain_worker(args.batch_size)
        return time.perf_counter() - t, 0.0, total
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(args.workers + 1)
    started = time.perf_counter()
    with ctx.Pool(args.workers, initializer=start_worker, initargs=(url, ready)) as pool:
        ready.wait(timeout=300)  # a worker that fails to start breaks the barrier instead of hanging
        t = time.perf_counter()
        parts = pool.map(drain_worker, [args.batch_size] * args.workers)
        drain_s = time.perf_counter() - t
    total = DrainSummary()
    for part in parts:
        total.add(part)
    return drain_s, t - started, total


def main() -> None:
    args = parse_args()
    from bench.setup_data import bench_url, generate_faults

    url = bench_url(args.pg)
    os.environ["CAREPATH_DATABASE_URL"] = url
    from carepath import db
    from carepath.settings import get_settings, reset_settings
    from models import Case, DeviceFault, InboxEvent, InboxState, Message, MessageStatus

    reset_settings()
    rates = []
    for round_no in range(1, args.rounds + 1):
        drain_s, startup_s, total = drain_round(args, url)
        fast_rate = total.claimed / drain_s
        rates.append(fast_rate)
        with db.unit_of_work() as s:
            pending = s.scalar(
                select(func.count()).select_from(InboxEvent).where(InboxEvent.state == InboxState.PENDING)
            )
            cases = s.scalar(select(func.count()).select_from(Case))
            faults = s.scalar(select(func.count()).select_from(DeviceFault))
            queued = s.scalar(
                select(func.count()).select_from(Message).where(Message.status == MessageStatus.QUEUED)
            )
            attached = s.scalar(select(func.sum(Case.fault_occurrences)))
        print(
            f"drain round {round_no}: {total.claimed:,} faults in {drain_s:.2f} s = {fast_rate:,.0f} faults/s "
            f"(batch {args.batch_size:,}, {args.workers} worker(s); worker start-up {startup_s:.1f} s not counted)"
        )
        print(
            f"  → {cases:,} cases, {attached:,} critical faults attached, {faults:,} faults recorded, "
            f"{queued:,} SMS queued ({total.sms_queued / drain_s:,.0f} messages/s), "
            f"{total.sms_blocked:,} blocked; {pending} left pending"
        )
    fast_rate = statistics.median(rates)
    print(
        f"drain: median {fast_rate:,.0f} faults/s over {len(rates)} round(s) "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; target ≥ 20,000/s)"
    )

    # Naive per-event ORM loop on a sample of fresh faults.
    if args.naive_sample:
        generate_faults(url, faults=args.naive_sample, devices=args.devices, first=10_000_000, prefix="naive")
        from bench.naive import naive_drain

        t = time.perf_counter()
        n = naive_drain(db.get_sessionmaker(), limit=args.naive_sample)
        naive_rate = n / (time.perf_counter() - t)
        print(
            f"naive ORM loop: {n:,} faults at {naive_rate:,.0f} faults/s → set-based drain is "
            f"{fast_rate / naive_rate:,.0f}× faster"
        )

    # One flow run per event, under a real Prefect API.
    if args.flow_sample:
        generate_faults(url, faults=args.flow_sample, devices=args.devices, first=20_000_000, prefix="flow")
        from prefect.testing.utilities import prefect_test_harness

        from flows.iot_fault_journey import iot_fault_journey

        with prefect_test_harness(server_startup_timeout=60):
            iot_fault_journey(batch_size=1, max_batches=1, send_messages=False)  # warm-up, counted out
            t = time.perf_counter()
            for _ in range(args.flow_sample - 1):
                iot_fault_journey(batch_size=1, max_batches=1, send_messages=False)
            flow_rate = (args.flow_sample - 1) / (time.perf_counter() - t)
            print(
                f"one flow run per event: {flow_rate:.2f} faults/s → set-based drain is "
                f"{fast_rate / flow_rate:,.0f}× faster"
            )
            if args.flow_drain:
                # The deployed path: one flow run, a Prefect task per batch, in one process.
                generate_faults(
                    url, faults=args.flow_drain, devices=args.devices, first=30_000_000, prefix="flowdrain"
                )
                t = time.perf_counter()
                figures = iot_fault_journey(batch_size=args.batch_size, send_messages=False)
                rate = figures["faults_claimed"] / (time.perf_counter() - t)
                print(
                    f"drain as one flow run (1 process, a task per batch of {args.batch_size:,}): "
                    f"{figures['faults_claimed']:,} faults at {rate:,.0f} faults/s"
                )

    # Sending: queued SMS through the Twilio SDK to the stub.
    if args.send:
        from tasks.messaging import drain_outbox

        with stub_process() as base_url:
            for concurrency in args.concurrency:
                os.environ.update(
                    {
                        "CAREPATH_TWILIO_ACCOUNT_SID": "ACtest",
                        "CAREPATH_TWILIO_AUTH_TOKEN": "test-token",
                        "CAREPATH_TWILIO_BASE_URL": base_url,
                        "CAREPATH_SEND_CONCURRENCY": str(concurrency),
                    }
                )
                reset_settings()
                t = time.perf_counter()
                sent = drain_outbox(settings=get_settings(), batch_size=1_000, max_messages=args.send)
                rate = sent.sent / (time.perf_counter() - t)
                print(
                    f"send: {sent.sent:,} SMS to the Twilio stub at {rate:,.0f} messages/s "
                    f"(concurrency {concurrency}, {sent.failed} failed)"
                )
    db.reset_engine()


if __name__ == "__main__":
    main()
