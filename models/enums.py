"""The domain's vocabularies, shared by models, rules and flows."""

from __future__ import annotations

import enum


class Tier(enum.StrEnum):
    GOLD = "gold"
    SILVER = "silver"
    STANDARD = "standard"


class Channel(enum.StrEnum):
    """How a case came in (Dynamics' case origin)."""

    PHONE = "phone"
    EMAIL = "email"
    WEB = "web"
    FACEBOOK = "facebook"
    TWITTER = "twitter"
    IOT = "iot"


class Priority(enum.StrEnum):
    CRITICAL = "critical"
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


class CaseStatus(enum.StrEnum):
    ACTIVE = "active"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"


class ActivityType(enum.StrEnum):
    EMAIL = "email"
    PHONE_CALL = "phone_call"
    TASK = "task"
    SMS = "sms"
    NOTE = "note"


class ActivityState(enum.StrEnum):
    """Dynamics' activity states: open, completed, or cancelled (closed without being done)."""

    OPEN = "open"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class ActivityDirection(enum.StrEnum):
    INBOUND = "inbound"  # from the customer
    OUTBOUND = "outbound"  # to the customer


class EntitlementState(enum.StrEnum):
    DRAFT = "draft"
    WAITING = "waiting"  # its start date is still to come
    ACTIVE = "active"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class DecreaseRemainingOn(enum.StrEnum):
    """When a case uses one term of its entitlement (Dynamics' "decrease remaining on")."""

    CASE_CREATION = "case_creation"
    CASE_RESOLUTION = "case_resolution"


class KpiState(enum.StrEnum):
    IN_PROGRESS = "in_progress"
    NEARING_NONCOMPLIANCE = "nearing_noncompliance"
    SUCCEEDED = "succeeded"
    NONCOMPLIANT = "noncompliant"
    PAUSED = "paused"
    CANCELLED = "cancelled"


class MessageChannel(enum.StrEnum):
    SMS = "sms"
    EMAIL = "email"


class MessageStatus(enum.StrEnum):
    QUEUED = "queued"
    SENDING = "sending"
    UNKNOWN = (
        "unknown"  # the request left and no answer came back: settled by reconcile, never resent blindly
    )
    SENT = "sent"
    DELIVERED = "delivered"
    UNDELIVERED = "undelivered"
    FAILED = "failed"
    BOUNCED = "bounced"
    DROPPED = "dropped"
    BLOCKED = "blocked"  # by consent or an unusable address; never handed to a provider


class ConsentStatus(enum.StrEnum):
    OPTED_IN = "opted_in"
    OPTED_OUT = "opted_out"


class InboxState(enum.StrEnum):
    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"
    REJECTED = "rejected"


class LeadState(enum.StrEnum):
    NEW = "new"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"
