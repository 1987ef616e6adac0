"""Entitlements: which one covers a new case, whether it may be opened, when a case holds a term, and which
state the dates put an entitlement in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date

# Values of models.enums (rules import no models): DecreaseRemainingOn, EntitlementState, CaseStatus.
ON_CREATION, ON_RESOLUTION = "case_creation", "case_resolution"
DRAFT, WAITING, ACTIVE, EXPIRED, CANCELLED = "draft", "waiting", "active", "expired", "cancelled"


@dataclass(frozen=True)
class EntitlementTerms:
    id: int
    starts_on: date
    ends_on: date
    remaining: int
    channels: tuple[str, ...]  # empty: every channel
    product_skus: tuple[str, ...]  # empty: every product
    active: bool = True  # its state lets it be used (waiting or active)
    name: str = ""
    allocation: int = 0
    contact_id: int | None = None  # set: only this contact's cases
    restrict_case_creation: bool = False
    decrease_on: str = ON_RESOLUTION
    # Channels with their own allocation: channel → (remaining, allocation). Others share the total.
    channel_terms: Mapping[str, tuple[int, int]] = field(default_factory=dict)


def in_force(state: str, starts_on: date, ends_on: date, on: date) -> bool:
    """Whether an entitlement can be used on this day: waiting or active, and the day within its period
    (a waiting one whose start has come is in force before the state refresh catches up)."""
    return state in (WAITING, ACTIVE) and starts_on <= on <= ends_on


def state_on(state: str, starts_on: date, ends_on: date, on: date) -> str:
    """The state the dates put an entitlement in: waiting before its start, active within its period,
    expired after its end. Draft and cancelled are an operator's choice and stay."""
    if state not in (WAITING, ACTIVE, EXPIRED):
        return state
    if on > ends_on:
        return EXPIRED
    return WAITING if on < starts_on else ACTIVE


def applies(
    terms: EntitlementTerms, *, channel: str, product_sku: str | None, contact_id: int | None, on: date
) -> bool:
    """Whether the entitlement is for this case (channel, product, contact) and in force, terms left or not."""
    return (
        terms.active
        and terms.starts_on <= on <= terms.ends_on
        and (not terms.channels or channel in terms.channels)
        and (not terms.product_skus or (product_sku is not None and product_sku in terms.product_skus))
        and (terms.contact_id is None or terms.contact_id == contact_id)
    )


def terms_left(terms: EntitlementTerms, channel: str) -> bool:
    """A term is left overall and, for a channel with its own allocation, on that channel."""
    own = terms.channel_terms.get(channel)
    return terms.remaining > 0 and (own is None or own[0] > 0)


def covers(
    terms: EntitlementTerms, *, channel: str, product_sku: str | None, on: date, contact_id: int | None = None
) -> bool:
    """Whether the entitlement applies to a case on this channel and product, on this day, with cases left."""
    return applies(
        terms, channel=channel, product_sku=product_sku, contact_id=contact_id, on=on
    ) and terms_left(terms, channel)


def _preference(t: EntitlementTerms) -> tuple:
    # Product-specific ones first; then the one that ends soonest (use it before it lapses).
    return (not t.product_skus, t.ends_on, t.id)


def choose_entitlement(
    candidates: Iterable[EntitlementTerms],
    *,
    channel: str,
    product_sku: str | None,
    on: date,
    contact_id: int | None = None,
) -> EntitlementTerms | None:
    """The covering entitlement with terms left that ends soonest; product-specific ones first."""
    covering = [
        t
        for t in candidates
        if covers(t, channel=channel, product_sku=product_sku, on=on, contact_id=contact_id)
    ]
    return min(covering, key=_preference) if covering else None


@dataclass(frozen=True)
class EntitlementDecision:
    """The entitlement a new case gets (None: none applies), or why the case must not be opened."""

    entitlement: EntitlementTerms | None
    refusal: str | None = None


