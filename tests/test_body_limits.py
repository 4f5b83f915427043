"""No request body is read before it is allowed: a real API on 127.0.0.1 (private Redis).

The requests go over raw sockets, so that a test controls how much of a body is sent:
each one declares (or streams) far more than it sends, and stops sending. A server
that answers has refused the body without waiting for it; one that reads bodies before
checking would wait for the rest, and the test's deadline would fail it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from aiohttp.test_utils import TestClient, TestServer
from test_api import Client

from producer.dashboard.app import MAX_FORM_BYTES
from producer.http.app import create_app
from producer.http.problems import PROBLEM_BASE
from producer.http.state import MAX_BATCH_BYTES, ApiSettings

KEY = "limits-key-0123456789abcdef"
TEN_MB = 10 * 1000 * 1000
# How long a refusal may take to come: it needs no more bytes than were sent.
ANSWER_WITHIN_S = 5.0
CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict[str, object]:
        assert self.headers["content-type"].startswith("application/problem+json")
        document: dict[str, object] = json.loads(self.body)
        return document


async def send_part(port: int, head: str, sent: bytes) -> Answer:
    """Send ``head`` (request line and headers) and ``sent`` of the body, then nothing
    more: the answer the server gives without the rest."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + sent)
        await writer.drain()
        async with asyncio.timeout(ANSWER_WITHIN_S):
            status_line = await reader.readline()
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
    finally:
        writer.close()
    return Answer(int(status_line.split()[1]), headers, body)


def chunked(data: bytes, size: int = 16 * 1024) -> bytes:
    """``data`` in chunked transfer coding, without the final empty chunk."""
    return b"".join(
        f"{len(part):x}\r\n".encode() + part + b"\r\n"
        for part in (data[n : n + size] for n in range(0, len(data), size))
    )


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[Client]:
    """The API with an API key and a batch limit of 100,000 bytes."""
    settings = ApiSettings.from_env(
        {"REDIS_URL": redis_url, "API_KEYS": KEY, "MAX_BATCH_BYTES": "100000"}
    )
    started: Client = TestClient(TestServer(create_app(settings), host="127.0.0.1", port=0))
    await started.start_server()
    try:
        yield started
    finally:
        await started.close()


def port_of(client: Client) -> int:
    port = client.server.port
    assert port is not None
    return port


async def anonymous_session(client: Client) -> tuple[str, str]:
    """A signed-out dashboard session as the login page opens it: (cookie, CSRF token)."""
    page = await client.get("/ui/login")
    found = CSRF.search(await page.text())
    assert found is not None
    return page.cookies["cliq_ui"].value, found.group(1)


# ---------------------------------------------------------------- the dashboard


async def test_an_unauthenticated_10_mb_sign_in_is_refused_before_it_is_sent(
    client: Client,
) -> None:
    head = (
        "POST /ui/login HTTP/1.1\nHost: 127.0.0.1\n"
        "Content-Type: application/x-www-form-urlencoded\n"
        f"Content-Length: {TEN_MB}\n"
    )
    answer = await send_part(port_of(client), head, b"api_key=" + b"x" * 65536)
    assert answer.status == 403
    assert b"This form has expired" in answer.body


async def test_a_form_over_the_limit_is_refused_from_its_length_with_a_session(
    client: Client,
) -> None:
    cookie, csrf = await anonymous_session(client)
    head = (
        "POST /ui/login HTTP/1.1\nHost: 127.0.0.1\n"
        f"Cookie: cliq_ui={cookie}\nX-CSRF-Token: {csrf}\n"
        "Content-Type: application/x-www-form-urlencoded\n"
        f"Content-Length: {TEN_MB}\n"
    )
    answer = await send_part(port_of(client), head, b"api_key=")
    assert answer.status == 413
    assert answer.headers["content-type"].startswith("text/html")
    assert f"at most {MAX_FORM_BYTES} bytes".encode() in answer.body


async def test_a_streamed_form_is_read_only_up_to_the_limit(client: Client) -> None:
    cookie, _csrf = await anonymous_session(client)
    head = (
        "POST /ui/login HTTP/1.1\nHost: 127.0.0.1\n"
        f"Cookie: cliq_ui={cookie}\n"
        "Content-Type: application/x-www-form-urlencoded\n"
        "Transfer-Encoding: chunked\n"
    )
    # One byte over the limit, and the stream stays open.
    answer = await send_part(port_of(client), head, chunked(b"x" * (MAX_FORM_BYTES + 1)))
    assert answer.status == 413
    assert f"at most {MAX_FORM_BYTES} bytes".encode() in answer.body


