"""`make serve`: the whole stack on loopback — Prefect server, deployments, a process worker, the receiver
and the drain loop — on the embedded defaults (SQLite) unless the environment says otherwise.

Environment honoured: CAREPATH_DATABASE_URL (e.g. PostgreSQL), PREFECT_API_URL (or a Prefect profile's: use
that server instead of starting one; PREFECT_API_KEY / PREFECT_API_AUTH_STRING authenticate to it),
PREFECT_SERVER_API_AUTH_STRING (the local server requires it; its clients are given it), and every
CAREPATH_* setting. Webhook secrets missing from the environment
are generated once into .env (never printed).
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def ensure_dev_secrets(env_file: Path) -> None:
    """Webhook secrets for our own sources, generated on first use and kept in .env (git-ignored)."""
    existing = env_file.read_text().splitlines() if env_file.exists() else []
    keys = {line.split("=", 1)[0] for line in existing if "=" in line}
    added = [
        f"{key}={secrets.token_urlsafe(32)}"
        for key in ("CAREPATH_IOT_WEBHOOK_SECRET", "CAREPATH_CASES_WEBHOOK_SECRET")
        if key not in keys and key not in os.environ
    ]
    if added:
        env_file.write_text("\n".join([*existing, *added]) + "\n")
        env_file.chmod(0o600)
        print(f"generated webhook secrets in {env_file} ({', '.join(a.split('=')[0] for a in added)})")


def free_port() -> int:
    """A TCP port nobody listens on now, on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float, what: str) -> None:
    """Until something accepts connections on the loopback port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"{what} did not listen on port {port} within {timeout:.0f} s")


def serve_command(*, prefect_port: int, receiver_port: int, drain_loop: bool = True) -> list[str]:
    """The command that starts a stack (for tests and benchmarks: workers poll every second)."""
    cmd = [
        sys.executable,
        "-m",
        "deployments.serve",
        "--prefect-port",
        str(prefect_port),
        "--receiver-port",
        str(receiver_port),
        "--worker-poll-seconds",
        "1",
    ]
    return cmd if drain_loop else [*cmd, "--no-drain-loop"]


def loopback_env(
    *,
    database_url: str,
    prefect_home: str,
    receiver_port: int,
    provider_url: str,
    iot_secret: str,
    cases_secret: str,
) -> dict[str, str]:
    """The environment of a throwaway stack on loopback (tests, benchmarks): its own Prefect home, no .env,
    both providers' SDKs pointed at a stub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": prefect_home,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "CAREPATH_DATABASE_URL": database_url,
            "CAREPATH_ENV_FILE": "",
            "CAREPATH_PUBLIC_BASE_URL": f"http://127.0.0.1:{receiver_port}",
            "CAREPATH_IOT_WEBHOOK_SECRET": iot_secret,
            "CAREPATH_CASES_WEBHOOK_SECRET": cases_secret,
            "CAREPATH_TWILIO_ACCOUNT_SID": "ACtest",
            "CAREPATH_TWILIO_AUTH_TOKEN": "test-token",
            "CAREPATH_TWILIO_BASE_URL": provider_url,
            "CAREPATH_SENDGRID_API_KEY": "SG.test-key",
            "CAREPATH_SENDGRID_HOST": provider_url,
        }
    )
    return env


def wait_for(url: str, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} did not come up at {url} within {timeout:.0f} s")


