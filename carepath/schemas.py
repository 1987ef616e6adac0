"""Shapes of inbound events, validated with pydantic (shared by the CLI, the flows and the receiver)."""

from __future__ import annotations

from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError


class FaultIn(BaseModel):
    """A device fault: `{event_id, device_id, error_code, occurred_at, message?}`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=128, description="The device's id for this event.")
    device_id: str = Field(min_length=1, max_length=64)
    error_code: int = Field(ge=0, le=1_000_000)
    occurred_at: AwareDatetime = Field(description="When the fault happened, with a time zone.")
    message: str | None = Field(default=None, max_length=500)


def describe_validation_error(exc: ValidationError) -> str:
    """One line naming each bad field and why, for inbox errors and 422 answers."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "invalid fault: " + "; ".join(parts)


class CaseStatusIn(BaseModel):
    """A case's status changed in another system: `POST /webhooks/cases/status`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=128)
    ticket_number: str = Field(min_length=1, max_length=20)
    status: Literal["active", "resolved", "cancelled"]
    status_reason: str | None = Field(default=None, max_length=64)
    resolution: str | None = Field(default=None, max_length=4000, description="Shown to the customer.")
    time_spent_minutes: int | None = Field(default=None, ge=0, le=100_000)
    changed_at: AwareDatetime
    source_system: str | None = Field(default=None, max_length=64)


class TwilioStatusIn(BaseModel):
    """Twilio's message status callback (form fields)."""

    model_config = ConfigDict(extra="allow")

    MessageSid: str = Field(min_length=2, max_length=64)
    MessageStatus: str = Field(min_length=1, max_length=32)
    ErrorCode: str | None = Field(default=None, max_length=16)
    To: str | None = None
    From: str | None = None


class TwilioInboundIn(BaseModel):
    """An SMS a customer sent us (Twilio's inbound message webhook, form fields)."""

    model_config = ConfigDict(extra="allow")

    MessageSid: str = Field(min_length=2, max_length=64)
    From: str = Field(min_length=1, max_length=32)
    To: str | None = None
    Body: str = Field(default="", max_length=1600)


class SendGridEventIn(BaseModel):
    """One event of SendGrid's event webhook (custom args arrive as top-level fields)."""

    model_config = ConfigDict(extra="allow")

    sg_event_id: str = Field(min_length=1, max_length=128)
    event: str = Field(min_length=1, max_length=32)
    email: str | None = None
    timestamp: int
    sg_message_id: str | None = None
    reason: str | None = None
    type: str | None = None
    status: str | None = None
    carepath_message_id: str | None = None
    carepath_key: str | None = None
