"""Small factories for arranging tests; each flushes so ids exist, and never commits."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session

from models import (
    Account,
    Case,
    CaseStatus,
    CaseStatusChange,
    Channel,
    Consent,
    ConsentStatus,
    Contact,
    Device,
    Entitlement,
    EntitlementChannel,
    MessageChannel,
    Priority,
    Product,
    Tier,
)

_seq = itertools.count(1)


def make_account(session: Session, *, tier: Tier = Tier.GOLD, domain: str | None = None) -> Account:
    n = next(_seq)
    account = Account(
        name=f"Account {n}",
        account_number=f"T-{n:05d}",
        tier=tier,
        email_domains=[domain or f"account{n}.example"],
    )
    session.add(account)
    session.flush()
    return account


def make_contact(
    session: Session,
    *,
    account: Account | None = None,
    phone: str | None = "+306912345678",
    sms_consent: ConsentStatus | None = ConsentStatus.OPTED_IN,
    language: str = "en",
    first_name: str = "Eleni",
) -> Contact:
    n = next(_seq)
    account = account or make_account(session)
    contact = Contact(
        first_name=first_name,
        last_name=f"Tester{n}",
        email=f"person{n}@{account.email_domains[0]}",
        phone=phone,
        language=language,
        account_id=account.id,
    )
    session.add(contact)
    session.flush()
    if sms_consent is not None:
        session.add(
            Consent(contact_id=contact.id, channel=MessageChannel.SMS, status=sms_consent, source="test")
        )
        session.flush()
    return contact


def make_device(
    session: Session,
    *,
    owner: Contact | None = None,
    device_id: str | None = None,
    product: Product | None = None,
) -> Device:
    n = next(_seq)
    owner = owner or make_contact(session)
    device = Device(
        device_id=device_id or f"DEV-T{n:06d}",
        owner_contact_id=owner.id,
        product_id=product.id if product else None,
    )
    session.add(device)
    session.flush()
    return device


def make_product(session: Session, *, sku: str = "THERMO-X", name: str = "Thermostat X") -> Product:
    product = Product(sku=sku, name=name)
    session.add(product)
    session.flush()
    return product


def make_entitlement(
    session: Session,
    *,
    account: Account,
    allocation: int = 15,
    channels: list[str] | None = None,
    channel_allocations: dict[str, int] | None = None,
    **fields: Any,
) -> Entitlement:
    """An entitlement for the current year; `channel_allocations` gives channels their own allocation,
    `fields` sets any other column (decrease_remaining_on, restrict_case_creation, state, dates…)."""
    year = datetime.now(UTC).year
    ent = Entitlement(
        name=fields.pop("name", f"Support {account.name}"),
        account_id=account.id,
        allocation=allocation,
        remaining=allocation,
        channels=channels if channels is not None else ["iot", "email", "phone"],
        **{"starts_on": date(year, 1, 1), "ends_on": date(year, 12, 31), **fields},
    )
    session.add(ent)
    session.flush()
    for channel, n in (channel_allocations or {}).items():
        session.add(EntitlementChannel(entitlement_id=ent.id, channel=channel, allocation=n, remaining=n))
    session.flush()
    return ent


def fault_event(
    device_id: str,
    error_code: Any,
    *,
    event_id: str | None = None,
    occurred_at: datetime | None = None,
    message: str | None = None,
) -> dict[str, Any]:
    n = next(_seq)
    return {
        "event_id": event_id or f"evt-{n}",
        "device_id": device_id,
        "error_code": error_code,
        "occurred_at": (occurred_at or datetime.now(UTC)).isoformat(),
        **({"message": message} if message else {}),
    }


def make_case(
    session: Session,
    *,
    contact: Contact | None = None,
    title: str = "Boiler pressure keeps dropping",
    origin: Channel = Channel.EMAIL,
    priority: Priority = Priority.NORMAL,
    owner_agent_id: int | None = None,
    entitlement_id: int | None = None,
) -> Case:
    """An active case with its first status-history row, for a new contact of a new (gold) account by default."""
    n = next(_seq)
    contact = contact or make_contact(session, account=make_account(session))
    case = Case(
        ticket_number=f"CAS-T{n:04d}-00001"[:20],
        title=title,
        account_id=contact.account_id,
        contact_id=contact.id,
        priority=priority,
        origin=origin,
        owner_agent_id=owner_agent_id,
        entitlement_id=entitlement_id,
        tracking_token=f"test-token-{n}-abcdefghijklmnopqrstuvwxyz",
    )
    session.add(case)
    session.flush()
    session.add(CaseStatusChange(case_id=case.id, to_status=CaseStatus.ACTIVE, source="test"))
    session.flush()
    return case
