"""A small HTTP/1.1 client for delivery POSTs, on asyncio protocols.

It keeps what the workers need from an HTTP client and nothing else: keep-alive
connections per origin, a total and a connect timeout, the destination policy applied
to every address a name resolves to (at connect time, so a name that changed since
registration is still checked), TLS with certificate and host name verification,
redirects never followed, and the answer's body read only up to a cap. aiohttp's client
spent about a third of a busy worker's CPU, most of it on machinery a webhook POST
never uses (cookies, redirects, streaming, tracing, multipart).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from ipaddress import ip_address
from typing import cast
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver

from producer.destinations import DestinationRefused, is_legacy_ipv4
from worker.http_parser import HttpError, ResponseParser

KEEPALIVE_S = 15.0  # an idle connection is closed after this long (aiohttp's default)
DNS_TTL_S = 30.0


@dataclass(frozen=True, slots=True)
class Answer:
    """What a receiver sent back: its status, ``Retry-After`` and the body's first bytes."""

    status: int
    retry_after: str | None
    excerpt: bytes


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a URL's request goes, and its request line's target."""

    tls: bool
    host: str
    port: int
    target: str
    host_header: str


@lru_cache(maxsize=4096)
def origin_of(url: str) -> Origin:
    """Parse a (validated) endpoint URL once; endpoints are few, deliveries many."""
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    netloc_host = f"[{host}]" if ":" in host else host
    default = port == (443 if tls else 80)
    return Origin(tls, host, port, target, netloc_host if default else f"{netloc_host}:{port}")


class Connection(asyncio.Protocol):
    """One keep-alive connection; it answers one request at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_timer: asyncio.TimerHandle | None = None
        self._parser: ResponseParser | None = None
        self._waiter: asyncio.Future[Answer] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """asyncio: connected."""
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def send(self, data: bytes, waiter: asyncio.Future[Answer]) -> None:
        """Write a whole request; ``waiter`` gets its answer."""
        assert self.transport is not None
        self._parser = ResponseParser()
        self._waiter = waiter
        self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        """asyncio: bytes arrived; an answer completes the waiter."""
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection cannot be trusted
            return
        try:
            done = parser.feed(data)
        except HttpError as exc:
            self._finish(exc)
            return
        if done:
            self._finish(None)

    def eof_received(self) -> bool:
        """asyncio: the receiver closed its side; close ours too."""
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        """asyncio: the connection is gone; a waiting request learns why."""
        self.closed = True
        if self.idle_timer is not None:
            self.idle_timer.cancel()
        parser, waiter = self._parser, self._waiter
        if parser is None or waiter is None or waiter.done():
            return
        error = parser.ended()
        self._finish(error)

    def _finish(self, error: Exception | None) -> None:
        parser, waiter = self._parser, self._waiter
        self._parser = self._waiter = None
        assert parser is not None
        assert waiter is not None
        if error is not None:
            self.close()
            if not waiter.done():
                waiter.set_exception(error)
            return
        if not parser.keep_alive:
            self.close()
        if not waiter.done():
            waiter.set_result(Answer(parser.status, parser.retry_after, bytes(parser.excerpt)))

    @property
    def reusable(self) -> bool:
        """Open and between requests (a transport already closing would drop the
        request's bytes and leave it waiting for the total limit)."""
        return (
            not self.closed
            and self._waiter is None
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class HttpClient:
    """POSTs over pooled keep-alive connections, at most ``max_connections`` requests
    in flight."""

    def __init__(
        self,
        *,
        max_connections: int,
        resolver: AbstractResolver,
        user_agent: str,
        connect_timeout_s: float,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``resolver`` applies the destination policy (a
        :class:`~producer.destinations.GuardedResolver`), or not when every destination
        is allowed; IP literals are not resolved (nor checked: the caller checks them)."""
        self._resolver = resolver
        self._connect_timeout_s = connect_timeout_s
        self._ssl = ssl_context or ssl.create_default_context()
        self._slots = asyncio.Semaphore(max_connections)
        self._max_idle = max_connections
        self._idle: dict[Origin, list[Connection]] = {}
        self._idle_count = 0
        self._addresses: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._fixed_head = f"User-Agent: {user_agent}\r\n"

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float
    ) -> Answer:
        """One request, answered within ``timeout_s`` in all (connecting included).

        Raises ``TimeoutError``, :class:`~producer.destinations.DestinationRefused` or
        :class:`HttpError`."""
        origin = origin_of(url)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        head = "".join(
            [
                f"POST {origin.target} HTTP/1.1\r\nHost: {origin.host_header}\r\n",
                self._fixed_head,
                f"Content-Length: {len(body)}\r\n",
                *[f"{name}: {value}\r\n" for name, value in headers.items()],
                "\r\n",
            ]
        )
        request = head.encode() + body
        if self._slots.locked():
            await asyncio.wait_for(self._slots.acquire(), timeout_s)
        else:
            await self._slots.acquire()
        try:
            connection = self._take_idle(origin)
            if connection is None:
                connection = await asyncio.wait_for(
                    self._connect(origin),
                    min(self._connect_timeout_s, max(0.0, deadline - loop.time())),
                )
            waiter: asyncio.Future[Answer] = loop.create_future()
            timer = loop.call_at(deadline, _expire, waiter)
            try:
                connection.send(request, waiter)
                answer = await waiter
            except BaseException:
                connection.close()
                raise
            finally:
                timer.cancel()
            self._give_back(connection, loop)
            return answer
        finally:
            self._slots.release()

    def _take_idle(self, origin: Origin) -> Connection | None:
        pool = self._idle.get(origin)
        while pool:
            connection = pool.pop()
            self._idle_count -= 1
            if connection.idle_timer is not None:
                connection.idle_timer.cancel()
                connection.idle_timer = None
            if connection.reusable:
                return connection
        return None

    def _give_back(self, connection: Connection, loop: asyncio.AbstractEventLoop) -> None:
        if not connection.reusable or self._idle_count >= self._max_idle:
            connection.close()
            return
        connection.idle_timer = loop.call_later(KEEPALIVE_S, connection.close)
        self._idle.setdefault(connection.origin, []).append(connection)
        self._idle_count += 1

    async def _connect(self, origin: Origin) -> Connection:
        loop = asyncio.get_running_loop()
        last: OSError | None = None
        for address in await self._resolve(origin.host, origin.port):
            try:
                _, connection = await loop.create_connection(
                    lambda: Connection(origin),
                    address,
                    origin.port,
                    ssl=self._ssl if origin.tls else None,
                    server_hostname=origin.host if origin.tls else None,
                )
            except ssl.SSLCertVerificationError as exc:
                raise HttpError(f"tls: certificate error: {exc.verify_message or exc}") from exc
            except ssl.SSLError as exc:
                raise HttpError(f"tls: {exc}") from exc
            except OSError as exc:
                last = exc
                continue
            return connection
        assert last is not None
        raise HttpError(f"connect: {last.strerror or last}") from last

    async def _resolve(self, host: str, port: int) -> list[str]:
        """The addresses to try (the resolver dropped those the policy refuses)."""
        try:
            ip_address(host)
        except ValueError:
            pass
        else:
            return [host]
        if is_legacy_ipv4(host):
            # The resolver would read 2130706433 or 127.1 as 127.0.0.1: refused, as at
            # registration, rather than connected to an address nobody checked.
            raise HttpError(f"invalid url: host {host} is not a canonical IPv4 address")
        now = time.monotonic()
        cached = self._addresses.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            results = await self._resolver.resolve(host, port, socket.AF_UNSPEC)
        except DestinationRefused:
            raise
        except OSError as exc:
            raise HttpError(f"dns: cannot resolve {host}") from exc
        found = list(dict.fromkeys(str(result["host"]) for result in results))
        if not found:
            raise HttpError(f"dns: cannot resolve {host}")
        self._addresses[(host, port)] = (now + DNS_TTL_S, found)
        return found

    async def close(self) -> None:
        """Close every idle connection (requests in flight close theirs when done)."""
        for pool in self._idle.values():
            for connection in pool:
                connection.close()
        self._idle.clear()
        self._idle_count = 0


def _expire(waiter: asyncio.Future[Answer]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
