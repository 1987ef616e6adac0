"""`carepath register`, `carepath sign-in` and `carepath set-password`: the customer portal's accounts."""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from pydantic import ValidationError

from carepath.db import unit_of_work
from carepath.settings import get_settings

OUTCOME_TEXT = {
    "already_registered": "this email is already registered: sign in or reset your password",
    "merged": "merged into the existing contact, which now has the portal login",
    "linked_to_account": "new contact linked to the account, with portal access",
    "refused_public_domain": "refused: a public or free-mail address (support and the registrant are told)",
    "review_unknown_domain": "waiting for review: the domain belongs to no known account (support is told)",
}


def cmd_register(args: argparse.Namespace) -> int:
    """A portal registration, exactly as a signed POST to /webhooks/portal/registrations (decided now)."""
    from carepath.schemas import PortalRegistrationIn
    from tasks.registration import submit_registration
    from tasks.sign_in import hash_password

    try:
        registration = PortalRegistrationIn(
            event_id=args.event_id or f"cli-{uuid.uuid4()}",
            email=args.email,
            first_name=args.first_name,
            last_name=args.last_name,
            phone=args.phone,
            language=args.language,
            password_hash=hash_password(args.password) if args.password is not None else None,
        )
    except (ValidationError, ValueError) as exc:
        print(f"registration refused: {_why(exc)}", file=sys.stderr)
        return 2
    settings = get_settings()
    with unit_of_work() as session:
        result = submit_registration(session=session, registration=registration, settings=settings)
    _send_registration_emails(result.registration_id)
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        where = f" (contact {result.contact_id}" + (f", account {result.account})" if result.account else ")")
        print(f"{registration.email}: {OUTCOME_TEXT[result.outcome]}{where if result.contact_id else ''}")
    return 0


def cmd_sign_in(args: argparse.Namespace) -> int:
    """Check a portal sign-in: not registered, wrong password, or rate limited (attempts are recorded)."""
    from tasks.sign_in import limits_from, sign_in

    try:
        with unit_of_work() as session:
            result = sign_in(
                session=session,
                email=args.email,
                password=args.password,
                client_address=args.client_address,
                limits=limits_from(get_settings()),
            )
    except ValueError as exc:
        print(f"cannot sign in: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        print(
            {
                None: "signed in",
                "not_registered": "no portal account for this email: register first",
                "wrong_password": "wrong password (forgot it? reset your password)",
                "rate_limited": "too many attempts: try again later",
            }[result.reason]
        )
    return 0


def cmd_set_password(args: argparse.Namespace) -> int:
    """Set a portal login's password (what the reset flow ends with)."""
    from tasks.sign_in import set_password

    try:
        with unit_of_work() as session:
            changed = set_password(session=session, email=args.email, password=args.password)
    except ValueError as exc:
        print(f"password not set: {exc}", file=sys.stderr)
        return 2
    if not changed:
        print(f"password not set: no portal login for {args.email.strip()}", file=sys.stderr)
        return 1
    print(
        json.dumps({"email": args.email.strip().lower(), "password_set": True})
        if args.json
        else "password set"
    )
    return 0


def _send_registration_emails(registration_id: int) -> None:
    """The refusal and the notice to support, sent now (the portal-registration flow sends any left)."""
    from models import MessageChannel
    from tasks.messaging import drain_outbox
    from tasks.registration import queued_registration_emails

    with unit_of_work() as session:
        ids = queued_registration_emails(session=session, registration_id=registration_id)
    if ids:
        drain_outbox(settings=get_settings(), channel=MessageChannel.EMAIL, ids=ids)


def _why(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
    return str(exc)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="a portal registration (merge, link by domain, refuse, review)")
    p.add_argument("email")
    p.add_argument("--first-name", required=True)
    p.add_argument("--last-name", required=True)
    p.add_argument(
        "--password", default=None, help="optional: without one the login exists and is set by the reset flow"
    )
    p.add_argument("--phone", default=None, help="E.164, e.g. +306912345678")
    p.add_argument("--language", default=None, help="e.g. el, pl, pt, it, en")
    p.add_argument("--event-id", default=None, help="the portal's id for it (a resend answers the same)")
    p.add_argument("--json", action="store_true", help='print {"outcome", "contact_id", "account"}')
    p.set_defaults(func=cmd_register)
    p = sub.add_parser(
        "sign-in", help="check a portal sign-in (not registered / wrong password / rate limited)"
    )
    p.add_argument("email")
    p.add_argument("password")
    p.add_argument("--client-address", default="cli", help="the client's address, for the per-address limit")
    p.add_argument("--json", action="store_true", help='print {"ok", "reason"}')
    p.set_defaults(func=cmd_sign_in)
    p = sub.add_parser("set-password", help="set a portal login's password (the end of the reset flow)")
    p.add_argument("email")
    p.add_argument("password")
    p.add_argument("--json", action="store_true", help='print {"email", "password_set"}')
    p.set_defaults(func=cmd_set_password)
