"""The demo data seeds a believable, stable support organisation and a fault stream that tells its story."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import phonenumbers
import pytest
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.orm import Session

from carepath.migrate import upgrade
from data.demo import DemoSummary, load_demo_faults, seed_demo
from models import (
    Account,
    Consent,
    ConsentStatus,
    Contact,
    Device,
    Entitlement,
    Goal,
    KnowledgeArticle,
    MessageChannel,
    Product,
    RoutingRule,
    Sla,
    SlaKpi,
    Tier,
)

TODAY = date(2026, 3, 2)
TLD_REGION = {"gr": "GR", "pl": "PL", "pt": "PT", "it": "IT", "uk": "GB", "ie": "IE", "com": "US"}
REGION_LANGUAGE = {"GR": "el", "PL": "pl", "PT": "pt", "IT": "it", "GB": "en", "IE": "en", "US": "en"}


def _engine(path: Path) -> Engine:
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _fk_on(dbapi_conn, _record) -> None:
        # SQLite ignores foreign keys unless asked; the seed must satisfy them as PostgreSQL would.
        dbapi_conn.execute("PRAGMA foreign_keys=ON")

    return engine


@pytest.fixture()
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = _engine(tmp_path / "demo.db")
    yield eng
    eng.dispose()


@pytest.fixture()
def seeded(engine: Engine) -> Iterator[tuple[Session, DemoSummary]]:
    with Session(engine) as session:
        with session.begin():
            summary = seed_demo(session, today=TODAY)
        yield session, summary


def _contact(session: Session, first: str, last: str) -> Contact:
    return session.scalars(
        select(Contact).where(Contact.first_name == first, Contact.last_name == last)
    ).one()


def _consents(contact: Contact) -> dict[MessageChannel, ConsentStatus]:
    return {c.channel: c.status for c in contact.consents}


def _devices(session: Session, contact: Contact) -> list[str]:
    return list(session.scalars(select(Device.device_id).where(Device.owner_contact_id == contact.id)))


def test_counts_match_the_summary_and_the_brief(seeded: tuple[Session, DemoSummary]) -> None:
    session, summary = seeded
    assert summary.created is True
    assert summary.accounts == session.scalar(select(func.count()).select_from(Account)) == 40
    assert 2 * 40 <= summary.contacts <= 4 * 40
    assert summary.contacts <= summary.devices <= 3 * summary.contacts
    assert 6 <= summary.products <= 10
    assert (summary.queues, summary.routing_rules, summary.slas, summary.sla_kpis) == (4, 4, 4, 8)
    assert 8 <= summary.articles <= 12
    assert summary.goals >= 3 and summary.agents >= 8 and summary.holidays >= 4
    tiers = Counter(session.scalars(select(Account.tier)))
    assert (tiers[Tier.GOLD], tiers[Tier.SILVER], tiers[Tier.STANDARD]) == (8, 12, 20)
    device_ids = list(session.scalars(select(Device.device_id).order_by(Device.id)))
    assert device_ids == [f"DEV-{n:06d}" for n in range(1, len(device_ids) + 1)]


def test_contacts_have_country_phones_emails_and_languages(seeded: tuple[Session, DemoSummary]) -> None:
    session, _ = seeded
    rows = session.execute(select(Contact, Account).join(Account, Contact.account_id == Account.id)).all()
    regions = Counter()
    for contact, account in rows:
        domain = account.email_domains[0]
        assert contact.email.endswith("@" + domain) and contact.email.isascii()
        region = TLD_REGION[domain.rsplit(".", 1)[1]]
        regions[region] += 1
        assert contact.language == REGION_LANGUAGE[region], contact.email
        if (contact.first_name, contact.last_name) == ("Marco", "Rossi"):
            continue
        parsed = phonenumbers.parse(contact.phone)
        assert phonenumbers.is_valid_number(parsed), contact.phone
        assert phonenumbers.region_code_for_number(parsed) == region, contact.phone
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == contact.phone
    assert set(regions) == set(TLD_REGION.values())  # every country of the brief is represented
    assert len({c.email for c, _ in rows}) == len(rows)


def test_story_records(seeded: tuple[Session, DemoSummary]) -> None:
    session, _ = seeded
    helios = session.scalars(select(Account).where(Account.account_number == "ACC-00001")).one()
    assert (helios.name, helios.tier, helios.email_domains) == (
        "Helios Energy S.A.",
        Tier.GOLD,
        ["helios-energy.gr"],
    )

    eleni = _contact(session, "Eleni", "Papadopoulou")
    assert (eleni.email, eleni.phone, eleni.language) == (
        "eleni.papadopoulou@helios-energy.gr",
        "+306912345678",
        "el",
    )
    assert eleni.account_id == helios.id
    assert _consents(eleni) == {
        MessageChannel.SMS: ConsentStatus.OPTED_IN,
        MessageChannel.EMAIL: ConsentStatus.OPTED_IN,
    }
    assert _devices(session, eleni) == ["DEV-000001"]
    assert all(c.source == "portal" for c in eleni.consents)

    piotr = _contact(session, "Piotr", "Nowak")
    assert (piotr.language, piotr.account.name, piotr.account.tier) == (
        "pl",
        "Wisła Smart Homes Sp. z o.o.",
        Tier.SILVER,
    )
    assert _consents(piotr)[MessageChannel.SMS] == ConsentStatus.OPTED_IN
    assert _devices(session, piotr) == ["DEV-000002"]

    ana = _contact(session, "Ana", "Costa")
    assert (ana.language, ana.account.tier) == ("pt", Tier.STANDARD)
    assert MessageChannel.SMS not in _consents(ana)  # no row at all: consent was never given
    assert _devices(session, ana) == ["DEV-000003"]

    marco = _contact(session, "Marco", "Rossi")
    assert (marco.language, marco.phone) == ("it", "+3912")
    assert not phonenumbers.is_valid_number(phonenumbers.parse(marco.phone))
    assert _consents(marco)[MessageChannel.SMS] == ConsentStatus.OPTED_IN  # so the phone, not consent, blocks
    assert _devices(session, marco) == ["DEV-000004"]

    john = _contact(session, "John", "Smith")
    assert (john.language, john.account.name, john.account.tier) == ("en", "Northwind Heating Ltd", Tier.GOLD)
    assert _consents(john)[MessageChannel.SMS] == ConsentStatus.OPTED_IN
    assert _devices(session, john) == ["DEV-000005"]


def test_consent_mix(seeded: tuple[Session, DemoSummary]) -> None:
    session, summary = seeded
    sms = dict(
        session.execute(
            select(Consent.contact_id, Consent.status).where(Consent.channel == MessageChannel.SMS)
        ).all()
    )
    opted_in = sum(s == ConsentStatus.OPTED_IN for s in sms.values())
    opted_out = sum(s == ConsentStatus.OPTED_OUT for s in sms.values())
    missing = summary.contacts - len(sms)
    assert opted_in >= 0.7 * summary.contacts
    assert 2 <= missing <= 0.2 * summary.contacts
    assert 1 <= opted_out <= 0.12 * summary.contacts


def test_entitlements(seeded: tuple[Session, DemoSummary]) -> None:
    session, _ = seeded
    slas = {s.applies_to_tier: s.id for s in session.scalars(select(Sla))}
    by_account = {e.account_id: e for e in session.scalars(select(Entitlement))}
    for account in session.scalars(select(Account)):
        ent = by_account.get(account.id)
        if account.tier == Tier.GOLD:
            assert ent is not None and "iot" in ent.channels
            assert (ent.allocation, ent.remaining, ent.sla_id) == (15, 15, slas[Tier.GOLD])
        elif account.tier == Tier.SILVER:
            assert ent is not None and "iot" in ent.channels
            assert (ent.allocation, ent.remaining, ent.sla_id) == (10, 10, slas[Tier.SILVER])
        elif ent is not None:
            assert (ent.name, sorted(ent.channels)) == ("Basic support", ["email", "web"])
        if ent is not None:
            assert (ent.starts_on, ent.ends_on) == (date(2026, 1, 1), date(2026, 12, 31))
            assert ent.restrict_case_creation is False
    assert sum(e.name == "Basic support" for e in by_account.values()) >= 2


def test_reference_data(seeded: tuple[Session, DemoSummary]) -> None:
    session, _ = seeded
    rules = session.scalars(select(RoutingRule).order_by(RoutingRule.position)).all()
    assert [r.conditions for r in rules] == [{"tier": "gold"}, {"origin": "iot"}, {"tier": "silver"}, {}]
    gold = session.scalars(select(Sla).where(Sla.name == "Gold SLA")).one()
    kpis = {k.kpi: k for k in session.scalars(select(SlaKpi).where(SlaKpi.sla_id == gold.id))}
    assert (kpis["first_response"].minutes, kpis["first_response"].warn_after_minutes) == (15, 10)
    assert (kpis["resolve_by"].minutes, kpis["resolve_by"].warning_action) == (480, "email_owner")
    articles = session.scalars(select(KnowledgeArticle)).all()
    assert all(a.published and a.article_number.startswith("KA-") for a in articles)
    assert {"el", "pl", "pt", "it", "en"} <= {a.language for a in articles}
    assert all(
        g.period_start == date(2026, 3, 1) and g.period_end == date(2026, 3, 31)
        for g in session.scalars(select(Goal))
    )
    assert session.scalar(select(func.count()).select_from(Product)) >= 6


def test_seeding_twice_inserts_nothing(seeded: tuple[Session, DemoSummary]) -> None:
    session, first = seeded
    with session.begin():
        second = seed_demo(session, today=TODAY)
    assert second.created is False
    assert {**vars(second), "created": True} == vars(first)


def test_seed_leaves_the_transaction_to_the_caller(engine: Engine) -> None:
    with Session(engine) as session:
        session.begin()
        seed_demo(session, accounts=5, today=TODAY)
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Account)) == 0


def test_seeding_is_deterministic(tmp_path: Path) -> None:
    people = []
    for name in ("a.db", "b.db"):
        eng = _engine(tmp_path / name)
        with Session(eng) as session, session.begin():
            seed_demo(session, accounts=12, seed=3, today=TODAY)
            people.append(
                session.execute(
                    select(Contact.email, Contact.phone, Device.device_id)
                    .join(Device, Device.owner_contact_id == Contact.id)
                    .order_by(Device.id)
                ).all()
            )
        eng.dispose()
    assert people[0] == people[1]


def test_fault_stream_tells_the_story(seeded: tuple[Session, DemoSummary]) -> None:
    session, _ = seeded
    now = datetime(2026, 3, 2, 14, 30, 15, tzinfo=UTC)
    events = load_demo_faults(now)
    raw = json.loads((Path(__file__).resolve().parent.parent / "data" / "demo_faults.json").read_text())
    assert 20 <= len(events) <= 30 and len(events) == len(raw)
    times = [datetime.fromisoformat(e["occurred_at"]) for e in events]
    assert max(times) == now and all(e["occurred_at"].endswith("Z") for e in events)
    # Relative spacing is preserved: DEV-000001's three faults span twenty minutes.
    boiler = [t for e, t in zip(events, times) if e["device_id"] == "DEV-000001"]
    assert len(boiler) == 3 and max(boiler) - min(boiler) == timedelta(minutes=20)

    ids = Counter(e["event_id"] for e in events)
    dup = [i for i, n in ids.items() if n > 1]
    assert len(dup) == 1
    first, again = (e for e in events if e["event_id"] == dup[0])
    assert first == again  # the exact same event, resent
    malformed = [e for e in events if not isinstance(e["error_code"], int)]
    assert [e["error_code"] for e in malformed] == ["E-OVERHEAT"]

    codes = {
        e["device_id"]: e["error_code"]
        for e in events
        if isinstance(e["error_code"], int) and e["error_code"] > 10
    }
    assert {d: codes[d] for d in ("DEV-000001", "DEV-000002", "DEV-000003", "DEV-000004", "DEV-000005")} == {
        "DEV-000001": 14,
        "DEV-000002": 12,
        "DEV-000003": 17,
        "DEV-000004": 11,
        "DEV-000005": 22,
    }
    known = set(session.scalars(select(Device.device_id)))
    assert {e["device_id"] for e in events} - known == {"DEV-999999"}
    assert sum(isinstance(e["error_code"], int) and e["error_code"] <= 10 for e in events) >= 8

    events[0]["message"] = "changed"  # callers get copies, not the cached file
    assert load_demo_faults(now)[0]["message"] != "changed"


def test_merged_contacts_give_the_weekly_delete_work(seeded: tuple[Session, DemoSummary]) -> None:
    from data.merged_contacts import KEPT_TICKET
    from models import Case
    from tasks.bulk_delete import delete_batch, start_run

    session, _ = seeded
    merged = session.scalars(select(Contact).where(Contact.merged_into_id.is_not(None))).all()
    now = datetime.combine(TODAY, datetime.min.time(), tzinfo=UTC)
    assert len(merged) == 6 and all(not c.active and c.merged_at < now - timedelta(days=31) for c in merged)
    with_case = session.scalars(select(Case).where(Case.ticket_number == KEPT_TICKET)).one()
    assert with_case.contact_id in {c.id for c in merged}
    run = start_run(session=session, older_than_days=30, dry_run=False, now=now)
    batch = delete_batch(
        session=session, run_id=run.id, cutoff=run.cutoff, after_id=0, batch_size=100, dry_run=False
    )
    assert (batch.deleted, batch.kept) == (5, 1)
