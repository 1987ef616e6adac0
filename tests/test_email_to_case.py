"""Email to case: new requests open cases and are acknowledged once; replies join their case; machines' mail is
never answered. Sends are counted at the provider stub."""

from __future__ import annotations

import io
import json
import mailbox
from contextlib import redirect_stdout
from datetime import timedelta
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from sqlalchemy import func, select

from cli.commands import main as cli
from models import Activity, Case, CaseStatus, Channel, Contact, Message
from models.base import utcnow
from tasks.case_status import change_case_status
from tests.utils.factories import make_account, make_contact, make_entitlement

pytestmark = pytest.mark.usefixtures("prefect_server")


def eml(
    tmp_path,
    *,
    sender: str,
    subject: str = "Boiler pressure keeps dropping",
    to: str = "support@carepath.example",
    body: str = "The pressure falls to 0.5 bar every night.",
    headers: dict[str, str] | None = None,
    name: str | None = None,
):
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = sender, to, subject
    msg["Message-ID"] = make_msgid(domain="mail.example")
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    path = tmp_path / (name or f"{abs(hash(msg['Message-ID']))}.eml")
    path.write_bytes(bytes(msg))
    return path, msg["Message-ID"]


def email_in(path) -> tuple[int, dict]:
    from contextlib import redirect_stdout
    from io import StringIO

    out = StringIO()
    with redirect_stdout(out):
        code = cli(["email-in", str(path), "--json"])
    text = out.getvalue().strip()
    return code, json.loads(text.splitlines()[-1]) if code == 0 else {}


def count(session, stmt) -> int:
    n = session.scalar(stmt)
    session.commit()
    return n


@pytest.fixture()
def customer(session):
    account = make_account(session, domain="helios-energy.test")
    contact = make_contact(session, account=account)
    make_entitlement(session, account=account)
    session.commit()
    return contact


def test_a_new_request_opens_a_case_and_is_acknowledged_once(session, providers, tmp_path, customer) -> None:
    path, _ = eml(tmp_path, sender=f"Eleni <{customer.email.upper()}>")

    code, out = email_in(path)

    assert code == 0 and set(out) == {"ticket", "case_created", "queue", "acknowledged"}
    assert out["case_created"] is True and out["acknowledged"] is True
    case = session.scalars(select(Case).where(Case.ticket_number == out["ticket"])).one()
    assert (case.origin, case.contact_id, case.title) == (
        Channel.EMAIL,
        customer.id,
        "Boiler pressure keeps dropping",
    )
    session.commit()
    [ack] = providers.sendgrid_mails()
    assert out["ticket"] in ack.json["subject"]
    assert ack.json["personalizations"][0]["to"][0]["email"] == customer.email
    assert ack.json["headers"]["Message-ID"].startswith("<carepath.")

    again_code, again = email_in(path)  # the same email delivered twice: nothing new
    assert again_code == 0 and again["ticket"] == out["ticket"] and again["case_created"] is False
    assert len(providers.sendgrid_mails()) == 1
    kept = session.execute(select(Activity.direction, Activity.automatic).order_by(Activity.id)).all()
    session.commit()
    # The email and the acknowledgement, each kept once; the acknowledgement is automatic.
    assert [(d.value, a) for d, a in kept] == [("inbound", False), ("outbound", True)]


def test_a_reply_with_the_ticket_in_its_subject_joins_the_case(
    session, providers, tmp_path, customer
) -> None:
    first, _ = eml(tmp_path, sender=customer.email)
    _, opened = email_in(first)
    reply, _ = eml(
        tmp_path, sender=customer.email, subject=f"RE: [{opened['ticket']}] thanks", body="Still low."
    )

    code, out = email_in(reply)

    assert code == 0 and out == {**opened, "case_created": False, "acknowledged": False}
    assert count(session, select(func.count()).select_from(Case)) == 1
    assert count(session, select(func.count()).select_from(Activity)) == 3  # with the acknowledgement
    assert len(providers.sendgrid_mails()) == 1  # only the first was acknowledged


