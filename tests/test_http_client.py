"""The workers' HTTP/1.1 client (worker/http_client.py, worker/http_parser.py): what it
reads from an answer, byte by byte, and what it keeps from aiohttp's client against
real servers on 127.0.0.1: keep-alive reuse, the connection cap, no redirects, the
destination policy on resolved addresses (real DNS packets), the connect and total
timeouts, and TLS verification."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.resolver import DefaultResolver

from producer.deliveries import RESPONSE_EXCERPT_BYTES
from producer.destinations import DestinationPolicy, DestinationRefused, GuardedResolver
from worker.http_client import HttpClient, origin_of
from worker.http_parser import DRAIN_LIMIT_BYTES, HttpError, ResponseParser

from harness.dns import DnsResolver, DnsServer
from harness.polling import wait_until
from harness.tls import self_signed

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def parse(answer: bytes, *, step: int = 0) -> ResponseParser:
    """Feed ``answer`` whole, or ``step`` bytes at a time; it must complete."""
    parser = ResponseParser()
    pieces = [answer] if step == 0 else [answer[i : i + step] for i in range(0, len(answer), step)]
    done = False
    for piece in pieces:
        assert not done, "complete before its last byte"
        done = parser.feed(piece)
    assert done, "not complete after its last byte"
    return parser


@pytest.mark.parametrize("step", [0, 1, 3])
def test_a_chunked_answer_with_extensions_and_trailers(step: int) -> None:
    answer = (
        b"HTTP/1.1 503 Busy\r\nTransfer-Encoding: chunked\r\nRetry-After: 7\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
    )
    parser = parse(answer, step=step)
    assert (parser.status, parser.retry_after, bytes(parser.excerpt)) == (503, "7", b"hello world")
    assert parser.keep_alive


@pytest.mark.parametrize("step", [0, 1])
def test_an_interim_100_continue_is_skipped(step: int) -> None:
    parser = parse(b"HTTP/1.1 100 Continue\r\n\r\n" + OK, step=step)
    assert (parser.status, bytes(parser.excerpt), parser.keep_alive) == (200, b"ok", True)


@pytest.mark.parametrize(
    ("answer", "keep_alive"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (OK + b"HTTP/1.1 200 OK\r\n", False),  # bytes past the answer
    ],
)
def test_which_answers_leave_the_connection_reusable(answer: bytes, keep_alive: bool) -> None:
    assert parse(answer).keep_alive is keep_alive


def test_a_body_without_length_ends_with_the_connection() -> None:
    parser = ResponseParser()
    assert not parser.feed(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")
    assert parser.ended() is None
    assert (bytes(parser.excerpt), parser.keep_alive) == (b"until the end", False)


def test_only_the_excerpt_is_kept_and_a_large_body_is_not_drained() -> None:
    small = b"a" * (RESPONSE_EXCERPT_BYTES * 3)
    parser = parse(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(small), small))
    assert (len(parser.excerpt), parser.keep_alive) == (RESPONSE_EXCERPT_BYTES, True)
    huge = ResponseParser()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (DRAIN_LIMIT_BYTES * 10)
    assert huge.feed(head + b"b" * RESPONSE_EXCERPT_BYTES)  # complete with the excerpt
    assert huge.keep_alive is False


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"SSH-2.0-OpenSSH_9.6\r\n\r\n", "invalid response: Bad status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "invalid response: Bad status line"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", "invalid response: Bad Content-Length"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "invalid response: Bad header line"),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            "invalid response: Bad chunk size line",
        ),
        (b"HTTP/1.1 200 OK\r\nX: " + b"y" * 20_000, "invalid response: more than"),
    ],
)
def test_what_is_not_http_is_an_error_naming_it(answer: bytes, error: str) -> None:
    with pytest.raises(HttpError, match=re.escape(error)):
        ResponseParser().feed(answer)


def test_an_answer_cut_short_says_where() -> None:
    cut_in_head = ResponseParser()
    cut_in_head.feed(b"HTTP/1.1 200 OK\r\n")
    assert str(cut_in_head.ended()).startswith("disconnected:")
    cut_in_body = ResponseParser()
    cut_in_body.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    assert str(cut_in_body.ended()) == "connection: Response payload is not completed"


def test_origins_and_request_targets() -> None:
    origin = origin_of("https://hooks.example.com/in?x=1")
    assert (origin.tls, origin.port, origin.target, origin.host_header) == (
        True,
        443,
        "/in?x=1",
        "hooks.example.com",
    )
    assert origin_of("http://[::1]:8080").host_header == "[::1]:8080"
    assert origin_of("http://[::1]:8080").target == "/"


class CountingServer:
    """A raw HTTP/1.1 server on 127.0.0.1 that counts connections and requests; it
    answers each request with ``answer``, after ``hold`` is set when one is given."""

    def __init__(self, answer: bytes = OK, hold: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.hold = hold
        self.connections = self.requests = self.open_now = self.most_open = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []
        self._handlers: list[asyncio.Task[None]] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def url(self, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}/hook"

    async def __aenter__(self) -> CountingServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        # Connections the client keeps open: end their handlers, which close them.
        for task in self._handlers:
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        for writer in self._writers:
            await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.append(task)
        self._writers.append(writer)
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(found.group(1)) if found else 0)
                self.requests += 1
                if self.hold is not None:
                    await self.hold.wait()
                writer.write(self.answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open_now -= 1
            writer.close()


def client(max_connections: int = 10, policy: DestinationPolicy | None = None) -> HttpClient:
    resolver = DefaultResolver()
    return HttpClient(
        max_connections=max_connections,
        resolver=resolver if policy is None else GuardedResolver(policy, resolver),
        user_agent="test",
        connect_timeout_s=1.0,
    )


async def test_one_connection_carries_sequential_requests() -> None:
    http = client()
    async with CountingServer() as server:
        for _ in range(20):
            answer = await http.post(server.url(), b"{}", {"X-A": "1"}, 5)
            assert (answer.status, answer.excerpt) == (200, b"ok")
        await http.close()
    assert (server.connections, server.requests) == (1, 20)


async def test_an_answer_saying_close_is_not_reused() -> None:
    http = client()
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    async with CountingServer(closing) as server:
        for _ in range(3):
            assert (await http.post(server.url(), b"{}", {}, 5)).status == 200
        await http.close()
    assert server.connections == 3


async def test_at_most_max_connections_requests_are_in_flight() -> None:
    http = client(max_connections=3)
    hold = asyncio.Event()
    async with CountingServer(hold=hold) as server:
        posts = [asyncio.create_task(http.post(server.url(), b"{}", {}, 10)) for _ in range(12)]
        await wait_until(lambda: server.requests == 3, 5, message="no first requests")
        assert server.open_now == 3
        hold.set()
        answers = await asyncio.gather(*posts)
        await http.close()
    assert [a.status for a in answers] == [200] * 12
    assert server.most_open == 3


async def test_a_redirect_is_an_answer_not_followed() -> None:
    http = client()
    moved = (
        b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/elsewhere\r\nContent-Length: 0\r\n\r\n"
    )
    async with CountingServer(moved) as server:
        answer = await http.post(server.url(), b"{}", {}, 5)
        await http.close()
    assert (answer.status, server.requests) == (302, 1)


@pytest.fixture
async def dns() -> AsyncIterator[DnsServer]:
    server = DnsServer()
    await server.start()
    try:
        yield server
    finally:
        server.stop()


def resolving_client(dns: DnsServer, policy: DestinationPolicy | None) -> HttpClient:
    resolver = DnsResolver(dns.port)
    return HttpClient(
        max_connections=4,
        resolver=resolver if policy is None else GuardedResolver(policy, resolver),
        user_agent="test",
        connect_timeout_s=0.3,
    )


async def test_a_name_is_checked_on_the_addresses_it_resolves_to(dns: DnsServer) -> None:
    dns.records["hooks.example"] = ["127.0.0.1"]
    async with CountingServer() as server:
        guarded = resolving_client(dns, DestinationPolicy())
        with pytest.raises(DestinationRefused, match="non-public addresses only"):
            await guarded.post(server.url("hooks.example"), b"{}", {}, 5)
        assert server.connections == 0
        allowed = resolving_client(dns, None)
        assert (await allowed.post(server.url("hooks.example"), b"{}", {}, 5)).status == 200
        await allowed.close()
    with pytest.raises(HttpError, match=re.escape("dns: cannot resolve nowhere.example")):
        await allowed.post("http://nowhere.example/hook", b"{}", {}, 5)


async def test_connecting_has_its_own_shorter_limit(dns: DnsServer) -> None:
    dns.silent.add("slow.example")
    http = resolving_client(dns, None)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await http.post("http://slow.example/hook", b"{}", {}, 10)
    assert time.monotonic() - started < 3  # the connect limit (0.3 s), not the total (10 s)


async def test_the_total_limit_covers_a_silent_receiver() -> None:
    http = client()
    async with CountingServer(hold=asyncio.Event()) as server:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await http.post(server.url(), b"{}", {}, 0.3)
        assert time.monotonic() - started < 3
        await http.close()


@pytest.fixture
async def https_url(tmp_path: Path) -> AsyncIterator[str]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    app = web.Application()

    async def answer(_request: web.Request) -> web.Response:
        return web.Response(text="tls ok")

    app.router.add_post("/hook", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"https://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def test_tls_certificates_are_verified(https_url: str, tmp_path: Path) -> None:
    untrusting = client()
    with pytest.raises(HttpError, match="tls: certificate error"):
        await untrusting.post(https_url, b"{}", {}, 5)
    trusting = HttpClient(
        max_connections=2,
        resolver=DefaultResolver(),
        user_agent="test",
        connect_timeout_s=1.0,
        ssl_context=ssl.create_default_context(cafile=str(tmp_path / "cert.pem")),
    )
    answer = await trusting.post(https_url, b"{}", {}, 5)
    await trusting.close()
    assert (answer.status, answer.excerpt) == (200, b"tls ok")
