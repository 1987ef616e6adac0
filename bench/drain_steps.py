"""Where a drain batch spends its time: per-step wall time inside `tasks.faults.drain_fault_batch`.

On a fresh `CAREPATH_BENCH_DB` (the same organisation and backlog as `bench.iot_drain`) the drain runs with
every step it calls wrapped in a timer (the functions are replaced in the modules that call them, in the
worker processes only), by `--workers` processes as `bench.iot_drain` runs it. A step's time includes any
wait for a row lock the other worker holds, so a step that serialises the workers shows up. Prints, per
step, the total over all batches and workers, the mean per batch and the share of the batch's time.

Run: `CAREPATH_BENCH_DB=name .venv/bin/python -m bench.drain_steps [--workers 2 --batch-size 10000]`;
`--profile FILE` also writes a cProfile of worker 1 (read it with `python -m pstats FILE`).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import multiprocessing
import os
import time
from collections import Counter

from bench.setup_data import DEFAULT_PG_URL

# (module, function name) of each step as drain_fault_batch and open_iot_cases call them.
STEPS = [
    ("tasks.faults", "claim_faults"),
    ("tasks.faults", "load_known_devices"),
    ("tasks.faults", "load_recent_fault_times"),
    ("tasks.faults", "find_open_cases"),
    ("tasks.faults", "load_device_owners"),
    ("tasks.faults", "open_iot_cases"),
    ("tasks.cases", "decide_new_cases"),
    # The cases themselves (the status history's insert too, also shown below); older commits: bulk_insert.
    ("tasks.cases", "bulk_insert"),
    ("tasks.cases", "bulk_insert_columns"),
    ("tasks.cases", "find_open_cases"),
    ("tasks.cases", "record_new_case_terms"),
    ("tasks.cases", "record_status_changes"),
    ("tasks.faults", "route_and_assign"),
    ("tasks.faults", "start_kpis_for_cases"),
    ("tasks.faults", "attach_faults_to_open_cases"),
    ("tasks.faults", "record_faults"),
    ("tasks.faults", "record_routine_faults"),
    ("tasks.faults", "queue_fault_sms"),
    ("tasks.faults", "mark_failed"),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=DEFAULT_PG_URL)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--faults", type=int, default=200_000)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--profile", help="write a cProfile of worker 1's drain to this file")
    p.add_argument("--statements", type=int, default=0, help="also list the N statements that took longest")
    p.add_argument(
        "--waits",
        action="store_true",
        help="sample the workers' sessions (pg_stat_activity, every 10 ms) during the drain: what each "
        "session was doing — on CPU, waiting for a lock (and in which statement), or idle in its transaction "
        "while the worker's Python ran",
    )
    p.add_argument(
        "--explain-ms",
        type=int,
        help="log the plan (EXPLAIN ANALYZE, BUFFERS) of every statement of at least this many ms to the "
        "server's log (auto_explain, loaded in the workers' sessions; needs a superuser)",
    )
    return p.parse_args()


class Meter:
    """Wall time, this process's CPU and its PostgreSQL backend's CPU (from /proc/<pid>/schedstat, so only
    with the server on this machine), accumulated by step."""

    def __init__(self) -> None:
        self.wall, self.py, self.pg, self.calls = Counter(), Counter(), Counter(), Counter()
        self.backend_pid: int | None = None

    def backend_cpu(self) -> float:
        if self.backend_pid is None:
            return 0.0
        try:
            with open(f"/proc/{self.backend_pid}/schedstat") as f:
                return int(f.read().split()[0]) / 1e9
        except OSError:
            return 0.0

    def now(self) -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), self.backend_cpu()

    def add(self, name: str, since: tuple[float, float, float]) -> None:
        wall, py, pg = self.now()
        self.wall[name] += wall - since[0]
        self.py[name] += py - since[1]
        self.pg[name] += pg - since[2]
        self.calls[name] += 1

    def dump(self) -> dict:
        return {"wall": self.wall, "py": self.py, "pg": self.pg, "calls": self.calls}


def instrument(meter: Meter) -> None:
    """Wrap every step in the meter (nested steps are counted in their caller's time too)."""
    import importlib

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t = meter.now()
            try:
                return fn(*args, **kwargs)
            finally:
                meter.add(name, t)

        return wrapper

    for module, fn_name in STEPS:
        mod = importlib.import_module(module)
        if hasattr(mod, fn_name):  # so the tool runs on older commits too
            setattr(mod, fn_name, timed(label_of(module, fn_name), getattr(mod, fn_name)))


BATCH, COMMIT = "batch (before commit)", "commit"


def label_of(module: str, fn_name: str) -> str:
    """A step's name in the table; the steps inside open_iot_cases are indented under it."""
    if module == "tasks.faults":
        return fn_name
    return {
        "find_open_cases": "  find_open_cases (raced)",
        "bulk_insert": "  insert (cases, history)",
        "bulk_insert_columns": "  insert (cases, history)",
    }.get(fn_name, f"  {fn_name}")


def start_worker(url: str, ready, explain_ms: int | None) -> None:
    os.environ["CAREPATH_DATABASE_URL"] = url
    import tasks.faults  # noqa: F401
    from carepath import db
    from carepath.settings import reset_settings

    reset_settings()
    db.reset_engine()
    if explain_ms is not None:
        from sqlalchemy import event

        @event.listens_for(db.get_engine(), "connect")
        def _auto_explain(dbapi_connection, _record):
            with dbapi_connection.cursor() as cursor:
                cursor.execute("LOAD 'auto_explain'")
                cursor.execute(f"SET auto_explain.log_min_duration = {int(explain_ms)}")
                cursor.execute("SET auto_explain.log_analyze = on")
                cursor.execute("SET auto_explain.log_buffers = on")
                cursor.execute("SET auto_explain.log_nested_statements = on")
                cursor.execute("SET application_name = 'bench.drain_steps'")
            dbapi_connection.commit()

    with db.get_engine().connect():
        pass
    ready.wait()


def time_statements(engine) -> Counter:
    """Seconds per statement (by its first words; the claim, sent on the driver's cursor, is not seen)."""
    import re

    from sqlalchemy import event

    spent = Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):
        conn.info["bench_t"] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        words = re.sub(r"\s+", " ", statement).strip()
        key = re.sub(r"'[^']*'", "…", words)[:90]
        spent[key] += time.perf_counter() - conn.info.pop("bench_t")

    return spent


