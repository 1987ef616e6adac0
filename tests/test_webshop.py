"""Web-shop orders against a real database: reuse by email and by domain, creation, replay, unknown products,
support plans, the signed webhook and the flow that drains it, the CLI's answers to bad input, and a race."""

from __future__ import annotations

import json
import threading
from datetime import date

import pytest
from sqlalchemy import func, select

from carepath import db
from cli.commands import main
from flows.webshop_order import webshop_order
from models import (
    Account,
    AccountDomain,
    AccountProduct,
    Contact,
    Entitlement,
    InboxEvent,
    InboxState,
    Lead,
    LeadState,
    Product,
    WebhookRejection,
)
from tasks.webshop import drain_webshop_orders_batch, parse_order, qualify_order
from tests.utils.factories import make_account, make_contact
from tests.utils.flows import completed
from tests.utils.signing import carepath_headers

SHOP_SECRET = "webshop-test-secret"
PLAN = {"name": "Heat Pump Care", "cases": 6, "months": 24, "channels": ["phone", "email"]}


@pytest.fixture()
def catalogue(session):
    pump = Product(sku="CP-HP-400", name="Heat Pump H4", support_plan=PLAN)
    smoke = Product(sku="CP-SMK-500", name="Smoke Detector S5")
    session.add_all([pump, smoke])
    session.commit()
    return pump, smoke


def order(order_id: str = "WS-1", **over) -> dict:
    return {
        "order_id": order_id,
        "email": "nikos.georgiou@acme-heat.gr",
        "first_name": "Nikos",
        "last_name": "Georgiou",
        "company": "Acme Heat S.A.",
        "phone": "+306900000001",
        "products": ["CP-SMK-500"],
        **over,
    }


def qualify(raw: dict, today: date | None = None):
    with db.unit_of_work() as s:
        return qualify_order(session=s, order=parse_order(raw), today=today)


def count(session, model) -> int:
    session.expire_all()
    n = session.scalar(select(func.count()).select_from(model))
    session.commit()
    return n


def test_an_existing_contact_is_reused_by_email(session, catalogue) -> None:
    contact = make_contact(session)
    account = session.get(Account, contact.account_id)
    contact.portal_login = None
    session.commit()
    out = qualify(order(email=f"  {contact.email.upper()} ", company="Another name Ltd"))
    assert (out.account, out.contact, out.account_created, out.contact_created) == (
        account.account_number,
        contact.id,
        False,
        False,
    )
    session.expire_all()
    assert contact.portal_login == contact.email  # the buyer gains portal access
    assert count(session, Account) == 1 and count(session, Contact) == 1
    lead = session.scalars(select(Lead)).one()
    assert (lead.state, lead.account_id, lead.contact_id, lead.order_ref) == (
        LeadState.QUALIFIED,
        account.id,
        contact.id,
        "WS-1",
    )


def test_a_new_buyer_at_a_known_company_domain_joins_its_account(session, catalogue) -> None:
    account = make_account(session, domain="acme-heat.gr")
    session.commit()
    out = qualify(order(email="New.Person@ACME-HEAT.gr"))
    assert (out.account, out.account_created, out.contact_created) == (account.account_number, False, True)
    contact = session.get(Contact, out.contact)
    assert (contact.account_id, contact.email, contact.portal_login) == (
        account.id,
        "new.person@acme-heat.gr",
        "new.person@acme-heat.gr",
    )
    assert count(session, Account) == 1


def test_an_unknown_buyer_gets_an_account_named_after_the_company_with_its_domain(session, catalogue) -> None:
    out = qualify(order())
    assert (out.account_created, out.contact_created) == (True, True)
    account = session.scalars(select(Account).where(Account.account_number == out.account)).one()
    assert (account.name, account.email_domains) == ("Acme Heat S.A.", ["acme-heat.gr"])
    contact = session.get(Contact, out.contact)
    assert (contact.account_id, contact.portal_login, contact.phone) == (
        account.id,
        "nikos.georgiou@acme-heat.gr",
        "+306900000001",
    )
    session.commit()  # SQLite: a reading session holds the write lock until it ends
    # A colleague's later order finds the account by its domain.
    again = qualify(order("WS-2", email="maria@acme-heat.gr", first_name="Maria"))
    assert (again.account, again.account_created, again.contact_created) == (out.account, False, True)


