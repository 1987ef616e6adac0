"""A customer at a glance, for a ticket or an email: who they are, the case, their recent cases, the timeline of
activities and messages (with delivery status), entitlement remaining and SLA state."""

from __future__ import annotations

import phonenumbers
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from models import Account, Case, Contact, Entitlement, EntitlementState
from tasks.case_view import case_summary
from tasks.entitlements import entitlement_report
from tasks.timeline import timeline

RECENT_CASES = 5
TIMELINE_ENTRIES = 50


class UnknownCustomer(Exception):
    """No case has that ticket number, or no contact has that email."""


def customer_summary(*, session: Session, key: str) -> dict:
    """The summary for a ticket number or a contact's email (an address with @)."""
    key = key.strip()
    if "@" in key:
        contact = _contact_by_email(session, key)
        if contact is None:
            raise UnknownCustomer(f"no contact with email {key}")
        case = session.scalars(
            select(Case).where(Case.contact_id == contact.id).order_by(Case.created_at.desc(), Case.id.desc())
        ).first()
    else:
        case = session.scalars(select(Case).where(Case.ticket_number == key)).one_or_none()
        if case is None:
            raise UnknownCustomer(f"no case {key} (a ticket number, or a contact's email)")
        contact = session.get(Contact, case.contact_id) if case.contact_id else None
    account_id = case.account_id if case is not None and case.account_id else contact and contact.account_id
    account = session.get(Account, account_id) if account_id else None
    detail = case_summary(session=session, case=case) if case is not None else None
    return {
        "customer": _customer(contact, account),
        "case": detail,
        "recent_cases": _recent_cases(session, contact, account, case),
        # A ticket's timeline is its case's; an email's is the person's across their cases.
        "timeline": timeline(session=session, key=key, limit=TIMELINE_ENTRIES)["timeline"],
        "entitlement": _entitlement(session, account, case),
        "sla": detail["sla"] if detail else [],
    }


def _contact_by_email(session: Session, email: str) -> Contact | None:
    """The contact with that email; of several, the active one that is not merged away, then the newest."""
    return session.scalars(
        select(Contact)
        .where(func.lower(Contact.email) == email.lower())
        .order_by(Contact.merged_into_id.is_not(None), Contact.active.is_(False), Contact.id.desc())
    ).first()


def _customer(contact: Contact | None, account: Account | None) -> dict:
    """The person and their company, where they are (from the phone number) and how to reach them."""
    country = None
    if contact is not None and contact.phone:
        try:
            country = phonenumbers.region_code_for_number(phonenumbers.parse(contact.phone))
        except phonenumbers.NumberParseException:
            country = None
    return {
        "contact": {
            "id": contact.id,
            "name": contact.full_name,
            "active": contact.active,
            "language": contact.language,
            "merged_into": contact.merged_into_id,
        }
        if contact is not None
        else None,
        "account": {"number": account.account_number, "name": account.name, "tier": account.tier.value}
        if account is not None
        else None,
        "location": {"country": country, "time_zone": contact.time_zone if contact is not None else None},
        "email": contact.email if contact is not None else None,
        "phones": [contact.phone] if contact is not None and contact.phone else [],
    }


def _recent_cases(
    session: Session, contact: Contact | None, account: Account | None, case: Case | None
) -> list:
    """The person's other cases (else the company's), newest first."""
    if contact is not None:
        whose = Case.contact_id == contact.id
    elif account is not None:
        whose = Case.account_id == account.id
    else:
        return []
    stmt = select(Case).where(whose).order_by(Case.created_at.desc(), Case.id.desc()).limit(RECENT_CASES)
    if case is not None:
        stmt = stmt.where(Case.id != case.id)
    return [
        {
            "ticket": c.ticket_number,
            "title": c.title,
            "status": c.status.value,
            "priority": c.priority.value,
            "created_at": c.created_at.isoformat(),
        }
        for c in session.scalars(stmt)
    ]


def _entitlement(session: Session, account: Account | None, case: Case | None) -> dict | None:
    """The case's entitlement, else the account's active one ending last: what remains, overall and per channel."""
    if account is None:
        return None
    entitlement_id = case.entitlement_id if case is not None else None
    if entitlement_id is None:
        entitlement_id = session.scalar(
            select(Entitlement.id)
            .where(Entitlement.account_id == account.id, Entitlement.state == EntitlementState.ACTIVE)
            .order_by(Entitlement.ends_on.desc(), Entitlement.id.desc())
            .limit(1)
        )
    if entitlement_id is None:
        return None
    report = entitlement_report(session=session, account_number=account.account_number)
    for e in report["entitlements"]:
        if e["id"] == entitlement_id:
            return {k: v for k, v in e.items() if k != "ledger"}
    return None


def render_markdown(summary: dict) -> str:
    """The summary as the markdown artifact an agent reads."""
    cust = summary["customer"]
    who = cust["contact"]["name"] if cust["contact"] else "(no contact)"
    acct = cust["account"]
    lines = [
        f"# {who}" + (f" — {acct['name']} ({acct['number']}, {acct['tier']})" if acct else ""),
        "",
        f"- email: {cust['email'] or '-'}; phones: {', '.join(cust['phones']) or '-'}",
        f"- country: {cust['location']['country'] or '-'}; time zone: {cust['location']['time_zone'] or '-'}",
    ]
    case = summary["case"]
    if case:
        lines += [
            "",
            f"## Case {case['ticket']}: {case['title']}",
            f"status {case['status']} ({case['status_reason']}), priority {case['priority']}, "
            f"queue {case['queue'] or '-'}, owner {case['owner'] or '-'}",
        ]
    if summary["sla"]:
        lines += ["", "## SLA", "| KPI | state | due |", "|---|---|---|"]
        lines += [f"| {k['kpi']} | {k['state']} | {k['due']} |" for k in summary["sla"]]
    ent = summary["entitlement"]
    if ent:
        lines += ["", f"## Entitlement: {ent['name']} — {ent['remaining']} of {ent['allocation']} remaining"]
    if summary["recent_cases"]:
        lines += ["", "## Recent cases", "| ticket | title | status | opened |", "|---|---|---|---|"]
        lines += [
            f"| {c['ticket']} | {c['title']} | {c['status']} | {c['created_at'][:16]} |"
            for c in summary["recent_cases"]
        ]
    if summary["timeline"]:
        lines += ["", "## Timeline", "| at | what | subject | delivery |", "|---|---|---|---|"]
        lines += [
            f"| {e['at'][:16]} | {e['kind']} {e['type']} | {str(e['subject']).replace('|', '/')} "
            f"| {e.get('delivery_status', '')} |"
            for e in summary["timeline"]
        ]
    return "\n".join(lines) + "\n"
