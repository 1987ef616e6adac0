"""Signature checks for every webhook source. Pure functions: no FastAPI, no database."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from functools import lru_cache

from twilio.request_validator import RequestValidator


class SignatureError(Exception):
    """The request is not provably from the source it claims (401)."""


def sign_carepath(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Carepath-Signature` value for a body: `sha256=<hex>` of HMAC-SHA256 over `{timestamp}.{body}`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def verify_carepath(
    *,
    secret: str | None,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    tolerance: int,
    now: float | None = None,
) -> None:
    """Check our own sources' HMAC and that the timestamp is within `tolerance` seconds (no replays)."""
    if not secret:
        raise SignatureError("no webhook secret is configured for this source")
    if not signature or not timestamp:
        raise SignatureError("missing X-Carepath-Signature or X-Carepath-Timestamp header")
    sent_at = _fresh_timestamp(timestamp, "X-Carepath-Timestamp", tolerance, now)
    if not hmac.compare_digest(sign_carepath(secret, sent_at, body), signature.strip()):
        raise SignatureError("signature does not match the body")


def _fresh_timestamp(timestamp: str, header: str, tolerance: int, now: float | None) -> int:
    """The header's Unix time, refused when it is outside the window (a replay, or a skewed clock)."""
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError(f"{header} is not a Unix time") from None
    if abs((now if now is not None else time.time()) - sent_at) > tolerance:
        raise SignatureError(f"timestamp outside the {tolerance}-second window (replayed or clock skew)")
    return sent_at


def verify_twilio(
    *, auth_token: str | None, url: str, params: Mapping[str, str], signature: str | None
) -> None:
    """Twilio's `X-Twilio-Signature` (HMAC-SHA1 over the public URL and the sorted form fields)."""
    if not auth_token:
        raise SignatureError("no Twilio auth token is configured")
    if not signature:
        raise SignatureError("missing X-Twilio-Signature header")
    if not RequestValidator(auth_token).validate(url, dict(params), signature):
        raise SignatureError("X-Twilio-Signature does not match (check the public URL Twilio calls)")


def verify_sendgrid(
    *,
    public_key: str | None,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    tolerance: int,
    now: float | None = None,
) -> None:
    """SendGrid's signed event webhook: ECDSA (P-256, SHA-256) over `timestamp + body`, within the window."""
    if not public_key:
        raise SignatureError("no SendGrid webhook verification key is configured")
    if not signature or not timestamp:
        raise SignatureError("missing X-Twilio-Email-Event-Webhook-Signature or -Timestamp header")
    _fresh_timestamp(timestamp, "X-Twilio-Email-Event-Webhook-Timestamp", tolerance, now)
    try:
        valid = _sendgrid_verifier(public_key).verify_signature(body.decode("utf-8"), signature, timestamp)
    except (ValueError, UnicodeDecodeError):
        valid = False
    if not valid:
        raise SignatureError("SendGrid signature does not match the body")


@lru_cache(maxsize=4)
def _sendgrid_verifier(public_key: str):
    from sendgrid.helpers.eventwebhook import EventWebhook

    return EventWebhook(public_key)


def verify_basic_auth(*, expected: str | None, authorization: str | None) -> None:
    """HTTP Basic credentials (`user:password`), for a provider that signs nothing (SendGrid Inbound Parse
    posts to https://user:password@host/…). Compared in constant time."""
    import base64
    import binascii

    if not expected:
        raise SignatureError("no credentials are configured for this source")
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise SignatureError("missing HTTP Basic credentials")
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("malformed HTTP Basic credentials") from None
    if not hmac.compare_digest(given, expected.encode()):
        raise SignatureError("HTTP Basic credentials do not match")
