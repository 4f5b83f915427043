"""A real SMTP server (aiosmtpd) on a free 127.0.0.1 port that captures every message."""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


@dataclass(frozen=True)
class CapturedMessage:
    """One message as the SMTP server received it, parsed with the ``email`` package."""

    mail_from: str
    """The envelope sender (``MAIL FROM``)."""
    rcpt_tos: tuple[str, ...]
    """The envelope recipients (``RCPT TO``)."""
    from_header: str
    to_header: str
    subject: str
    text: str
    """The ``text/plain`` body (or the only body part), decoded."""
    html: str | None
    message: EmailMessage
    raw: bytes
    received_at: float
    """``time.monotonic()`` on arrival."""


def _parse(mail_from: str, rcpt_tos: list[str], raw: bytes) -> CapturedMessage:
    # SMTP carries CRLF line ends; parse with Python's "\n" so text compares naturally.
    message = email.message_from_bytes(raw.replace(b"\r\n", b"\n"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    plain = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    text_part = plain if plain is not None else message.get_body()
    text = str(text_part.get_content()) if text_part is not None else ""
    return CapturedMessage(
        mail_from=mail_from,
        rcpt_tos=tuple(rcpt_tos),
        from_header=str(message.get("From", "")),
        to_header=str(message.get("To", "")),
        subject=str(message.get("Subject", "")),
        text=text,
        html=str(html.get_content()) if html is not None else None,
        message=message,
        raw=raw,
        received_at=time.monotonic(),
    )


class _Handler:
    """aiosmtpd handler: runs in the controller's thread, hands messages to the owner."""

    def __init__(self, owner: SmtpServer) -> None:
        self._owner = owner

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):
            raw = raw.encode()
        self._owner._capture(str(envelope.mail_from), list(envelope.rcpt_tos), raw)
        return "250 Message accepted for delivery"


class _EphemeralPortController(Controller):
    """Binds port 0 and learns the real port before aiosmtpd's own readiness probe.

    ``Controller.start()`` creates the listening server, then calls ``_trigger_server()``
    to connect to ``self.port``; reading the bound port first avoids any free-port race.
    """

    def _trigger_server(self) -> None:
        if isinstance(self.server, asyncio.Server) and self.port == 0:
            self.port = int(self.server.sockets[0].getsockname()[1])
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd: no annotation


class SmtpServer:
    """aiosmtpd ``Controller`` on 127.0.0.1 with a port the OS picked; captures messages."""

    def __init__(self) -> None:
        self.messages: list[CapturedMessage] = []
        self.port = 0
        self._lock = threading.Lock()
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._controller: Any = None

    @property
    def url(self) -> str:
        """``smtp://127.0.0.1:PORT``."""
        if self.port == 0:
            raise RuntimeError("SMTP server has not been started")
        return f"smtp://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return "127.0.0.1"

    async def start(self) -> None:
        """Start listening: on a port the OS picks, or again on the same port after stop()."""
        self._loop = asyncio.get_running_loop()
        controller = _EphemeralPortController(_Handler(self), hostname="127.0.0.1", port=self.port)
        # Controller.start() blocks while its thread binds and probes; keep our loop free.
        await asyncio.to_thread(controller.start)
        self._controller = controller
        self.port = int(controller.port)

    async def stop(self) -> None:
        controller, self._controller = self._controller, None
        if controller is not None:
            await asyncio.to_thread(controller.stop)

    def _capture(self, mail_from: str, rcpt_tos: list[str], raw: bytes) -> None:
        """Called from the controller's thread."""
        captured = _parse(mail_from, rcpt_tos, raw)
        with self._lock:
            self.messages.append(captured)
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._changed.set)

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109  # a deadline for a poll, not a cancel scope
    ) -> list[CapturedMessage]:
        """Wait until at least ``count`` messages arrived; returns them all.

        Raises ``AssertionError`` naming the subjects received if the deadline passes.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            # Cleared before the check: a set() from the SMTP thread lands on this loop
            # only between awaits, so no message can slip between the check and the wait.
            self._changed.clear()
            with self._lock:
                messages = list(self.messages)
            if len(messages) >= count:
                return messages
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(
                    f"SMTP server {self.url} got {len(messages)} message(s), expected "
                    f"{count} within {timeout:.2f} s: {[m.subject for m in messages]}"
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def __aenter__(self) -> SmtpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"SmtpServer(port={self.port}, messages={len(self.messages)})"
