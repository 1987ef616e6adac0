"""`carepath bulk-delete`, `carepath restore` and `carepath summary`: keeping the customer base tidy and seeing
a customer whole."""

from __future__ import annotations

import argparse
import json
import sys

from carepath.db import unit_of_work
from carepath.settings import get_settings


def cmd_bulk_delete(args: argparse.Namespace) -> int:
    """Delete merged, deactivated contacts older than N days that nothing refers to (the weekly flow's work)."""
    from pydantic import ValidationError

    from tasks.bulk_delete import BulkDeleteConfig, run_bulk_delete

    try:
        config = BulkDeleteConfig(
            older_than_days=args.older_than_days, batch_size=args.batch_size, dry_run=args.dry_run
        )
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        print(f"bulk delete refused: {problems}", file=sys.stderr)
        return 2
    summary = run_bulk_delete(config, keep_archive_days=get_settings().bulk_delete_archive_days)
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        verb = "would delete" if summary.dry_run else "deleted"
        print(f"{verb} {summary.deleted} merged contact(s), kept {summary.kept} still referred to")
        if not summary.dry_run:
            print(f"archive: {summary.archive} (carepath restore {summary.archive})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Put the contacts of a bulk-delete archive back (idempotent)."""
    from tasks.bulk_delete import UnknownArchive, restore_archive

    try:
        with unit_of_work() as session:
            result = restore_archive(session=session, archive=args.archive)
    except UnknownArchive as exc:
        print(str(exc), file=sys.stderr)
        return 1
    for cid in result.id_taken:
        print(f"contact {cid} not restored: its id is taken by another contact", file=sys.stderr)
    for cid in result.reference_missing:
        print(f"contact {cid} not restored: its account or master contact no longer exists", file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        print(f"restored {result.restored} contact(s)")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    """A customer at a glance for a ticket number or a contact's email."""
    from tasks.customer_summary import UnknownCustomer, customer_summary, render_markdown

    try:
        with unit_of_work() as session:
            summary = customer_summary(session=session, key=args.key)
    except UnknownCustomer as exc:
        print(str(exc), file=sys.stderr)
        return 1
    print(json.dumps(summary) if args.json else render_markdown(summary), end="\n" if args.json else "")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bulk-delete", help="delete merged, deactivated contacts nothing refers to (archived, restorable)"
    )
    p.add_argument("--older-than-days", type=int, required=True, help="merged more than N days ago")
    p.add_argument("--dry-run", action="store_true", help="count what would be deleted; change nothing")
    p.add_argument("--batch-size", type=int, default=10_000, help="contacts per transaction")
    p.add_argument("--json", action="store_true", help='print {"deleted", "kept", "archive"}')
    p.set_defaults(func=cmd_bulk_delete)
    p = sub.add_parser("restore", help="put the contacts of a bulk-delete archive back")
    p.add_argument("archive", help="the archive name bulk-delete printed")
    p.add_argument("--json", action="store_true", help='print {"restored"}')
    p.set_defaults(func=cmd_restore)
    p = sub.add_parser("summary", help="a customer at a glance: for a ticket number or a contact's email")
    p.add_argument("key", help="a ticket number (CAS-…) or an email address")
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"customer", "case", "recent_cases", "timeline", "entitlement", "sla"}',
    )
    p.set_defaults(func=cmd_summary)
