"""`carepath import contacts|accounts|faults PATH [--json]`: a file through its data-quality gate, in chunks; the
same work as the import-contacts, import-accounts and import-faults flows, without a Prefect server."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy.exc import OperationalError, ProgrammingError

USAGE = {
    "contacts": "a CSV file with a header row naming email, first_name, last_name, phone, account_number",
    "accounts": "a CSV file with a header row naming account_number, name, tier, domain",
    "faults": "a CSV or Parquet file with the columns event_id, device_id, error_code, occurred_at, message",
}


def cmd_import(args: argparse.Namespace) -> int:
    """Validate, quarantine and load one file; exit 0 when the import ran (quarantined rows or not)."""
    from carepath.batch_runs import BatchProgress
    from tasks.imports import KINDS
    from tasks.imports.files import ImportFileError
    from tasks.imports.run import import_source, inspect_source

    kind = KINDS[args.kind]
    try:
        source = inspect_source(kind, args.path)
        progress = BatchProgress(f"import-{args.kind}", total=source.rows)  # a log line (stderr) per chunk
        summary = import_source(
            kind,
            source,
            on_chunk=lambda c: progress.advance(c.rows, loaded=c.loaded, quarantined=c.quarantined),
        )
    except ImportFileError as exc:
        print(f"cannot import {args.kind}: {exc}", file=sys.stderr)
        return 2
    except (OperationalError, ProgrammingError) as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            print("the database has no schema yet: run `carepath migrate` first", file=sys.stderr)
            return 2
        raise
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        print(
            f"{args.kind} from {source.name}: {summary.rows} row(s), {summary.loaded} loaded, "
            f"{summary.quarantined} quarantined"
        )
        for name, count in summary.as_json()["failed_expectations"].items():
            print(f"  {name}: {count}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "import", help="import contacts, accounts or historical faults through their data-quality gate"
    )
    kinds = p.add_subparsers(dest="kind", required=True)
    for kind, what in USAGE.items():
        q = kinds.add_parser(kind, help=what)
        q.add_argument("path", help=what)
        q.add_argument(
            "--json",
            action="store_true",
            help='print {"loaded", "quarantined", "failed_expectations": {name: rows}}',
        )
        q.set_defaults(func=cmd_import)
