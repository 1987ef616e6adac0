"""Email through SendGrid's official SDK."""

from __future__ import annotations

import json
import logging
import re
import socket
import urllib.error

from python_http_client.exceptions import HTTPError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.mail import CustomArg, Header, Mail

from carepath.channels.base import (
    OutcomeUnknown,
    OutgoingEmail,
    ProviderError,
    SendResult,
    retry_after_seconds,
)
from carepath.rules.messaging import is_transient


class _Redact(logging.Filter):
    """SendGrid's HTTP client logs each request at DEBUG: its headers (the API key among them) become
    `Bearer ***`, its payload (the customer's address and the message) is not logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("PAYLOAD:"):
            record.msg, record.args = "PAYLOAD: (not logged: the recipient's address and the message)", ()
        elif "Bearer " in message:
            record.msg, record.args = re.sub(r"Bearer [^'\"\s,}]+", "Bearer ***", message), ()
        return True


logging.getLogger("python_http_client.client").addFilter(_Redact())


class SendGridEmailSender:
    """Sends with `/v3/mail/send`; `host` points the SDK at another host (a local stub)."""

    provider = "sendgrid"

    def __init__(
        self, *, api_key: str, from_email: str, host: str | None = None, timeout: float = 10.0
    ) -> None:
        self._client = SendGridAPIClient(api_key=api_key, host=host or "https://api.sendgrid.com")
        self._client.client.timeout = timeout
        self._from = from_email

    def send_email(self, email: OutgoingEmail) -> SendResult:
        """Send one email; SendGrid answers 202 with the message id in X-Message-Id."""
        mail = Mail(
            from_email=self._from,
            to_emails=email.to,
            subject=email.subject,
            plain_text_content=email.text,
            html_content=email.html,
        )
        for key, value in {**email.custom_args, "carepath_key": email.idempotency_key}.items():
            mail.add_custom_arg(CustomArg(key, value))
        if email.message_id:  # a reply names it in In-Reply-To, which threads the reply onto its case
            mail.add_header(Header("Message-ID", email.message_id))
        try:
            response = self._client.send(mail)
        except HTTPError as exc:
            headers = exc.headers or {}
            raise ProviderError(
                provider=self.provider,
                reason=_sendgrid_reason(exc),
                transient=is_transient(http_status=exc.status_code),
                http_status=exc.status_code,
                retry_after=retry_after_seconds(headers.get("Retry-After"))
                if exc.status_code == 429
                else None,
            ) from exc
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, ConnectionRefusedError | socket.gaierror):  # the request never left
                raise ProviderError(
                    provider=self.provider, reason=f"not reached: {exc.reason}", transient=True
                ) from exc
            raise OutcomeUnknown(provider=self.provider, reason=_no_answer(exc)) from exc
        except Exception as exc:  # time-out, reset, an unreadable answer: the mail may have been taken
            raise OutcomeUnknown(provider=self.provider, reason=_no_answer(exc)) from exc
        headers = {k.lower(): v for k, v in dict(response.headers).items()}
        return SendResult(
            provider=self.provider, provider_message_id=headers.get("x-message-id"), status="sent"
        )


def _no_answer(exc: Exception) -> str:
    return f"no answer after the request left: {type(exc).__name__}: {exc}"[:500]


def _sendgrid_reason(exc: HTTPError) -> str:
    try:
        errors = json.loads(exc.body or b"{}").get("errors") or []
        if errors:
            return "; ".join(str(e.get("message")) for e in errors)[:500]
    except (ValueError, AttributeError):
        pass
    return f"HTTP {exc.status_code}"
