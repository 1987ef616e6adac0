"""Email to case: an inbound email becomes a new case or an activity on the case it is about.

Read the email → is it about a case (ticket in the subject, or In-Reply-To/References naming a message of a case)
→ attach, or open a case (known sender or a new contact, entitlement if the mailbox requires one) → keep the
email as an activity → acknowledge a new case with its ticket number, never a machine's mail (no mail loops).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from functools import lru_cache
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from carepath.messages import render_acknowledgement_email
from carepath.rules.email_to_case import (
    MailboxRules,
    is_automatic,
    referenced_message_ids,
    sender_address,
    thread_decision,
    ticket_in_subject,
)
from carepath.rules.tickets import new_ticket_number, new_tracking_token
from carepath.settings import PROJECT_ROOT, Settings
from models import (
    Activity,
    ActivityDirection,
    ActivityState,
    ActivityType,
    Case,
    CaseStatus,
    CaseStatusChange,
    Channel,
    Contact,
    Message,
    MessageChannel,
    Priority,
    Queue,
)
from models.base import utcnow
from tasks.accounts import account_for_email
from tasks.entitlement_terms import decide_new_cases, record_new_case_terms
from tasks.messaging import queue_contact_email
from tasks.routing import route_case
from tasks.sla import start_kpis

ACK_STEP = "email_acknowledgement"
# Our outgoing emails carry Message-ID <carepath.{message id}@…>; a reply names it in In-Reply-To/References.
_OUR_MESSAGE_ID = re.compile(r"^carepath\.(\d+)@")
_LARGEST_ID = 2**31 - 1  # message ids are 32-bit integers: a larger number in a reference names none


class EmailRefused(Exception):
    """The mailbox's rules refuse this email (unknown sender, no entitlement); nothing was created."""


@dataclass(frozen=True)
class EmailOutcome:
    ticket: str
    case_created: bool
    queue: str | None
    acknowledged: bool
    activity_id: int
    automatic: str | None = None  # why no acknowledgement was sent, for a machine's email
    acknowledgement_id: int | None = None  # the queued acknowledgement's message id

    def as_json(self) -> dict:
        return {
            "ticket": self.ticket,
            "case_created": self.case_created,
            "queue": self.queue,
            "acknowledged": self.acknowledged,
        }


@lru_cache(maxsize=1)
def mailbox_rules() -> dict[str, MailboxRules]:
    """The mailboxes' rules, kept as data (data/mailboxes.json), by address (lower case)."""
    rows = json.loads((PROJECT_ROOT / "data" / "mailboxes.json").read_text(encoding="utf-8"))
    return {r["address"].lower(): MailboxRules(**{**r, "address": r["address"].lower()}) for r in rows}


def rules_for(to_header: str | None) -> MailboxRules:
    """The rules of the mailbox the email was sent to; the first mailbox's when none matches."""
    boxes = mailbox_rules()
    for address in re.findall(r"[\w.+-]+@[\w.-]+", (to_header or "").lower()):
        if address in boxes:
            return boxes[address]
    return next(iter(boxes.values()))


def parse_email(raw: bytes) -> EmailMessage:
    """A MIME email (an .eml file, a Maildir message, SendGrid's raw field) with modern header handling."""
    return BytesParser(policy=policy.default).parsebytes(raw)  # type: ignore[return-value]


def _text_of(msg: EmailMessage) -> str:
    part = msg.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        text = part.get_content()
    except (LookupError, UnicodeError):  # an unknown charset: keep what can be read
        text = part.get_payload(decode=True).decode("utf-8", "replace")
    if part.get_content_type() == "text/html":
        text = re.sub(r"<[^>]+>", " ", text)
    return text.strip()


def header(msg: EmailMessage, name: str) -> str | None:
    """A header's value, decoded; as it came when the standard library's parser fails on it (it raises
    IndexError or HeaderParseError on some malformed values, e.g. `Message-ID: <>`)."""
    try:
        value = msg.get(name)
    except Exception:  # the parser's failures on malformed input are many and undocumented
        value = next((v for k, v in msg.raw_items() if k.lower() == name.lower()), None)
    return None if value is None else str(value)