def test_a_free_mail_buyer_never_identifies_an_account(session, catalogue) -> None:
    stranger = make_account(
        session, domain="gmail.com"
    )  # a wrongly registered public domain is still ignored
    session.commit()
    out = qualify(order(email="zoe@gmail.com", first_name="Zoë", last_name="Λάμπρου", company=None))
    assert (out.account_created, out.contact_created) == (True, True)
    account = session.scalars(select(Account).where(Account.account_number == out.account)).one()
    assert account.id != stranger.id
    assert (account.name, account.email_domains) == ("Zoë Λάμπρου", [])
    session.commit()
    # Another free-mail buyer gets an account of their own; the same buyer again is reused by email.
    other = qualify(order("WS-2", email="yannis@gmail.com", company=None))
    same = qualify(order("WS-3", email="ZOE@gmail.com", company=None))
    assert other.account != out.account and other.account_created
    assert (same.account, same.contact, same.account_created, same.contact_created) == (
        out.account,
        out.contact,
        False,
        False,
    )
    assert (
        session.scalar(
            select(func.count()).select_from(AccountDomain).where(AccountDomain.domain == "gmail.com")
        )
        == 1
    )


def test_the_same_order_twice_creates_nothing_new(session, catalogue) -> None:
    first = qualify(order(products=["CP-HP-400", "CP-SMK-500"]))
    tables = (Account, Contact, Lead, AccountProduct, Entitlement)
    before = [count(session, m) for m in tables]
    second = qualify(order(products=["CP-HP-400", "CP-SMK-500"]))
    assert [count(session, m) for m in tables] == before
    assert (second.lead, second.account, second.contact) == (first.lead, first.account, first.contact)
    assert (second.account_created, second.contact_created, second.replayed) == (False, False, True)
    assert (second.products, second.entitlements) == (first.products, first.entitlements)


def test_products_are_recorded_on_the_account_and_unknown_codes_set_aside(session, catalogue) -> None:
    _, smoke = catalogue
    out = qualify(order(products=["CP-SMK-500", "NOPE-1", "cp-smk-500", ""]))
    assert out.products == {"CP-SMK-500": 2}
    assert out.unknown_products == {"NOPE-1": "unknown product code", "''": "unknown product code"}
    account = session.scalars(select(Account).where(Account.account_number == out.account)).one()
    [bought] = session.scalars(select(AccountProduct)).all()
    assert (bought.account_id, bought.product_id, bought.quantity, bought.order_ref, bought.lead_id) == (
        account.id,
        smoke.id,
        2,
        "WS-1",
        out.lead,
    )
    lead = session.get(Lead, out.lead)
    assert lead.state == LeadState.QUALIFIED  # the order went through
    assert lead.quarantined_products == out.unknown_products
    assert lead.products == ["CP-SMK-500", "NOPE-1", "cp-smk-500", ""]


def test_a_product_with_a_support_plan_creates_its_entitlement(session, catalogue) -> None:
    out = qualify(order(products=["CP-HP-400", "CP-HP-400"]), today=date(2026, 3, 5))
    [entitlement] = session.scalars(select(Entitlement)).all()
    account = session.scalars(select(Account).where(Account.account_number == out.account)).one()
    assert out.entitlements == [entitlement.id]
    assert (entitlement.account_id, entitlement.allocation, entitlement.remaining) == (account.id, 12, 12)
    assert (entitlement.starts_on, entitlement.ends_on) == (date(2026, 3, 5), date(2028, 3, 4))
    assert (entitlement.channels, entitlement.product_ids) == (["phone", "email"], ["CP-HP-400"])
    assert entitlement.state.value == "active" and "WS-1" in entitlement.name
    bought = session.scalars(select(AccountProduct)).one()
    assert bought.entitlement_id == entitlement.id


