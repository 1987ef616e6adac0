"""IoT fault journey benchmark on PostgreSQL.

1. 100,000 devices with owners and 200,000 pending faults (30% critical, with repeats), made in SQL.
2. The drain — claim, rules, cases, occurrences, status history, queued SMS — timed: faults/s.
3. The simple versions on samples, each ratio against step 2 of this run: a per-event ORM loop on the
   same indexes, and one flow run per event against a Prefect server on the same PostgreSQL.
4. The drain as the deployed flow runs it (one flow run), on that server.
5. Sending queued SMS as the deployed task does (`drain_outbox` under the Prefect SMS rate limit, created on
   that server) through the real Twilio SDK to the local stub (a separate process): messages/s.

Run: `make bench` or `.venv/bin/python -m bench.iot_drain [--devices N --faults N --pg URL]`.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import time

from sqlalchemy import func, select, text

from bench.setup_data import DEFAULT_PG_URL
from tasks.faults import DrainSummary


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=DEFAULT_PG_URL)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--faults", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2, help="drain processes working the same inbox")
    p.add_argument("--rounds", type=int, default=3, help="drains of a fresh backlog; the median is reported")
    p.add_argument("--naive-sample", type=int, default=2_000, help="faults for the per-event ORM loop")
    p.add_argument("--flow-sample", type=int, default=20, help="timed flow runs, one per event (0: skip)")
    p.add_argument("--flow-drain", type=int, default=100_000, help="faults drained by one flow run (0: skip)")
    p.add_argument("--send", type=int, default=5_000, help="queued SMS sent per concurrency (0: skip)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[8, 32])
    p.add_argument("--send-rate", type=int, default=5_000, help="the SMS rate limit while measuring sends")
    p.add_argument("--provider-send", type=int, default=100, help="SMS sent at the provider's rate (0: skip)")
    p.add_argument(
        "--server-timeout", type=float, default=120, help="seconds for the Prefect server to start"
    )
    return p.parse_args()


def start_worker(url: str, ready) -> None:
    """Pool initializer: import and connect, then wait until every worker is ready (start-up is not
    drain time: a drain worker starts once and runs for hours)."""
    os.environ["CAREPATH_DATABASE_URL"] = url
    import tasks.faults  # noqa: F401  (prefect and the rest)
    from carepath import db
    from carepath.quality import warm_up
    from carepath.settings import reset_settings

    reset_settings()
    db.reset_engine()
    warm_up("inbox_faults")  # the drain's data-quality gate: Great Expectations imported once per worker
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
        from carepath.quality import warm_up

        warm_up("inbox_faults")
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


def drain_rounds(args: argparse.Namespace, url: str) -> float:
    """Drain a fresh backlog `args.rounds` times, printing each round; returns the median faults/s."""
    from carepath import db
    from models import Case, DeviceFault, InboxEvent, InboxState, KpiInstance, Message, MessageStatus

    rates = []
    for round_no in range(1, args.rounds + 1):
        drain_s, startup_s, total = drain_round(args, url)
        rate = total.claimed / drain_s
        rates.append(rate)
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
            kpis = s.scalar(select(func.count()).select_from(KpiInstance))
        print(
            f"drain round {round_no}: {total.claimed:,} faults in {drain_s:.2f} s = {rate:,.0f} faults/s "
            f"(batch {args.batch_size:,}, {args.workers} worker(s); worker start-up {startup_s:.1f} s not counted)"
        )
        print(
            f"  → {cases:,} cases, {attached:,} critical faults attached, {faults:,} faults recorded, "
            f"{queued:,} SMS queued ({total.sms_queued / drain_s:,.0f} messages/s), "
            f"{total.sms_blocked:,} blocked, {kpis:,} SLA KPI instances started; {pending} left pending"
        )
    median = statistics.median(rates)
    print(
        f"drain: median {median:,.0f} faults/s over {len(rates)} round(s) "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; target ≥ 20,000/s)"
    )
    return median


def naive_loop(args: argparse.Namespace, url: str, drain_rate: float) -> None:
    """The per-event ORM loop (bench.naive) on fresh faults of the drained organisation, in one process:
    two would race to open the same device's case, which the simple version does not handle."""
    from bench.naive import naive_drain
    from bench.setup_data import generate_faults
    from carepath import db

    generate_faults(url, faults=args.naive_sample, devices=args.devices, first=10_000_000, prefix="naive")
    t = time.perf_counter()
    n = naive_drain(db.get_sessionmaker(), limit=args.naive_sample)
    rate = n / (time.perf_counter() - t)
    print(
        f"naive ORM loop (a transaction per event, 1 process, same indexes): {n:,} faults at {rate:,.0f} "
        f"faults/s → the set-based drain ({args.workers} workers, this run) is {drain_rate / rate:,.0f}× faster"
    )


