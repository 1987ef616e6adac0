"""Flat memory: entitlement reconciliation at two sizes ten times apart, each run in a process of its own, its
peak RSS printed, and the ratio of the two.

`python -m bench.reconciliation_memory [--entitlements 10000 100000] [--chunk-size N]` (PG_URL, default the local
server; CAREPATH_BENCH_DB renames the database, dropped and recreated for each size). Each size is filled as
`bench.entitlement_reconciliation` fills it (N entitlements, 10 N cases, 4 N of them holding a term, a hundredth
drifted); then a fresh Python process imports what `carepath reconcile-entitlements` runs (Prefect included),
notes its peak RSS (`resource.getrusage`, ru_maxrss), runs the reconciliation — ranges of `--chunk-size`
entitlements, each its own transaction, the CSV report written as they come, uncovered customers streamed — and
notes the peak again. Flat memory: the peak stays put (ratio near 1) while the data grows tenfold, because no
step holds more than a range's rows. Figures, not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from bench.setup_data import DEFAULT_PG_URL
from carepath.settings import PROJECT_ROOT


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(url: str, chunk_size: int) -> None:
    """In the measured process: import, note the peak, reconcile, note it again; one JSON line out."""
    import flows.entitlement_reconciliation  # noqa: F401  (the imports are the baseline)
    from bench.entitlement_reconciliation import reconcile

    baseline = peak_rss_mib()
    started = time.perf_counter()
    summary = reconcile(url, chunk_size)
    elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "baseline": baseline,
                "peak": peak_rss_mib(),
                "seconds": elapsed,
                "summary": summary.as_json(),
            }
        )
    )


def measure(url: str, chunk_size: int) -> dict:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.reconciliation_memory",
            "--child",
            url,
            "--chunk-size",
            str(chunk_size),
        ],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entitlements", type=int, nargs=2, default=[10_000, 100_000])
    parser.add_argument("--chunk-size", type=int, default=10_000, help="entitlements per range")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.chunk_size)
        return
    from bench.entitlement_reconciliation import prepare

    server = os.environ.get("PG_URL", DEFAULT_PG_URL)
    peaks = []
    for n in args.entitlements:
        url = prepare(server, n)
        m = measure(url, args.chunk_size)
        peaks.append(m)
        print(
            f"{n:,} entitlements, {n * 10:,} cases (ranges of {args.chunk_size:,}): peak RSS {m['peak']:.0f} MiB "
            f"({m['baseline']:.0f} MiB after imports, +{m['peak'] - m['baseline']:.0f} MiB for the run), "
            f"{m['seconds']:.2f} s; {m['summary']}"
        )
    small, large = peaks
    print(
        f"data ×{args.entitlements[1] / args.entitlements[0]:g} → peak RSS ×{large['peak'] / small['peak']:.2f} "
        f"(the run's own share: +{small['peak'] - small['baseline']:.0f} → "
        f"+{large['peak'] - large['baseline']:.0f} MiB)"
    )


if __name__ == "__main__":
    main()
