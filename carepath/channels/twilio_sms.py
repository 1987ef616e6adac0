"""SMS through Twilio's official SDK."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioException, TwilioRestException
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

    def send_sms(self, sms: OutgoingSms) -> SendResult:
        """Create the message at Twilio; map its errors onto ProviderError."""
        try:
            created = self._client.messages.create(
                to=sms.to, from_=self._from, body=sms.body, status_callback=sms.status_callback
            )
        except TwilioRestException as exc:
            code = int(exc.code) if exc.code is not None else None
            reason = TWILIO_PERMANENT_ERRORS.get(code or 0) or (exc.msg or "").strip() or f"HTTP {exc.status}"
            raise ProviderError(
                provider=self.provider,
                reason=reason,
                transient=is_transient(http_status=exc.status, code=code),
                http_status=exc.status,
                code=code,
            ) from exc
        except (requests.RequestException, TwilioException) as exc:
            # No answer (time-out, reset): the provider may not have the message; worth another try.
            raise ProviderError(
                provider=self.provider, reason=f"no answer: {type(exc).__name__}", transient=True
            ) from exc
        return SendResult(provider=self.provider, provider_message_id=created.sid, status="sent")
