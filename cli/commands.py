"""`carepath`: the operators' command line (migrate, seed demo data, ingest, run a flow, inspect, replay)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import func, select

from carepath.db import unit_of_work
from carepath.settings import get_settings


def cmd_migrate(_: argparse.Namespace) -> int:
    from carepath.migrate import upgrade

    upgrade()
    print(f"database at head: {_safe_url()}")
    return 0


def cmd_seed_demo(args: argparse.Namespace) -> int:
    from data.demo import seed_demo

    with unit_of_work() as session:
        summary = seed_demo(session, accounts=args.accounts)
    print(("seeded" if summary.created else "already seeded") + f": {summary}")
    return 0


def cmd_ingest_faults(args: argparse.Namespace) -> int:
    from tasks.ingest import store_fault_events

    raw = sys.stdin.read() if args.file == "-" else Path(args.file).read_text(encoding="utf-8")
    events = json.loads(raw)
    events = events if isinstance(events, list) else [events]
    with unit_of_work() as session:
        stored = store_fault_events(session=session, events=events)
    new = sum(s.created for s in stored)
    print(f"{new} fault(s) stored in the inbox, {len(stored) - new} already there")
    return 0


def deployment_flows() -> dict[str, str]:
    """Every deployment in prefect.yaml: name → entrypoint (`path/to/file.py:function`)."""
    import yaml

    from carepath.settings import PROJECT_ROOT

    spec = yaml.safe_load((PROJECT_ROOT / "prefect.yaml").read_text(encoding="utf-8"))
    return {d["name"]: d["entrypoint"] for d in spec.get("deployments") or []}


def cmd_run(args: argparse.Namespace) -> int:
    """Run one deployment's flow once, in this process (with its default parameters), or every one."""
    from prefect.utilities.callables import parameter_schema

    from carepath.sources import load_flow

    entrypoints = deployment_flows()
    names = list(entrypoints) if args.flow == "all" else [args.flow]
    results = {}
    for name in names:
        flow = load_flow(entrypoints[name])
        needs = parameter_schema(flow).model_dump_for_openapi().get("required", [])
        if needs:  # an operation on one record (resolve-case): it needs its inputs, so it is not run blind
            if args.flow != "all":
                print(
                    f"{name} needs parameters: {', '.join(needs)} (run it from the UI or its own command)",
                    file=sys.stderr,
                )
                return 2
            results[name] = {"skipped": f"needs parameters: {', '.join(needs)}"}
            continue
        results[name] = flow()
    print(json.dumps(results if args.flow == "all" else results[args.flow], indent=2, default=str))
    return 0


def cmd_email_in(args: argparse.Namespace) -> int:
    """An .eml file or a Maildir folder into cases (the same work as the `email-to-case` flow)."""
    from tasks.email_to_case import email_in

    try:
        run = email_in(path=Path(args.path), settings=get_settings())
    except (OSError, ValueError) as exc:
        print(f"cannot read {args.path}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 2
    if run.refused and not run.outcomes:
        print(f"refused: {'; '.join(run.refused)}", file=sys.stderr)
        return 1
    if Path(args.path).is_dir():
        result = {"emails": [o.as_json() for o in run.outcomes], "refused": run.refused}
    else:
        result = run.outcomes[0].as_json()
    if args.json:
        print(json.dumps(result))
    else:
        for o in run.outcomes:
            made = "new case" if o.case_created else "added to"
            ack = "acknowledged" if o.acknowledged else f"not acknowledged ({o.automatic or 'no address'})"
            print(f"{o.ticket}: {made}, queue {o.queue or '-'}, {ack}")
        for why in run.refused:
            print(f"refused: {why}")
    return 0


def cmd_reconcile_messages(args: argparse.Namespace) -> int:
    """Settle messages whose outcome is unknown (the same flow as the `reconcile-messages` deployment)."""
    from flows.outbox import reconcile_messages

    figures = reconcile_messages(limit=args.limit)
    if args.json:
        print(json.dumps({k: figures[k] for k in ("settled", "resent", "still_unknown")}))
    else:
        print(
            f"settled {figures['settled']}, resent {figures['resent']}, still unknown {figures['still_unknown']}"
            + (f", failed after a resend {figures['failed']}" if figures.get("failed") else "")
        )
    return 0


def cmd_show_case(args: argparse.Namespace) -> int:
    from models import Case, Message

    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.ticket_number == args.ticket)).one_or_none()
        if case is None:
            print(f"no case {args.ticket}", file=sys.stderr)
            return 1
        if args.json:
            from tasks.case_view import case_summary

            print(json.dumps(case_summary(session=session, case=case)))
            return 0
        print(f"{case.ticket_number}  {case.title}")
        print(
            f"  status {case.status.value} ({case.status_reason}), priority {case.priority.value}, "
            f"origin {case.origin.value}, device {case.device_id}, error {case.error_code}"
        )
        print(
            f"  occurrences {case.fault_occurrences}, frequency in window {case.fault_frequency}, "
            f"entitlement {case.entitlement_id}"
        )
        for h in case.history:
            print(
                f"  {h.changed_at:%Y-%m-%d %H:%M} {h.from_status and h.from_status.value} → {h.to_status.value} "
                f"by {h.source}: {h.note or ''}"
            )
        for m in session.scalars(select(Message).where(Message.case_id == case.id)):
            print(
                f"  {m.channel.value} to {m.to_address}: {m.status.value} {m.status_reason or ''}\n    {m.body}"
            )
    return 0


