"""Reading one HTTP/1.1 answer: its status, two headers, and the body up to a cap.

Only what a delivery records is kept: the status, ``Retry-After`` and the body's first
:data:`~producer.deliveries.RESPONSE_EXCERPT_BYTES`. A body is read to its end (so the
connection can carry the next request) while it stays under :data:`DRAIN_LIMIT_BYTES`;
past that the answer is complete once the excerpt is, and the connection is closed.
"""

from __future__ import annotations

from producer.deliveries import RESPONSE_EXCERPT_BYTES

DRAIN_LIMIT_BYTES = 64 * 1024
MAX_HEAD_BYTES = 16 * 1024
NO_BODY_STATUSES = frozenset({204, 304})


class HttpError(Exception):
    """A request that got no usable answer; the message is the attempt's error text."""


class ResponseParser:
    """Fed the bytes of one answer; :meth:`feed` says when it is complete."""

    __slots__ = (
        "_chunks",
        "_drained",
        "_head",
        "_mode",
        "_remaining",
        "excerpt",
        "keep_alive",
        "retry_after",
        "status",
    )

    def __init__(self) -> None:
        self.status = 0
        self.retry_after: str | None = None
        self.excerpt = bytearray()
        self.keep_alive = True
        self._head = bytearray()
        self._mode = "head"  # head, length, chunked, close, done
        self._remaining = 0
        self._drained = 0
        self._chunks = bytearray()  # chunked framing not yet consumed

    def feed(self, data: bytes) -> bool:
        """Take the next bytes; True once the answer is complete."""
        if self._mode == "head":
            self._head += data
            data = self._parse_head()
            if self._mode == "head":
                return False
            if self._mode == "done":
                self.keep_alive = self.keep_alive and not data  # bytes past the answer
                return True
        if self._mode == "length":
            return self._feed_length(data)
        if self._mode == "chunked":
            self._chunks += data
            return self._feed_chunked()
        if self._mode == "close":
            self._keep(data)
            return self._drained > DRAIN_LIMIT_BYTES
        return True

    def ended(self) -> Exception | None:
        """The connection closed: None if that completes the answer, else the error."""
        if self._mode == "close":
            return None
        if self._mode == "head":
            return HttpError("disconnected: the server closed the connection without answering")
        if self._mode == "done":
            return None
        return HttpError("connection: Response payload is not completed")

    def _keep(self, data: bytes | bytearray) -> None:
        room = RESPONSE_EXCERPT_BYTES - len(self.excerpt)
        if room > 0:
            self.excerpt += data[:room]
        self._drained += len(data)

    def _parse_head(self) -> bytes:
        """Parse a complete head (skipping 1xx answers); return the bytes after it."""
        while True:
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > MAX_HEAD_BYTES:
                    raise HttpError(
                        f"invalid response: more than {MAX_HEAD_BYTES} bytes of headers"
                    )
                if len(self._head) >= 5 and not self._head.startswith(b"HTTP/"):
                    raise HttpError("invalid response: Bad status line")
                return b""
            lines = bytes(self._head[:end]).split(b"\r\n")
            rest = bytes(self._head[end + 4 :])
            self._head = bytearray(rest)
            status, version = _status_line(lines[0])
            if 100 <= status < 200:
                continue  # an interim answer (100 Continue): the real one follows
            self.status = status
            self._head = bytearray()
            self._read_headers(lines[1:], version)
            return rest

    def _read_headers(self, lines: list[bytes], version: bytes) -> None:
        length: int | None = None
        chunked = False
        connection = b""
        for line in lines:
            name, sep, value = line.partition(b":")
            if not sep or not name or name != name.strip():
                raise HttpError("invalid response: Bad header line")
            key = name.lower()
            if key == b"content-length":
                if not value.strip().isdigit() or (length is not None):
                    raise HttpError("invalid response: Bad Content-Length")
                length = int(value)
            elif key == b"transfer-encoding":
                chunked = value.strip().lower().endswith(b"chunked")
            elif key == b"connection":
                connection = value.strip().lower()
            elif key == b"retry-after":
                self.retry_after = value.strip().decode("latin-1")
        self.keep_alive = (
            connection != b"close" if version == b"1.1" else connection == b"keep-alive"
        )
        if self.status in NO_BODY_STATUSES or (length == 0 and not chunked):
            self._mode = "done"
        elif chunked:
            self._mode = "chunked"
        elif length is not None:
            self._mode = "length"
            self._remaining = length
            if length > DRAIN_LIMIT_BYTES:
                self.keep_alive = False  # not worth draining: read the excerpt, close
        else:
            self._mode = "close"
            self.keep_alive = False

    def _feed_length(self, data: bytes) -> bool:
        if len(data) > self._remaining:
            self.keep_alive = False  # bytes past the body: not an answer we can trust
            data = data[: self._remaining]
        self._keep(data)
        self._remaining -= len(data)
        if self._remaining == 0 or (
            not self.keep_alive and len(self.excerpt) >= RESPONSE_EXCERPT_BYTES
        ):
            self._mode = "done"
            return True
        return False

    def _feed_chunked(self) -> bool:
        buffer = self._chunks
        while True:
            if self._remaining > 0:  # inside a chunk's data
                take = buffer[: self._remaining]
                self._keep(take)
                self._remaining -= len(take)
                del buffer[: len(take)]
                if self._drained > DRAIN_LIMIT_BYTES:
                    self.keep_alive = False
                    self._mode = "done"
                    return True
                if self._remaining > 0:
                    return False
                self._remaining = -2  # the CRLF after the data
            if self._remaining == -2:
                if len(buffer) < 2:
                    return False
                if buffer[:2] != b"\r\n":
                    raise HttpError("invalid response: Bad chunk framing")
                del buffer[:2]
                self._remaining = 0
            line_end = buffer.find(b"\r\n")
            if line_end < 0:
                if len(buffer) > 1024:
                    raise HttpError("invalid response: Bad chunk size line")
                return False
            line = bytes(buffer[:line_end])
            del buffer[: line_end + 2]
            if self._remaining == -1:  # trailers, ended by an empty line
                if not line:
                    self._mode = "done"
                    return True
                continue
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise HttpError("invalid response: Bad chunk size line") from None
            if size == 0:
                self._remaining = -1
            else:
                self._remaining = size


def _status_line(line: bytes) -> tuple[int, bytes]:
    """The status and HTTP version (``b"1.1"``) of ``HTTP/1.x NNN reason``."""
    version, _, rest = line.partition(b" ")
    code = rest[:3]
    if (
        not version.startswith(b"HTTP/1.")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise HttpError("invalid response: Bad status line")
    return int(code), version[5:]
