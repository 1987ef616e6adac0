"""Outbound channels behind small protocols: Twilio and SendGrid through their SDKs, or a local outbox."""

from carepath.channels.base import (
    EmailSender,
    OutcomeUnknown,
    OutgoingEmail,
    OutgoingSms,
    ProviderError,
    SendResult,
    SmsSender,
)
from carepath.channels.factory import email_sender_from_settings, sms_sender_from_settings

__all__ = [
    "EmailSender",
    "OutcomeUnknown",
    "OutgoingEmail",
    "OutgoingSms",
    "ProviderError",
    "SendResult",
    "SmsSender",
    "email_sender_from_settings",
    "sms_sender_from_settings",
]
