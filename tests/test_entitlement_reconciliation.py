"""Entitlement reconciliation: drift behind Carepath's back corrected from the cases holding terms, with a
ledger row saying why; a second run corrects nothing; dry run changes nothing; uncovered customers flagged."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest
from sqlalchemy import select, update

from carepath.settings import get_settings
from cli.commands import main as cli
from models import CaseStatus, Entitlement, EntitlementChannel, EntitlementLedger, EntitlementState
from models.base import utcnow
from tasks.case_status import change_case_status
from tests.utils.factories import make_account, make_case, make_contact, make_entitlement


def run(capsys, *extra) -> dict:
    capsys.readouterr()
    assert cli(["reconcile-entitlements", *extra, "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_drift_is_corrected_with_its_reason_and_a_second_run_corrects_nothing(
    session, capsys, tmp_path, monkeypatch
) -> None:
    monkeypatch.setattr(get_settings(), "reports_dir", str(tmp_path))
    account = make_account(session)
    ent = make_entitlement(session, account=account, channel_allocations={"email": 5})
    contact = make_contact(session, account=account)
    resolved = make_case(session, contact=contact, entitlement_id=ent.id)
    make_case(session, contact=contact, entitlement_id=ent.id)  # open, holds no term yet
    session.commit()
    change_case_status(
        session=session, case=resolved, to_status=CaseStatus.RESOLVED, source="agent", emit=False
    )
    session.commit()
    # Behind Carepath's back: the stored totals no longer match the one case holding a term.
    session.execute(update(Entitlement).where(Entitlement.id == ent.id).values(remaining=3))
    session.execute(
        update(EntitlementChannel).where(EntitlementChannel.entitlement_id == ent.id).values(remaining=1)
    )
    session.commit()

    dry = run(capsys, "--dry-run")
    assert (dry["checked"], dry["corrected"]) == (1, 2)
    assert session.scalar(select(Entitlement.remaining).where(Entitlement.id == ent.id)) == 3  # unchanged
    session.commit()

    first = run(capsys)
    second = run(capsys)

    assert first == {"checked": 1, "corrected": 2, "activated": 0, "expired": 0, "flagged": 0}
    assert second["corrected"] == 0
    assert session.scalar(select(Entitlement.remaining).where(Entitlement.id == ent.id)) == 14
    assert (
        session.scalar(
            select(EntitlementChannel.remaining).where(EntitlementChannel.entitlement_id == ent.id)
        )
        == 4
    )
    rows = session.execute(
        select(EntitlementLedger.channel, EntitlementLedger.change, EntitlementLedger.reason)
        .where(EntitlementLedger.reason.like("reconciliation%"))
        .order_by(EntitlementLedger.id)
    ).all()
    session.commit()
    assert [(c, n) for c, n, _ in rows] == [(None, 11), ("email", 3)]
    assert "stored 3, expected 14 (1 case(s) hold terms of 15)" in rows[0][2]
    assert list(tmp_path.glob("entitlement-reconciliation-*.csv"))


def test_states_follow_the_dates_and_customers_without_cover_are_flagged(session, capsys) -> None:
    today = utcnow().date()
    covered = make_account(session)
    make_entitlement(session, account=covered)
    lapsed = make_account(session)
    old = make_entitlement(session, account=lapsed)
    old.starts_on, old.ends_on = date(2020, 1, 1), today - timedelta(days=1)
    make_case(session, contact=make_contact(session, account=covered))
    make_case(session, contact=make_contact(session, account=lapsed))
    session.commit()

    out = run(capsys)

    assert (out["expired"], out["flagged"]) == (1, 1)
    assert (
        session.scalar(select(Entitlement.state).where(Entitlement.id == old.id)) == EntitlementState.EXPIRED
    )
    session.commit()


@pytest.mark.usefixtures("prefect_server")
def test_the_flow_reports_and_corrects_like_the_command(session, tmp_path, monkeypatch) -> None:
    from flows.entitlement_reconciliation import reconcile_entitlements_flow
    from tests.utils.flows import completed

    monkeypatch.setattr(get_settings(), "reports_dir", str(tmp_path))
    ent = make_entitlement(session, account=make_account(session))
    session.commit()
    session.execute(update(Entitlement).where(Entitlement.id == ent.id).values(remaining=2))
    session.commit()

    assert completed(reconcile_entitlements_flow, dry_run=True)["corrected"] == 1
    assert completed(reconcile_entitlements_flow)["corrected"] == 1
    assert session.scalar(select(Entitlement.remaining).where(Entitlement.id == ent.id)) == 15
    session.commit()
    assert len(list(tmp_path.glob("entitlement-reconciliation-*.csv"))) == 2