def _clean_header(value: object) -> str:
    """One line, no control characters (a header-injection attempt stays text)."""
    return re.sub(r"[\x00-\x1f\x7f]+", " ", str(value or "")).strip()


def email_event_id(msg: EmailMessage, raw: bytes) -> str:
    """The email's Message-ID, or a digest of its bytes when it has none: a re-delivery is recognised."""
    mid = _clean_header(header(msg, "Message-ID")).strip("<>")
    return mid[:200] if mid else "sha256:" + hashlib.sha256(raw).hexdigest()


def find_case_for(
    session: Session,
    *,
    subject: str,
    in_reply_to: str | None,
    references: str | None,
    sender: str | None = None,
) -> Case | None:
    """The case an email is about: a message it answers, else its ticket number in the subject — the
    subject only from someone of the case's customer (a ticket number is easy to guess or copy; a stranger
    naming one must not write into another customer's case)."""
    for ref in referenced_message_ids(in_reply_to, references):
        ours = _OUR_MESSAGE_ID.match(ref)
        if ours and int(ours.group(1)) > _LARGEST_ID:  # no message of ours: a forged or mangled reference
            continue
        case_id = (
            session.scalar(select(Message.case_id).where(Message.id == int(ours.group(1))))
            if ours
            else session.scalar(select(Activity.case_id).where(Activity.rfc_message_id == ref))
        )
        if case_id is not None:
            return session.get(Case, case_id)
    ticket = ticket_in_subject(subject)
    if ticket:
        case = session.scalars(select(Case).where(Case.ticket_number == ticket)).first()
        if case is not None and sender is not None and _speaks_for(session, case, sender):
            return case
    return None


def _speaks_for(session: Session, case: Case, sender: str) -> bool:
    """The sender is the case's contact, another contact of its account, or at one of the account's domains."""
    if case.contact_id is not None:
        email = session.scalar(select(Contact.email).where(Contact.id == case.contact_id))
        if email and email.strip().lower() == sender:
            return True
    if case.account_id is None:
        return False
    if account_for_email(session=session, address=sender) == case.account_id:
        return True
    return (
        session.scalar(
            select(Contact.id)
            .where(Contact.account_id == case.account_id, func.lower(Contact.email) == sender)
            .limit(1)
        )
        is not None
    )


def ingest_email(
    *, session: Session, raw: bytes, settings: Settings, now: datetime | None = None
) -> EmailOutcome:
    """Turn one email into a case or an activity on its case; acknowledge new cases of people's email."""
    now = now or utcnow()
    msg = parse_email(raw)
    event_id = email_event_id(msg, raw)
    seen = session.scalars(select(Activity).where(Activity.rfc_message_id == event_id)).first()
    if seen is not None:  # the same email again (a re-delivery, a replayed file): nothing new
        case = session.get(Case, seen.case_id)
        return EmailOutcome(case.ticket_number, False, _queue_name(session, case), False, seen.id)

    subject = _clean_header(header(msg, "Subject"))[:300] or "(no subject)"
    sender = sender_address(_clean_header(header(msg, "From")))
    headers = {k: _clean_header(header(msg, k)) for k in msg.keys()}
    automatic = is_automatic(headers, sender, msg.get_content_type())
    mailbox = rules_for(_clean_header(header(msg, "To")))
    body = _text_of(msg)

    case = find_case_for(
        session,
        subject=subject,
        in_reply_to=header(msg, "In-Reply-To"),
        references=header(msg, "References"),
        sender=sender,
    )
    if case is not None:
        session.refresh(case, with_for_update=True)
    created = case is None or (
        thread_decision(
            status=case.status.value,
            resolved_at=case.resolved_at,
            now=now,
            reopen_within_hours=mailbox.reopen_within_hours,
        )
        == "new"
    )
    if created:
        case = _open_case(session, sender=sender, subject=subject, body=body, mailbox=mailbox, now=now)
    activity = Activity(
        case_id=case.id,
        type=ActivityType.EMAIL,
        subject=subject,
        body=body[:20_000],
        state=ActivityState.COMPLETED,
        direction=ActivityDirection.INBOUND,
        closed_at=now,
        created_at=now,
        rfc_message_id=event_id,
    )
    session.add(activity)
    session.flush()
    ack = _acknowledge(session, case, settings, now) if created and automatic is None else None
    return EmailOutcome(
        case.ticket_number, created, _queue_name(session, case), ack is not None, activity.id, automatic, ack
    )


