"""Admission control per caller: a rate per RPC and a number of open streams, so one caller
(a runaway script, a stolen operator token) cannot take a service from everyone else.

Checked by the access interceptor once it knows who is calling. Rates are moving windows from
the `limits` library, per (caller identity, method); methods that do seconds of work (an
enrolment decodes up to 100 MP, a Cluster call up to 5,000 faces) have their own, lower rate.
FaceGate's own services (role `service`) are not limited here: the gateway's calls grow with
the number of doors, and the services bound their own work (queues, pixel and size limits).
A refused call gets RESOURCE_EXHAUSTED saying which limit and when to retry.
"""

from __future__ import annotations

import time
from collections import Counter

import limits
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

# full method names doing seconds of work per call
HEAVY = frozenset({
    "/facegate.v1.Gateway/EnrollFromImages",
    "/facegate.v1.Matcher/Cluster",
    "/facegate.v1.Gateway/ClusterReviews",
    "/facegate.v1.Matcher/ExportIdentities",
    "/facegate.v1.Detector/Detect",
    "/facegate.v1.Embedder/Embed",
})
EXEMPT_ROLES = frozenset({"service"})


class Refused(Exception):
    """A call over its caller's limit (the message says which and when to retry)."""


def parse_rate(text: str) -> str | None:
    """None if `text` is a rate the limits library reads ("100/second", "20 per minute"), else why not."""
    try:
        limits.parse(text)
    except ValueError:
        return f"{text!r} is not a rate like 100/second or 20/minute"
    return None


class Admission:
    """The limits of every caller of one service."""

    def __init__(self, rate: str, heavy_rate: str, max_streams: int) -> None:
        self._rate, self._heavy = limits.parse(rate), limits.parse(heavy_rate)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._max_streams = max_streams
        self._streams: Counter[str] = Counter()  # open streaming calls per caller

    async def admit(self, identity: str, roles: frozenset[str], method: str) -> None:
        """Count one call of `method` by `identity`, or raise Refused if it is over its rate."""
        if roles & EXEMPT_ROLES:
            return
        item = self._heavy if method in HEAVY else self._rate
        if not await self._limiter.hit(item, identity, method):
            stats = await self._limiter.get_window_stats(item, identity, method)
            wait = max(0.0, stats.reset_time - time.time())
            raise Refused(f"{identity} is over its rate for {method.rsplit('/', 1)[-1]} ({item}); "
                          f"retry in {wait:.1f} s")

    def open_stream(self, identity: str, roles: frozenset[str]) -> None:
        """Take one of `identity`'s stream slots (give it back with `close_stream`), or raise Refused."""
        if roles & EXEMPT_ROLES:
            return
        if self._streams[identity] >= self._max_streams:
            raise Refused(f"{identity} already has {self._max_streams} streams open (the most one caller may "
                          "hold); close one first")
        self._streams[identity] += 1

    def close_stream(self, identity: str, roles: frozenset[str]) -> None:
        """Give back a slot taken by `open_stream` (once per call that took one)."""
        if roles & EXEMPT_ROLES:
            return
        self._streams[identity] -= 1
        if self._streams[identity] <= 0:
            del self._streams[identity]
