"""Logging setup: structlog, JSON lines when not a terminal, readable console otherwise.

Configured once, by the entry point. Secrets are never passed to a logger; the
``redact`` processor is a second line of defence for anything shaped like one.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, BinaryIO

import orjson
import structlog

SECRET_SHAPE = re.compile(r"whsec_[A-Za-z0-9+/=]{8,}")


def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Replace anything that looks like a signing secret."""
    for key, value in event.items():
        if isinstance(value, str) and "whsec_" in value:
            event[key] = SECRET_SHAPE.sub("whsec_[redacted]", value)
    return event


class _Lines:
    """Writes JSON lines to a binary stream, those of one event-loop turn in one write.

    A busy worker logs a line per attempt, thousands a second: a write system call each
    cost ~4% of its CPU. Lines logged while a loop runs go out together at the end of
    its current turn (no later, so nothing waits on a quiet process); other lines, and
    any still pending at exit, go out at once.

    A line that cannot be written is dropped: when whatever reads the process's stderr
    goes away (a supervisor killed), every write fails with a broken pipe, and the
    process must go on, and stop on SIGTERM, rather than fail in whatever code logged.
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._pending: list[bytes] = []
        self._flush_on: asyncio.AbstractEventLoop | None = None
        atexit.register(self.flush)

    def msg(self, message: bytes) -> None:
        """Queue one line for the end of this loop turn, or write it now outside a loop."""
        self._pending.append(message)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        if self._flush_on is not loop:  # none scheduled on this loop yet
            self._flush_on = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every pending line."""
        self._flush_on = None
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        with contextlib.suppress(OSError, ValueError):  # ValueError: the stream was closed
            self._stream.write(b"\n".join(lines) + b"\n")
            self._stream.flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


class _ConsoleOrNothing(structlog.PrintLogger):
    """Prints lines for a person at a terminal; one that cannot be printed is dropped."""

    def msg(self, message: str) -> None:
        """Print one line, or drop it."""
        with contextlib.suppress(OSError):
            super().msg(message)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _dumps(event: Any, **_kwargs: Any) -> bytes:
    return orjson.dumps(event, default=str)


def configure(log_format: str = "auto", level: str = "info") -> None:
    """Route structlog (and the stdlib loggers of aiohttp and bullmq) to stderr."""
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelNamesMapping()[level.upper()]
    renderer: Any = (
        structlog.processors.JSONRenderer(serializer=_dumps)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    logger: Any = _Lines(sys.stderr.buffer) if as_json else _ConsoleOrNothing(sys.stderr)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info if as_json else structlog.dev.set_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=lambda *_args: logger,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
