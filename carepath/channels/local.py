"""The local default channel: no network; the message row is the outbox, and the text goes to the log."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime

from carepath.channels.base import OutgoingEmail, OutgoingSms, SendResult
from carepath.masking import mask_address

logger = logging.getLogger("carepath.outbox")


def _local_id(key: str) -> str:
    return "local-" + hashlib.sha256(key.encode()).hexdigest()[:24]


class LocalSmsSender:
    provider = "local"

    def send_sms(self, sms: OutgoingSms) -> SendResult:
        """Log the SMS instead of sending it."""
        logger.info("SMS to %s: %s", mask_address(sms.to), sms.body)
        return SendResult(provider=self.provider, provider_message_id=_local_id(sms.idempotency_key))

    def find_sent(self, *, to: str, body: str, since: datetime) -> SendResult | None:
        """The local channel always answers, so it never leaves an outcome to look up."""
        return None


class LocalEmailSender:
    provider = "local"

    def send_email(self, email: OutgoingEmail) -> SendResult:
        """Log the email instead of sending it."""
        logger.info("Email to %s: %s\n%s", mask_address(email.to), email.subject, email.text)
        return SendResult(provider=self.provider, provider_message_id=_local_id(email.idempotency_key))
