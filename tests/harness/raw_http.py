"""A raw TCP server on 127.0.0.1 that misbehaves at the HTTP level on purpose.

Each connection's request is read in full (head and ``Content-Length`` body), then a
*behaviour* writes whatever broken or oversized answer the test wants: a cut-off
head, a body shorter than announced, a huge or endless body, or nothing at all. The
server counts the bytes the socket accepted, so a test can tell how much of a huge
answer the client actually took. Every wait is bounded by ``cap_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

CHUNK_BYTES = 64 * 1024
CAP_S = 30.0
"""The longest any one connection is kept open, whatever its behaviour."""
REQUEST_READ_TIMEOUT_S = 10.0


@dataclass
class RawExchange:
    """One connection: the request it carried and what the behaviour managed to send."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    cap_s: float
    head: bytes = b""
    body: bytes = b""
    bytes_sent: int = 0
    """Bytes of the answer that the socket accepted (counted after each ``drain()``)."""
    body_bytes_sent: int = 0
    """The part of ``bytes_sent`` that was body (no head, no chunk framing)."""
    peer_gone: bool = False
    """The client closed or reset the connection while the behaviour was still writing."""
    accepted_at: float = field(default_factory=time.monotonic)
    request_read_at: float | None = None
    finished_at: float | None = None
    """``time.monotonic()`` when the behaviour ended (answer written, or client gone)."""

    @property
    def duration_s(self) -> float:
        """Seconds from the request being read to the behaviour's end."""
        if self.request_read_at is None or self.finished_at is None:
            raise RuntimeError("the exchange has not finished")
        return self.finished_at - self.request_read_at

    async def send(self, data: bytes, body_bytes: int = 0) -> bool:
        """Write ``data`` and wait for the socket to take it; False once the client is gone.

        ``body_bytes`` is how much of ``data`` counts as body once it was taken.
        """
        if self.peer_gone or self.writer.is_closing():
            self.peer_gone = True
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            self.peer_gone = True
            return False
        self.bytes_sent += len(data)
        self.body_bytes_sent += body_bytes
        return True

    async def wait_for_client_to_leave(self) -> None:
        """Read until the client closes its side (or ``cap_s`` passes); sends nothing."""
        deadline = self.accepted_at + self.cap_s
        with contextlib.suppress(TimeoutError, ConnectionError, OSError):
            while time.monotonic() < deadline:
                data = await asyncio.wait_for(
                    self.reader.read(CHUNK_BYTES), max(0.0, deadline - time.monotonic())
                )
                if not data:
                    self.peer_gone = True
                    return


Behaviour = Callable[[RawExchange], Awaitable[None]]


# -- behaviours ------------------------------------------------------------------------


