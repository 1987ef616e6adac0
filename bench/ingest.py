"""Receiver ingest on PostgreSQL: signed fault webhooks from a local load generator over loopback.

Starts the receiver (uvicorn, N workers) on a fresh `carepath_bench` database, sends `--events` signed
faults over `--connections` keep-alive connections, prints accepted events/s, then counts the inbox to show
every accepted event is there (and that resends of the same ids added nothing).

Run: `.venv/bin/python -m bench.ingest [--events 30000 --connections 64 --workers 2]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime

from sqlalchemy import create_engine, text

from bench.setup_data import DEFAULT_PG_URL, recreate_database
from deployments.serve import free_port, wait_for_port
from receiver.signatures import sign_carepath

SECRET = "bench-secret"


def request_bytes(port: int, event_id: str) -> bytes:
    body = json.dumps(
        {
            "event_id": event_id,
            "device_id": "BDEV-0000001",
            "error_code": 14,
            "occurred_at": datetime.now(UTC).isoformat(),
        }
    ).encode()
    ts = int(time.time())
    head = (
        f"POST /webhooks/iot/faults HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"X-Carepath-Timestamp: {ts}\r\nX-Carepath-Signature: {sign_carepath(SECRET, ts, body)}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def connection(port: int, ids: list[str], results: list[int]) -> None:
    """One keep-alive connection sending its share of events, one at a time, reading each answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for event_id in ids:
        writer.write(request_bytes(port, event_id))
        await writer.drain()
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        results.append(status)
    writer.close()


async def load(port: int, ids: list[str], connections: int) -> list[int]:
    results: list[int] = []
    shares = [ids[i::connections] for i in range(connections)]
    await asyncio.gather(*(connection(port, share, results) for share in shares if share))
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pg", default=DEFAULT_PG_URL)
    p.add_argument("--events", type=int, default=30_000)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    url = recreate_database(args.pg)
    from carepath.migrate import upgrade

    upgrade(url)
    port = free_port()
    env = {
        **os.environ,
        "CAREPATH_DATABASE_URL": url,
        "CAREPATH_IOT_WEBHOOK_SECRET": SECRET,
        "CAREPATH_ENV_FILE": "",
        "PREFECT_API_URL": "",
    }
    env.pop("PREFECT_API_URL")
    receiver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "receiver.app:create_app",
            "--factory",
            "--port",
            str(port),
            "--workers",
            str(args.workers),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 20, "the receiver")
        time.sleep(1.0)  # every worker up
        asyncio.run(load(port, [f"warm-{i}" for i in range(500)], 16))
        ids = [f"load-{i}" for i in range(args.events)]
        t = time.perf_counter()
        statuses = asyncio.run(load(port, ids, args.connections))
        elapsed = time.perf_counter() - t
        accepted = sum(s == 202 for s in statuses)
        print(
            f"ingest: {accepted:,} of {len(ids):,} signed events accepted in {elapsed:.2f} s = "
            f"{accepted / elapsed:,.0f} events/s ({args.connections} connections, {args.workers} receiver "
            f"worker(s), PostgreSQL; goal ≥ 2,000/s)"
        )
        resent = asyncio.run(load(port, ids[:2000], 16))
        engine = create_engine(url)
        with engine.connect() as conn:
            stored = conn.execute(
                text("SELECT count(*) FROM inbox_event WHERE event_id LIKE 'load-%'")
            ).scalar()
        engine.dispose()
        print(
            f"inbox: {stored:,} rows for {accepted:,} accepted events "
            f"({'none lost' if stored == accepted else 'MISMATCH'}); 2,000 resends answered "
            f"{sum(s == 202 for s in resent):,}× 202 and added {stored - accepted} rows"
        )
    finally:
        receiver.terminate()
        receiver.wait(20)


if __name__ == "__main__":
    main()