def _open_case(
    session: Session, *, sender: str | None, subject: str, body: str, mailbox: MailboxRules, now: datetime
) -> Case:
    if sender is None:
        raise EmailRefused("the email has no readable From address")
    contact = session.scalars(
        select(Contact)
        .where(func.lower(Contact.email) == sender, Contact.active.is_(True))
        .order_by(Contact.id)
    ).first()
    if contact is None:
        if mailbox.known_senders_only:
            raise EmailRefused(
                f"{sender} is not a known contact and {mailbox.address} takes known senders only"
            )
        contact = _new_contact(session, sender)
    # The entitlement, and whether a spent one restricting case creation refuses the case (the error
    # names the entitlement, the channel and what remains).
    in_force, decided = decide_new_cases(
        session=session,
        cases=[(sender, Channel.EMAIL.value, None, contact.account_id, contact.id)],
        on=now.date(),
    )
    terms = decided[sender]
    if terms.refusal is not None:
        raise EmailRefused(terms.refusal)
    entitlement = terms.entitlement_id
    if mailbox.require_entitlement and entitlement is None:
        raise EmailRefused(
            f"{mailbox.address} requires an entitlement covering email: none is active for {sender}"
        )
    case = Case(
        ticket_number=new_ticket_number(),
        title=subject,
        description=body[:4000] or None,
        account_id=contact.account_id,
        contact_id=contact.id,
        priority=Priority(mailbox.priority),
        origin=Channel.EMAIL,
        status=CaseStatus.ACTIVE,
        status_reason="in_progress",
        entitlement_id=entitlement,
        tracking_token=new_tracking_token(),
        created_at=now,
        updated_at=now,
    )
    session.add(case)
    session.flush()
    record_new_case_terms(
        session=session, opened=[(case.id, Channel.EMAIL.value, terms)], in_force=in_force, at=now
    )
    session.add(
        CaseStatusChange(
            case_id=case.id, to_status=CaseStatus.ACTIVE, source=f"email:{mailbox.address}", changed_at=now
        )
    )
    route_case(session=session, case=case)
    start_kpis(session=session, case=case, at=now)
    return case


def _new_contact(session: Session, address: str) -> Contact:
    """A contact for an unknown sender, linked to the account whose domain the address has (if one does)."""
    local = address.partition("@")[0]
    account_id = account_for_email(session=session, address=address)
    contact = Contact(
        first_name=local.split(".")[0].capitalize() or local,
        last_name="",
        email=address,
        account_id=account_id,
        language="en",
    )
    session.add(contact)
    session.flush()
    return contact


def _acknowledge(session: Session, case: Case, settings: Settings, now: datetime) -> int | None:
    """Queue the "we have your case" email with its ticket number (once per case): its message id, or None
    when it could not be queued (no contact, or the contact opted out of email)."""
    contact = session.get(Contact, case.contact_id) if case.contact_id else None
    if contact is None:
        return None
    subject, body = render_acknowledgement_email(
        language=contact.language,
        first_name=contact.first_name,
        ticket_number=case.ticket_number,
        title=case.title,
        tracking_url=settings.tracking_url(case.ticket_number, case.tracking_token),
    )
    message_id, _ = queue_contact_email(
        session=session,
        case_id=case.id,
        contact_id=contact.id,
        step=ACK_STEP,
        subject=subject,
        body=body,
        template="email/acknowledgement",
        now=now,
    )
    if message_id is not None:  # kept on the case like every email; automatic: never a first response
        session.add(
            Activity(
                case_id=case.id,
                type=ActivityType.EMAIL,
                subject=subject[:300],
                body=body[:20_000],
                state=ActivityState.COMPLETED,
                direction=ActivityDirection.OUTBOUND,
                automatic=True,
                message_id=message_id,
                created_at=now,
                closed_at=now,
            )
        )
    return message_id