def test_two_concurrent_identical_orders_make_one_lead_account_and_contact(
    engine, session, catalogue
) -> None:
    barrier, results, errors = threading.Barrier(2), [], []

    def place() -> None:
        try:
            barrier.wait()
            results.append(qualify(order(products=["CP-HP-400"])))
        except Exception as exc:  # the test reports it below
            errors.append(exc)

    threads = [threading.Thread(target=place) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(r.replayed for r in results) == [False, True]
    assert len({(r.lead, r.account, r.contact) for r in results}) == 1
    assert [count(session, m) for m in (Lead, Account, Contact, AccountProduct, Entitlement)] == [
        1,
        1,
        1,
        1,
        1,
    ]


# --- the webhook and the flow -----------------------------------------------------------------------------


@pytest.fixture()
def shop_secret(monkeypatch):
    monkeypatch.setenv("CAREPATH_WEBSHOP_WEBHOOK_SECRET", SHOP_SECRET)


def post_order(client, payload, secret: str = SHOP_SECRET):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return client.post("/webhooks/webshop/orders", content=body, headers=carepath_headers(secret, body))


def rows(session, model):
    session.expire_all()
    found = session.scalars(select(model).order_by(model.id)).all()
    session.commit()
    return found


@pytest.mark.usefixtures("prefect_server")
def test_a_signed_order_is_stored_once_and_the_flow_qualifies_it(
    shop_secret, receiver, session, catalogue
) -> None:
    first = post_order(receiver, order(products=["CP-HP-400"], coupon="SPRING"))
    again = post_order(receiver, order(products=["CP-HP-400"]))
    assert first.status_code == again.status_code == 202
    assert again.json() == {"inbox_id": first.json()["inbox_id"], "duplicate": True}
    [event] = rows(session, InboxEvent)
    assert (event.source, event.kind, event.event_id) == ("webshop", "order", "WS-1")
    assert "coupon" not in event.payload  # extra fields ignored
    figures = completed(webshop_order)
    assert figures["orders_qualified"] == 1 and figures["accounts_created"] == 1 and figures["failed"] == 0
    [event] = rows(session, InboxEvent)
    assert event.state == InboxState.PROCESSED
    [lead] = rows(session, Lead)
    assert (lead.order_ref, lead.state) == ("WS-1", LeadState.QUALIFIED)
    assert len(rows(session, Entitlement)) == 1


@pytest.mark.parametrize(
    ("secret", "headers", "status"),
    [("wrong-secret", None, 401), (None, {"Content-Type": "application/json"}, 401)],
)
def test_a_badly_signed_order_is_refused_and_recorded(
    shop_secret, receiver, session, secret, headers, status
) -> None:
    body = json.dumps(order()).encode()
    if headers is None:
        response = post_order(receiver, body, secret=secret)
    else:
        response = receiver.post("/webhooks/webshop/orders", content=body, headers=headers)
    assert response.status_code == status
    assert rows(session, InboxEvent) == []
    [rejection] = rows(session, WebhookRejection)
    assert (rejection.source, rejection.status_code) == ("webshop", status)


@pytest.mark.parametrize(
    ("payload", "status", "reason"),
    [
        ({k: v for k, v in order().items() if k != "email"}, 422, "email"),
        (order(email="not-an-address"), 422, "email"),
        (order(order_id=""), 422, "order_id"),
        (b"{not json", 400, "not valid JSON"),
    ],
)
def test_an_invalid_order_is_4xx_with_the_reason_and_recorded(
    shop_secret, receiver, session, payload, status, reason
) -> None:
    response = post_order(receiver, payload)
    assert response.status_code == status and reason in response.json()["error"]
    assert rows(session, InboxEvent) == []
    [rejection] = rows(session, WebhookRejection)
    assert (rejection.source, rejection.status_code) == ("webshop", status) and reason in rejection.reason


def test_the_drain_fails_a_bad_stored_order_alone(session, catalogue) -> None:
    from tasks.inbox import store_events

    with db.unit_of_work() as s:
        store_events(
            session=s,
            source="webshop",
            kind="order",
            events=[("bad", {"order_id": "bad", "first_name": "x"}), ("WS-1", order())],
        )
    with db.unit_of_work() as s:
        batch = drain_webshop_orders_batch(session=s, limit=10)
    assert (batch.claimed, batch.qualified, batch.failed) == (2, 1, 1)
    states = {e.event_id: (e.state, e.error) for e in rows(session, InboxEvent)}
    assert states["WS-1"] == (InboxState.PROCESSED, None)
    assert states["bad"][0] == InboxState.FAILED and "email" in states["bad"][1]


# --- the command line -------------------------------------------------------------------------------------


def test_cli_qualifies_an_order_file_and_replays_it(session, catalogue, tmp_path, capsys) -> None:
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order(first_name="Ζωή", products=["CP-HP-400", "X-1"])), encoding="utf-8")
    assert main(["webshop-order", str(path), "--json"]) == 0
    captured = capsys.readouterr()
    first = json.loads(captured.out)
    assert set(first) == {"lead", "account", "contact", "account_created", "contact_created"}
    assert (first["account_created"], first["contact_created"]) == (True, True)
    assert "set aside X-1: unknown product code" in captured.err
    assert main(["webshop-order", str(path), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert (second["lead"], second["account"], second["contact"]) == (
        first["lead"],
        first["account"],
        first["contact"],
    )
    assert (second["account_created"], second["contact_created"]) == (False, False)
    assert session.get(Contact, first["contact"]).first_name == "Ζωή"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        (b"{oops", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (json.dumps({k: v for k, v in order().items() if k != "email"}).encode(), "email: Field required"),
        (b"[1, 2]", "invalid order"),
    ],
)
def test_cli_refuses_bad_input_clearly(engine, tmp_path, capsys, content, message) -> None:
    path = tmp_path / "order.json"
    if content is not None:
        path.write_bytes(content)
    assert main(["webshop-order", str(path), "--json"]) != 0
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