def drain_worker(job: tuple[int, int, str | None, bool]):
    """Drain until nothing is pending; returns (claimed, batches, meters by step, statements' seconds)."""
    worker, batch_size, profile, statements = job
    from sqlalchemy import event

    from carepath import db
    from carepath.rules.faults import FaultRules
    from carepath.settings import get_settings

    meter = Meter()

    @event.listens_for(db.get_engine(), "checkout")
    def _backend(dbapi_connection, _record, _proxy):
        meter.backend_pid = dbapi_connection.info.backend_pid

    instrument(meter)
    spent = time_statements(db.get_engine()) if statements else Counter()
    import tasks.faults as faults

    settings, rules = get_settings(), FaultRules()
    claimed = batches = 0
    profiler = None
    if profile and worker == 1:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    while True:
        with db.unit_of_work() as session:
            t = meter.now()
            batch = faults.drain_fault_batch(
                session=session,
                rules=rules,
                limit=batch_size,
                tracking_url=settings.tracking_url,
                sms_status_callback=settings.sms_status_callback_url,
            )
            meter.add(BATCH, t)
            c = meter.now()
        meter.add(COMMIT, c)
        if batch.claimed == 0:
            break
        claimed += batch.claimed
        batches += 1
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    return claimed, batches, meter.dump(), dict(spent)


class WaitSampler:
    """pg_stat_activity of the drain's sessions every 10 ms, in a thread, while the drain runs."""

    def __init__(self, url: str) -> None:
        import threading

        from sqlalchemy import create_engine

        self.engine = create_engine(url, isolation_level="AUTOCOMMIT")
        self.seen: Counter = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from sqlalchemy import text

        sql = text(
            """
            SELECT CASE WHEN state = 'active' THEN coalesce(wait_event_type || ':' || wait_event, 'CPU')
                        ELSE state END,
                   CASE WHEN state = 'active' THEN left(regexp_replace(query, '\\s+', ' ', 'g'), 48) ELSE '' END
            FROM pg_stat_activity
            WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
            """
        )
        with self.engine.connect() as conn:
            while not self.stop.wait(0.01):
                for what, query in conn.execute(sql):
                    self.seen[what, query.strip()] += 1

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self.engine.dispose()

    def report(self) -> None:
        total = sum(self.seen.values())
        print(f"{'share':>6}  session state (samples of the workers' sessions; {total:,} in all)")
        for (what, query), n in self.seen.most_common(20):
            print(f"{n / total:6.1%}  {what:28} {query}")