def _queue_name(session: Session, case: Case) -> str | None:
    return session.scalar(select(Queue.name).where(Queue.id == case.queue_id)) if case.queue_id else None


def read_emails(path: Path) -> list[tuple[bytes, str | None]]:
    """The email in an .eml file, or every unread message of a Maildir folder (new/, and cur/ without the
    Seen flag), oldest first, each with its Maildir key (None for a file). OSError (missing, unreadable) and
    ValueError (a folder that is not a Maildir) reach the caller."""
    import mailbox

    if not path.is_dir():
        return [(path.read_bytes(), None)]
    if not all((path / sub).is_dir() for sub in ("new", "cur", "tmp")):
        raise ValueError(f"{path} is a folder but not a Maildir (it needs new/, cur/ and tmp/)")
    box = mailbox.Maildir(path, create=False)
    unread = [k for k in sorted(box.keys()) if "S" not in box.get_message(k).get_flags()]
    return [(box.get_bytes(k), k) for k in unread]  # Maildir keys begin with the delivery time


def mark_seen(path: Path, key: str) -> None:
    """Move a handled Maildir message to cur/ with the Seen flag, as a mail client would: the next run skips it."""
    import mailbox

    box = mailbox.Maildir(path, create=False)
    message = box.get_message(key)
    message.set_subdir("cur")
    message.add_flag("S")
    box[key] = message


@dataclass
class EmailRun:
    outcomes: list[EmailOutcome]
    refused: list[str]
    claimed: int = 0  # posted emails taken from the inbox (drain only)


def email_in(*, path: Path, settings: Settings) -> EmailRun:
    """Every email at `path` (an .eml file or a Maildir) into cases, each in its own transaction; then the
    acknowledgements go out through the outbox (exactly once: one per case, by its idempotency key)."""
    from carepath.db import unit_of_work
    from tasks.messaging import drain_outbox

    run = EmailRun([], [])
    for raw, key in read_emails(path):
        try:
            with unit_of_work() as session:
                run.outcomes.append(ingest_email(session=session, raw=raw, settings=settings))
        except EmailRefused as exc:  # refused for good (the same email would be refused again): seen too
            run.refused.append(str(exc))
        if key is not None:  # only after its transaction: a crash before leaves it unread, to be read again
            mark_seen(path, key)
    acks = [o.acknowledgement_id for o in run.outcomes if o.acknowledgement_id is not None]
    if acks:
        drain_outbox(settings=settings, channel=MessageChannel.EMAIL, ids=acks)
    return run


def drain_inbound(*, session: Session, settings: Settings, limit: int) -> EmailRun:
    """One batch of emails SendGrid posted (inbox source sendgrid, kind inbound) into cases; a refused or
    unreadable email fails alone, with its reason, kept for replay."""
    from tasks.inbox import claim_pending, mark_failed, mark_processed

    run, done, errors = EmailRun([], []), [], {}
    events = claim_pending(session=session, source="sendgrid", kind="inbound", limit=limit)
    run.claimed = len(events)
    for event in events:
        try:
            with session.begin_nested():
                run.outcomes.append(
                    ingest_email(session=session, raw=str(event.payload["raw"]).encode(), settings=settings)
                )
            done.append(event.id)
        except EmailRefused as exc:
            run.refused.append(str(exc))
            errors[event.id] = f"refused: {exc}"
        except (KeyError, ValueError, UnicodeError) as exc:
            errors[event.id] = f"unreadable email: {exc}"[:500]
    mark_processed(session=session, ids=done)
    mark_failed(session=session, errors=errors)
    return run