def test_a_ticket_in_the_subject_from_a_stranger_does_not_write_into_the_case(
    session, providers, tmp_path, customer
) -> None:
    first, _ = eml(tmp_path, sender=customer.email)
    _, opened = email_in(first)
    colleague, _ = eml(tmp_path, sender="facilities@helios-energy.test", subject=f"Re: [{opened['ticket']}]")
    stranger, _ = eml(tmp_path, sender="mallory@elsewhere.test", subject=f"Re: [{opened['ticket']}] ignore")

    assert email_in(colleague)[1]["ticket"] == opened["ticket"]  # the customer's own domain
    code, out = email_in(stranger)

    assert code == 0 and out["case_created"] is True and out["ticket"] != opened["ticket"]
    case_id = session.scalar(select(Case.id).where(Case.ticket_number == opened["ticket"]))
    assert count(session, select(func.count()).select_from(Activity).where(Activity.case_id == case_id)) == 3


def test_replies_thread_by_in_reply_to_and_references(session, providers, tmp_path, customer) -> None:
    first, first_id = eml(tmp_path, sender=customer.email)
    _, opened = email_in(first)
    ack_id = providers.sendgrid_mails()[0].json["headers"]["Message-ID"]
    to_ack, _ = eml(
        tmp_path, sender=customer.email, subject="Re: your request", headers={"In-Reply-To": ack_id}
    )
    to_first, _ = eml(
        tmp_path, sender=customer.email, subject="one more thing", headers={"References": first_id}
    )

    assert email_in(to_ack)[1]["ticket"] == opened["ticket"]
    assert email_in(to_first)[1]["ticket"] == opened["ticket"]
    assert count(session, select(func.count()).select_from(Case)) == 1


def test_an_auto_reply_is_kept_but_never_answered(session, providers, tmp_path, customer) -> None:
    path, _ = eml(
        tmp_path, sender=customer.email, subject="Out of office", headers={"Auto-Submitted": "auto-replied"}
    )

    code, out = email_in(path)

    assert code == 0 and out["acknowledged"] is False and out["case_created"] is True
    assert providers.sendgrid_mails() == []


def test_an_auto_reply_to_our_acknowledgement_does_not_loop(session, providers, tmp_path, customer) -> None:
    first, _ = eml(tmp_path, sender=customer.email)
    _, opened = email_in(first)
    ack = providers.sendgrid_mails()[0].json
    bounce_back, _ = eml(
        tmp_path,
        sender=customer.email,
        subject=f"Automatic reply: {ack['subject']}",
        headers={"Auto-Submitted": "auto-replied", "In-Reply-To": ack["headers"]["Message-ID"]},
    )

    assert email_in(bounce_back)[1] == {**opened, "case_created": False, "acknowledged": False}
    assert len(providers.sendgrid_mails()) == 1


@pytest.mark.parametrize(("hours_ago", "joins"), [(23, True), (25, False)])
def test_a_reply_to_a_resolved_case_before_and_after_the_window(
    session, providers, tmp_path, customer, hours_ago, joins
) -> None:
    first, _ = eml(tmp_path, sender=customer.email)
    _, opened = email_in(first)
    case = session.scalars(select(Case).where(Case.ticket_number == opened["ticket"])).one()
    change_case_status(
        session=session,
        case=case,
        to_status=CaseStatus.RESOLVED,
        source="agent",
        changed_at=utcnow() - timedelta(hours=hours_ago),
    )
    session.commit()
    reply, _ = eml(tmp_path, sender=customer.email, subject=f"Re: {opened['ticket']} it broke again")

    _, out = email_in(reply)

    assert (out["ticket"] == opened["ticket"]) is joins and out["case_created"] is (not joins)


def test_an_unknown_sender_gets_a_contact_linked_by_domain(session, providers, tmp_path, customer) -> None:
    path, _ = eml(tmp_path, sender="new.person@helios-energy.test")

    code, out = email_in(path)

    assert code == 0 and out["case_created"] is True
    contact = session.scalars(select(Contact).where(Contact.email == "new.person@helios-energy.test")).one()
    assert contact.account_id == customer.account_id
    session.commit()


def test_a_known_senders_mailbox_refuses_a_stranger_and_creates_nothing(
    session, providers, tmp_path, capsys
) -> None:
    path, _ = eml(tmp_path, sender="stranger@nowhere.test", to="gold@carepath.example")

    assert cli(["email-in", str(path), "--json"]) == 1

    assert "not a known contact" in capsys.readouterr().err
    assert count(session, select(func.count()).select_from(Case)) == 0
    assert count(session, select(func.count()).select_from(Contact)) == 0


def test_a_mailbox_that_requires_an_entitlement_refuses_without_one(
    session, providers, tmp_path, capsys
) -> None:
    contact = make_contact(session)  # no entitlement
    session.commit()
    path, _ = eml(tmp_path, sender=contact.email, to="gold@carepath.example")

    assert cli(["email-in", str(path), "--json"]) == 1
    assert "requires an entitlement" in capsys.readouterr().err