def run(cmd: list[str], env: dict[str, str], *, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, cwd=ROOT, check=check, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--prefect-port", type=int, default=4200)
    p.add_argument("--receiver-port", type=int, default=8000)
    p.add_argument("--receiver-workers", type=int, default=1)
    p.add_argument("--no-drain-loop", action="store_true", help="rely on triggered deployments only")
    p.add_argument("--worker-poll-seconds", type=float, default=2.0)
    args = p.parse_args(argv)
    from carepath.events import prefect_api_url

    env = dict(os.environ)
    env.setdefault("PREFECT_HOME", str(ROOT / ".prefect"))
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    env["CAREPATH_HOME"] = str(ROOT)
    env.setdefault("CAREPATH_PUBLIC_BASE_URL", f"http://{args.host}:{args.receiver_port}")
    if "CAREPATH_IOT_WEBHOOK_SECRET" not in env:
        ensure_dev_secrets(ROOT / ".env")
    procs: list[subprocess.Popen] = []

    def start(name: str, cmd: list[str], extra: dict[str, str] | None = None) -> None:
        log = open(ROOT / ".prefect" / f"{name}.log", "ab")
        procs.append(subprocess.Popen(cmd, env={**env, **(extra or {})}, cwd=ROOT, stdout=log, stderr=log))
        print(f"started {name} (log: .prefect/{name}.log)")

    (ROOT / ".prefect").mkdir(exist_ok=True)
    prefect = str(BIN / "prefect")
    # SIGTERM stops the stack like Ctrl-C at any moment, start-up included: nothing started is left behind.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        run([str(BIN / "carepath"), "migrate"], env)
        if configured_api_url := prefect_api_url():  # Prefect's own setting: environment or profile
            env["PREFECT_API_URL"] = configured_api_url
        else:
            env["PREFECT_API_URL"] = f"http://{args.host}:{args.prefect_port}/api"
            if "PREFECT_SERVER_API_AUTH_STRING" in env:  # our server requires it: every client sends it
                env.setdefault("PREFECT_API_AUTH_STRING", env["PREFECT_SERVER_API_AUTH_STRING"])
            start(
                "prefect-server",
                [prefect, "server", "start", "--host", args.host, "--port", str(args.prefect_port)],
            )
        wait_for(env["PREFECT_API_URL"] + "/health", 90, "the Prefect server")
        run([prefect, "work-pool", "create", "carepath-process", "--type", "process", "--overwrite"], env)
        # The SMS rate limit, named and sized by the settings (the same code the demo uses).
        run([str(BIN / "python"), "-c", "from tasks.messaging import ensure_sms_rate_limit as e; e()"], env)
        deployed = run([prefect, "--no-prompt", "deploy", "--all"], env, check=False)
        if deployed.returncode:
            raise SystemExit(f"prefect deploy failed:\n{deployed.stdout}\n{deployed.stderr}")
        print("deployed every flow in prefect.yaml")
        start(
            "worker",
            [prefect, "worker", "start", "--pool", "carepath-process"],
            {"PREFECT_WORKER_QUERY_SECONDS": str(args.worker_poll_seconds)},
        )
        start(
            "receiver",
            [
                str(BIN / "uvicorn"),
                "receiver.app:create_app",
                "--factory",
                "--host",
                args.host,
                "--port",
                str(args.receiver_port),
                "--workers",
                str(args.receiver_workers),
                "--no-access-log",
            ],
        )
        if not args.no_drain_loop:
            start("drain-loop", [sys.executable, "-m", "deployments.drain_loop"])
        wait_for(f"http://{args.host}:{args.receiver_port}/healthz", 60, "the receiver")
        print(
            f"\nCarepath is up:\n  Prefect UI   {env['PREFECT_API_URL'].removesuffix('/api')}\n"
            f"  receiver     http://{args.host}:{args.receiver_port}/webhooks/…\n  Ctrl-C stops everything.",
            flush=True,
        )
        while all(proc.poll() is None for proc in procs):
            time.sleep(0.5)
        died = [
            proc.args[1] if len(proc.args) > 1 else proc.args[0] for proc in procs if proc.poll() is not None
        ]
        raise SystemExit(f"a process of the stack stopped: {died}")
    except KeyboardInterrupt:
        pass
    finally:
        stop_all(procs, grace_seconds=10)


def stop_all(procs: list[subprocess.Popen], *, grace_seconds: float) -> None:
    """SIGTERM everything at once, then SIGKILL whatever is still there after the grace period."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    deadline = time.monotonic() + grace_seconds
    for proc in procs:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


if __name__ == "__main__":
    main()
