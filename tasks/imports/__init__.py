"""File imports gated by the data-quality suites: contacts and accounts (CSV), historical device faults (CSV or
Parquet). Each kind declares its columns, its suite (`data/expectations/<kind>.json`), the columns it derives
for the suite and how it loads good rows; `run` streams a file through them."""

from __future__ import annotations

from tasks.imports.accounts import ACCOUNTS
from tasks.imports.contacts import CONTACTS
from tasks.imports.faults import FAULTS
from tasks.imports.run import ImportKind

KINDS: dict[str, ImportKind] = {k.name: k for k in (CONTACTS, ACCOUNTS, FAULTS)}
