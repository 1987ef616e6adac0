"""`carepath activity add|close`, `carepath timeline` and `carepath reply`: an agent's work on a case."""

from __future__ import annotations

import argparse
import json
import sys

from carepath.db import unit_of_work
from carepath.rules.activities import DIRECTIONS, TYPES, ActivityInputError, parse_due
from carepath.settings import get_settings


def cmd_activity(args: argparse.Namespace) -> int:
    """Record an activity on a case, or close (complete or cancel) one."""
    from tasks.activities import add_activity, close_activity

    try:
        with unit_of_work() as session:
            if args.activity_command == "add":
                recorded = add_activity(
                    session=session,
                    ticket=args.ticket,
                    type=args.type,
                    subject=args.subject,
                    body=args.body,
                    due=parse_due(args.due),
                    direction=args.direction,
                    agent_email=args.agent,
                    closed=args.closed,
                )
            else:
                recorded = close_activity(session=session, activity_id=args.activity_id, cancel=args.cancel)
    except ActivityInputError as exc:
        print(f"activity not recorded: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(recorded.as_json()))
    else:
        print(f"{recorded.ticket}: {recorded.type} #{recorded.id} «{recorded.subject}» {recorded.state}")
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    """A case's or a customer's timeline, newest first."""
    from tasks.timeline import timeline

    try:
        with unit_of_work() as session:
            result = timeline(session=session, key=args.key, limit=args.limit)
    except ActivityInputError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
        return 0
    for e in result["timeline"]:
        extra = f" [{e['delivery_status']}]" if e.get("delivery_status") else ""
        print(
            f"{e['at'][:16]}  {e['case'] or '-':<18} {e['kind']:<13} {e['type']:<10} {e['state'] or '':<10} {e['subject']}{extra}"
        )
    return 0


def cmd_reply(args: argparse.Namespace) -> int:
    """An agent's email or SMS to the case's customer (through the outbox, once), sent now."""
    from models import MessageChannel
    from tasks.activities import reply_to_customer
    from tasks.messaging import drain_outbox

    try:
        with unit_of_work() as session:
            reply = reply_to_customer(
                session=session,
                ticket=args.ticket,
                channel=args.channel,
                text=args.text,
                agent_email=args.agent,
                request_id=args.request_id,
            )
    except ActivityInputError as exc:
        print(f"not sent: {exc}", file=sys.stderr)
        return 1
    if reply.status == "queued" and reply.message_id is not None:
        drain_outbox(settings=get_settings(), channel=MessageChannel(args.channel), ids=[reply.message_id])
    if args.json:
        print(json.dumps(reply.as_json()))
    else:
        why = f" ({reply.reason})" if reply.reason else ""
        print(f"{reply.ticket}: {reply.channel} reply {reply.status}{why}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the commands to the `carepath` parser."""
    p = sub.add_parser("activity", help="record an activity on a case, or close one")
    act = p.add_subparsers(dest="activity_command", required=True)
    q = act.add_parser("add", help="a phone call, task, email, SMS or note on a case")
    q.add_argument("ticket")
    # Types and directions are checked by the rules (a clear message and exit 1), not by argparse's choices.
    q.add_argument("--type", required=True, metavar="{" + ",".join(TYPES) + "}")
    q.add_argument("--subject", required=True)
    q.add_argument("--body", default=None)
    q.add_argument("--due", default=None, help="ISO 8601 due time (without an offset: UTC)")
    q.add_argument("--direction", default=None, metavar="{" + "|".join(DIRECTIONS) + "}")
    q.add_argument("--agent", default=None, help="the agent's email: who did it")
    q.add_argument("--closed", action="store_true", help="record it completed (it already happened)")
    q.add_argument("--json", action="store_true", help="print the activity recorded")
    q.set_defaults(func=cmd_activity)
    q = act.add_parser("close", help="complete an open activity (or --cancel it)")
    q.add_argument("activity_id", type=int)
    q.add_argument("--cancel", action="store_true", help="cancelled: it will not be done")
    q.add_argument("--json", action="store_true", help="print the activity")
    q.set_defaults(func=cmd_activity)
    p = sub.add_parser("timeline", help="a case's or a customer's activities, messages and status changes")
    p.add_argument("key", help="a ticket number, an account number or a contact's email")
    p.add_argument("--limit", type=int, default=500, help="newest entries shown at most")
    p.add_argument("--json", action="store_true", help='print {"timeline": [...]} newest first')
    p.set_defaults(func=cmd_timeline)
    p = sub.add_parser(
        "reply", help="an agent's email or SMS to a case's customer (counts as first response)"
    )
    p.add_argument("ticket")
    p.add_argument("--channel", required=True, choices=["email", "sms"])
    p.add_argument("--text", required=True)
    p.add_argument("--agent", required=True, help="the replying agent's email")
    p.add_argument(
        "--request-id",
        default=None,
        help="tells two identical replies apart (otherwise the same reply is sent once)",
    )
    p.add_argument("--json", action="store_true", help="print the reply's outcome")
    p.set_defaults(func=cmd_reply)