def test_a_subject_trying_header_injection_stays_one_line(session, providers, tmp_path, customer) -> None:
    path, _ = eml(tmp_path, sender=customer.email, subject="=?utf-8?q?Hi=0D=0ABcc=3A_victim=40evil=2Etest?=")

    _, out = email_in(path)

    [ack] = providers.sendgrid_mails()
    assert "\n" not in ack.json["subject"] and "\r" not in ack.json["subject"]
    assert "bcc" not in {k.lower() for k in ack.json.get("headers", {})}
    assert out["acknowledged"] is True


def test_a_maildir_folder_is_read_whole(session, providers, tmp_path, customer) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for subject in ("First problem", "Second problem"):
        path, _ = eml(tmp_path, sender=customer.email, subject=subject)
        box.add(path.read_bytes())

    code = cli(["email-in", str(tmp_path / "Maildir"), "--json"])

    assert code == 0
    titles = set(session.scalars(select(Case.title)))
    session.commit()
    assert titles == {"First problem", "Second problem"}
    assert len(providers.sendgrid_mails()) == 2
    flags = [m.get_flags() for m in mailbox.Maildir(tmp_path / "Maildir", create=False)]
    assert flags == ["S", "S"] and not list(
        (tmp_path / "Maildir" / "new").iterdir()
    )  # read, as a client would

    out = io.StringIO()
    with redirect_stdout(out):
        assert cli(["email-in", str(tmp_path / "Maildir"), "--json"]) == 0
    assert json.loads(out.getvalue().strip().splitlines()[-1]) == {"emails": [], "refused": []}  # nothing new


def test_an_unreadable_path_is_a_clear_error(tmp_path, capsys, engine) -> None:
    assert cli(["email-in", str(tmp_path / "missing.eml"), "--json"]) == 2
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "plain").mkdir()
    assert cli(["email-in", str(tmp_path / "plain"), "--json"]) == 2
    assert "not a Maildir" in capsys.readouterr().err


def test_acknowledgement_respects_an_email_opt_out(session, providers, tmp_path, customer) -> None:
    from models import ConsentStatus, MessageChannel
    from tasks.messaging import set_consent

    set_consent(
        session=session,
        contact_id=customer.id,
        channel=MessageChannel.EMAIL,
        status=ConsentStatus.OPTED_OUT,
        source="test",
    )
    session.commit()
    path, _ = eml(tmp_path, sender=customer.email)

    _, out = email_in(path)

    assert out["acknowledged"] is False and providers.sendgrid_mails() == []
    assert count(session, select(func.count()).select_from(Message)) == 1  # kept, blocked with its reason


def inbound_post(receiver, raw: bytes, *, auth: tuple[str, str] | None = ("sendgrid", "s3cret")):
    """SendGrid Inbound Parse's post with "send raw" on: the whole message in the `email` field."""
    fields = {"email": raw.decode(), "to": "support@carepath.example", "from": "x", "subject": "x"}
    files = {name: (None, value) for name, value in fields.items()}
    return receiver.post("/webhooks/sendgrid/inbound", files=files, auth=auth)


@pytest.fixture()
def inbound_receiver(receiver):
    from pydantic import SecretStr

    receiver.app.state.settings.sendgrid_inbound_auth = SecretStr("sendgrid:s3cret")
    return receiver


def test_inbound_parse_webhook_to_case_through_the_flow(
    session, providers, tmp_path, customer, inbound_receiver
) -> None:
    from flows.email_to_case import email_to_case
    from models import InboxEvent, InboxState
    from tests.utils.flows import completed

    path, _ = eml(tmp_path, sender=customer.email, subject="Heat pump noisy")
    first = inbound_post(inbound_receiver, path.read_bytes())
    resend = inbound_post(inbound_receiver, path.read_bytes())  # SendGrid retries: stored once

    assert first.status_code == 202 and resend.json() == {
        "inbox_id": first.json()["inbox_id"],
        "duplicate": True,
    }
    figures = completed(email_to_case)

    assert figures == {"emails": 1, "cases_created": 1, "acknowledged": 1, "refused": 0}
    assert session.scalar(select(Case.title)) == "Heat pump noisy"
    assert session.scalar(select(InboxEvent.state)) is InboxState.PROCESSED
    session.commit()
    assert len(providers.sendgrid_mails()) == 1


