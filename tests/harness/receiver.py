"""A real HTTP receiver on 127.0.0.1 that records requests and answers as scripted."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

HANG_CAP_S = 60.0
"""The longest a ``hang`` response waits before answering anyway, so nothing runs forever."""


@dataclass(frozen=True)
class ScriptedResponse:
    """One answer of the receiver.

    ``delay_s`` waits before answering; ``hang=True`` never answers (until the receiver
    stops or its hang cap passes), which makes the client give up on its own timeout.
    """

    status: int = 200
    body: bytes | str = b"ok"
    headers: Mapping[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    hang: bool = False


HANG = ScriptedResponse(status=504, body=b"hang cap reached", hang=True)
"""A response that never comes while the client waits (see ``HANG_CAP_S``)."""


@dataclass(frozen=True)
class ReceivedRequest:
    """What the receiver saw, recorded as soon as the body was read (before answering)."""

    method: str
    path: str
    query_string: str
    headers: CIMultiDictProxy[str]
    body: bytes
    received_at: float
    """``time.monotonic()`` on arrival."""
    received_at_wall: float
    """``time.time()`` on arrival."""

    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """An aiohttp server on a free 127.0.0.1 port answering every method and path.

    Answers come from ``script()``-ed responses in order, then from ``default``
    (200 ``ok`` unless changed; ``hang()`` makes the default hang).
    """

    def __init__(
        self,
        default: ScriptedResponse | None = None,
        hang_cap_s: float = HANG_CAP_S,
    ) -> None:
        self.default = default if default is not None else ScriptedResponse()
        self.hang_cap_s = hang_cap_s
        self.received: list[ReceivedRequest] = []
        self.statuses: list[int] = []
        """The status of each answer the handler gave, in order (a client that gave up
        on a hanging or delayed request never saw its entry)."""
        self._script: deque[ScriptedResponse] = deque()
        self._changed = asyncio.Event()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # -- addresses -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port == 0:
            raise RuntimeError("receiver has not been started")
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/hook") -> str:
        """The full URL of ``path`` on this receiver."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- behaviour -------------------------------------------------------------------

    def script(self, *responses: ScriptedResponse) -> None:
        """Queue answers, used one per request in order before ``default``."""
        self._script.extend(responses)

    def respond(
        self,
        status: int = 200,
        body: bytes | str = b"ok",
        headers: Mapping[str, str] | None = None,
        delay_s: float = 0.0,
        times: int = 1,
    ) -> None:
        """Shorthand for ``script(ScriptedResponse(...))`` repeated ``times`` times."""
        response = ScriptedResponse(status, body, dict(headers or {}), delay_s)
        self.script(*([response] * times))

    def hang(self) -> None:
        """From now on every request hangs (after the already scripted answers)."""
        self.default = HANG

    @property
    def pending_script(self) -> int:
        """How many scripted answers are still queued."""
        return len(self._script)

    # -- waiting ---------------------------------------------------------------------

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  # a deadline for a poll, not a cancel scope
    ) -> list[ReceivedRequest]:
        """Wait until at least ``count`` requests arrived; returns them all.

        Raises ``AssertionError`` naming what did arrive if the deadline passes first.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            self._changed.clear()
            if len(self.received) >= count:
                return list(self.received)
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [f"{r.method} {r.path}" for r in self.received]
                raise AssertionError(
                    f"receiver {self.base_url} got {len(self.received)} request(s), "
                    f"expected {count} within {timeout:.2f} s: {seen}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # -- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._runner = runner
        host_port = runner.addresses[0]
        self.port = int(host_port[1])

    async def stop(self) -> None:
        """Release hanging or delayed handlers, then shut the server down."""
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Receiver:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- handler ---------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append(
            ReceivedRequest(
                method=request.method,
                path=request.path,
                query_string=request.query_string,
                headers=request.headers,
                body=body,
                received_at=time.monotonic(),
                received_at_wall=time.time(),
            )
        )
        self._changed.set()
        answer = self._script.popleft() if self._script else self.default
        wait_s = self.hang_cap_s if answer.hang else answer.delay_s
        if wait_s > 0:
            # Wait out the delay, but return at once when the receiver is stopping.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), wait_s)
        body_bytes = answer.body.encode() if isinstance(answer.body, str) else answer.body
        self.statuses.append(answer.status)
        return web.Response(status=answer.status, body=body_bytes, headers=dict(answer.headers))

    def __repr__(self) -> str:
        return f"Receiver(port={self.port}, received={len(self.received)})"