async def test_a_form_within_the_limit_still_signs_in(client: Client) -> None:
    _cookie, csrf = await anonymous_session(client)
    form = {"csrf": csrf, "api_key": KEY, "next": "/ui/webhooks", "pad": ""}
    declared = len(urlencode(form))
    form["pad"] = "x" * (MAX_FORM_BYTES - declared)
    response = await client.post("/ui/login", data=form, allow_redirects=False)
    assert int(response.request_info.headers["Content-Length"]) == MAX_FORM_BYTES
    assert response.status == 303, await response.text()


async def test_a_signed_out_post_to_a_page_is_refused_before_its_body(client: Client) -> None:
    cookie, _csrf = await anonymous_session(client)
    # Its CSRF token would be in the form: the sign-in is checked before reading it.
    head = (
        "POST /ui/webhooks HTTP/1.1\nHost: 127.0.0.1\n"
        f"Cookie: cliq_ui={cookie}\n"
        "Content-Type: application/x-www-form-urlencoded\n"
        f"Content-Length: {MAX_FORM_BYTES}\n"
    )
    answer = await send_part(port_of(client), head, b"url=")
    assert answer.status == 403
    assert b"Sign in first" in answer.body


# ---------------------------------------------------------------- the API


def events_head(key: str | None, length: str) -> str:
    auth = f"Authorization: Bearer {key}\n" if key else ""
    return (
        f"POST /v1/events HTTP/1.1\nHost: 127.0.0.1\n{auth}"
        f"Content-Type: application/json\n{length}\n"
    )


async def test_an_unauthenticated_publish_is_refused_before_its_body(client: Client) -> None:
    answer = await send_part(port_of(client), events_head(None, f"Content-Length: {TEN_MB}"), b"[")
    assert answer.status == 401
    assert answer.problem()["type"] == PROBLEM_BASE + "unauthorized"


async def test_a_batch_over_max_batch_bytes_is_refused_from_its_length(client: Client) -> None:
    answer = await send_part(port_of(client), events_head(KEY, "Content-Length: 100001"), b"[")
    assert answer.status == 413
    problem = answer.problem()
    assert problem["type"] == PROBLEM_BASE + "payload-too-large"
    assert "at most 100000 bytes" in str(problem["detail"])
    assert "MAX_BATCH_BYTES" in str(problem["detail"])


async def test_a_streamed_batch_is_read_only_up_to_max_batch_bytes(client: Client) -> None:
    head = events_head(KEY, "Transfer-Encoding: chunked")
    answer = await send_part(port_of(client), head, chunked(b"[" + b" " * 100000))
    assert answer.status == 413
    assert "at most 100000 bytes" in str(answer.problem()["detail"])


async def test_a_batch_within_max_batch_bytes_is_published(client: Client) -> None:
    event = {"type": "issue.created", "workspace_id": "ws_1", "data": {"pad": ""}}
    size = len(json.dumps([event], separators=(",", ":")))
    event["data"] = {"pad": "x" * (100000 - size)}
    body = json.dumps([event], separators=(",", ":")).encode()
    assert len(body) == 100000
    response = await client.post(
        "/v1/events",
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    # Exactly the limit (and the event is within MAX_PAYLOAD_BYTES, 256 KiB).
    assert response.status == 202, await response.text()


async def test_an_unknown_webhook_token_is_refused_before_its_body(client: Client) -> None:
    head = (
        "POST /api/v2/bots/deploybot/incoming?zapikey=tok_nope.nope HTTP/1.1\n"
        f"Host: 127.0.0.1\nContent-Type: application/json\nContent-Length: {TEN_MB}\n"
    )
    answer = await send_part(port_of(client), head, b"{")
    assert answer.status == 401
    assert answer.problem()["type"] == PROBLEM_BASE + "invalid-webhook-token"


def test_the_batch_limit_defaults_to_16_mib() -> None:
    assert MAX_BATCH_BYTES == 16 * 1024 * 1024
    assert ApiSettings.from_env({}).max_batch_bytes == MAX_BATCH_BYTES
