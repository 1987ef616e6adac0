"""Routing and assignment against a real database: queue by the rules, best agent by skills, else wait."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import select, update

from carepath import db
from carepath.rules.tickets import new_ticket_number, new_tracking_token
from cli.commands import main as cli
from flows.iot_fault_journey import iot_fault_journey
from flows.routing import route_cases
from models import (
    Agent,
    Case,
    CaseStatus,
    Channel,
    Priority,
    Queue,
    QueueItem,
    RoutingRule,
    RoutingRuleSet,
    Tier,
)
from tasks.ingest import store_fault_events
from tasks.routing import assign_waiting, route_and_assign
from tests.utils.databases import BACKEND
from tests.utils.factories import fault_event, make_account, make_contact, make_device, make_product
from tests.utils.flows import completed


def _organisation(session, agents):
    gold, iot, standard = Queue(name="Gold support"), Queue(name="IoT triage"), Queue(name="Standard support")
    rule_set = RoutingRuleSet(name="Default routing")
    session.add_all([gold, iot, standard, rule_set, *agents])
    session.flush()
    session.add_all(
        [
            RoutingRule(rule_set_id=rule_set.id, position=1, conditions={"tier": "gold"}, queue_id=gold.id),
            RoutingRule(rule_set_id=rule_set.id, position=2, conditions={"origin": "iot"}, queue_id=iot.id),
            RoutingRule(rule_set_id=rule_set.id, position=3, conditions={}, queue_id=standard.id),
        ]
    )
    session.flush()


def _case(session, *, contact, product=None, origin=Channel.EMAIL, priority=Priority.NORMAL) -> Case:
    case = Case(
        ticket_number=new_ticket_number(),
        tracking_token=new_tracking_token(),
        title="t",
        account_id=contact.account_id,
        contact_id=contact.id,
        product_id=product.id if product else None,
        origin=origin,
        priority=priority,
    )
    session.add(case)
    session.flush()
    return case


def _agent(name, skills, capacity=5):
    return Agent(name=name, email=f"{name.lower()}@carepath.example", skills=skills, capacity=capacity)


def test_queue_by_rules_and_the_best_matching_agent_takes_it(session) -> None:
    _organisation(
        session,
        [
            _agent("Eleni", {"el": 5, "heating": 2, "iot": 3}),
            _agent("Nikos", {"el": 4, "heating": 5, "iot": 4}),
            _agent("Aoife", {"en": 5, "heating": 5, "iot": 5}),
        ],
    )
    product = make_product(session, sku="CP-THERM-100")
    product.skill = "heating"
    greek_gold = make_contact(session, account=make_account(session, tier=Tier.GOLD), language="el")
    greek_silver = make_contact(session, account=make_account(session, tier=Tier.SILVER), language="el")
    a = _case(session, contact=greek_gold, product=product, origin=Channel.IOT)
    b = _case(session, contact=greek_silver, product=product, origin=Channel.IOT)
    c = _case(session, contact=greek_silver, origin=Channel.PHONE)
    session.commit()

    summary = route_and_assign(session=session, case_ids=[a.id, b.id, c.id])
    session.commit()

    assert (summary.routed, summary.assigned, summary.waiting) == (3, 3, 0)
    assert summary.by_queue == {"Gold support": 1, "IoT triage": 1, "Standard support": 1}
    rows = session.execute(
        select(Case.id, Queue.name, Agent.name)
        .join(Queue, Queue.id == Case.queue_id)
        .join(Agent, Agent.id == Case.owner_agent_id)
        .order_by(Case.id)
    ).all()
    # Nikos has the best el+heating+iot match; both Greek IoT cases are his; the phone case needs only
    # Greek and Eleni (el 5) beats Nikos (el 4).
    assert [(r[1], r[2]) for r in rows] == [
        ("Gold support", "Nikos"),
        ("IoT triage", "Nikos"),
        ("Standard support", "Eleni"),
    ]
    items = session.execute(select(QueueItem.entered_at, QueueItem.picked_at)).all()
    assert len(items) == 3 and all(e is not None and p is not None for e, p in items)


def test_no_free_capacity_or_skill_means_the_case_waits_in_its_queue(session) -> None:
    _organisation(session, [_agent("Nikos", {"el": 5}, capacity=1)])
    greek = make_contact(session, account=make_account(session, tier=Tier.SILVER), language="el")
    polish = make_contact(session, account=make_account(session, tier=Tier.SILVER), language="pl")
    low = _case(session, contact=greek, priority=Priority.LOW)
    urgent = _case(session, contact=greek, priority=Priority.CRITICAL)
    other = _case(session, contact=polish)
    session.commit()

    summary = route_and_assign(session=session, case_ids=[low.id, urgent.id, other.id])
    session.commit()

    assert (summary.routed, summary.assigned, summary.waiting) == (3, 1, 2)
    owners = dict(session.execute(select(Case.id, Case.owner_agent_id)).all())
    assert owners[urgent.id] is not None  # the most urgent case takes the last free place
    assert owners[low.id] is None and owners[other.id] is None
    waiting = session.scalars(select(QueueItem.picked_at).where(QueueItem.case_id == low.id)).one()
    assert waiting is None
    # Routing again does nothing: the cases are queued already.
    assert route_and_assign(session=session, case_ids=[low.id, urgent.id, other.id]).routed == 0


@pytest.mark.skipif(BACKEND != "postgresql", reason="row locks: PostgreSQL")
def test_two_workers_never_give_an_agent_more_than_their_capacity(session) -> None:
    _organisation(session, [_agent("Nikos", {"el": 5}, capacity=3)])
    greek = make_contact(session, account=make_account(session, tier=Tier.SILVER), language="el")
    ids = [_case(session, contact=greek).id for _ in range(8)]
    session.commit()
    barrier = threading.Barrier(2)

    def worker(batch):
        with db.unit_of_work() as s:
            barrier.wait()
            route_and_assign(session=s, case_ids=batch)

    threads = [threading.Thread(target=worker, args=(ids[i::2],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    session.expire_all()
    owned = session.scalars(select(Case.id).where(Case.owner_agent_id.is_not(None))).all()
    queued = session.scalars(select(Case.id).where(Case.queue_id.is_not(None))).all()
    assert len(owned) == 3 and len(queued) == 8


def test_a_waiting_case_goes_to_an_agent_once_one_has_room(session) -> None:
    _organisation(session, [_agent("Nikos", {"el": 5}, capacity=1)])
    greek = make_contact(session, account=make_account(session, tier=Tier.SILVER), language="el")
    first = _case(session, contact=greek)
    older = _case(session, contact=greek, priority=Priority.LOW)
    urgent = _case(session, contact=greek, priority=Priority.HIGH)
    session.commit()
    route_and_assign(session=session, case_ids=[first.id])
    route_and_assign(session=session, case_ids=[older.id, urgent.id])
    session.commit()
    assert assign_waiting(session=session).assigned == 0  # Nikos is full
    session.commit()

    session.execute(update(Case).where(Case.id == first.id).values(status=CaseStatus.RESOLVED))
    summary = assign_waiting(session=session)
    session.commit()

    assert (summary.assigned, summary.waiting) == (1, 1)
    owners = dict(session.execute(select(Case.id, Case.owner_agent_id)).all())
    assert owners[urgent.id] is not None and owners[older.id] is None  # the more urgent one first
    picked = session.execute(
        select(QueueItem.case_id, QueueItem.picked_at, QueueItem.worked_by_agent_id)
    ).all()
    by_case = {r.case_id: r for r in picked}
    assert (
        by_case[urgent.id].picked_at is not None
        and by_case[urgent.id].worked_by_agent_id == owners[urgent.id]
    )
    assert by_case[older.id].picked_at is None


@pytest.mark.usefixtures("prefect_server")
def test_route_cases_flow_routes_what_no_queue_holds_and_the_cli_reports_the_same(session, capsys) -> None:
    _organisation(session, [_agent("Aoife", {"en": 5}, capacity=10)])
    gold = make_contact(session, account=make_account(session, tier=Tier.GOLD), language="en")
    silver = make_contact(session, account=make_account(session, tier=Tier.SILVER), language="en")
    a, b = _case(session, contact=gold), _case(session, contact=silver)
    session.commit()

    result = completed(route_cases)

    assert result == {
        "routed": 2,
        "assigned": 2,
        "waiting": 0,
        "by_queue": {"Gold support": 1, "Standard support": 1},
    }
    queues = dict(session.execute(select(Case.id, Queue.name).join(Queue, Queue.id == Case.queue_id)).all())
    assert queues == {a.id: "Gold support", b.id: "Standard support"}
    session.commit()
    capsys.readouterr()
    assert cli(["route-cases", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"routed": 0, "assigned": 0, "waiting": 0, "by_queue": {}}


@pytest.mark.usefixtures("prefect_server")
def test_a_case_the_iot_drain_opens_lands_in_the_queue_its_rules_name(session, providers) -> None:
    _organisation(session, [_agent("Nikos", {"el": 5, "iot": 4}, capacity=10)])
    owner = make_contact(
        session, account=make_account(session, tier=Tier.SILVER), phone="+306912345678", language="el"
    )
    device = make_device(session, owner=owner)
    store_fault_events(session=session, events=[fault_event(device.device_id, 14)])
    session.commit()

    completed(iot_fault_journey)

    row = session.execute(
        select(Queue.name, Agent.name, QueueItem.entered_at, QueueItem.picked_at)
        .select_from(Case)
        .join(Queue, Queue.id == Case.queue_id)
        .join(Agent, Agent.id == Case.owner_agent_id)
        .join(QueueItem, QueueItem.case_id == Case.id)
        .where(Case.device_id == device.device_id)
    ).one()
    assert (row.name, row[1]) == ("IoT triage", "Nikos")
    assert row.entered_at is not None and row.picked_at is not None
