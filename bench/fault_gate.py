"""The IoT drain's data-quality gate on its own: what it adds to one claimed batch.

The gate (`tasks.fault_gate.gate_claimed_faults`) screens the batch's materialised faults with pandas and asks
Great Expectations only about the rows that may fail. Timed here on batches of parsed faults (30% critical,
so the owners' phones are looked up for those), clean and with 1% of them dated in the future (GX validates
those and they are quarantined), each in a transaction rolled back afterwards; the median of `--repeat`.
The whole drain's figure moves with the machine's load more than by this (bench/README.md), hence this bench.

Run: `CAREPATH_BENCH_DB=name .venv/bin/python -m bench.fault_gate [--devices 100000] [--sizes 1000 10000]`
(PostgreSQL at `PG_URL`; the database is dropped and made).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import UTC, datetime, timedelta


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=100_000)
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 1_000, 10_000])
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args()

    from bench.setup_data import DEFAULT_PG_URL, generate_organisation, recreate_database
    from carepath.migrate import upgrade

    url = recreate_database(DEFAULT_PG_URL)
    os.environ["CAREPATH_DATABASE_URL"] = url
    upgrade(url)
    generate_organisation(url, devices=args.devices)

    from carepath import quality
    from carepath.db import unit_of_work
    from carepath.rules.faults import Fault
    from tasks.fault_claims import ClaimedFaults
    from tasks.fault_gate import gate_claimed_faults, gate_horizon

    t = time.perf_counter()
    quality.warm_up("inbox_faults")
    print(
        f"Great Expectations warm-up (import, context, suite): {time.perf_counter() - t:.1f} s, once per process"
    )
    rnd, now = random.Random(17), datetime.now(UTC)
    for size in args.sizes:
        for bad_share in (0.0, 0.01):
            times, quarantined = [], 0
            for _ in range(args.repeat):
                faults = [
                    Fault(
                        i,
                        f"DEV-{rnd.randrange(args.devices):06d}",
                        30 if rnd.random() < 0.3 else 3,
                        now + timedelta(days=1)
                        if rnd.random() < bad_share
                        else now - timedelta(minutes=i % 600),
                    )
                    for i in range(size)
                ]
                with unit_of_work() as session:
                    start = time.perf_counter()
                    gate = gate_claimed_faults(
                        session=session,
                        claim=ClaimedFaults(size, faults, {}),
                        threshold=10,
                        not_after=gate_horizon(),
                    )
                    times.append(time.perf_counter() - start)
                    quarantined = gate.quarantined
                    session.rollback()
            median = statistics.median(times)
            print(
                f"gate, {size:,} materialised faults, {bad_share:.0%} bad: {median * 1000:,.1f} ms per batch "
                f"(min {min(times) * 1000:,.1f}) = {median / size * 1e6:,.1f} µs per fault; {quarantined} quarantined"
            )


if __name__ == "__main__":
    main()
