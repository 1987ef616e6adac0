"""SMS through Twilio's official SDK.

Twilio's Messages create takes no idempotency key, so what a failure proves decides what happens next:
a status (4xx, 429, 5xx) or a connection that was never made proves the message was not taken
(ProviderError); no status after the request left — a read time-out, a reset, an answer we cannot read —
proves nothing (OutcomeUnknown), and the message is looked up (`find_sent`) before any resend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

import aiohttp
import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError

from carepath.channels.base import OutcomeUnknown, OutgoingSms, ProviderError, SendResult, retry_after_seconds
from carepath.rules.delivery import TWILIO_STATUS, advance_status
from carepath.rules.messaging import TWILIO_PERMANENT_ERRORS, is_transient

# The Retry-After of the last 429 this thread or task received (the SDK's exception carries no headers).
_retry_after: ContextVar[float | None] = ContextVar("twilio_retry_after", default=None)

# Twilio's list filters on the sent date with its own clock: look a little before our send started.
LOOKUP_CLOCK_SKEW = timedelta(minutes=5)


class TwilioSmsSender:
    """Sends with `client.messages.create`; `base_url` points the SDK at another host (a local stub)."""

    provider = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        from_number: str,
        base_url: str | None = None,
        timeout: float = 10.0,
        pool_size: int = 32,
    ) -> None:
        http = _RetryAfterHttpClient(timeout=timeout)
        # The SDK sizes its pool for https:// only; a stub on http:// needs the same.
        for prefix in ("https://", "http://"):
            http.session.mount(prefix, HTTPAdapter(pool_connections=4, pool_maxsize=pool_size))
        self._client = Client(account_sid, auth_token, http_client=http)
        if base_url:
            self._client.api.base_url = base_url.rstrip("/")
        self._from = from_number
        self._credentials = (account_sid, auth_token, base_url, timeout)

    def send_sms(self, sms: OutgoingSms) -> SendResult:
        """Create the message at Twilio; map what a failure proves onto ProviderError or OutcomeUnknown."""
        _retry_after.set(None)
        try:
            created = self._client.messages.create(
                to=sms.to, from_=self._from, body=sms.body, status_callback=sms.status_callback
            )
        except TwilioRestException as exc:
            raise self._rest_error(exc) from exc
        except requests.RequestException as exc:
            if _never_connected(exc):
                raise self._not_reached(exc) from exc
            raise OutcomeUnknown(provider=self.provider, reason=_no_answer(exc)) from exc
        except Exception as exc:  # an answer we could not read: the request left
            raise OutcomeUnknown(provider=self.provider, reason=_no_answer(exc)) from exc
        return SendResult(provider=self.provider, provider_message_id=created.sid, status="sent")

    def find_sent(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        """Look the message up at Twilio: our To and From, sent since the attempt began, the same body (it
        carries the ticket's unique tracking link). Errors propagate: an unanswered look-up settles nothing."""
        found = self._client.messages.list(to=to, from_=self._from, date_sent_after=since - LOOKUP_CLOCK_SKEW)
        for message in found:
            if message.body == body:
                status = advance_status("sent", TWILIO_STATUS.get(str(message.status or "").lower(), "sent"))
                return SendResult(provider=self.provider, provider_message_id=message.sid, status=status)
        return None

    @asynccontextmanager
    async def async_client(self) -> AsyncIterator[Client]:
        """A client on the SDK's async HTTP client (aiohttp), for many sends in flight from one thread."""
        sid, token, base_url, timeout = self._credentials
        http = _TimedAsyncHttpClient(timeout=timeout)
        client = Client(sid, token, http_client=http)
        if base_url:
            client.api.base_url = base_url.rstrip("/")
        try:
            yield client
        finally:
            await http.close()

    async def send_sms_async(self, sms: OutgoingSms, client: Client) -> SendResult:
        """`send_sms` through an async client from `async_client()`."""
        _retry_after.set(None)
        try:
            created = await client.messages.create_async(
                to=sms.to, from_=self._from, body=sms.body, status_callback=sms.status_callback
            )
        except TwilioRestException as exc:
            raise self._rest_error(exc) from exc
        except aiohttp.ClientConnectorError as exc:  # refused, DNS: the request never left
            raise self._not_reached(exc) from exc
        except Exception as exc:  # time-out, reset, an unreadable answer: the request may have been taken
            raise OutcomeUnknown(provider=self.provider, reason=_no_answer(exc)) from exc
        return SendResult(provider=self.provider, provider_message_id=created.sid, status="sent")

    def _rest_error(self, exc: TwilioRestException) -> ProviderError:
        code = int(exc.code) if exc.code is not None else None
        reason = TWILIO_PERMANENT_ERRORS.get(code or 0) or (exc.msg or "").strip() or f"HTTP {exc.status}"
        return ProviderError(
            provider=self.provider,
            reason=reason,
            transient=is_transient(http_status=exc.status, code=code),
            http_status=exc.status,
            code=code,
            retry_after=_retry_after.get() if exc.status == 429 else None,
        )

    def _not_reached(self, exc: Exception) -> ProviderError:
        return ProviderError(
            provider=self.provider, reason=f"not reached: {type(exc).__name__}: {exc}"[:300], transient=True
        )


def _never_connected(exc: requests.RequestException) -> bool:
    """True when requests never got a connection (refused, DNS, connect time-out): nothing was sent."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    cause = exc.args[0] if exc.args else None
    return isinstance(exc, requests.ConnectionError) and (
        isinstance(cause, MaxRetryError) and isinstance(cause.reason, ConnectTimeoutError)
    )


def _no_answer(exc: Exception) -> str:
    return f"no answer after the request left: {type(exc).__name__}: {exc}"[:500]


class _RetryAfterHttpClient(TwilioHttpClient):
    """The SDK's client, keeping a 429's Retry-After for the error that follows."""

    def request(self, *args, **kwargs):
        response = super().request(*args, **kwargs)
        if response.status_code == 429:
            _retry_after.set(retry_after_seconds((response.headers or {}).get("Retry-After")))
        return response


class _TimedAsyncHttpClient(AsyncTwilioHttpClient):
    """The SDK's async client hands aiohttp `timeout=None` (no limit) unless the call gives one; this one
    applies the client's own time-out to every request, as the sync client does, and keeps a 429's
    Retry-After."""

    async def request(self, *args, timeout: float | None = None, **kwargs):
        response = await super().request(*args, timeout=timeout or self.timeout, **kwargs)
        if response.status_code == 429:
            _retry_after.set(retry_after_seconds((response.headers or {}).get("Retry-After")))
        return response