def main() -> None:
    args = parse_args()
    from bench.setup_data import bench_url, generate_faults, generate_organisation, recreate_database

    url = bench_url(args.pg)
    os.environ["CAREPATH_DATABASE_URL"] = url
    from sqlalchemy import text

    from carepath import db
    from carepath.migrate import upgrade
    from carepath.settings import reset_settings

    reset_settings()
    recreate_database(args.pg)
    db.reset_engine()
    upgrade(url)
    generate_organisation(url, devices=args.devices)
    generate_faults(url, faults=args.faults, devices=args.devices)
    with db.get_engine().connect() as conn:
        conn.execute(text("CHECKPOINT"))
    db.reset_engine()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Barrier(args.workers + 1)
    with ctx.Pool(args.workers, initializer=start_worker, initargs=(url, ready, args.explain_ms)) as pool:
        ready.wait(timeout=300)
        sampler = WaitSampler(url) if args.waits else contextlib.nullcontext()
        t = time.perf_counter()
        with sampler:
            parts = pool.map(
                drain_worker,
                [
                    (w, args.batch_size, args.profile, bool(args.statements))
                    for w in range(1, args.workers + 1)
                ],
            )
        wall = time.perf_counter() - t
    claimed = sum(p[0] for p in parts)
    batches = sum(p[1] for p in parts)
    m = {k: Counter() for k in ("wall", "py", "pg", "calls")}
    spent = Counter()
    for p in parts:
        for k in m:
            m[k].update(p[2][k])
        spent.update(p[3])
    print(
        f"{claimed:,} faults in {wall:.2f} s = {claimed / wall:,.0f} faults/s "
        f"({batches} batches of ≤ {args.batch_size:,}, {args.workers} worker(s); load average "
        f"{os.getloadavg()[0]:.1f} at the end)"
    )
    print(
        "ms per batch, summed over the workers: wall time; CPU of the worker (Python) and of its PostgreSQL "
        "backend; the rest of the wall time is waiting (row locks, the other processes on the cores)"
    )
    print(f"{'step':38} {'wall':>7} {'python':>7} {'pg':>7} {'wait':>7} {'share':>6}")

    def row(label: str, wall_s: float, py_s: float, pg_s: float, share: bool = True) -> None:
        ms = [1000 * v / batches for v in (wall_s, py_s, pg_s, wall_s - py_s - pg_s)]
        tail = f" {wall_s / m['wall'][BATCH]:6.1%}" if share else ""
        print(f"{label:38} " + " ".join(f"{v:7.1f}" for v in ms) + tail)

    listed = [0.0, 0.0, 0.0]
    shown = set()
    for module, fn_name in STEPS:
        label = label_of(module, fn_name)
        if label in shown:
            continue
        shown.add(label)
        if module == "tasks.faults":
            for i, k in enumerate(("wall", "py", "pg")):
                listed[i] += m[k][label]
        row(label, m["wall"][label], m["py"][label], m["pg"][label])
    row(
        "rest of drain_fault_batch",
        *(m[k][BATCH] - listed[i] for i, k in enumerate(("wall", "py", "pg"))),
    )
    row(COMMIT, m["wall"][COMMIT], m["py"][COMMIT], m["pg"][COMMIT], share=False)
    row("batch (before commit)", m["wall"][BATCH], m["py"][BATCH], m["pg"][BATCH])
    cpu = (m["py"][BATCH] + m["pg"][BATCH] + m["py"][COMMIT] + m["pg"][COMMIT]) / claimed * 10_000
    print(f"CPU per 10,000 faults (worker + backend, with the commit): {cpu:.2f} s")

    if args.statements:
        print(f"{'ms/batch':>9}  statement (all workers; the claim not included)")
        for key, s in spent.most_common(args.statements):
            print(f"{1000 * s / batches:9.1f}  {key}")

    if args.waits:
        sampler.report()


if __name__ == "__main__":
    main()
