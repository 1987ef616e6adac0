"""Email-to-case rules (Dynamics' automatic record creation and update rules), as plain functions.

No Prefect, session or HTTP here: the task reads the email and the database, asks these rules, and writes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import getaddresses, parseaddr

# CAS- then two groups of five Crockford base-32 digits (carepath.rules.tickets); found anywhere in a subject
# ("RE: [CAS-7K3MQ-9XZ2B] Boiler"), case-insensitively, as mail clients and people retype it.
TICKET_IN_TEXT = re.compile(r"\bCAS-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}\b", re.IGNORECASE)

# Precedence values that mark machine-sent mail (RFC 3834 §2 and common practice).
_BULK_PRECEDENCE = {"bulk", "junk", "list", "auto_reply", "auto-reply"}
# Headers auto-responders set (Exchange, Postfix vacation, mailing-list software).
_AUTO_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress", "list-id", "list-unsubscribe")
_ROBOT_SENDERS = re.compile(r"^(mailer-daemon|postmaster|no-?reply|do-?not-?reply)@", re.IGNORECASE)


@dataclass(frozen=True)
class MailboxRules:
    """How one mailbox turns email into cases (kept as data: data/mailboxes.json)."""

    address: str
    known_senders_only: bool = False  # False: create a contact for an unknown sender
    require_entitlement: bool = False  # True: no active entitlement covering email → no case
    reopen_within_hours: int = 24  # a reply this soon after resolution is attached, later opens a new case
    priority: str = "normal"


def ticket_in_subject(subject: str | None) -> str | None:
    """The ticket number a subject carries, upper-cased, or None."""
    found = TICKET_IN_TEXT.search(subject or "")
    return found.group(0).upper() if found else None


def referenced_message_ids(in_reply_to: str | None, references: str | None) -> list[str]:
    """Message-IDs an email answers (In-Reply-To first, then References, newest first), without brackets."""
    ids: list[str] = []
    for header in (in_reply_to, " ".join(reversed((references or "").split()))):
        for token in re.findall(r"<([^<>\s]+)>", header or ""):
            if token not in ids:
                ids.append(token)
    return ids


def is_automatic(headers: dict[str, str], sender: str | None, content_type: str | None = None) -> str | None:
    """Why an email was sent by a machine (an auto-reply, a bounce, a list), or None for a person's email.
    Carepath never acknowledges such mail: two auto-responders answering each other is a mail loop."""
    h = {k.lower(): v for k, v in headers.items()}
    auto_submitted = (h.get("auto-submitted") or "no").strip().lower()
    if auto_submitted != "no":
        return f"Auto-Submitted: {auto_submitted}"
    precedence = (h.get("precedence") or "").strip().lower()
    if precedence in _BULK_PRECEDENCE:
        return f"Precedence: {precedence}"
    for name in _AUTO_HEADERS:
        if name in h:
            return f"{name} header"
    if (h.get("return-path") or "").strip() == "<>":
        return "empty Return-Path (a bounce)"
    if content_type and content_type.lower().startswith("multipart/report"):
        return "delivery report (a bounce)"
    address = parseaddr(sender or "")[1]
    if _ROBOT_SENDERS.match(address):
        return f"sent by {address}"
    return None


def sender_address(from_header: str | None) -> str | None:
    """The sender's address, trimmed and lower-cased (the domain is compared case-insensitively)."""
    pairs = getaddresses([from_header or ""])
    address = pairs[0][1].strip().lower() if pairs else ""
    return address if "@" in address else None


def thread_decision(
    *, status: str, resolved_at: datetime | None, now: datetime, reopen_within_hours: int
) -> str:
    """What an email about an existing case does: "attach" to it, or open a "new" case.

    An active case never gets a second case. A resolved case takes the email within the window (Dynamics'
    "resolved since" setting); after it, the customer's problem is a new one. A cancelled case: new."""
    if status == "active":
        return "attach"
    if (
        status == "resolved"
        and resolved_at is not None
        and now - resolved_at <= timedelta(hours=reopen_within_hours)
    ):
        return "attach"
    return "new"
