"""File imports through the data-quality gates: rows/s and peak memory for a file and one ten times larger.

Memory must stay flat whatever the file's size (the file is hashed in blocks and read a chunk at a time), so the
larger file's peak RSS should be close to the smaller one's, not ten times it. Each import runs in a fresh
process (peak RSS is per process); Great Expectations, pandas and the rest are imported and warmed before the
clock starts and are part of the baseline RSS printed beside the peak.

Run: `.venv/bin/python -m bench.imports [--rows 20000] [--factor 10] [--pg]` — an embedded SQLite file by
default; with `--pg`, the local PostgreSQL (`PG_URL`) in the database `CAREPATH_BENCH_DB` (dropped and made).
Prints one line per kind and size, then the peak-memory ratio of the larger file to the smaller.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

DEVICES = 1_000


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=20_000, help="rows of the smaller file")
    p.add_argument("--factor", type=int, default=10, help="the larger file has this many times the rows")
    p.add_argument("--kinds", nargs="+", default=["faults-csv", "faults-parquet", "contacts-csv"])
    p.add_argument(
        "--pg", action="store_true", help="PostgreSQL (PG_URL, CAREPATH_BENCH_DB) instead of SQLite"
    )
    p.add_argument("--child", nargs=3, metavar=("KIND", "PATH", "URL"), help=argparse.SUPPRESS)
    return p.parse_args()


def rss_mb() -> float:
    """This process's resident memory now (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(kind: str, path: str, url: str) -> None:
    """One import in this (fresh) process; prints its figures as JSON."""
    import resource

    os.environ["CAREPATH_DATABASE_URL"] = url
    from carepath.quality import warm_up
    from tasks.imports import KINDS
    from tasks.imports.run import import_source, inspect_source

    warm_up(kind)
    baseline = rss_mb()
    t = time.perf_counter()
    summary = import_source(KINDS[kind], inspect_source(KINDS[kind], path))
    seconds = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "rows": summary.rows,
                "seconds": seconds,
                "baseline_mb": baseline,
                "peak_mb": peak,
                "loaded": summary.loaded,
                "quarantined": summary.quarantined,
            }
        )
    )


def prepare_database(pg: bool, workdir: Path) -> str:
    """A migrated database with DEVICES registered devices (their owners in ten accounts)."""
    from carepath import db
    from carepath.bulk import bulk_insert
    from carepath.migrate import upgrade
    from carepath.settings import reset_settings

    if pg:
        from bench.setup_data import DEFAULT_PG_URL, recreate_database

        url = recreate_database(DEFAULT_PG_URL)
    else:
        url = f"sqlite:///{workdir / 'imports.db'}"
    os.environ["CAREPATH_DATABASE_URL"] = url
    reset_settings()
    db.reset_engine()
    upgrade(url)
    from models import Account, Contact, Device
    from models.base import utcnow

    now = utcnow()
    with db.unit_of_work() as s:
        bulk_insert(
            s,
            Account.__table__,
            [
                {"name": f"Bench {i}", "account_number": f"B-{i:05d}", "tier": "standard", "created_at": now}
                for i in range(10)
            ],
        )
        ids = [
            r.id
            for r in bulk_insert(
                s,
                Contact.__table__,
                [
                    {
                        "first_name": "Owner",
                        "last_name": str(i),
                        "email": f"owner{i}@bench.example",
                        "language": "en",
                        "active": True,
                        "created_at": now,
                    }
                    for i in range(DEVICES)
                ],
                returning=["id"],
            )
        ]
        bulk_insert(
            s,
            Device.__table__,
            [{"device_id": f"DEV-{i:06d}", "owner_contact_id": ids[i]} for i in range(DEVICES)],
        )
    db.reset_engine()
    return url


def fault_rows(n: int, seed: int):
    rnd, start = random.Random(seed), datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(n):
        code = (
            "abc" if i % 100 == 99 else str(rnd.randint(0, 30))
        )  # 1 % of the rows fail error_code_is_integer
        at = (start + timedelta(seconds=rnd.randint(0, 300 * 86400))).isoformat().replace("+00:00", "Z")
        yield f"b{seed}-{i}", f"DEV-{rnd.randrange(DEVICES):06d}", code, at, "bench fault"


def write_faults_csv(path: Path, n: int, seed: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write("event_id,device_id,error_code,occurred_at,message\n")
        for row in fault_rows(n, seed):
            f.write(",".join(row) + "\n")
    return path


def write_faults_parquet(path: Path, n: int, seed: int) -> Path:
    """Written in row groups of 50,000 (pyarrow reads a row group at a time: a file written as one huge row
    group costs that group's memory whatever the batch size)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = ["event_id", "device_id", "error_code", "occurred_at", "message"]
    rows = fault_rows(n, seed)
    with pq.ParquetWriter(path, pa.schema([(c, pa.string()) for c in names])) as writer:
        while batch := [r for _, r in zip(range(50_000), rows)]:
            writer.write_table(pa.table({c: [r[i] for r in batch] for i, c in enumerate(names)}))
    return path


def write_contacts_csv(path: Path, n: int, seed: int) -> Path:
    with path.open("w", encoding="utf-8") as f:
        f.write("email,first_name,last_name,phone,account_number\n")
        for i in range(n):
            phone = "0030" if i % 100 == 99 else f"+3069{seed % 10}{i:07d}"
            f.write(f"person{seed}.{i}@bench{i % 50}.example,First{i},Last{i},{phone},B-{i % 10:05d}\n")
    return path


WRITERS = {
    "faults-csv": ("faults", write_faults_csv, "csv"),
    "faults-parquet": ("faults", write_faults_parquet, "parquet"),
    "contacts-csv": ("contacts", write_contacts_csv, "csv"),
}


def main() -> None:
    args = parse_args()
    if args.child:
        child(*args.child)
        return
    with tempfile.TemporaryDirectory(prefix="carepath-bench-imports-") as tmp:
        workdir = Path(tmp)
        url = prepare_database(args.pg, workdir)
        print(
            f"database: {'PostgreSQL' if args.pg else 'SQLite'}, {DEVICES:,} devices; chunk rows: "
            f"{os.environ.get('CAREPATH_IMPORT_CHUNK_ROWS', '10000 (default)')}"
        )
        for name in args.kinds:
            kind, write, ext = WRITERS[name]
            peaks = []
            for seed, n in enumerate(
                (args.rows, args.rows * args.factor), start=10 * (1 + list(WRITERS).index(name))
            ):
                path = write(workdir / f"{name}-{n}.{ext}", n, seed)
                done = subprocess.run(
                    [sys.executable, "-m", "bench.imports", "--child", kind, str(path), url],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                r = json.loads(done.stdout.strip().splitlines()[-1])
                peaks.append(r["peak_mb"])
                print(
                    f"{name}: {r['rows']:,} rows ({path.stat().st_size / 1e6:,.1f} MB) in {r['seconds']:.1f} s = "
                    f"{r['rows'] / r['seconds']:,.0f} rows/s; loaded {r['loaded']:,}, quarantined "
                    f"{r['quarantined']:,}; RSS {r['baseline_mb']:,.0f} MB before, peak {r['peak_mb']:,.0f} MB"
                )
            print(f"{name}: {args.factor}x the rows → peak RSS x{peaks[1] / peaks[0]:.2f}")


if __name__ == "__main__":
    main()
