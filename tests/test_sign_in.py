"""Portal sign-in: "register first" told apart from "wrong password", and the rate limit that keeps the
clearer messages from listing emails or guessing passwords (attempts kept in the database)."""

from __future__ import annotations

import json
from datetime import timedelta

from sqlalchemy import select

from carepath.rules.registration import SignInLimits
from cli.commands import main
from models import Contact
from models.base import utcnow
from tasks.sign_in import hash_password, sign_in

LIMITS = SignInLimits(per_email=5, per_address=20, window_minutes=15)


def member(session, email="eleni@helios-energy.gr", password="correct horse") -> Contact:
    c = Contact(
        first_name="Eleni",
        last_name="P",
        email=email,
        portal_login=email,
        portal_password_hash=hash_password(password),
    )
    session.add(c)
    session.commit()
    return c


def attempt(session, email, password, client="203.0.113.7", now=None):
    result = sign_in(
        session=session, email=email, password=password, client_address=client, limits=LIMITS, now=now
    )
    session.commit()
    return result.as_json()


def test_no_account_and_wrong_password_are_told_apart(session):
    member(session)
    assert attempt(session, " Eleni@Helios-Energy.GR ", "correct horse") == {"ok": True, "reason": None}
    assert attempt(session, "eleni@helios-energy.gr", "wrong") == {"ok": False, "reason": "wrong_password"}
    assert attempt(session, "nobody@helios-energy.gr", "x") == {"ok": False, "reason": "not_registered"}
    stored = session.scalars(select(Contact.portal_password_hash)).one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored


def test_a_login_without_a_password_yet_is_a_wrong_password(session):
    session.add(Contact(first_name="A", last_name="B", email="a@x.example", portal_login="a@x.example"))
    session.commit()
    assert attempt(session, "a@x.example", "anything") == {"ok": False, "reason": "wrong_password"}


def test_five_failures_for_an_email_limit_it_even_with_the_right_password_until_the_window_passes(session):
    member(session)
    now = utcnow()
    for i in range(5):
        assert attempt(session, "eleni@helios-energy.gr", f"guess{i}", now=now)["reason"] == "wrong_password"
    assert attempt(session, "eleni@helios-energy.gr", "correct horse", now=now) == {
        "ok": False,
        "reason": "rate_limited",
    }
    later = now + timedelta(minutes=16)
    assert attempt(session, "eleni@helios-energy.gr", "correct horse", now=later) == {
        "ok": True,
        "reason": None,
    }


def test_unknown_emails_count_too_so_the_message_cannot_list_accounts(session):
    now = utcnow()
    for _ in range(5):
        assert attempt(session, "who@x.example", "x", now=now)["reason"] == "not_registered"
    assert attempt(session, "who@x.example", "x", now=now)["reason"] == "rate_limited"


def test_twenty_failures_from_one_address_limit_that_address_only(session):
    member(session)
    now = utcnow()
    for i in range(20):
        assert (
            attempt(session, f"user{i}@x.example", "x", client="198.51.100.9", now=now)["reason"]
            == "not_registered"
        )
    assert (
        attempt(session, "eleni@helios-energy.gr", "correct horse", client="198.51.100.9", now=now)["reason"]
        == "rate_limited"
    )
    assert (
        attempt(session, "eleni@helios-energy.gr", "correct horse", client="192.0.2.1", now=now)["ok"] is True
    )


def test_a_success_clears_the_emails_failures(session):
    member(session)
    now = utcnow()
    for _ in range(4):
        attempt(session, "eleni@helios-energy.gr", "bad", now=now)
    assert attempt(session, "eleni@helios-energy.gr", "correct horse", now=now + timedelta(seconds=1))["ok"]
    for _ in range(4):
        assert attempt(session, "eleni@helios-energy.gr", "bad", now=now + timedelta(seconds=2))[
            "reason"
        ] == ("wrong_password")


def test_the_commands_print_the_contract(session, capsys, engine):
    from tests.utils.factories import make_account

    acct = make_account(session, domain="helios-energy.gr")
    session.commit()

    def run(*argv) -> tuple[int, dict | None]:
        code = main(list(argv))
        out = capsys.readouterr().out.strip()
        return code, json.loads(out) if out else None

    code, made = run(
        "register",
        " New.Person@Helios-Energy.GR ",
        "--first-name",
        "New",
        "--last-name",
        "Person",
        "--password",
        "pa55word",
        "--json",
    )
    assert (code, made["outcome"], made["account"]) == (0, "linked_to_account", acct.account_number)
    assert isinstance(made["contact_id"], int)
    assert run("register", "new.person@helios-energy.gr", "--first-name", "N", "--last-name", "P", "--json")[
        1
    ] == {"outcome": "already_registered", "contact_id": made["contact_id"], "account": acct.account_number}
    assert run("register", "x@gmail.com", "--first-name", "X", "--last-name", "Y", "--json")[1][
        "outcome"
    ] == ("refused_public_domain")
    assert run("sign-in", "NEW.person@helios-energy.gr", "pa55word", "--json") == (
        0,
        {"ok": True, "reason": None},
    )
    assert run("sign-in", "new.person@helios-energy.gr", "nope", "--json") == (
        0,
        {"ok": False, "reason": "wrong_password"},
    )
    assert run("sign-in", "nobody@helios-energy.gr", "nope", "--json") == (
        0,
        {"ok": False, "reason": "not_registered"},
    )
    assert main(["register", "not-an-email", "--first-name", "A", "--last-name", "B", "--json"]) == 2
    assert "not an email address" in capsys.readouterr().err
    assert main(["sign-in", "not-an-email", "x", "--json"]) == 2


def test_the_receivers_sign_in_endpoint_limits_by_the_callers_address(session, receiver):
    member(session)
    assert receiver.post(
        "/portal/sign-in", json={"email": "Eleni@helios-energy.gr", "password": "correct horse"}
    ).json() == {"ok": True, "reason": None}
    assert receiver.post("/portal/sign-in", json={"email": "who@x.example", "password": "x"}).json() == {
        "ok": False,
        "reason": "not_registered",
    }
    assert receiver.post("/portal/sign-in", json={"email": "bad", "password": "x"}).status_code == 422


def test_concurrent_failures_never_slip_past_the_limit(session):
    """Two wrong passwords at once with one failure left: one is counted, the other is rate limited."""
    import threading

    from carepath import db

    member(session)
    limits = SignInLimits(per_email=1, per_address=20, window_minutes=15)
    barrier, results = threading.Barrier(2), []

    def worker(n):
        with db.unit_of_work() as s:
            barrier.wait()
            r = sign_in(
                session=s,
                email="eleni@helios-energy.gr",
                password=f"g{n}",
                client_address=f"198.51.100.{n}",
                limits=limits,
            )
        results.append(r.as_json()["reason"])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["rate_limited", "wrong_password"]


def test_old_attempts_are_pruned_and_recent_ones_kept(session):
    from models import SignInAttempt
    from tasks.sign_in import prune_attempts

    member(session)
    attempt(session, "eleni@helios-energy.gr", "old", now=utcnow() - timedelta(days=2))
    attempt(session, "eleni@helios-energy.gr", "recent")
    assert prune_attempts(session=session, older_than=utcnow() - timedelta(days=1)) == 1
    session.commit()
    assert session.scalars(select(SignInAttempt.outcome)).all() == ["wrong_password"]
    session.commit()
