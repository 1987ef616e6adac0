"""Portal registration (the merge plugin): load what the rules need, apply the decision, record it.

The portal creates a contact for every registration and then runs the merge; here that temporary contact is
written only when the decision keeps something of it (merged into an existing contact: deactivated and marked
merged-into for the weekly delete; refused or for review: kept deactivated; linked to an account: it is the new
contact). "Already registered" writes no contact at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

import idna
from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from carepath.rules.messaging import is_e164
from carepath.rules.public_domains import load_public_domains
from carepath.rules.registration import (
    ALREADY_REGISTERED_MESSAGE,
    MERGED_FIELDS,
    ExistingContact,
    RegistrationDecision,
    decide_registration,
    is_public_domain,
    merge_fields,
    render_refusal_email,
    render_review_notice,
)
from carepath.schemas import PortalRegistrationIn, describe_validation_error
from carepath.settings import Settings
from models import (
    Account,
    Contact,
    ContactMergeConflict,
    Message,
    MessageChannel,
    MessageStatus,
    PortalRegistration,
)
from models.base import utcnow
from tasks.accounts import account_known_by_domain
from tasks.inbox import claim_pending, mark_failed, mark_processed, store_events
from tasks.messaging import insert_messages, outbox_row


@dataclass(frozen=True)
class RegistrationResult:
    outcome: str
    contact_id: int | None
    account: str | None  # the account number
    registration_id: int

    def as_json(self) -> dict:
        return {"outcome": self.outcome, "contact_id": self.contact_id, "account": self.account}

    @property
    def message(self) -> str | None:
        return ALREADY_REGISTERED_MESSAGE if self.outcome == "already_registered" else None


def email_spellings(email: str) -> list[str]:
    """A normalised address and, for an internationalised domain, its Unicode spelling (contacts written
    before normalisation may hold either)."""
    local, _, domain = email.rpartition("@")
    forms = [email]
    if "xn--" in domain:
        try:
            forms.append(f"{local}@{idna.decode(domain)}")
        except idna.IDNAError:
            pass
    return forms


def login_holder(*, session: Session, email: str) -> ExistingContact | None:
    """The contact that already signs in with this (normalised) email, active or not."""
    row = session.execute(
        select(Contact.id, Contact.account_id).where(func.lower(Contact.portal_login) == email).limit(1)
    ).first()
    return ExistingContact(row.id, True, row.account_id) if row else None


def contact_with_email(*, session: Session, email: str) -> tuple[ExistingContact | None, str | None]:
    """The contact that signs in with this email (active or not), else the oldest active contact with it
    (compared case-insensitively), and its account number: one statement, two index lookups."""
    rows = session.execute(
        select(Contact.id, Contact.portal_login, Contact.account_id, Account.account_number)
        .outerjoin(Account, Account.id == Contact.account_id)
        .where(
            or_(
                func.lower(Contact.portal_login) == email,
                and_(func.lower(Contact.email).in_(email_spellings(email)), Contact.active.is_(True)),
            )
        )
        .order_by(Contact.id)
        .limit(20)
    ).all()
    if not rows:
        return None, None
    holder = [r for r in rows if r.portal_login is not None and r.portal_login.lower() == email]
    row = (holder or rows)[0]
    return ExistingContact(row.id, row.portal_login is not None, row.account_id), row.account_number


def register(
    *,
    session: Session,
    registration: PortalRegistrationIn,
    settings: Settings,
    inbox_event_id: int | None = None,
    now: datetime | None = None,
) -> RegistrationResult:
    """Decide and apply one registration; a registration already decided (same inbox event) is answered
    again unchanged. Never commits."""
    if inbox_event_id is not None:
        done = session.scalar(
            select(PortalRegistration).where(PortalRegistration.inbox_event_id == inbox_event_id)
        )
        if done is not None:
            return _result(session, done)
    now = now or utcnow()
    email = registration.email  # normalised by the schema
    domain = email.rpartition("@")[2]
    existing, number = contact_with_email(session=session, email=email)
    publics = load_public_domains(settings.public_email_domains_file)
    known = None
    if existing is None and not is_public_domain(domain, publics):
        known = account_known_by_domain(session=session, domain=domain)
    decision = decide_registration(existing, domain, publics, known)
    record = PortalRegistration(
        inbox_event_id=inbox_event_id,
        email=email,
        first_name=registration.first_name,
        last_name=registration.last_name,
        outcome=decision.outcome,
        account_id=decision.account_id,
        created_at=now,
    )
    if decision.outcome == "merged":
        if not _merge(session, record, decision, registration, now):
            number = None  # lost a race: the winner's account is looked up
    elif decision.outcome == "linked_to_account":
        _link(session, record, decision, registration, now)
        number = None
    elif decision.creates_contact:  # refused or for review: kept, deactivated, without a login
        contact = _registration_contact(registration, account_id=None, active=False, login=False)
        session.add(contact)
        session.flush()
        record.contact_id = contact.id
    else:  # already registered: nothing created
        record.contact_id = decision.contact_id
    session.add(record)
    session.flush()
    if decision.notify_registrant or decision.notify_support:
        _notify(session, record, decision, settings, now)
    return _result(session, record, number)


def _registration_contact(
    registration: PortalRegistrationIn, *, account_id: int | None, active: bool, login: bool
) -> Contact:
    return Contact(
        first_name=registration.first_name,
        last_name=registration.last_name,
        email=registration.email,
        phone=registration.phone,
        language=registration.language or "en",
        account_id=account_id,
        active=active,
        portal_login=registration.email if login else None,
        portal_password_hash=registration.password_hash if login else None,
    )


def _merge(
    session: Session,
    record: PortalRegistration,
    decision: RegistrationDecision,
    registration: PortalRegistrationIn,
    now: datetime,
) -> bool:
    """The existing contact gains the login (only if it still has none: a racing registration may have won),
    fields it lacks are filled, differing ones logged; the portal's contact is deactivated, merged into it.
    False when the race was lost (the registration is then already registered)."""
    target = decision.contact_id
    assert target is not None
    current = _grant_login(session, target, registration)
    if current is None:  # lost the race: the other registration's login stands
        record.outcome, record.contact_id = "already_registered", target
        return False
    fill, conflicts = merge_fields(current, {f: getattr(registration, f) for f in MERGED_FIELDS})
    if fill:
        session.execute(
            update(Contact)
            .where(Contact.id == target)
            .values(**fill, **_phone_check(fill))
            .execution_options(synchronize_session=False)
        )
    temporary = _registration_contact(registration, account_id=decision.account_id, active=False, login=False)
    temporary.merged_into_id, temporary.merged_at = target, now
    record.contact_id, record.temporary_contact = target, temporary
    session.add(record)
    session.flush()
    session.add_all(
        ContactMergeConflict(
            contact_id=target,
            registration_id=record.id,
            field=c.field,
            kept_value=c.kept[:254],
            offered_value=c.offered[:254],
            created_at=now,
        )
        for c in conflicts
    )
    return True


def _phone_check(fill: dict[str, str]) -> dict[str, object]:
    """What the ORM keeps beside a phone it writes (models/customers.py), for a phone filled by UPDATE."""
    if "phone" not in fill:
        return {}
    return {"phone_checked": fill["phone"], "phone_valid": is_e164(fill["phone"])}


def _grant_login(
    session: Session, contact_id: int, registration: PortalRegistrationIn
) -> dict[str, str | None] | None:
    """Give the contact the login unless it has one, returning the fields a merge compares; None when another
    registration got there first. The conditional UPDATE waits for a racing writer and re-reads the row; the
    unique index on lower(portal_login) stops a second contact taking the same login."""
    try:
        with session.begin_nested():
            row = session.execute(
                update(Contact)
                .where(Contact.id == contact_id, Contact.portal_login.is_(None))
                .values(portal_login=registration.email, portal_password_hash=registration.password_hash)
                .returning(*(getattr(Contact, f) for f in MERGED_FIELDS))
                .execution_options(synchronize_session=False)
            ).first()
    except IntegrityError:
        return None
    return dict(zip(MERGED_FIELDS, row, strict=True)) if row else None


def _link(
    session: Session,
    record: PortalRegistration,
    decision: RegistrationDecision,
    registration: PortalRegistrationIn,
    now: datetime,
) -> None:
    """A new contact of the account, with portal access; if a racing registration took the login first,
    this one is already registered."""
    contact = _registration_contact(registration, account_id=decision.account_id, active=True, login=True)
    contact.created_at = now
    try:
        with session.begin_nested():
            session.add(contact)
            session.flush()
    except IntegrityError:
        winner = login_holder(session=session, email=registration.email)
        record.outcome = "already_registered"
        record.contact_id = winner.id if winner else None
        record.account_id = winner.account_id if winner else None
        return
    record.contact_id = contact.id


def _notify(
    session: Session,
    record: PortalRegistration,
    decision: RegistrationDecision,
    settings: Settings,
    now: datetime,
) -> None:
    """Through the outbox, once per registration (its id in the key): the polite email, the internal notice."""
    rows = []
    if decision.notify_registrant:
        subject, body = render_refusal_email(first_name=record.first_name, email=record.email)
        rows.append(
            outbox_row(
                key=f"registration:{record.id}:refused",
                channel=MessageChannel.EMAIL,
                case_id=None,
                contact_id=record.contact_id,
                journey_step="registration_refused",
                to_address=record.email,
                subject=subject,
                body=body,
                template="email/registration_refused",
                blocked=None,
                now=now,
            )
        )
    if decision.notify_support:
        subject, body = render_review_notice(
            outcome=record.outcome,
            email=record.email,
            name=f"{record.first_name} {record.last_name}",
            contact_id=record.contact_id,
        )
        rows.append(
            outbox_row(
                key=f"registration:{record.id}:notice",
                channel=MessageChannel.EMAIL,
                case_id=None,
                contact_id=None,  # to support, not to the customer: not on the customer's timeline
                journey_step="registration_notice",
                to_address=settings.portal_review_email,
                subject=subject,
                body=body,
                template="email/registration_notice",
                blocked=None,
                now=now,
            )
        )
    insert_messages(session=session, rows=rows)


def _result(session: Session, record: PortalRegistration, number: str | None = None) -> RegistrationResult:
    if number is None and record.account_id is not None:
        number = session.scalar(select(Account.account_number).where(Account.id == record.account_id))
    return RegistrationResult(record.outcome, record.contact_id, number, record.id)


@dataclass
class RegistrationRun:
    """One batch of portal registrations: each outcome, and the events that failed."""

    claimed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    errors: dict[int, str] = field(default_factory=dict)


def drain_registrations(*, session: Session, settings: Settings, limit: int) -> RegistrationRun:
    """Claim pending portal registrations and decide each (a failure is recorded on its own event). Never
    commits."""
    run = RegistrationRun()
    events = claim_pending(session=session, source="portal", kind="registration", limit=limit)
    run.claimed = len(events)
    done = []
    for event in events:
        try:
            with session.begin_nested():
                result = register(
                    session=session,
                    registration=PortalRegistrationIn.model_validate(event.payload),
                    settings=settings,
                    inbox_event_id=event.id,
                )
        except ValidationError as exc:
            run.errors[event.id] = describe_validation_error(exc).replace(
                "invalid fault", "invalid registration"
            )
            continue
        run.outcomes[result.outcome] = run.outcomes.get(result.outcome, 0) + 1
        done.append(event.id)
    mark_failed(session=session, errors=run.errors)
    mark_processed(session=session, ids=done)
    return run


REGISTRATION_STEPS = ("registration_refused", "registration_notice")


def queued_registration_emails(*, session: Session, registration_id: int | None = None) -> list[int]:
    """The ids of registration emails waiting in the outbox (one registration's, or all)."""
    stmt = select(Message.id).where(
        Message.status == MessageStatus.QUEUED,
        Message.case_id.is_(None),
        Message.journey_step.in_(REGISTRATION_STEPS),
    )
    if registration_id is not None:
        stmt = stmt.where(
            Message.idempotency_key.in_(
                [f"registration:{registration_id}:refused", f"registration:{registration_id}:notice"]
            )
        )
    return list(session.scalars(stmt.order_by(Message.id)))


def submit_registration(
    *, session: Session, registration: PortalRegistrationIn, settings: Settings
) -> RegistrationResult:
    """What the webhook and the flow do for one registration, in the caller's transaction: store it in the
    inbox (a resend of the same event id is answered as before) and decide it now."""
    stored = store_events(
        session=session,
        source="portal",
        kind="registration",
        events=[(registration.event_id, registration.model_dump(mode="json"))],
    )[0]
    result = register(
        session=session, registration=registration, settings=settings, inbox_event_id=stored.inbox_id
    )
    mark_processed(session=session, ids=[stored.inbox_id])
    return result
