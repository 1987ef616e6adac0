"""Shapes of inbound events, validated with pydantic (shared by the CLI, the flows and the receiver)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from carepath.rules.domains import normalise_email

# Unix times SendGrid may send (seconds, up to the year 2100): a larger number is no time at all.
LATEST_UNIX_TIME = 4_102_444_800


def _has_a_utc_time(value: datetime) -> datetime:
    """An aware time that exists in UTC (9999-12-31T23:00-05:00 does not: it would be in the year 10000)."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("the time is out of range once converted to UTC") from None
    return value


# A time with a zone, as every source must send it, that can be compared and stored.
Instant = Annotated[AwareDatetime, AfterValidator(_has_a_utc_time)]


class FaultIn(BaseModel):
    """A device fault: `{event_id, device_id, error_code, occurred_at, message?}`."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=128, description="The device's id for this event.")
    device_id: str = Field(min_length=1, max_length=64)
    error_code: int = Field(ge=0, le=1_000_000)
    occurred_at: Instant = Field(description="When the fault happened, with a time zone.")
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
    changed_at: Instant
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
    timestamp: int = Field(ge=0, le=LATEST_UNIX_TIME, description="Unix time of the event.")
    sg_message_id: str | None = None
    reason: str | None = None
    type: str | None = None
    status: str | None = None
    carepath_message_id: str | None = None
    carepath_key: str | None = None


class InboundEmailIn(BaseModel):
    """SendGrid Inbound Parse's multipart form: the raw MIME message (`email`, with "POST the raw, full MIME
    message" on) or its parsed parts (`headers`, `text`, `html`, `from`, `to`, `subject`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    email: str | None = Field(default=None, max_length=30_000_000)
    headers: str | None = None
    text: str | None = None
    html: str | None = None
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None
    subject: str | None = None

    @model_validator(mode="after")
    def _has_a_message(self) -> InboundEmailIn:
        if not self.email and not (self.headers and self.from_):
            raise ValueError("neither a raw message (email) nor its headers and sender (headers, from)")
        return self

    def raw_message(self) -> str:
        """The MIME message: as sent, or rebuilt from the parsed headers and the text (or html) part."""
        if self.email:
            return self.email
        head = (self.headers or "").strip().replace("\r\n", "\n")
        kept = "\n".join(
            line
            for line in head.split("\n")
            if not line.lower().startswith(("content-type:", "content-transfer-encoding:", "mime-version:"))
        )
        body, subtype = (self.text, "plain") if self.text else (self.html or "", "html")
        return f"{kept}\nMIME-Version: 1.0\nContent-Type: text/{subtype}; charset=utf-8\n\n{body}"


class WebshopOrderIn(BaseModel):
    """A web-shop order: `POST /webhooks/webshop/orders` or `carepath webshop-order PATH.json` (extra fields
    are ignored). The order id is the inbox event id: a resent order is stored, and qualified, once."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    order_id: str = Field(min_length=1, max_length=64, description="The shop's order id (unique).")
    email: str = Field(min_length=3, max_length=254, description="The buyer's email address.")
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    company: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=32)
    products: list[str] = Field(default_factory=list, max_length=500, description="Product codes bought.")

    @field_validator("email")
    @classmethod
    def _email_is_an_address(cls, value: str) -> str:
        normalise_email(value)  # ValueError → a validation error naming the field
        return value

    @property
    def event_id(self) -> str:
        return self.order_id


class PortalRegistrationIn(BaseModel):
    """A portal registration: `POST /webhooks/portal/registrations`. The email is kept normalised (trimmed,
    lower case, punycode domain). A password arrives only as its Argon2 hash: plain passwords never enter the
    inbox (without one the login exists and the person sets a password by the reset flow)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    event_id: str = Field(min_length=1, max_length=128, description="The portal's id for this registration.")
    email: str = Field(min_length=3, max_length=254)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(default=None, max_length=32, description="E.164, e.g. +306912345678.")
    language: str | None = Field(default=None, max_length=8)
    password_hash: str | None = Field(default=None, max_length=255, pattern=r"^\$argon2(id|i|d)\$")

    @field_validator("email")
    @classmethod
    def _normalised(cls, value: str) -> str:
        return normalise_email(value)  # ValueError → a 422 naming the field
