"""`carepath webshop-order`, `carepath duplicates` and `carepath merge`: customers from the shop, and one
person recorded twice made one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from carepath.db import unit_of_work


def cmd_webshop_order(args: argparse.Namespace) -> int:
    """Qualify a web-shop order from a JSON file (the same work as the `webshop-order` flow)."""
    from tasks.webshop import parse_order, qualify_order

    try:
        raw = json.loads(Path(args.path).read_text(encoding="utf-8"))
    except OSError as exc:
        print(f"cannot read {args.path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"cannot read {args.path}: not UTF-8 ({exc.reason})", file=sys.stderr)
        return 2
    except (ValueError, RecursionError) as exc:
        print(f"cannot read {args.path}: not valid JSON ({exc})", file=sys.stderr)
        return 2
    try:
        order = parse_order(raw)
    except ValueError as exc:
        print(f"{args.path}: {exc}", file=sys.stderr)
        return 2
    with unit_of_work() as session:
        outcome = qualify_order(session=session, order=order)
    for code, why in outcome.unknown_products.items():  # set aside, the rest went through: say so on stderr
        print(f"order {outcome.order_id}: set aside {code}: {why}", file=sys.stderr)
    if args.json:
        # The operator's contract: exactly these fields (the flow returns the whole outcome).
        full = outcome.as_json()
        print(
            json.dumps(
                {k: full[k] for k in ("lead", "account", "contact", "account_created", "contact_created")}
            )
        )
        return 0
    made = ", ".join(
        w
        for w, new in (("new account", outcome.account_created), ("new contact", outcome.contact_created))
        if new
    )
    print(
        f"order {outcome.order_id}: lead {outcome.lead}, account {outcome.account}, contact {outcome.contact}"
        + (f" ({made})" if made else " (nothing new)" if outcome.replayed else " (existing customer)")
    )
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    """Likely duplicate contacts, best first (the same work as the `find-duplicate-contacts` flow)."""
    from tasks.duplicates import find_duplicates

    with unit_of_work() as session:
        pairs = find_duplicates(
            session=session, min_score=args.min_score, max_block=args.max_block, limit=args.limit
        )
    if args.json:
        print(json.dumps({"pairs": [p.as_json() for p in pairs]}))
        return 0
    for p in pairs:
        print(f"{p.a:>8} {p.b:>8}  {p.score:.2f}  {', '.join(p.why)}")
    print(f"{len(pairs)} likely duplicate pair(s); merge one with: carepath merge A B")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    """Merge contact B into contact A (the same work as the `merge-contacts` flow)."""
    from tasks.merge import MergeRefused, merge_contacts

    try:
        with unit_of_work() as session:
            outcome = merge_contacts(session=session, master_id=args.a, duplicate_id=args.b)
    except MergeRefused as exc:
        print(f"not merged: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(outcome.as_json(), default=str))
        return 0
    moved = ", ".join(f"{n} {table}" for table, n in outcome.moved.items() if n) or "nothing"
    print(f"contact {outcome.merged} merged into {outcome.master}: moved {moved}")
    for name, values in outcome.conflicts.items():
        print(f"  conflict {name}: kept {values['master']!r}, not {values['merged']!r}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("webshop-order", help="qualify a web-shop order (JSON file) into account and contact")
    p.add_argument("path", help="the order as UTF-8 JSON: order_id, email, first_name, last_name, products…")
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"lead", "account", "contact", "account_created", "contact_created", …}',
    )
    p.set_defaults(func=cmd_webshop_order)
    p = sub.add_parser(
        "duplicates", help="likely duplicate contacts (phone, name in account, near-same email)"
    )
    p.add_argument("--min-score", type=float, default=0.5, help="pairs scored below this are left out")
    p.add_argument("--max-block", type=int, default=50, help="a key shared by more contacts is skipped")
    p.add_argument("--limit", type=int, default=None, help="at most this many pairs")
    p.add_argument("--json", action="store_true", help='print {"pairs": [{"a", "b", "score", "why"}]}')
    p.set_defaults(func=cmd_duplicates)
    p = sub.add_parser("merge", help="merge contact B into contact A (B deactivated, never deleted)")
    p.add_argument("a", type=int, help="the master contact's id (kept)")
    p.add_argument("b", type=int, help="the duplicate contact's id (merged into A)")
    p.add_argument("--json", action="store_true", help='print {"master", "merged", "moved", "conflicts"}')
    p.set_defaults(func=cmd_merge)
