"""Per-endpoint request settings: custom headers and a timeout, checked at registration.

Every refusal is a ``ValueError`` saying why; the registry (producer/endpoints.py) turns
it into an ``EndpointError`` naming the field (``headers`` or ``timeout_s``), so the API,
the CLI and the dashboard show the same message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

MAX_HEADERS = 20
MAX_HEADERS_BYTES = 4096
# RFC 9110 token characters: anything else cannot be a header name.
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# What each request carries already: a custom value would contradict the body or the
# signature, or confuse the receiver about which one is ours.
SET_BY_US = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "x-cliq-signature",
        "x-cliq-signature-new",
        "x-cliq-event",
        "x-cliq-delivery",
        "x-cliq-attempt",
    }
)
# Hop-by-hop headers (RFC 9110 section 7.6.1) describe one connection, not the request;
# so do the Proxy-* ones, meant for a proxy on the way (all refused by their prefix).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

Headers = tuple[tuple[str, str], ...]


def parse_header_line(line: str) -> tuple[str, str]:
    """``'Name: value'`` (the CLI's ``--header``) as a pair; the value is stripped."""
    name, colon, value = line.partition(":")
    if not colon or not name.strip():
        raise ValueError(f"{line!r} is not of the form 'Name: value'")
    return name.strip(), value.strip()


def validate_headers(pairs: Iterable[tuple[str, str]]) -> Headers:
    """Custom headers sent with every delivery, in the order given."""
    result: list[tuple[str, str]] = []
    seen: set[str] = set()
    total = 0
    for name, value in pairs:
        if not isinstance(name, str) or not HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a valid header name")
        lowered = name.lower()
        if lowered in SET_BY_US:
            raise ValueError(f"{name} is set by cliq-webhooks on every delivery")
        if lowered.startswith("x-cliq-"):
            raise ValueError(f"{name}: X-Cliq-* headers are cliq-webhooks' own")
        if lowered.startswith("webhook-"):
            raise ValueError(f"{name}: webhook-* headers are the Standard Webhooks signature's")
        if lowered in HOP_BY_HOP or lowered.startswith("proxy-"):
            raise ValueError(f"{name} is a hop-by-hop header: it describes a connection")
        if lowered in seen:
            raise ValueError(f"{name} is given twice")
        if not isinstance(value, str):
            raise ValueError(f"the value of {name} must be a string")
        if "\r" in value or "\n" in value or "\0" in value:
            raise ValueError(f"the value of {name} must not contain CR, LF or NUL characters")
        seen.add(lowered)
        total += len(name.encode()) + len(value.encode())
        result.append((name, value))
    if len(result) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers, not {len(result)}")
    if total > MAX_HEADERS_BYTES:
        raise ValueError(
            f"names and values take {total} bytes in all, more than {MAX_HEADERS_BYTES}",
        )
    return tuple(result)


def validate_timeout(value: float, max_timeout_s: float) -> float:
    """Seconds one attempt to this endpoint may take, up to ``DELIVERY_TIMEOUT``
    (``max_timeout_s``); 0 means ``DELIVERY_TIMEOUT`` itself."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= max_timeout_s
    ):
        raise ValueError(
            f"must be a number of seconds from 0 to {max_timeout_s:g}, the workers' "
            "DELIVERY_TIMEOUT (0: DELIVERY_TIMEOUT)",
        )
    return float(value)


def headers_to_text(headers: Headers) -> str:
    """The stored form: a JSON list of ``[name, value]`` pairs ('' for none)."""
    return json.dumps([list(pair) for pair in headers]) if headers else ""


def headers_from_text(text: str) -> Headers:
    """Parse :func:`headers_to_text`."""
    return tuple((str(name), str(value)) for name, value in json.loads(text)) if text else ()
