"""The HTTP side of a delivery: one keep-alive client per process, one POST per attempt."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp.resolver import DefaultResolver

from producer.destinations import DestinationPolicy, DestinationRefused, GuardedResolver
from worker.http_client import HttpClient
from worker.http_parser import HttpError

CONNECT_TIMEOUT_S = 5.0


# Statuses whose Retry-After header is honoured (RFC 9110: 503; RFC 6585: 429).
RETRY_AFTER_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` value (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now_s)


@dataclass(frozen=True)
class Response:
    """What one attempt got back: a status, or the error that prevented one."""

    status: int | None
    error: str | None
    duration_s: float
    excerpt: str
    retry_after_s: float | None = None
    timed_out: bool = False
    """No complete answer within ``DELIVERY_TIMEOUT`` (or no connection within 5 s)."""
    # The destination policy refused the address: no request was made, none will be.
    refused: bool = False

    @property
    def ok(self) -> bool:
        """Only a 2xx answer is a success (redirects are not followed)."""
        return self.status is not None and 200 <= self.status < 300


def describe_error(exc: BaseException, timeout_s: float) -> str:
    """A short, log- and email-friendly reason for a failed request."""
    if isinstance(exc, TimeoutError):
        return f"timeout: no complete answer within {timeout_s:g}s"
    if isinstance(exc, DestinationRefused):
        return f"refused: {exc}"
    if isinstance(exc, HttpError):
        return str(exc)
    if isinstance(exc, OSError):
        return f"connection: {exc.strerror or exc}"
    return f"{type(exc).__name__}: {exc}"


class Sender:
    """POSTs bodies over one keep-alive client per worker process."""

    def __init__(
        self,
        *,
        timeout_s: float,
        max_connections: int,
        policy: DestinationPolicy | None,
        user_agent: str,
    ) -> None:
        """``policy`` None allows every destination (``ALLOW_PRIVATE_DESTINATIONS=1``)."""
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._policy = policy
        self._user_agent = user_agent
        self._client: HttpClient | None = None

    async def start(self) -> None:
        """Make the client (inside the running event loop)."""
        resolver = DefaultResolver()
        self._client = HttpClient(
            max_connections=self._max_connections,
            resolver=resolver if self._policy is None else GuardedResolver(self._policy, resolver),
            user_agent=self._user_agent,
            connect_timeout_s=CONNECT_TIMEOUT_S,
        )

    async def close(self) -> None:
        """Close the client's connections."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float = 0.0
    ) -> Response:
        """One attempt. Never raises for network or HTTP trouble: it is in the response.

        ``timeout_s``: the endpoint's own timeout, when shorter than DELIVERY_TIMEOUT
        (0: DELIVERY_TIMEOUT; a longer one, from before DELIVERY_TIMEOUT was lowered,
        is cut to it)."""
        assert self._client is not None, "Sender.start() first"
        limit = min(timeout_s, self._timeout_s) if timeout_s > 0 else self._timeout_s
        started = time.perf_counter()
        try:
            if self._policy is not None:
                self._policy.check_literal(urlsplit(url).hostname or "")
            answer = await self._client.post(url, body, headers, limit)
        except (TimeoutError, HttpError, OSError, ValueError) as exc:
            return Response(
                None,
                describe_error(exc, limit),
                time.perf_counter() - started,
                "",
                refused=isinstance(exc, DestinationRefused),
                timed_out=isinstance(exc, TimeoutError),
            )
        retry_after = (
            parse_retry_after(answer.retry_after, time.time())
            if answer.status in RETRY_AFTER_STATUSES
            else None
        )
        return Response(
            answer.status,
            None,
            time.perf_counter() - started,
            answer.excerpt.decode("utf-8", errors="replace"),
            retry_after,
        )
