"""Demo customers: the fixed story records first, then generated accounts, contacts, devices and contracts."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy.orm import Session

from data.people import Country, company, countries, email_address, person_name, phone_number, pick_country
from data.reference import Reference
from models import Account, Consent, ConsentStatus, Contact, Device, Entitlement, MessageChannel, Tier

IN, OUT = ConsentStatus.OPTED_IN, ConsentStatus.OPTED_OUT


@dataclass(frozen=True)
class StoryCustomer:
    """A fixed account + contact + device the demo script and tests rely on."""

    account_name: str
    domain: str
    tier: Tier
    country: str
    first_name: str
    last_name: str
    phone: str
    language: str
    sku: str
    sms: ConsentStatus | None  # None: no SMS consent row at all, which means no consent


# Created first, in this order: ACC-00001…ACC-00005 and DEV-000001…DEV-000005 (demo_faults.json uses these).
# A table reads better than one argument per line.
# fmt: off
STORY: tuple[StoryCustomer, ...] = (
    StoryCustomer("Helios Energy S.A.", "helios-energy.gr", Tier.GOLD, "GR",
                  "Eleni", "Papadopoulou", "+306912345678", "el", "CP-BOIL-200", IN),
    StoryCustomer("Wisła Smart Homes Sp. z o.o.", "wisla-smarthomes.pl", Tier.SILVER, "PL",
                  "Piotr", "Nowak", "+48601234567", "pl", "CP-HP-400", IN),
    StoryCustomer("Tejo Climatização Lda.", "tejo-clima.pt", Tier.STANDARD, "PT",
                  "Ana", "Costa", "+351912345678", "pt", "CP-WH-300", None),
    # "+3912" is deliberately not a valid number: it exercises the "invalid phone" path of the SMS step.
    StoryCustomer("Fontana Impianti S.r.l.", "fontana-impianti.it", Tier.SILVER, "IT",
                  "Marco", "Rossi", "+3912", "it", "CP-THERM-100", IN),
    StoryCustomer("Northwind Heating Ltd", "northwind-heating.co.uk", Tier.GOLD, "GB",
                  "John", "Smith", "+447700123456", "en", "CP-EV-600", IN),
)
# fmt: on
STORY_NAMES = frozenset((s.first_name, s.last_name) for s in STORY)


def account_number(n: int) -> str:
    return f"ACC-{n:05d}"


def device_number(n: int) -> str:
    return f"DEV-{n:06d}"


def _tier_mix(rng: random.Random, total: int) -> list[Tier]:
    """Tiers for the generated accounts so that, story included, ~20% are gold and ~30% silver."""
    story = [s.tier for s in STORY]
    gold = max(0, round(total * 0.2) - story.count(Tier.GOLD))
    silver = max(0, round(total * 0.3) - story.count(Tier.SILVER))
    generated = total - len(STORY)
    mix = ([Tier.GOLD] * gold + [Tier.SILVER] * silver)[:generated]
    mix += [Tier.STANDARD] * (generated - len(mix))
    rng.shuffle(mix)
    return mix


def _consent(contact: Contact, channel: MessageChannel, status: ConsentStatus, source: str) -> Consent:
    return Consent(
        contact_id=contact.id, channel=channel, status=status, source=source, changed_at=contact.created_at
    )


def _random_consents(rng: random.Random, contact: Contact) -> list[Consent]:
    """Most people opt in on the portal; ~10% never gave SMS consent, ~5% texted STOP."""
    rows = []
    roll = rng.random()
    if roll >= 0.15:
        rows.append(_consent(contact, MessageChannel.SMS, IN, "portal"))
    elif roll >= 0.10:
        rows.append(_consent(contact, MessageChannel.SMS, OUT, "sms:STOP"))
    if rng.random() < 0.95:
        rows.append(_consent(contact, MessageChannel.EMAIL, IN, "portal"))
    return rows


class _Uniques:
    """Domains, emails and phones handed out so far: no two customers share one."""

    def __init__(self) -> None:
        self.domains = {s.domain for s in STORY}
        self.emails: set[str] = set()
        self.phones = {s.phone for s in STORY}


def _accounts(
    rng: random.Random, total: int, anchor: datetime, seen: _Uniques
) -> list[tuple[Account, Country]]:
    """The story accounts first so their numbers are stable, then the generated mix."""
    plans = [
        (Account(name=s.account_name, tier=s.tier, email_domains=[s.domain]), countries()[s.country])
        for s in STORY
    ]
    for tier in _tier_mix(rng, total):
        country = pick_country(rng)
        name, domain = company(rng, country, seen.domains)
        plans.append((Account(name=name, tier=tier, email_domains=[domain]), country))
    for n, (acct, _) in enumerate(plans, start=1):
        acct.account_number = account_number(n)
        # Customers joined over the last four years; leaves room for contacts and installs after that.
        acct.created_at = anchor - timedelta(days=rng.randint(90, 1460), minutes=rng.randint(0, 600))
    return plans


def _contact(
    first: str, last: str, phone: str, language: str, country: Country, acct: Account, seen: _Uniques
) -> Contact:
    email = email_address(first, last, acct.email_domains[0], seen.emails)
    return Contact(
        first_name=first,
        last_name=last,
        email=email,
        phone=phone,
        language=language,
        time_zone=country.time_zone,
        account_id=acct.id,
        portal_login=email,
    )


def _colleagues(rng: random.Random, plans: list[tuple[Account, Country]], seen: _Uniques) -> list[Contact]:
    """2–4 people per generated account, 1–3 besides the story person per story account."""
    people = []
    for i, (acct, country) in enumerate(plans):
        for _ in range(rng.randint(1, 3) if i < len(STORY) else rng.randint(2, 4)):
            first, last = person_name(rng, country)
            while (first, last) in STORY_NAMES:  # keep the story people unambiguous by name
                first, last = person_name(rng, country)
            contact = _contact(
                first, last, phone_number(rng, country, seen.phones), country.language, country, acct, seen
            )
            contact.created_at = acct.created_at + timedelta(days=rng.randint(0, 60))
            people.append(contact)
    return people


def seed_customers(
    session: Session, rng: random.Random, ref: Reference, *, accounts: int, today: date
) -> None:
    """Insert story and generated accounts with contacts, consents, devices and entitlements; never commits."""
    seen = _Uniques()
    plans = _accounts(rng, accounts, datetime.combine(today, time(9, 0), tzinfo=UTC), seen)
    session.add_all(acct for acct, _ in plans)
    session.flush()

    story_people = []
    for s, (acct, _) in zip(STORY, plans):
        country = countries()[s.country]
        contact = _contact(s.first_name, s.last_name, s.phone, s.language, country, acct, seen)
        contact.created_at = acct.created_at + timedelta(days=1)
        story_people.append(contact)
    others = _colleagues(rng, plans, seen)
    session.add_all(story_people + others)
    session.flush()

    # Devices are numbered in creation order, so DEV-000001… belong to the story people.
    owned = [(c, s.sku, c.created_at + timedelta(days=3)) for s, c in zip(STORY, story_people)]
    skus = sorted(ref.products)
    for contact in others:
        for _ in range(rng.randint(1, 3)):
            installed = contact.created_at + timedelta(days=rng.randint(1, 29), hours=rng.randint(0, 8))
            owned.append((contact, rng.choice(skus), installed))
    devices = [
        Device(
            device_id=device_number(n),
            product_id=ref.products[sku].id,
            owner_contact_id=owner.id,
            installed_at=installed,
        )
        for n, (owner, sku, installed) in enumerate(owned, start=1)
    ]

    consents = []
    for s, contact in zip(STORY, story_people):
        consents.append(_consent(contact, MessageChannel.EMAIL, IN, "portal"))
        if s.sms is not None:
            consents.append(_consent(contact, MessageChannel.SMS, s.sms, "portal"))
    for contact in others:
        consents += _random_consents(rng, contact)

    session.add_all(devices + consents + _entitlements(rng, ref, [a for a, _ in plans], today))
    session.flush()


def _entitlements(
    rng: random.Random, ref: Reference, accounts: list[Account], today: date
) -> list[Entitlement]:
    """A current-year contract for every gold and silver account and for a few standard ones."""
    generated_standard = [a for a in accounts[len(STORY) :] if a.tier == Tier.STANDARD]
    # Roughly a quarter of standard customers bought Basic support (email and web only, no IoT).
    basic = {a.account_number for a in rng.sample(generated_standard, k=(len(generated_standard) + 3) // 4)}
    rows = []
    for acct in accounts:
        kind = {Tier.GOLD: "gold", Tier.SILVER: "silver"}.get(
            acct.tier, "basic" if acct.account_number in basic else None
        )
        if kind is None:
            continue
        t = ref.entitlements[kind]
        rows.append(
            Entitlement(
                name=t.name,
                account_id=acct.id,
                starts_on=date(today.year, 1, 1),
                ends_on=date(today.year, 12, 31),
                allocation=t.allocation,
                remaining=t.allocation,
                channels=list(t.channels),
                restrict_case_creation=False,
                sla_id=t.sla_id,
            )
        )
    return rows
