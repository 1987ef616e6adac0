"""Service terms and routing: entitlements, queues, routing rules, agents, SLAs, knowledge, goals."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, str_enum, utcnow
from models.enums import Channel, DecreaseRemainingOn, EntitlementState, KpiState, Tier


class Entitlement(Base):
    """A contract granting a number of cases over a period on given channels.

    `remaining` is the total left; a channel with its own allocation (EntitlementChannel) also counts down
    its own. Every change of either is explained by a row of EntitlementLedger."""

    __tablename__ = "entitlement"
    _repr_label = "name"
    __table_args__ = (Index("ix_entitlement_customer_state", "account_id", "state"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("account.id"))
    # Indexed: the weekly delete asks, for every merged contact, whether an entitlement still names it.
    contact_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"), index=True)
    starts_on: Mapped[date]
    ends_on: Mapped[date]
    allocation: Mapped[int]  # cases granted
    remaining: Mapped[int]
    channels: Mapped[list[str]] = mapped_column(default=list)  # Channel values; empty = every channel
    product_ids: Mapped[list[str]] = mapped_column(default=list)  # product SKUs; empty = every product
    restrict_case_creation: Mapped[bool] = mapped_column(default=False)
    decrease_remaining_on: Mapped[DecreaseRemainingOn] = mapped_column(
        str_enum(DecreaseRemainingOn, "decrease_remaining_on"),
        default=DecreaseRemainingOn.CASE_RESOLUTION,
        server_default=DecreaseRemainingOn.CASE_RESOLUTION.value,
    )
    state: Mapped[EntitlementState] = mapped_column(
        str_enum(EntitlementState, "entitlement_state"), default=EntitlementState.ACTIVE
    )
    sla_id: Mapped[int | None] = mapped_column(ForeignKey("sla.id"))


class EntitlementChannel(Base):
    """A channel with its own allocation: a case on it uses a term of this and of the entitlement's total.
    Covered channels without a row share the total."""

    __tablename__ = "entitlement_channel"
    __table_args__ = (UniqueConstraint("entitlement_id", "channel"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id", ondelete="CASCADE"))
    channel: Mapped[Channel] = mapped_column(str_enum(Channel, "entitlement_channel"))
    allocation: Mapped[int]
    remaining: Mapped[int]


class EntitlementLedger(Base):
    """One change of an entitlement's remaining terms and why: a case used or gave back a term, no term
    was left, the state or the allocation changed. `remaining_after` is the total left after it."""

    __tablename__ = "entitlement_ledger"
    __table_args__ = (Index("ix_entitlement_ledger_entitlement", "entitlement_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id", ondelete="CASCADE"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("support_case.id", ondelete="SET NULL"))
    channel: Mapped[str | None] = mapped_column(String(32))  # set when the channel's own allocation moved
    change: Mapped[int]
    remaining_after: Mapped[int]
    channel_remaining_after: Mapped[int | None]
    reason: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class EntitlementUse(Base):
    """One term of an entitlement held by a case (from its creation or resolution, as the entitlement
    says); `returned_at` when the case gave it back. `channel`: the channel whose own allocation it took.

    At most one open use per case (a partial unique index): however often a resolution is repeated or
    raced by two workers, a case holds one term at a time."""

    __tablename__ = "entitlement_use"
    __table_args__ = (
        Index(
            "uq_entitlement_use_open_per_case",
            "case_id",
            unique=True,
            sqlite_where=text("returned_at IS NULL"),
            postgresql_where=text("returned_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entitlement_id: Mapped[int] = mapped_column(ForeignKey("entitlement.id"), index=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("support_case.id", ondelete="CASCADE"))
    used_at: Mapped[datetime] = mapped_column(default=utcnow)
    returned_at: Mapped[datetime | None]
    status_change_id: Mapped[int | None]
    channel: Mapped[str | None] = mapped_column(String(32))


class Queue(Base):
    __tablename__ = "queue"
    _repr_label = "name"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str | None] = mapped_column(String(300))
    # Told when a case in this queue breaches an SLA (none: the CAREPATH_SLA_ESCALATION_EMAIL address).
    manager_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))


class QueueItem(Base):
    __tablename__ = "queue_item"
    __table_args__ = (UniqueConstraint("queue_id", "case_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id"))
    case_id: Mapped[int] = mapped_column(ForeignKey("support_case.id", ondelete="CASCADE"), index=True)
    worked_by_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    entered_at: Mapped[datetime] = mapped_column(default=utcnow)
    picked_at: Mapped[datetime | None]  # when an agent took the case; None while it waits


class RoutingRuleSet(Base):
    __tablename__ = "routing_rule_set"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    active: Mapped[bool] = mapped_column(default=True)


class RoutingRule(Base):
    """An ordered condition → queue; conditions are data, e.g. {"tier": "gold", "origin": "iot"}."""

    __tablename__ = "routing_rule"
    __table_args__ = (UniqueConstraint("rule_set_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rule_set_id: Mapped[int] = mapped_column(ForeignKey("routing_rule_set.id", ondelete="CASCADE"))
    position: Mapped[int]
    conditions: Mapped[dict[str, Any]] = mapped_column(default=dict)
    queue_id: Mapped[int] = mapped_column(ForeignKey("queue.id"))


class Agent(Base):
    """A service agent: skills with a proficiency each (1–5), and how many open cases they can hold."""

    __tablename__ = "agent"
    _repr_label = "name"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    email: Mapped[str] = mapped_column(String(254), unique=True)
    skills: Mapped[dict[str, Any]] = mapped_column(default=dict)  # skill → proficiency, e.g. {"el": 5}
    capacity: Mapped[int] = mapped_column(default=10)
    active: Mapped[bool] = mapped_column(default=True)


class BusinessCalendar(Base):
    __tablename__ = "business_calendar"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    country: Mapped[str | None] = mapped_column(String(2))  # ISO 3166: its public holidays close the clock
    # {"mon": ["08:00", "18:00"], …}; a missing day is closed. Empty = around the clock.
    hours: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Holiday(Base):
    __tablename__ = "holiday"
    __table_args__ = (UniqueConstraint("calendar_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    calendar_id: Mapped[int] = mapped_column(ForeignKey("business_calendar.id", ondelete="CASCADE"))
    day: Mapped[date]
    name: Mapped[str] = mapped_column(String(100))


class Sla(Base):
    __tablename__ = "sla"
    _repr_label = "name"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    applies_to_tier: Mapped[Tier | None] = mapped_column(str_enum(Tier, "sla_tier"))
    # Priority values the SLA applies to; empty: every priority.
    applies_to_priorities: Mapped[list[str]] = mapped_column(default=list, server_default=text("'[]'"))
    calendar_id: Mapped[int | None] = mapped_column(ForeignKey("business_calendar.id"))
    pause_on_hold: Mapped[bool] = mapped_column(default=True)


class SlaKpi(Base):
    """One KPI of an SLA: e.g. first response within 15 minutes, warn after 10."""

    __tablename__ = "sla_kpi"
    __table_args__ = (UniqueConstraint("sla_id", "kpi"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sla_id: Mapped[int] = mapped_column(ForeignKey("sla.id", ondelete="CASCADE"))
    kpi: Mapped[str] = mapped_column(String(32))  # "first_response" | "resolve_by"
    minutes: Mapped[int]
    warn_after_minutes: Mapped[int]
    warning_action: Mapped[str | None] = mapped_column(String(64))  # e.g. "email_owner"
    failure_action: Mapped[str | None] = mapped_column(String(64))  # e.g. "email_manager"


class KpiInstance(Base):
    __tablename__ = "kpi_instance"
    __table_args__ = (
        UniqueConstraint("case_id", "sla_kpi_id"),
        Index("ix_kpi_instance_state_due", "state", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("support_case.id", ondelete="CASCADE"))
    sla_kpi_id: Mapped[int] = mapped_column(ForeignKey("sla_kpi.id"))
    state: Mapped[KpiState] = mapped_column(str_enum(KpiState, "kpi_state"), default=KpiState.IN_PROGRESS)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    warning_at: Mapped[datetime]
    due_at: Mapped[datetime]
    paused_at: Mapped[datetime | None]
    paused_minutes: Mapped[int] = mapped_column(default=0)
    succeeded_at: Mapped[datetime | None]
    failed_at: Mapped[datetime | None]


class KnowledgeArticle(Base):
    __tablename__ = "knowledge_article"
    _repr_label = "title"

    id: Mapped[int] = mapped_column(primary_key=True)
    article_number: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    content: Mapped[str] = mapped_column(Text)
    keywords: Mapped[list[str]] = mapped_column(default=list)
    product_id: Mapped[int | None] = mapped_column(ForeignKey("product.id"))
    language: Mapped[str] = mapped_column(String(8), default="en")
    published: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Times sent to a customer from a case. Full-text search structures: migration 0008 (database only).
    usage_count: Mapped[int] = mapped_column(default=0, server_default="0")


class CaseArticle(Base):
    """A knowledge article sent to the customer from a case."""

    __tablename__ = "case_article"
    __table_args__ = (UniqueConstraint("case_id", "article_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("support_case.id", ondelete="CASCADE"))
    article_id: Mapped[int] = mapped_column(ForeignKey("knowledge_article.id"))
    message_id: Mapped[int | None] = mapped_column(ForeignKey("message.id"))
    sent_at: Mapped[datetime] = mapped_column(default=utcnow)


class Goal(Base):
    """A KPI target over a period, for one agent, one team (a queue) or everyone: cases resolved, open cases,
    SLA compliance %, median first response (carepath/rules/kpis.py says what each means and which way is
    better). `actual` is refreshed by the daily KPI report (and `carepath goals --refresh`)."""

    __tablename__ = "goal"
    __table_args__ = (
        # One goal per metric, period and owner; "everyone" (no owner) too, which a plain unique constraint
        # would not hold (NULLs differ there).
        Index(
            "uq_goal_metric_period_owner",
            "metric",
            "period_start",
            "period_end",
            text("coalesce(owner_agent_id, 0)"),
            text("coalesce(owner_queue_id, 0)"),
            unique=True,
        ),
        CheckConstraint("owner_agent_id IS NULL OR owner_queue_id IS NULL", name="one_owner"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    metric: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[date]
    period_end: Mapped[date]
    target: Mapped[float]
    actual: Mapped[float | None]
    owner_agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id"))
    owner_queue_id: Mapped[int | None] = mapped_column(ForeignKey("queue.id"))  # a team's goal
    computed_at: Mapped[datetime | None]
    description: Mapped[str | None] = mapped_column(Text)
