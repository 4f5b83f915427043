"""The HTTP side of a delivery: one shared aiohttp session, one POST per attempt."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from producer.deliveries import RESPONSE_EXCERPT_BYTES
from producer.destinations import DestinationPolicy, DestinationRefused, GuardedResolver

# Small bodies are read to the end so the connection can be reused; a larger
# one is cut off here and its connection closed.
DRAIN_LIMIT_BYTES = 64 * 1024
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


def refusal_of(exc: BaseException) -> DestinationRefused | None:
    """The policy's refusal behind ``exc`` (raised by our resolver, wrapped by aiohttp)."""
    if isinstance(exc, DestinationRefused):
        return exc
    cause = getattr(exc, "os_error", None)
    return cause if isinstance(cause, DestinationRefused) else None


def describe_error(exc: BaseException, timeout_s: float) -> str:
    """A short, log- and email-friendly reason for a failed request."""
    if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return f"timeout: no complete answer within {timeout_s:g}s"
    refusal = refusal_of(exc)
    if refusal is not None:
        return f"refused: {refusal}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"tls: certificate error: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"tls: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"dns: cannot resolve {exc.host}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "disconnected: the server closed the connection without answering"
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ClientOSError):
        return f"connection: {exc}"
    if isinstance(exc, aiohttp.ClientResponseError):
        # Only raised here when the answer is not valid HTTP (no raise_for_status): its
        # status is the parser's 400, not one the receiver sent. One line, no URL.
        return "invalid response: " + " ".join(str(exc.message).split())
    if isinstance(exc, aiohttp.InvalidURL):
        return f"invalid url: {exc}"
    return f"{type(exc).__name__}: {exc}"


class Sender:
    """POSTs bodies with one keep-alive session per worker process."""

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
        self._default_timeout = self._timeouts(timeout_s)
        self._max_connections = max_connections
        self._policy = policy
        self._user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        """Open the session (inside the running event loop)."""
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            limit_per_host=0,
            ttl_dns_cache=30,
            resolver=None if self._policy is None else GuardedResolver(self._policy),
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._default_timeout,
            headers={"User-Agent": self._user_agent},
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    @staticmethod
    def _timeouts(total_s: float) -> aiohttp.ClientTimeout:
        # Bounded in all, body included (a receiver that trickles cannot hold a slot
        # for longer), and to connect. No read timeout: as long as the total it could
        # never fire first, and re-arming it on every read costs ~1.5% of the CPU.
        return aiohttp.ClientTimeout(
            total=total_s, sock_connect=min(CONNECT_TIMEOUT_S, total_s), sock_read=None
        )

    async def close(self) -> None:
        """Close the session and its connections."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float = 0.0
    ) -> Response:
        """One attempt. Never raises for network or HTTP trouble: it is in the response.

        ``timeout_s``: the endpoint's own timeout, when shorter than DELIVERY_TIMEOUT
        (0: DELIVERY_TIMEOUT; a longer one, from before DELIVERY_TIMEOUT was lowered,
        is cut to it)."""
        assert self._session is not None, "Sender.start() first"
        limit = min(timeout_s, self._timeout_s) if timeout_s > 0 else self._timeout_s
        started = time.perf_counter()
        try:
            if self._policy is not None:
                self._policy.check_literal(urlsplit(url).hostname or "")
            async with self._session.post(
                url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=self._default_timeout
                if limit == self._timeout_s
                else self._timeouts(limit),
            ) as response:
                excerpt = await self._read_excerpt(response)
                retry_after = (
                    parse_retry_after(response.headers.get("Retry-After"), time.time())
                    if response.status in RETRY_AFTER_STATUSES
                    else None
                )
                return Response(
                    response.status, None, time.perf_counter() - started, excerpt, retry_after
                )
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as exc:
            error = describe_error(exc, limit)
            refused = refusal_of(exc) is not None
            timed_out = isinstance(exc, TimeoutError)
            return Response(
                None,
                error,
                time.perf_counter() - started,
                "",
                refused=refused,
                timed_out=timed_out,
            )

    @staticmethod
    async def _read_excerpt(response: aiohttp.ClientResponse) -> str:
        length = response.content_length
        if length is not None and length <= DRAIN_LIMIT_BYTES:
            return (await response.read())[:RESPONSE_EXCERPT_BYTES].decode(
                "utf-8", errors="replace"
            )
        head = bytearray()
        drained = 0
        while drained < DRAIN_LIMIT_BYTES:
            chunk = await response.content.read(DRAIN_LIMIT_BYTES - drained)
            if not chunk:
                break
            head += chunk[: RESPONSE_EXCERPT_BYTES - len(head)]
            drained += len(chunk)
        else:
            response.close()  # too much to drain: drop the connection instead
        return head.decode("utf-8", errors="replace")