def cmd_set_status(args: argparse.Namespace) -> int:
    """Change a case's status as an agent would; the case-status journey then tells the customer."""
    from models import Case, CaseStatus, InboxEvent
    from tasks.case_status import announce_status_change, change_case_status, status_change_event_id

    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.ticket_number == args.ticket)).one_or_none()
        if case is None:
            print(f"no case {args.ticket}", file=sys.stderr)
            return 1
        change = change_case_status(
            session=session,
            case=case,
            to_status=CaseStatus(args.status),
            status_reason=args.reason,
            resolution=args.resolution,
            time_spent_minutes=args.minutes,
            source="cli",
        )
        event_id = (
            session.scalar(
                select(InboxEvent.id).where(InboxEvent.event_id == status_change_event_id(change.id))
            )
            if change
            else None
        )
    if change is None:
        print(f"{args.ticket} is already {args.status}")
        return 0
    announced = announce_status_change(event_id)
    print(
        f"{args.ticket}: {change.from_status and change.from_status.value} → {change.to_status.value}"
        f" ({'announced to Prefect' if announced else 'the inbox sweep will announce it'})"
    )
    return 0


def cmd_resolve(args: argparse.Namespace) -> int:
    """Resolve a case (the same rules as the `resolve-case` flow); the customer is told by email."""
    from tasks.case_status import announce_status_change
    from tasks.resolution import ResolutionRefused, resolve_case

    try:
        with unit_of_work() as session:
            resolved = resolve_case(
                session=session,
                ticket=args.ticket,
                resolution=args.resolution,
                minutes=args.minutes,
                close_activities=args.close_activities,
                source="cli",
            )
    except ResolutionRefused as exc:
        print(f"not resolved: {exc}", file=sys.stderr)
        return 1
    if resolved.inbox_event_id is not None:
        announce_status_change(resolved.inbox_event_id)
    if args.json:
        print(json.dumps(resolved.as_json()))
    else:
        state = "resolved" if resolved.changed else "already resolved: nothing changed"
        print(f"{resolved.ticket}: {state}; entitlement remaining {resolved.entitlement_remaining}")
        for name in resolved.closed_activities:
            print(f"  cancelled {name}")
    return 0


def cmd_set_allocation(args: argparse.Namespace) -> int:
    """Change an entitlement's allocation, or one channel's: what remains moves by as much (ledgered)."""
    from models import Channel, Entitlement
    from tasks.entitlement_terms import set_allocation

    if args.allocation < 0:
        print(f"an allocation is zero or more, not {args.allocation}", file=sys.stderr)
        return 2
    with unit_of_work() as session:
        if session.get(Entitlement, args.entitlement_id) is None:
            print(f"no entitlement {args.entitlement_id}", file=sys.stderr)
            return 1
        remaining = set_allocation(
            session=session,
            entitlement_id=args.entitlement_id,
            allocation=args.allocation,
            channel=Channel(args.channel).value if args.channel else None,
        )
    result = {"entitlement": args.entitlement_id, "channel": args.channel, "remaining": remaining}
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"entitlement {args.entitlement_id}{' ' + args.channel if args.channel else ''}: {remaining} left"
        )
    return 0


