"""A Prefect server for the benchmarks, backed by the same PostgreSQL as the data: the production set-up.

Started as a subprocess (`prefect server start` on a free port) on a database of its own that is dropped
afterwards. Not `prefect_test_harness`: that server runs on a temporary SQLite file, where flow runs cost
several times more (see DESIGN.md, "Prefect facts"), so a ratio against it flatters the batch drain.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import create_engine, make_url, text

from bench.setup_data import recreate_database
from deployments.serve import free_port

PREFECT_DB = "carepath_bench_prefect"


class PrefectServerUnavailable(RuntimeError):
    """The Prefect server did not answer in time (the benchmarks that need it are skipped)."""


def asyncpg_url(server_url: str, name: str) -> str:
    """The URL of database `name` on that PostgreSQL server, for the Prefect server's async driver."""
    return make_url(server_url).set(drivername="postgresql+asyncpg", database=name).render_as_string(False)


def drop_database(server_url: str, name: str) -> None:
    """Drop database `name` on that server, closing any connection left open."""
    admin = create_engine(make_url(server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def server_env(*, home: str, database_url: str) -> dict[str, str]:
    """The server's environment: its own home and database; no settings of an outer Prefect profile."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": home,
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": database_url,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # The UI is not on any measured path; building its static files only slows the start.
            "PREFECT_UI_ENABLED": "false",
        }
    )
    return env


def wait_healthy(api_url: str, proc: subprocess.Popen, timeout: float) -> None:
    """Until the API answers its health check; raise if the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PrefectServerUnavailable(f"the server exited with code {proc.returncode}")
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise PrefectServerUnavailable(f"no answer from {api_url} within {timeout:g} s")


def log_tail(path: Path, lines: int = 15) -> str:
    """The last lines of the server's log, to say why it did not start."""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@contextmanager
def prefect_server(pg_url: str, *, timeout: float = 120, database: str = PREFECT_DB) -> Iterator[str]:
    """A Prefect server on PostgreSQL database `database` (default `carepath_bench_prefect`), dropped
    afterwards; this process's client points at it.

    Yields the API URL. Raises `PrefectServerUnavailable` (after cleaning up) if it does not start in time.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    recreate_database(pg_url, database)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    with tempfile.TemporaryDirectory(prefix="carepath-bench-prefect-") as home:
        log_path = Path(home) / "server.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                ],
                env=server_env(home=home, database_url=asyncpg_url(pg_url, database)),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            started = time.perf_counter()
            try:
                wait_healthy(api_url, proc, timeout)
            except PrefectServerUnavailable as exc:
                tail = log_tail(log_path)
                raise PrefectServerUnavailable(
                    f"{exc}; its log ends:\n{tail}" if tail else str(exc)
                ) from None
            print(f"prefect server on PostgreSQL ({database}) up in {time.perf_counter() - started:.1f} s")
            with temporary_settings(updates={PREFECT_API_URL: api_url}):
                yield api_url
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            drop_database(pg_url, database)