@pytest.mark.parametrize(
    ("auth", "status"), [(None, 401), (("sendgrid", "wrong"), 401), (("sendgrid", "s3cret"), 202)]
)
def test_inbound_parse_needs_its_credentials(session, tmp_path, inbound_receiver, auth, status) -> None:
    from models import WebhookRejection

    path, _ = eml(tmp_path, sender="someone@x.test")
    assert inbound_post(inbound_receiver, path.read_bytes(), auth=auth).status_code == status
    rejected = session.scalar(select(func.count()).select_from(WebhookRejection))
    session.commit()
    assert rejected == (status != 202)


def test_inbound_parse_refuses_a_body_that_is_not_a_form(session, inbound_receiver) -> None:
    response = inbound_receiver.post(
        "/webhooks/sendgrid/inbound",
        content=b"{}",
        headers={"content-type": "application/json"},
        auth=("sendgrid", "s3cret"),
    )
    assert response.status_code == 415 and "multipart/form-data" in response.json()["error"]


def test_the_acknowledgement_speaks_the_contacts_language(session, providers, tmp_path) -> None:
    contact = make_contact(session, language="el", first_name="Ελένη")
    session.commit()
    path, _ = eml(tmp_path, sender=contact.email)

    _, out = email_in(path)

    [ack] = providers.sendgrid_mails()
    assert ack.json["subject"].startswith(f"[{out['ticket']}] Λάβαμε το αίτημά σας")
    assert "Γεια σας Ελένη" in ack.json["content"][0]["value"]


def test_a_gold_customers_email_lands_in_the_gold_queue(session, providers, tmp_path, customer) -> None:
    from models import Queue, QueueItem, RoutingRule, RoutingRuleSet

    gold, standard = Queue(name="Gold support"), Queue(name="Standard support")
    rule_set = RoutingRuleSet(name="Default routing")
    session.add_all([gold, standard, rule_set])
    session.flush()
    session.add_all(
        [
            RoutingRule(rule_set_id=rule_set.id, position=1, conditions={"tier": "gold"}, queue_id=gold.id),
            RoutingRule(rule_set_id=rule_set.id, position=2, conditions={}, queue_id=standard.id),
        ]
    )
    session.commit()
    path, _ = eml(tmp_path, sender=customer.email)  # the customer's account is gold

    _, out = email_in(path)

    assert out["queue"] == "Gold support"
    entered = session.scalar(select(QueueItem.entered_at).where(QueueItem.queue_id == gold.id))
    session.commit()
    assert entered is not None


def test_show_case_json_after_an_email(session, providers, tmp_path, customer, capsys) -> None:
    path, _ = eml(tmp_path, sender=customer.email, subject="No hot water")
    _, opened = email_in(path)
    capsys.readouterr()

    assert cli(["show-case", opened["ticket"], "--json"]) == 0

    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"ticket", "status", "queue", "owner", "priority", "sla", "activities", "entitlement"} <= set(
        shown
    )
    assert (shown["ticket"], shown["status"], shown["priority"]) == (opened["ticket"], "active", "normal")
    assert shown["activities"][0] | {"at": None} == {
        "type": "email",
        "state": "completed",
        "subject": "No hot water",
        "at": None,
        "due": None,
    }
    assert (
        shown["entitlement"] == {"name": f"Support Account {customer.account_id}", "remaining": 15}
        or shown["entitlement"]["remaining"] == 15
    )
    assert cli(["show-case", "CAS-00000-00000", "--json"]) == 1


@pytest.mark.parametrize("restrict", [True, False])
def test_an_entitlement_at_zero_restricts_case_creation_only_when_it_says_so(
    session, providers, tmp_path, capsys, restrict
) -> None:
    account = make_account(session)
    contact = make_contact(session, account=account)
    ent = make_entitlement(session, account=account)
    ent.remaining, ent.restrict_case_creation = 0, restrict
    session.commit()
    path, _ = eml(tmp_path, sender=contact.email)

    code = cli(["email-in", str(path), "--json"])

    if restrict:
        assert code == 1
        err = capsys.readouterr().err
        assert "0 of 15 cases left" in err and "email channel" in err and ent.name in err
        assert count(session, select(func.count()).select_from(Case)) == 0
    else:
        assert code == 0
        out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert out["case_created"] is True
        # The case opens on the spent entitlement; it uses no term, and nothing goes below zero.
        assert session.scalar(select(Case.entitlement_id)) == ent.id
        session.refresh(ent)
        assert ent.remaining == 0
        session.commit()
