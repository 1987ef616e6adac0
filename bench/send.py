"""Sending queued SMS the way the deployment does: `drain_outbox` with the Prefect SMS rate limit.

`send_queued_messages` (the deployed task) calls `drain_outbox(..., rate_limit_name=settings.sms_rate_limit_name)`,
which takes a second's worth of slots from a Prefect global rate limit before each chunk it hands to the
Twilio SDK. Here the same call goes to the provider stub in another process, with the limit created on the
benchmark's Prefect server: once at a rate above what the sender reaches (so the figure is the path's own
speed, slot requests included), once at the provider's default rate (so the limit is seen to hold).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update

from carepath.db import unit_of_work
from carepath.settings import PROJECT_ROOT, Settings, get_settings, reset_settings
from deployments.serve import free_port, wait_for_port
from models import Message, MessageChannel, MessageStatus
from tasks.messaging import drain_outbox

if TYPE_CHECKING:
    from tasks.messaging import SendSummary

# Queued SMS the benchmark is not sending right now wait as `blocked` with this reason: drain_outbox sends
# every queued message, so the sample size is set by what is queued.
HELD_BACK = "bench: held back"


@dataclass(frozen=True)
class SendFigure:
    sent: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


@contextmanager
def stub_process() -> Iterator[str]:
    """The provider stub in its own process, so the sender and the stub do not share a GIL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "stubs.provider_stub", "--port", str(port)],
        cwd=PROJECT_ROOT,  # stubs/ is found from the project root, like every folder but carepath/
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, 5, "the provider stub")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def hold_back_queued_sms() -> int:
    """Set every queued SMS aside; returns how many are available to release."""
    with unit_of_work() as session:
        session.execute(
            update(Message)
            .where(Message.status == MessageStatus.QUEUED, Message.channel == MessageChannel.SMS)
            .values(status=MessageStatus.BLOCKED, status_reason=HELD_BACK)
        )
        return session.scalar(select(func.count()).where(Message.status_reason == HELD_BACK))


def release_sms(count: int) -> int:
    """Queue `count` of the held-back SMS again; returns how many were."""
    with unit_of_work() as session:
        ids = (
            select(Message.id)
            .where(Message.status == MessageStatus.BLOCKED, Message.status_reason == HELD_BACK)
            .order_by(Message.id)
            .limit(count)
        )
        return session.execute(
            update(Message)
            .where(Message.id.in_(ids.scalar_subquery()))
            .values(status=MessageStatus.QUEUED, status_reason=None)
        ).rowcount


def sender_settings(*, stub_url: str, per_second: int, concurrency: int) -> Settings:
    """Settings as the deployment reads them (the environment), pointed at the stub."""
    os.environ.update(
        {
            "CAREPATH_TWILIO_ACCOUNT_SID": "ACtest",
            "CAREPATH_TWILIO_AUTH_TOKEN": "test-token",
            "CAREPATH_TWILIO_BASE_URL": stub_url,
            "CAREPATH_SMS_PER_SECOND": str(per_second),
            "CAREPATH_SEND_CONCURRENCY": str(concurrency),
        }
    )
    reset_settings()
    return get_settings()


def set_rate_limit(name: str, per_second: int) -> None:
    """The SMS rate limit on the current Prefect server, as `make serve` sets it: `per_second` slots that
    decay at `per_second` a second. Made afresh: slots taken under an earlier rate would otherwise decay at
    this one. It must exist, or `rate_limit` lets everything through."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.delete_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            pass
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=name, limit=per_second, slot_decay_per_second=per_second)
        )
        made = client.read_global_concurrency_limit_by_name(name)
    if not (made.active and made.limit == per_second and made.active_slots == 0):
        raise RuntimeError(f"the SMS rate limit is not as set: {made}")


def send_sample(*, stub_url: str, count: int, per_second: int, concurrency: int) -> SendFigure:
    """Queue `count` SMS, then send them through the deployed path under a limit of `per_second`."""
    settings = sender_settings(stub_url=stub_url, per_second=per_second, concurrency=concurrency)
    set_rate_limit(settings.sms_rate_limit_name, per_second)
    if release_sms(count) < count:
        print(f"  (fewer than {count:,} queued SMS were left to send)")
    t = time.perf_counter()
    summary = drain_outbox_as_deployed(settings)
    return SendFigure(summary.sent, summary.failed, time.perf_counter() - t)


def drain_outbox_as_deployed(settings: Settings) -> SendSummary:
    """The call `send_queued_messages` makes (keyword arguments only, so it survives changes to the rest)."""
    return drain_outbox(
        settings=settings,
        channel=MessageChannel.SMS,
        batch_size=500,  # send_queued_messages' default, as the journey calls it
        rate_limit_name=settings.sms_rate_limit_name,
    )


def run_send_benchmark(
    *, sample: int, concurrency: list[int], measurable_rate: int, provider_sample: int
) -> None:
    """Print messages/s through the rate-limited path; needs a Prefect server (the current API URL)."""
    provider_rate = get_settings().sms_per_second  # before the samples below change it
    print(f"send: {hold_back_queued_sms():,} queued SMS held back, released a sample at a time")
    with stub_process() as stub_url:
        for n in concurrency:
            figure = send_sample(stub_url=stub_url, count=sample, per_second=measurable_rate, concurrency=n)
            print(
                f"send (drain_outbox, Prefect rate limit at {measurable_rate:,}/s): {figure.sent:,} SMS to the "
                f"Twilio stub at {figure.rate:,.0f} messages/s (concurrency {n}, {figure.failed} failed)"
            )
        if provider_sample:
            figure = send_sample(
                stub_url=stub_url, count=provider_sample, per_second=provider_rate, concurrency=concurrency[0]
            )
            print(
                f"send at the provider's rate (limit {provider_rate}/s): {figure.sent:,} SMS in "
                f"{figure.seconds:.1f} s = {figure.rate:.1f} messages/s (the first second's slots are free)"
            )
