"""Failed authentications, limited per source address (``AUTH_FAILURES_PER_MINUTE``).

What counts as a failure: a missing or wrong API key on ``/v1``, a refused dashboard
sign-in, a missing or unknown webhook token (``zapikey``) on an incoming webhook. Each
one is counted against its source address in a window of a minute that opens at the
address's first failure. Past ``AUTH_FAILURES_PER_MINUTE`` failures in the window, every
further failure is answered 429 with ``Retry-After`` (the seconds the window has left)
instead of 401, and counted in ``cliq_auth_throttled_total{surface}``.

Only failures are counted and only failures are refused: the credential is checked
first, and a request that presents a valid one passes, whatever its address did
before. A client with a valid key is never locked out by others failing from the same
address (a NAT, a proxy, an integrator's egress). So the credential check is not
saved; what is: clients that honour 429 back off, and the log gets one
``auth_throttled`` line per address and window instead of a warning per failure.

The table lives in the API process's memory, not in Redis: it is consulted on every
failure and must cost no round trip (nor fail with Redis). The limit is therefore per
API process (N processes let an address fail N times as often), which is enough for
its purpose, bounding each process's work; 16+ character keys need no cluster-wide
lockout against guessing. The table holds at most :data:`MAX_ADDRESSES` windows:
windows that ended go first, then the oldest open ones.

The source address is the TCP peer (``request.remote``); an IPv6 address counts as its
/64, which one host usually has whole. There is no trusted-proxy setting: behind a
reverse proxy every client has the proxy's address, so the limit applies to all their
failures together (successes still pass). Raise it, or set 0 and limit at the proxy.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import structlog
from aiohttp import web
from prometheus_client import Counter

from producer.http.problems import TOO_MANY_FAILURES, Problem
from producer.settings import Option

log = structlog.get_logger("cliq.producer.http.throttle")

WINDOW_S = 60.0
MAX_ADDRESSES = 10_000
IPV6_PREFIX = 64


class Surface(StrEnum):
    """Where an authentication failed: the ``surface`` label of the metric."""

    API = "api"
    DASHBOARD = "dashboard"
    INCOMING = "incoming"


def parse_failures_per_minute(raw: str) -> int:
    """A count of failures, 0 meaning no limit."""
    value = int(raw)
    if value < 0:
        raise ValueError("must be 0 (no limit) or more")
    return value


AUTH_FAILURES_PER_MINUTE = Option(
    "AUTH_FAILURES_PER_MINUTE",
    "30",
    "Failed authentications (API key, dashboard sign-in, webhook token) one source "
    "address may make per minute before further failures are answered 429; 0: no limit. "
    "Counted per API process; successes are never limited.",
    parse_failures_per_minute,
)


def address_key(remote: str | None) -> str:
    """What a source address is counted as: itself, or the /64 of an IPv6 address."""
    if not remote:
        return ""
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:  # not an IP address (a Unix socket): counted as it is
        return remote
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


@dataclass
class _Window:
    opened: float
    failures: int = 0


class AuthThrottle:
    """The failures of each source address in its current window (see the module)."""

    def __init__(
        self,
        per_minute: int,
        throttled: Counter | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_ADDRESSES,
    ) -> None:
        self.per_minute = per_minute
        self._throttled = throttled
        self._clock = clock
        self._max_addresses = max_addresses
        # Ordered by opening time (a reopened window moves to the end): the windows that
        # ended, and the oldest open ones, are at the front.
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def failure(self, remote: str | None, surface: Surface) -> int | None:
        """Count a failed authentication from ``remote``.

        Returns ``None`` while the address is within the limit (answer 401 as usual),
        else the seconds to send in ``Retry-After`` with a 429.
        """
        if self.per_minute == 0:
            return None
        now = self._clock()
        key = address_key(remote)
        window = self._windows.get(key)
        if window is None or now >= window.opened + WINDOW_S:
            self._windows.pop(key, None)
            self._make_room(now)
            window = self._windows[key] = _Window(now)
        window.failures += 1
        if window.failures <= self.per_minute:
            return None
        retry_after = max(1, math.ceil(window.opened + WINDOW_S - now))
        if self._throttled is not None:
            self._throttled.labels(surface.value).inc()
        if window.failures == self.per_minute + 1:
            log.warning(
                "auth_throttled",
                surface=surface.value,
                source=key,
                limit_per_minute=self.per_minute,
                retry_after_s=retry_after,
            )
        return retry_after

    def _make_room(self, now: float) -> None:
        """Drop the windows that ended; then, if still full, the oldest one."""
        while self._windows:
            oldest = next(iter(self._windows.values()))
            if now < oldest.opened + WINDOW_S:
                break
            self._windows.popitem(last=False)
        if len(self._windows) >= self._max_addresses:
            self._windows.popitem(last=False)


AUTH_THROTTLE = web.AppKey("auth_throttle", AuthThrottle)


def throttled(request: web.Request, surface: Surface) -> Problem | None:
    """After a failed authentication: the 429 to answer instead of the refusal once its
    source address is over ``AUTH_FAILURES_PER_MINUTE``, else ``None``."""
    retry_after = request.config_dict[AUTH_THROTTLE].failure(request.remote, surface)
    if retry_after is None:
        return None
    return Problem(
        TOO_MANY_FAILURES,
        f"Too many failed authentications from this address; retry in {retry_after} s "
        "with valid credentials.",
        headers={"Retry-After": str(retry_after)},
    )
