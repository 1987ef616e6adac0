"""Signing test requests the way each source signs them."""

from __future__ import annotations

import base64
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twilio.request_validator import RequestValidator

from receiver.signatures import sign_carepath

IOT_SECRET = "iot-test-secret"
CASES_SECRET = "cases-test-secret"
PORTAL_SECRET = "portal-test-secret"
TWILIO_TOKEN = "test-token"


def carepath_headers(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "X-Carepath-Timestamp": str(ts),
        "X-Carepath-Signature": sign_carepath(secret, ts, body),
        "Content-Type": "application/json",
    }


def twilio_headers(url: str, form: dict[str, str], token: str = TWILIO_TOKEN) -> dict[str, str]:
    return {
        "X-Twilio-Signature": RequestValidator(token).compute_signature(url, form),
        "Content-Type": "application/x-www-form-urlencoded",
    }


class SendGridKeys:
    """A P-256 key pair like the one SendGrid signs its event webhook with."""

    def __init__(self) -> None:
        self._private = ec.generate_private_key(ec.SECP256R1())
        der = self._private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public_key = base64.b64encode(der).decode()

    def headers(self, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        }