def head_only(head: bytes = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n") -> Behaviour:
    """Send part of the response head (no blank line ending it), then close."""

    async def behave(exchange: RawExchange) -> None:
        await exchange.send(head)

    return behave


def short_body(declared: int = 100, sent: int = 10, status: int = 200) -> Behaviour:
    """Announce ``Content-Length: declared``, send only ``sent`` bytes of body, then close."""

    async def behave(exchange: RawExchange) -> None:
        head = f"HTTP/1.1 {status} OK\r\nContent-Length: {declared}\r\n\r\n"
        await exchange.send(head.encode() + b"y" * sent, body_bytes=sent)

    return behave


def huge_body(total: int, status: int = 200, fill: bytes = b"x") -> Behaviour:
    """A ``Content-Length: total`` answer streamed until done or the client leaves."""
    chunk = fill * (CHUNK_BYTES // len(fill))

    async def behave(exchange: RawExchange) -> None:
        head = (
            f"HTTP/1.1 {status} OK\r\nContent-Type: text/plain\r\nContent-Length: {total}\r\n\r\n"
        )
        if not await exchange.send(head.encode()):
            return
        deadline = exchange.accepted_at + exchange.cap_s
        while exchange.body_bytes_sent < total and time.monotonic() < deadline:
            part = chunk[: total - exchange.body_bytes_sent]
            if not await exchange.send(part, body_bytes=len(part)):
                return

    return behave


def endless_chunked(status: int = 200, fill: bytes = b"z") -> Behaviour:
    """A chunked answer that never ends: chunks until the client leaves (or ``cap_s``)."""
    data = fill * (CHUNK_BYTES // len(fill))
    chunk = f"{len(data):x}\r\n".encode() + data + b"\r\n"

    async def behave(exchange: RawExchange) -> None:
        head = f"HTTP/1.1 {status} OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        if not await exchange.send(head.encode()):
            return
        deadline = exchange.accepted_at + exchange.cap_s
        while time.monotonic() < deadline:
            if not await exchange.send(chunk, body_bytes=len(data)):
                return

    return behave


def endless_header(status: int = 200) -> Behaviour:
    """A status line, then one header line that never ends (until the client leaves)."""
    data = b"a" * CHUNK_BYTES

    async def behave(exchange: RawExchange) -> None:
        if not await exchange.send(f"HTTP/1.1 {status} OK\r\nX-Endless: ".encode()):
            return
        deadline = exchange.accepted_at + exchange.cap_s
        while time.monotonic() < deadline:
            if not await exchange.send(data):
                return

    return behave


def trickle(head: bytes, every_s: float = 0.2) -> Behaviour:
    """Send ``head``, then one more byte every ``every_s`` (until the client leaves)."""

    async def behave(exchange: RawExchange) -> None:
        if not await exchange.send(head):
            return
        deadline = exchange.accepted_at + exchange.cap_s
        while time.monotonic() < deadline:
            await asyncio.sleep(every_s)  # the pace of the misbehaviour, not a wait for state
            if not await exchange.send(b"t"):
                return

    return behave


def silent() -> Behaviour:
    """Accept and read the request, never answer; wait for the client to give up."""

    async def behave(exchange: RawExchange) -> None:
        await exchange.wait_for_client_to_leave()

    return behave


# -- server ------------------------------------------------------------------------------


class RawHttpServer:
    """``asyncio.start_server`` on a free 127.0.0.1 port running ``behaviour`` per request.

    ``exchanges`` lists every connection whose request was read; each one's
    ``finished_at`` is set when its behaviour ended.
    """

    def __init__(self, behaviour: Behaviour, cap_s: float = CAP_S) -> None:
        self.behaviour = behaviour
        self.cap_s = cap_s
        self.exchanges: list[RawExchange] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._changed = asyncio.Event()

    def url(self, path: str = "/hook") -> str:
        if self.port == 0:
            raise RuntimeError("raw server has not been started")
        return f"http://127.0.0.1:{self.port}" + (path if path.startswith("/") else "/" + path)

    @property
    def finished(self) -> list[RawExchange]:
        """The exchanges whose behaviour has ended."""
        return [e for e in self.exchanges if e.finished_at is not None]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening and end every connection still open."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def wait_finished(
        self,
        count: int,
        timeout: float,  # noqa: ASYNC109  # a deadline for a poll, not a cancel scope
    ) -> list[RawExchange]:
        """Wait until ``count`` exchanges have ended; returns them (oldest first)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            done = self.finished
            if len(done) >= count:
                return done
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"raw server {self.url()} finished {len(done)} exchange(s) of "
                    f"{len(self.exchanges)}, expected {count} within {timeout:.2f} s"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        exchange = RawExchange(reader, writer, self.cap_s)
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_READ_TIMEOUT_S)
                length = 0
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                body = await asyncio.wait_for(reader.readexactly(length), REQUEST_READ_TIMEOUT_S)
            except (TimeoutError, ValueError, ConnectionError, asyncio.IncompleteReadError):
                return  # not a request (e.g. a port probe): nothing to record
            exchange.head, exchange.body = head, body
            exchange.request_read_at = time.monotonic()
            self.exchanges.append(exchange)
            self._changed.set()
            await self.behaviour(exchange)
        finally:
            if exchange.request_read_at is not None:
                exchange.finished_at = time.monotonic()
                self._changed.set()
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            if task is not None:
                self._tasks.discard(task)

    async def __aenter__(self) -> RawHttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"RawHttpServer(port={self.port}, exchanges={len(self.exchanges)})"