def refusal_reason(terms: EntitlementTerms, channel: str) -> str:
    """The clear error for a case refused by a spent entitlement: which one, which channel, what remains."""
    own = terms.channel_terms.get(channel)
    if own is not None and own[0] <= 0 < terms.remaining:
        left = f"{own[0]} of {own[1]} cases left on the {channel} channel ({terms.remaining} of {terms.allocation} overall)"
    else:
        left = f"{terms.remaining} of {terms.allocation} cases left"
    return (
        f"entitlement «{terms.name}» covers the {channel} channel but has {left} and restricts case creation"
    )


def decide_entitlement(
    candidates: Iterable[EntitlementTerms],
    *,
    channel: str,
    product_sku: str | None,
    contact_id: int | None,
    on: date,
) -> EntitlementDecision:
    """Dynamics' rule for a new case: the best applicable entitlement with a term left; when none has one, a
    spent entitlement that restricts case creation refuses the case; otherwise the case opens on the best
    spent one (it uses no term: the ledger says none was left)."""
    applicable = [
        t
        for t in candidates
        if applies(t, channel=channel, product_sku=product_sku, contact_id=contact_id, on=on)
    ]
    with_terms = [t for t in applicable if terms_left(t, channel)]
    if with_terms:
        return EntitlementDecision(min(with_terms, key=_preference))
    restricting = sorted((t for t in applicable if t.restrict_case_creation), key=_preference)
    if restricting:
        return EntitlementDecision(None, refusal_reason(restricting[0], channel))
    return EntitlementDecision(min(applicable, key=_preference) if applicable else None)


def holds_term(*, decrease_on: str, status: str, do_not_decrement: bool) -> bool:
    """Whether a case in this status holds one term of its entitlement: from creation while it is not
    cancelled, or while it is resolved; never with "do not decrement"."""
    if do_not_decrement:
        return False
    if decrease_on == ON_CREATION:
        return status != CANCELLED
    return status == "resolved"


@dataclass(frozen=True)
class NewCase:
    """A case about to be opened, as the entitlement rules see it."""

    key: str  # the caller's handle: a device id, a sender
    channel: str
    product_sku: str | None
    contact_id: int | None
    candidates: tuple[int, ...]  # ids of the entitlements of its account or contact


@dataclass(frozen=True)
class NewCaseTerms:
    """What a new case gets: its entitlement (or none), whether it uses a term now (decrease on creation),
    whether none was left to use, or why it must not be opened."""

    entitlement_id: int | None
    takes_term: bool = False
    no_term_left: bool = False
    own_channel: bool = False  # the term also comes from the channel's own allocation
    refusal: str | None = None


NO_ENTITLEMENT = NewCaseTerms(None)


def allocate_new_cases(
    cases: Iterable[NewCase], terms: Mapping[int, EntitlementTerms], *, on: date
) -> dict[str, NewCaseTerms]:
    """Decide each new case in turn, counting the terms earlier cases of the batch took (decrease on
    creation), so a batch never hands out more terms than an entitlement or a channel has left."""
    left = dict(terms)
    out: dict[str, NewCaseTerms] = {}
    for c in cases:
        if not c.candidates:  # no entitlement of its account or contact: nothing to decide
            out[c.key] = NO_ENTITLEMENT
            continue
        decision = decide_entitlement(
            [left[i] for i in c.candidates if i in left],
            channel=c.channel,
            product_sku=c.product_sku,
            contact_id=c.contact_id,
            on=on,
        )
        chosen = decision.entitlement
        if decision.refusal is not None or chosen is None:
            out[c.key] = NewCaseTerms(None, refusal=decision.refusal)
            continue
        own = c.channel in chosen.channel_terms
        if chosen.decrease_on != ON_CREATION:
            out[c.key] = NewCaseTerms(chosen.id, own_channel=own)
        elif not terms_left(chosen, c.channel):
            out[c.key] = NewCaseTerms(chosen.id, no_term_left=True, own_channel=own)
        else:
            channel_terms = dict(chosen.channel_terms)
            if own:
                remaining, allocation = channel_terms[c.channel]
                channel_terms[c.channel] = (remaining - 1, allocation)
            left[chosen.id] = replace(chosen, remaining=chosen.remaining - 1, channel_terms=channel_terms)
            out[c.key] = NewCaseTerms(chosen.id, takes_term=True, own_channel=own)
    return out
