"""The one place where settings choose a channel implementation."""

from __future__ import annotations

from carepath.channels.base import EmailSender, SmsSender
from carepath.channels.local import LocalEmailSender, LocalSmsSender
from carepath.settings import Settings


def sms_sender_from_settings(settings: Settings) -> SmsSender:
    """Twilio when an account SID and token are configured, else the local outbox."""
    if settings.twilio_account_sid and settings.twilio_auth_token:
        from carepath.channels.twilio_sms import TwilioSmsSender

        return TwilioSmsSender(
            account_sid=settings.twilio_account_sid,
            auth_token=settings.twilio_auth_token.get_secret_value(),
            from_number=settings.twilio_from_number,
            base_url=settings.twilio_base_url,
            timeout=settings.send_timeout_seconds,
            pool_size=max(8, settings.send_concurrency),
        )
    return LocalSmsSender()


def email_sender_from_settings(settings: Settings) -> EmailSender:
    """SendGrid when an API key is configured, else the local outbox."""
    if settings.sendgrid_api_key:
        from carepath.channels.sendgrid_email import SendGridEmailSender

        return SendGridEmailSender(
            api_key=settings.sendgrid_api_key.get_secret_value(),
            from_email=settings.sendgrid_from_email,
            host=settings.sendgrid_host,
            timeout=settings.send_timeout_seconds,
        )
    return LocalEmailSender()
