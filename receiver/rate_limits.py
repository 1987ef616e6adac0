"""Request rates on the receiver, per client address and per webhook source (the `limits` library's sliding
window counters, kept in this process's memory).

A flood from one address, or from one source's credentials, is refused with 429, a Retry-After and a reason,
before its body is read: it never reaches the inbox, and the refusal is recorded like any other.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from fastapi import Request
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

from carepath.sources import routes
from receiver.errors import Rejected


@dataclass(frozen=True)
class Refusal:
    """Why a request is over its rate, and when to come back."""

    reason: str
    retry_after: int


def parse_rate(text: str | None) -> RateLimitItem | None:
    """A rate in the `limits` notation ("500/second", "20 per minute"); empty or None: no limit."""
    return parse(text) if text and text.strip() else None


class RequestRates:
    """Counts requests per client address and per source; refuses the one over either rate."""

    def __init__(self, *, per_client: str | None, per_source: str | None) -> None:
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._per_client = parse_rate(per_client)
        self._per_source = parse_rate(per_source)

    def check(self, *, client: str, source: str | None) -> Refusal | None:
        """None when the request may go on; else the refusal (the client's rate is counted first, so a
        refused client never spends its source's allowance)."""
        for item, scope, key in (
            (self._per_client, "client", client),
            (self._per_source, "source", source),
        ):
            if item is None or key is None:
                continue
            if not self._limiter.hit(item, scope, key):
                reset_at, _ = self._limiter.get_window_stats(item, scope, key)
                wait = max(1, math.ceil(reset_at - time.time()))
                return Refusal(f"rate limit of {item} per {scope} exceeded for {key}", wait)
        return None


_SOURCE_OF_ROUTE = {path: declared.source for path, declared in routes().items()}


def client_address(request: Request) -> str:
    """The caller's address: the proxy's X-Forwarded-For (first hop) when forwarded headers are trusted."""
    settings = request.app.state.settings
    forwarded = request.headers.get("x-forwarded-for")
    if settings.trust_forwarded_headers and forwarded:
        return forwarded.split(",")[0].strip()[:64]
    return request.client.host if request.client else "unknown"


async def within_rate(request: Request) -> None:
    """A route dependency: raise a recorded 429 when the caller or its source is over its rate."""
    source = _SOURCE_OF_ROUTE.get(request.url.path)
    refusal = request.app.state.rates.check(client=client_address(request), source=source)
    if refusal is not None:
        request.scope["carepath_source"] = source or request.url.path.strip("/").split("/")[0][:32]
        raise Rejected(429, refusal.reason, headers={"Retry-After": str(refusal.retry_after)})
