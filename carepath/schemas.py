"""Shapes of inbound events, validated with pydantic (shared by the CLI, the flows and the receiver)."""

from __future__ import annotations

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