def cmd_set_case(args: argparse.Namespace) -> int:
    """Set a case's entitlement options: "do not decrement" gives back a term it holds (ledgered)."""
    from models import Case, Entitlement
    from tasks.entitlement_terms import set_do_not_decrement

    with unit_of_work() as session:
        case = session.scalars(select(Case).where(Case.ticket_number == args.ticket)).one_or_none()
        if case is None:
            print(f"no case {args.ticket}", file=sys.stderr)
            return 1
        changed = False
        if args.do_not_decrement is not None:
            changed = set_do_not_decrement(session=session, case=case, do_not_decrement=args.do_not_decrement)
        session.flush()
        remaining = (
            session.scalar(select(Entitlement.remaining).where(Entitlement.id == case.entitlement_id))
            if case.entitlement_id
            else None
        )
        result = {
            "ticket": case.ticket_number,
            "do_not_decrement": case.entitlement_do_not_decrement,
            "changed": changed,
            "entitlement_remaining": remaining,
        }
    if args.json:
        print(json.dumps(result))
    else:
        state = "do not decrement" if result["do_not_decrement"] else "decrement"
        print(f"{args.ticket}: {state}{'' if changed else ' (unchanged)'}; entitlement remaining {remaining}")
    return 0


def cmd_entitlements(args: argparse.Namespace) -> int:
    """An account's entitlements: remaining terms overall and per channel, and the ledger of changes."""
    from tasks.entitlements import UnknownAccount, entitlement_report

    try:
        with unit_of_work() as session:
            report = entitlement_report(session=session, account_number=args.account)
    except UnknownAccount as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{report['account']}  {report['name']}")
    for e in report["entitlements"]:
        print(
            f"  {e['name']} ({e['state']}, {e['starts_on']} – {e['ends_on']}): {e['remaining']} of {e['allocation']} left"
        )
        for row in e["ledger"]:
            print(f"    {row['at'][:16]}  {row['change']:+d}  {row['reason']}  {row['case']}")
    return 0


def cmd_sla_monitor(args: argparse.Namespace) -> int:
    """One run of the SLA monitor (the same work as the every-minute `sla-monitor` deployment)."""
    from tasks.sla import sla_monitor

    summary = sla_monitor(settings=get_settings())
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        print(
            ", ".join(f"{state} {n}" for state, n in summary.states.items())
            + f"; warnings sent {summary.warnings_sent}, failures sent {summary.failures_sent}"
        )
    return 0


def cmd_reconcile_entitlements(args: argparse.Namespace) -> int:
    """One entitlement reconciliation (the same work as the nightly `reconcile-entitlements` deployment: the
    same ranges and task functions, run one after the other in this process)."""
    from flows.entitlement_reconciliation import in_this_process, run_reconciliation
    from models.base import utcnow

    on = utcnow().date()
    summary, report = run_reconciliation(
        on=on, chunk_size=args.chunk_size, reconcile_ranges=in_this_process(on, args.dry_run)
    )
    for d in report.shown:
        print(
            f"{'would correct' if args.dry_run else 'corrected'} {d.name} ({d.channel or 'total'}): "
            f"stored {d.stored}, expected {d.expected} ({d.held} case(s) hold terms of {d.allocation})",
            file=sys.stderr,
        )
    if summary.corrected > len(report.shown):
        print(f"… {summary.corrected - len(report.shown):,} more in {report.path}", file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        print(", ".join(f"{k} {v}" for k, v in summary.as_json().items()) + f"; report {report.path}")
    return 0


def cmd_route_cases(args: argparse.Namespace) -> int:
    """One routing pass (the same work as the every-minute `route-cases` deployment)."""
    from tasks.routing import route_pending

    with unit_of_work() as session:
        s = route_pending(session=session, limit=args.limit)
    result = {"routed": s.routed, "assigned": s.assigned, "waiting": s.waiting, "by_queue": s.by_queue}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"routed {s.routed}, assigned {s.assigned}, waiting {s.waiting}")
    return 0


