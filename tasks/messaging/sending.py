"""Sending a wave of claimed messages: each message's outcome is captured on its own.

Only refusals that prove the provider did not take the message (429 or 5xx with a status, no connection)
are retried at once, with tenacity (exponential backoff, or the provider's Retry-After). Anything else
after the request left — a time-out, a reset, an answer we cannot read, an unexpected exception — makes
the outcome unknown: recorded as such, looked up later, never resent here.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from tenacity import AsyncRetrying, Retrying, retry_if_exception, stop_after_attempt
from tenacity.wait import wait_base

from carepath.channels import EmailSender, OutgoingEmail, OutgoingSms, ProviderError, SendResult, SmsSender
from carepath.rules.messaging import one_line
from models import MessageChannel
from tasks.messaging.claims import ClaimedMessage

# Longest Retry-After honoured within one send; a provider asking for more gets the message next wave.
MAX_RETRY_AFTER_SECONDS = 60.0


@dataclass(frozen=True)
class Outcome:
    """What became of one message: sent (result), refused (error), or unknown (why)."""

    message: ClaimedMessage
    attempts: int
    result: SendResult | None = None
    error: ProviderError | None = None
    unknown: str | None = None


@dataclass(frozen=True)
class SendPolicy:
    status_callback: str | None
    max_attempts: int
    backoff_seconds: float
    concurrency: int
    from_email: str | None = None


class _ProviderWait(wait_base):
    """The provider's Retry-After when it gave one, else exponential backoff from `first`."""

    def __init__(self, first: float) -> None:
        self.first = first

    def __call__(self, retry_state) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        asked = getattr(exc, "retry_after", None)
        if asked is not None:
            return min(asked, MAX_RETRY_AFTER_SECONDS)
        return self.first * 2 ** (retry_state.attempt_number - 1)


def _retry_policy(policy: SendPolicy) -> dict:
    return {
        "retry": retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.transient),
        "stop": stop_after_attempt(policy.max_attempts),
        "wait": _ProviderWait(policy.backoff_seconds),
        "reraise": True,
    }


def _outgoing(m: ClaimedMessage, policy: SendPolicy) -> OutgoingSms | OutgoingEmail:
    if m.channel is MessageChannel.SMS:
        return OutgoingSms(m.to_address, m.body, m.idempotency_key, policy.status_callback)
    return OutgoingEmail(
        to=m.to_address,
        subject=one_line(m.subject),
        text=m.body,
        idempotency_key=m.idempotency_key,
        # SendGrid echoes custom args in its events: how an unknown outcome is settled for email.
        custom_args={"carepath_message_id": str(m.id)},
        message_id=outgoing_message_id(m.id, policy.from_email),
    )


def outgoing_message_id(message_id: int, from_email: str | None) -> str:
    """The Message-ID of our email `message_id`: email to case finds the case of a reply by it."""
    domain = (from_email or "carepath.invalid").rpartition("@")[2] or "carepath.invalid"
    return f"<carepath.{message_id}@{domain}>"


def _failed(m: ClaimedMessage, exc: Exception, attempts: int) -> Outcome:
    if isinstance(exc, ProviderError):
        return Outcome(m, attempts, error=exc)
    reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
    return Outcome(m, attempts, unknown=str(reason)[:500])


def deliver_one(
    message: ClaimedMessage, *, sms_sender: SmsSender, email_sender: EmailSender, policy: SendPolicy
) -> Outcome:
    """Send one message; retry only refusals that prove it was not taken."""
    outgoing = _outgoing(message, policy)
    attempts = 0
    try:
        for attempt in Retrying(**_retry_policy(policy)):
            with attempt:
                attempts = attempt.retry_state.attempt_number
                if isinstance(outgoing, OutgoingSms):
                    result = sms_sender.send_sms(outgoing)
                else:
                    result = email_sender.send_email(outgoing)
    except Exception as exc:  # each message's outcome on its own: one bad send never loses the others
        return _failed(message, exc, attempts)
    return Outcome(message, attempts, result=result)


def deliver(
    messages: list[ClaimedMessage], *, sms_sender: SmsSender, email_sender: EmailSender, policy: SendPolicy
) -> list[Outcome]:
    """Send a wave with up to `policy.concurrency` requests in flight; one outcome per message, always.

    SMS go through the sender's async client when it has one (one thread, many requests in flight: the
    Twilio SDK's async client sends several times faster than its sync client in threads); the rest, and
    every sender without one, go through a thread pool.
    """
    sms = [m for m in messages if m.channel is MessageChannel.SMS]
    outcomes: list[Outcome] = []
    if sms and hasattr(sms_sender, "send_sms_async") and not _loop_running():
        outcomes = asyncio.run(_deliver_sms_async(sms, sms_sender, policy))
        messages = [m for m in messages if m.channel is not MessageChannel.SMS]

    def one(m: ClaimedMessage) -> Outcome:
        return deliver_one(m, sms_sender=sms_sender, email_sender=email_sender, policy=policy)

    if policy.concurrency <= 1 or len(messages) <= 1:
        return outcomes + [one(m) for m in messages]
    with ThreadPoolExecutor(max_workers=min(policy.concurrency, len(messages))) as pool:
        return outcomes + list(pool.map(one, messages))  # `one` never raises


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _deliver_sms_async(messages: list[ClaimedMessage], sender, policy: SendPolicy) -> list[Outcome]:
    """The async twin of `deliver_one` for a wave of SMS: same retries, many in flight."""
    gate = asyncio.Semaphore(policy.concurrency)
    async with sender.async_client() as client:

        async def one(m: ClaimedMessage) -> Outcome:
            sms = _outgoing(m, policy)
            attempts = 0
            async with gate:
                try:
                    async for attempt in AsyncRetrying(**_retry_policy(policy)):
                        with attempt:
                            attempts = attempt.retry_state.attempt_number
                            result = await sender.send_sms_async(sms, client)
                except Exception as exc:
                    return _failed(m, exc, attempts)
            return Outcome(m, attempts, result=result)

        gathered = await asyncio.gather(*(one(m) for m in messages), return_exceptions=True)
    # `one` catches every Exception; a BaseException that escaped it (cancellation) still leaves an outcome.
    return [
        o if isinstance(o, Outcome) else Outcome(m, 1, unknown=f"{type(o).__name__}: {o}"[:500])
        for m, o in zip(messages, gathered, strict=True)
    ]
