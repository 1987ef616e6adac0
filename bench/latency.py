"""Fault → SMS latency through the served stack (`make serve` on loopback), p50 and p95.

A fresh PostgreSQL database with 1,000 devices; the stack (Prefect server, deployments, worker, receiver,
drain loop) pointed at an in-process Twilio stub; `--faults` signed critical faults posted `--interval`
seconds apart, each for another device; latency = the SMS request reaching the stub − the webhook post.

Run: `.venv/bin/python -m bench.latency [--faults 40 --interval 0.5]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.latency_stages import breakdown, fault_marks, percentile, prefect_runs
from bench.setup_data import DEFAULT_PG_URL, generate_organisation, recreate_database
from deployments.serve import free_port, loopback_env, serve_command
from receiver.signatures import sign_carepath
from stubs.provider_stub import ProviderStub

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=DEFAULT_PG_URL)
    p.add_argument("--faults", type=int, default=40)
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--no-drain-loop", action="store_true", help="measure triggered deployments alone")
    p.add_argument(
        "--prefect-db",
        choices=["sqlite", "postgresql"],
        default="postgresql",
        help="the Prefect server's own database (PostgreSQL: the production set-up)",
    )
    args = p.parse_args()

    url = recreate_database(args.pg)
    from carepath.migrate import upgrade

    upgrade(url)
    generate_organisation(url, devices=1000)
    prefect_port, receiver_port = free_port(), free_port()
    with ProviderStub() as stub, tempfile.TemporaryDirectory() as home:
        env = loopback_env(
            database_url=url,
            prefect_home=home,
            receiver_port=receiver_port,
            provider_url=stub.base_url,
            iot_secret=SECRET,
            cases_secret=SECRET,
        )
        env["CAREPATH_SMS_PER_SECOND"] = "100"
        if args.prefect_db == "postgresql":
            from sqlalchemy import make_url

            prefect_db = make_url(recreate_database(args.pg, "carepath_bench_prefect"))
            env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = prefect_db.set(
                drivername="postgresql+asyncpg"
            ).render_as_string(hide_password=False)
        cmd = serve_command(
            prefect_port=prefect_port, receiver_port=receiver_port, drain_loop=not args.no_drain_loop
        )
        serve = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            receiver = f"http://127.0.0.1:{receiver_port}"
            for _ in range(600):
                try:
                    if httpx.get(f"{receiver}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.3)
            time.sleep(3)  # let the first sweep and the drain loop settle
            posted: dict[str, float] = {}  # event id → time posted
            accepted: dict[str, float] = {}  # event id → 202 received
            phones: dict[str, str] = {}  # event id → the owner's phone
            # Devices 10, 20, … belong to owners without SMS consent (their texts are blocked): skip them.
            for n in [d for d in range(1, 2 * args.faults) if d % 10][: args.faults]:
                body = json.dumps(
                    {
                        "event_id": f"lat-{n}",
                        "device_id": f"BDEV-{n:07d}",
                        "error_code": 14,
                        "occurred_at": datetime.now(UTC).isoformat(),
                    }
                ).encode()
                ts = int(time.time())
                headers = {
                    "X-Carepath-Timestamp": str(ts),
                    "X-Carepath-Signature": sign_carepath(SECRET, ts, body),
                    "Content-Type": "application/json",
                }
                event_id = f"lat-{n}"
                phones[event_id] = f"+30691{n:07d}"
                posted[event_id] = time.time()
                response = httpx.post(f"{receiver}/webhooks/iot/faults", content=body, headers=headers)
                accepted[event_id] = time.time()
                assert response.status_code == 202
                time.sleep(args.interval)
            deadline = time.time() + 120
            while len(stub.twilio_messages()) < args.faults and time.time() < deadline:
                time.sleep(0.2)
            at_stub = {m.form["To"]: m.received_at for m in stub.twilio_messages()}
            latencies = [at_stub[phones[e]] - t for e, t in posted.items() if phones[e] in at_stub]
            time.sleep(2)  # the last runs finish and are recorded
            stages = breakdown(
                posted=posted,
                accepted=accepted,
                at_stub=at_stub,
                phones=phones,
                marks=fault_marks(url, list(posted)),
                runs=prefect_runs(f"http://127.0.0.1:{prefect_port}/api"),
            )
        finally:
            serve.terminate()
            serve.wait(60)
    path = "triggered deployments only" if args.no_drain_loop else "drain loop + triggered deployments"
    path += f", Prefect server on {args.prefect_db}"
    print(
        f"fault → SMS through the served stack ({path}): {len(latencies)}/{args.faults} SMS; "
        f"p50 {statistics.median(latencies):.2f} s, p95 {percentile(latencies, 0.95):.2f} s, "
        f"max {max(latencies):.2f} s (goal p95 ≤ {1.5 if args.prefect_db == 'sqlite' else 1} s)"
    )
    print("\n".join(stages))


if __name__ == "__main__":
    main()