def cmd_kb(args: argparse.Namespace) -> int:
    """Knowledge base: search published articles, or send one to a case's customer."""
    from tasks.knowledge import KnowledgeError, search_articles, send_article

    try:
        with unit_of_work() as session:
            if args.kb_command == "search":
                hits = search_articles(session=session, query=args.text, limit=args.limit)
                result = {"articles": [{"id": h.id, "title": h.title, "score": h.score} for h in hits]}
            else:
                sent = send_article(session=session, ticket=args.ticket, article_id=args.article_id)
                result = sent.as_json()
    except KnowledgeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if args.kb_command == "send" and result["status"] == "queued":
        from models import MessageChannel
        from tasks.messaging import drain_outbox

        drain_outbox(settings=get_settings(), channel=MessageChannel.EMAIL, ids=[result["message_id"]])
    if args.json:
        print(json.dumps(result))
    elif args.kb_command == "search":
        for a in result["articles"]:
            print(f"{a['id']:>5}  {a['score']:>8.3f}  {a['title']}")
    else:
        print(f"article {result['article_id']} to {result['ticket']}: {result['status']}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from tasks.inbox import replay_failed

    with unit_of_work() as session:
        n = replay_failed(session=session, source=args.source, kind=args.kind)
    print(f"{n} failed event(s) back to pending")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Migrate, seed, ingest the demo faults, run the journey and show what it did."""
    from carepath.migrate import upgrade
    from data.demo import load_demo_faults, seed_demo
    from flows.iot_fault_journey import iot_fault_journey
    from tasks.ingest import store_fault_events
    from tasks.messaging import ensure_sms_rate_limit

    upgrade()
    with unit_of_work() as session:
        summary = seed_demo(session, accounts=args.accounts)
        stored = store_fault_events(session=session, events=load_demo_faults())
    print(
        f"Demo organisation: {summary.accounts} accounts, {summary.contacts} contacts, "
        f"{summary.devices} devices, {summary.entitlements} entitlements ({_safe_url()})"
    )
    print(
        f"Demo faults: {sum(s.created for s in stored)} new in the inbox (already-known event ids are no-ops)\n"
    )
    ensure_sms_rate_limit()
    # The local channel logs each message it "sends"; the report below prints them from the outbox, once.
    logging.getLogger("carepath.outbox").setLevel(logging.WARNING)
    figures = iot_fault_journey()
    print_demo_report(figures)
    resolve_demo_case()
    from cli.kpis import print_demo_kpi_report

    print_demo_kpi_report()
    return 0


def resolve_demo_case() -> None:
    """The second journey: an agent resolves the boiler case; the customer gets the email."""
    from flows.case_status_journey import case_status_journey
    from models import Case, CaseStatus, Message, MessageChannel
    from tasks.case_status import change_case_status

    with unit_of_work() as session:
        case = session.scalars(
            select(Case).where(Case.device_id == "DEV-000001", Case.status == CaseStatus.ACTIVE)
        ).first()
        if case is None:
            return
        change_case_status(
            session=session,
            case=case,
            to_status=CaseStatus.RESOLVED,
            source="demo-agent",
            time_spent_minutes=35,
            resolution="The boiler's pressure was restored to 1.5 bar and the expansion vessel refilled.",
        )
        ticket = case.ticket_number
    print(f"\nAn agent resolves {ticket}; the case-status journey tells the customer:")
    case_status_journey()
    with unit_of_work() as session:
        for m in session.scalars(
            select(Message)
            .join(Case, Case.id == Message.case_id)
            .where(Case.ticket_number == ticket, Message.channel == MessageChannel.EMAIL)
        ):
            print(
                f"  [{m.status.value}] email to {m.to_address} via {m.provider or '-'}\n  Subject: {m.subject}\n"
                + "\n".join(f"    {line}" for line in m.body.splitlines())
            )


def print_demo_report(figures: dict[str, int]) -> None:
    from models import Case, InboxEvent, InboxState, Message

    print("\nJourney figures: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items()))
    with unit_of_work() as session:
        print("\nCases opened from device faults:")
        for case in session.scalars(select(Case).order_by(Case.id.desc()).limit(10)):
            print(
                f"  {case.ticket_number}  {case.priority.value:<8} {case.title}  "
                f"(occurrences {case.fault_occurrences})"
            )
        print("\nText messages:")
        for m in session.scalars(select(Message).order_by(Message.id.desc()).limit(10)):
            reason = f" — {m.status_reason}" if m.status_reason else ""
            print(f"  [{m.status.value}{reason}] to {m.to_address} via {m.provider or '-'}:\n    {m.body}")
        failed = session.execute(
            select(InboxEvent.event_id, InboxEvent.error).where(InboxEvent.state == InboxState.FAILED)
        ).all()
        if failed:
            print("\nFaults kept for replay (carepath replay --source iot):")
            for event_id, error in failed:
                print(f"  {event_id}: {error}")
        total = session.scalar(select(func.count()).select_from(Case))
        print(f"\n{total} case(s) in the database. Inspect one with: carepath show-case <ticket>")


def _safe_url() -> str:
    from sqlalchemy import make_url

    return make_url(get_settings().database_url).render_as_string(hide_password=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="carepath", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="create or upgrade the schema").set_defaults(func=cmd_migrate)
    p = sub.add_parser("seed-demo", help="seed the demo support organisation")
    p.add_argument("--accounts", type=int, default=40)
    p.set_defaults(func=cmd_seed_demo)
    p = sub.add_parser("ingest-faults", help="store device faults (a JSON object or list) in the inbox")
    p.add_argument("file", help="a JSON file, or - for standard input")
    p.set_defaults(func=cmd_ingest_faults)
    p = sub.add_parser("run", help="run a deployment's flow once, locally (all: every deployment's)")
    p.add_argument("flow", nargs="?", default="all", choices=["all", *deployment_flows()])
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("email-in", help="an .eml file or a Maildir folder into cases (email to case)")
    p.add_argument("path", help="an .eml file, or a Maildir folder (new/, cur/, tmp/)")
    p.add_argument(
        "--json", action="store_true", help='print {"ticket", "case_created", "queue", "acknowledged"}'
    )
    p.set_defaults(func=cmd_email_in)
    p = sub.add_parser(
        "reconcile-messages", help="settle messages whose outcome is unknown by asking their provider"
    )
    p.add_argument("--json", action="store_true", help='print {"settled", "resent", "still_unknown"}')
    p.add_argument("--limit", type=int, default=1000, help="unknown messages looked up in this run")
    p.set_defaults(func=cmd_reconcile_messages)
    p = sub.add_parser("show-case", help="a case with its history and messages")
    p.add_argument("ticket")
    p.add_argument(
        "--json", action="store_true", help="print the case, its SLA KPIs, activities and entitlement"
    )
    p.set_defaults(func=cmd_show_case)
    p = sub.add_parser("set-status", help="change a case's status (the customer is told as configured)")
    p.add_argument("ticket")
    p.add_argument("status", choices=["active", "resolved", "cancelled"])
    p.add_argument("--reason", default=None)
    p.add_argument("--resolution", default=None)
    p.add_argument("--minutes", type=int, default=None, help="time spent, for a resolution")
    p.set_defaults(func=cmd_set_status)
    p = sub.add_parser("resolve", help="resolve a case with its resolution and time spent")
    p.add_argument("ticket")
    p.add_argument("--resolution", required=True, help="what solved the problem (the customer reads it)")
    p.add_argument("--minutes", type=int, required=True, help="time spent, in minutes")
    p.add_argument("--close-activities", action="store_true", help="close the case's open activities first")
    p.add_argument("--json", action="store_true", help='print {"ticket", "status", "entitlement_remaining"}')
    p.set_defaults(func=cmd_resolve)
    p = sub.add_parser(
        "set-allocation", help="change an entitlement's allocation, or one channel's (ledgered)"
    )
    p.add_argument("entitlement_id", type=int, help="the id `carepath entitlements ACCOUNT --json` shows")
    p.add_argument("allocation", type=int, help="cases granted")
    p.add_argument("--channel", choices=["phone", "email", "web", "facebook", "twitter", "iot"], default=None)
    p.add_argument("--json", action="store_true", help='print {"entitlement", "channel", "remaining"}')
    p.set_defaults(func=cmd_set_allocation)
    p = sub.add_parser("set-case", help="set a case's entitlement options")
    p.add_argument("ticket")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--do-not-decrement",
        dest="do_not_decrement",
        action="store_true",
        default=None,
        help="the case uses no entitlement term (a term it holds is given back)",
    )
    g.add_argument(
        "--decrement",
        dest="do_not_decrement",
        action="store_false",
        help="the case uses a term again, when its status calls for one",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"ticket", "do_not_decrement", "changed", "entitlement_remaining"}',
    )
    p.set_defaults(func=cmd_set_case)
    p = sub.add_parser("entitlements", help="an account's entitlements, remaining terms and ledger")
    p.add_argument("account", help="the account number, e.g. ACC-00001")
    p.add_argument("--json", action="store_true", help="print the entitlements with remaining and ledger")
    p.set_defaults(func=cmd_entitlements)
    p = sub.add_parser("sla-monitor", help="move SLA KPIs on and send warnings and failures (once each)")
    p.add_argument("--json", action="store_true", help='print {"states", "warnings_sent", "failures_sent"}')
    p.set_defaults(func=cmd_sla_monitor)
    p = sub.add_parser(
        "reconcile-entitlements", help="recompute remaining terms, correct drift, states by date"
    )
    p.add_argument("--dry-run", action="store_true", help="report what would change, change nothing")
    p.add_argument(
        "--chunk-size",
        type=lambda v: max(1, int(v)),
        default=10_000,
        help="entitlements per range (one transaction each; default 10,000)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help='print {"checked", "corrected", "activated", "expired", "flagged"}',
    )
    p.set_defaults(func=cmd_reconcile_entitlements)
    p = sub.add_parser("route-cases", help="route unrouted cases; give waiting cases to agents with room")
    p.add_argument("--limit", type=int, default=5000, help="cases taken at most per step")
    p.add_argument("--json", action="store_true", help='print {"routed", "assigned", "waiting", "by_queue"}')
    p.set_defaults(func=cmd_route_cases)
    p = sub.add_parser("kb", help="knowledge base: search articles, send one from a case")
    kb = p.add_subparsers(dest="kb_command", required=True)
    q = kb.add_parser("search", help="published articles ranked for a text")
    q.add_argument("text")
    q.add_argument("--limit", type=int, default=10)
    q.add_argument("--json", action="store_true", help='print {"articles": [{"id", "title", "score"}]}')
    q.set_defaults(func=cmd_kb)
    q = kb.add_parser("send", help="email an article to a case's customer (counts as the first response)")
    q.add_argument("ticket")
    q.add_argument("article_id", type=int)
    q.add_argument("--json", action="store_true", help="print the outcome")
    q.set_defaults(func=cmd_kb)
    from cli.activities import register as register_activity_commands

    register_activity_commands(sub)
    from cli.customers import register as register_customer_commands

    register_customer_commands(sub)
    from cli.portal import register as register_portal_commands

    register_portal_commands(sub)
    from cli.customer_data import register as register_customer_data_commands

    register_customer_data_commands(sub)
    from cli.kpis import register as register_kpi_commands

    register_kpi_commands(sub)
    from cli.imports import register as register_import_commands

    register_import_commands(sub)
    p = sub.add_parser("replay", help="put failed inbox events back to pending")
    p.add_argument("--source", default="iot")
    p.add_argument("--kind", default=None)
    p.set_defaults(func=cmd_replay)
    p = sub.add_parser("demo", help="migrate, seed, ingest demo faults and run the IoT journey")
    p.add_argument("--accounts", type=int, default=40)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for noisy in ("httpx", "alembic", "sqlalchemy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # matplotlib's one-off font cache notice ("building the font cache") is no operator's business.
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
