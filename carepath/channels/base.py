"""What every channel takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class SendResult:
    provider: str
    provider_message_id: str | None
    status: str = "sent"


class ProviderError(Exception):
    """A provider refused or did not answer; `transient` says whether trying again may help."""

    def __init__(
        self,
        *,
        provider: str,
        reason: str,
        transient: bool,
        http_status: int | None = None,
        code: int | None = None,
    ) -> None:
        super().__init__(f"{provider}: {reason}")
        self.provider = provider
        self.reason = reason
        self.transient = transient
        self.http_status = http_status
        self.code = code


class SmsSender(Protocol):
    provider: str

    def send_sms(self, sms: OutgoingSms) -> SendResult:
        """Hand one SMS to the provider; raise ProviderError when it is refused."""
        ...


class EmailSender(Protocol):
    provider: str

    def send_email(self, email: OutgoingEmail) -> SendResult:
        """Hand one email to the provider; raise ProviderError when it is refused."""
        ...
