"""What every channel takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class OutgoingSms:
    to: str
    body: str
    idempotency_key: str
    status_callback: str | None = None


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    text: str
    idempotency_key: str
    html: str | None = None
    # Echoed back by SendGrid's event webhook, so events find their message.
    custom_args: dict[str, str] = field(default_factory=dict)
    message_id: str | None = None  # the RFC 5322 Message-ID to send with (replies thread by it)


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str | None
    status: str = "sent"


class ProviderError(Exception):
    """The provider provably did not take the message: it refused it with a status, or the request never
    reached it (connection refused, DNS). `transient`: trying again at once may help (429, 5xx, no
    connection); `retry_after`: the seconds the provider asked us to wait (429's Retry-After)."""

    def __init__(
        self,
        *,
        provider: str,
        reason: str,
        transient: bool,
        http_status: int | None = None,
        code: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.transient = transient
        self.http_status = http_status
        self.code = code
        self.retry_after = retry_after


class OutcomeUnknown(Exception):
    """The request may have reached the provider but no status came back (read time-out, connection reset
    after the body left, an answer we could not read). The message may exist: never resend it blindly;
    look it up first (reconcile)."""

    def __init__(self, *, provider: str, reason: str) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's delay: seconds, or an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from datetime import UTC, datetime
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class SmsSender(Protocol):
    provider: str

    def send_sms(self, sms: OutgoingSms) -> SendResult:
        """Hand one SMS to the provider; ProviderError when it was not taken, OutcomeUnknown when no
        status came back."""
        ...

    def find_sent(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        """The message with this recipient and body the provider accepted since `since`, if any."""
        ...


class EmailSender(Protocol):
    provider: str

    def send_email(self, email: OutgoingEmail) -> SendResult:
        """Hand one email to the provider; ProviderError when it was not taken, OutcomeUnknown when no
        status came back."""
        ...