def flow_runs_per_second(runs: int) -> float:
    """Run the journey `runs` times, one fault each, after one warm-up run; returns runs per second."""
    from flows.iot_fault_journey import iot_fault_journey

    iot_fault_journey(batch_size=1, max_batches=1, send_messages=False)  # warm-up, counted out
    t = time.perf_counter()
    for _ in range(runs):
        iot_fault_journey(batch_size=1, max_batches=1, send_messages=False)
    return runs / (time.perf_counter() - t)


def flow_run_per_event(args: argparse.Namespace, url: str, drain_rate: float) -> None:
    """One flow run per event, one after another in this process, against the current Prefect server.

    Measured as the drain loop (deployments/drain_loop.py) runs flows, without flow heartbeats (at its end
    a run waits up to a second for the heartbeat thread), and with Prefect's defaults.
    """
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    from bench.setup_data import generate_faults

    runs = args.flow_sample
    generate_faults(url, faults=2 * (runs + 1), devices=args.devices, first=20_000_000, prefix="flow")
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}):
        rate = flow_runs_per_second(runs)
    with_heartbeats = flow_runs_per_second(runs)
    print(
        f"one flow run per event (Prefect server on PostgreSQL, {runs} runs, 1 process, no heartbeats as the "
        f"drain loop runs flows): {rate:.2f} faults/s → the set-based drain ({args.workers} workers, this "
        f"run) is {drain_rate / rate:,.0f}× faster; with Prefect's default heartbeats: {with_heartbeats:.2f} "
        f"faults/s ({drain_rate / with_heartbeats:,.0f}×)"
    )


def flow_drain(args: argparse.Namespace, url: str) -> None:
    """The deployed path: one flow run, a Prefect task per batch, in one process."""
    from bench.setup_data import generate_faults
    from flows.iot_fault_journey import iot_fault_journey

    generate_faults(url, faults=args.flow_drain, devices=args.devices, first=30_000_000, prefix="flowdrain")
    t = time.perf_counter()
    figures = iot_fault_journey(batch_size=args.batch_size, send_messages=False)
    rate = figures["faults_claimed"] / (time.perf_counter() - t)
    print(
        f"drain as one flow run (Prefect server on PostgreSQL, 1 process, a task per batch of "
        f"{args.batch_size:,}): {figures['faults_claimed']:,} faults at {rate:,.0f} faults/s"
    )


def main() -> None:
    args = parse_args()
    from bench.setup_data import bench_url

    url = bench_url(args.pg)
    os.environ["CAREPATH_DATABASE_URL"] = url
    from carepath import db
    from carepath.settings import reset_settings

    reset_settings()
    drain_rate = drain_rounds(args, url)
    if args.naive_sample:
        naive_loop(args, url, drain_rate)
    if args.flow_sample or args.flow_drain or args.send:
        from bench.prefect_server import PrefectServerUnavailable, prefect_server
        from bench.send import run_send_benchmark

        try:
            with prefect_server(args.pg, timeout=args.server_timeout):
                if args.flow_sample:
                    flow_run_per_event(args, url, drain_rate)
                if args.flow_drain:
                    flow_drain(args, url)
                if args.send:
                    run_send_benchmark(
                        sample=args.send,
                        concurrency=args.concurrency,
                        measurable_rate=args.send_rate,
                        provider_sample=args.provider_send,
                    )
        except PrefectServerUnavailable as exc:
            print(
                f"SKIPPED one flow run per event, the flow-run drain and sending: the Prefect server on "
                f"PostgreSQL did not start ({exc})"
            )
    db.reset_engine()


if __name__ == "__main__":
    main()
