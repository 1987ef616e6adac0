"""SMS through Twilio's official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from carepath.channels.base import OutgoingSms, ProviderError, SendResult
from carepath.rules.messaging import TWILIO_PERMANENT_ERRORS, is_transient


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
        http = TwilioHttpClient(timeout=timeout)
        # The SDK sizes its pool for https:// only; a stub on http:// needs the same.
        for prefix in ("https://", "http://"):
            http.session.mount(prefix, HTTPAdapter(pool_connections=4, pool_maxsize=pool_size))
        self._client = Client(account_sid, auth_token, http_client=http)
        if base_url:
            self._client.api.base_url = base_url.rstrip("/")
        self._from = from_number
        self._credentials = (account_sid, auth_token, base_url, timeout)

    def send_sms(self, sms: OutgoingSms) -> SendResult:
        """Create the message at Twilio; map its errors onto ProviderError."""
        try:
            created = self._client.messages.create(
                to=sms.to, from_=self._from, body=sms.body, status_callback=sms.status_callback
            )
        except TwilioRestException as exc:
            raise self._rest_error(exc) from exc
        except (requests.RequestException, TwilioException) as exc:
            # No answer (time-out, reset): the provider may not have the message; worth another try.
            raise ProviderError(
                provider=self.provider, reason=f"no answer: {type(exc).__name__}", transient=True
            ) from exc
        return SendResult(provider=self.provider, provider_message_id=created.sid, status="sent")

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
        try:
            created = await client.messages.create_async(
                to=sms.to, from_=self._from, body=sms.body, status_callback=sms.status_callback
            )
        except TwilioRestException as exc:
            raise self._rest_error(exc) from exc
        except (aiohttp.ClientError, TimeoutError, TwilioException) as exc:
            raise ProviderError(
                provider=self.provider, reason=f"no answer: {type(exc).__name__}", transient=True
            ) from exc
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
        )


class _TimedAsyncHttpClient(AsyncTwilioHttpClient):
    """The SDK's async client hands aiohttp `timeout=None` (no limit) unless the call gives one; this one
    applies the client's own time-out to every request, as the sync client does."""

    async def request(self, *args, timeout: float | None = None, **kwargs):
        return await super().request(*args, timeout=timeout or self.timeout, **kwargs)
