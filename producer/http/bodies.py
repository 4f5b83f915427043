"""Reading requests: JSON bodies, path ids, times, and the cursors and pages of listings.

Each helper answers bad input with the problem that says why (415, 413, 400, 422, or
404 for a path that cannot name anything), so that a route reads its input in a line.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiohttp import web

from producer import jsonwire
from producer.events import ID_PATTERN, EventError, parse_timestamp
from producer.http.problems import (
    INVALID_FIELDS,
    INVALID_JSON,
    PAYLOAD_TOO_LARGE,
    UNSUPPORTED_MEDIA_TYPE,
    Problem,
    invalid_field,
    missing,
)

READ_CHUNK_BYTES = 64 * 1024
# Largest JSON body of every route but POST /v1/events (which has its own limits).
MAX_JSON_BODY_BYTES = 256 * 1024

# The listings whose cursors this API hands out (a cursor is refused by any other).
ENDPOINT_CURSOR = "endpoints"
ENDPOINT_ATTEMPTS_CURSOR = "endpoint-attempts"
EVENT_ATTEMPTS_CURSOR = "event-attempts"


# ---------------------------------------------------------------- request bodies


def require_json(request: web.Request) -> None:
    """415 unless the body is declared ``application/json`` (UTF-8, as RFC 8259 requires)."""
    charset = (request.charset or "utf-8").lower()
    if request.content_type != "application/json" or charset not in {"utf-8", "utf8"}:
        declared = request.headers.get("Content-Type", "nothing")
        raise Problem(
            UNSUPPORTED_MEDIA_TYPE,
            f"Send Content-Type: application/json (UTF-8), not {declared!r}.",
        )


def decode_json(body: bytes) -> jsonwire.JSONValue:
    """The JSON document of the body, or 400 (NaN and Infinity are not JSON)."""
    try:
        return jsonwire.decode(body)
    except jsonwire.WireError as exc:
        raise Problem(INVALID_JSON, exc.message) from None


async def read_limited(request: web.Request, limit: int) -> bytes:
    """The request body; 413 as soon as it (or its declared length) exceeds ``limit``."""
    too_large = Problem(PAYLOAD_TOO_LARGE, f"The request body may be at most {limit} bytes.")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.content.iter_chunked(READ_CHUNK_BYTES):
        if len(body) + len(chunk) > limit:
            raise too_large
        body += chunk
    return bytes(body)


async def read_json_object(
    request: web.Request, limit: int = MAX_JSON_BODY_BYTES
) -> dict[str, jsonwire.JSONValue]:
    """The body as a JSON object, or the problem that says why not (415, 413, 400, 422).

    Values are normalized (:func:`jsonwire.normalize`): a string that UTF-8 cannot carry
    (a lone surrogate) is refused here, naming its field, instead of failing in Redis.
    """
    require_json(request)
    document = decode_json(await read_limited(request, limit))
    try:
        value = jsonwire.normalize(document)
    except jsonwire.WireError as exc:
        raise invalid_field(_field_of(exc.path), exc.message) from None
    if not isinstance(value, dict):
        raise invalid_field("body", "must be a JSON object")
    return value


async def read_optional_json_object(
    request: web.Request, limit: int = MAX_JSON_BODY_BYTES
) -> dict[str, jsonwire.JSONValue]:
    """Like :func:`read_json_object`, but no body at all reads as ``{}``."""
    if not request.body_exists:
        return {}
    return await read_json_object(request, limit)


def _field_of(path: str) -> str:
    """``$.grace_s`` -> ``grace_s``; the document itself is ``body``."""
    if path == "$":
        return "body"
    return path.removeprefix("$.")


def reject_unknown(body: dict[str, jsonwire.JSONValue], allowed: Sequence[str]) -> None:
    """422 naming every member of ``body`` that is not ``allowed`` (typos fail loudly)."""
    unknown = sorted(set(body) - set(allowed))
    message = f"unknown field; the fields are {', '.join(allowed)}"
    if len(unknown) == 1:
        raise invalid_field(unknown[0], message)
    if unknown:
        raise Problem(
            INVALID_FIELDS,
            f"Unknown fields: {', '.join(unknown)}; the fields are {', '.join(allowed)}.",
            errors=[{"field": name, "message": message} for name in unknown],
        )


# ---------------------------------------------------------------- paths and times


def path_id(request: web.Request, what: str) -> str:
    """The ``{id}`` of the path; 404 when it cannot be an id at all."""
    value = request.match_info["id"]
    if not ID_PATTERN.match(value):
        raise missing(what, value)
    return value


def instant_ms(raw: object, field_name: str) -> int:
    """An ISO 8601 time with a timezone, in ms since the epoch; 422 naming the field."""
    try:
        moment = parse_timestamp(raw)
    except EventError as exc:
        hint = " (in a query string, write '+' as %2B, or use Z)" if " " in str(raw) else ""
        raise invalid_field(field_name, exc.message + hint) from None
    except OverflowError:  # in range as written, not once converted to UTC
        raise invalid_field(field_name, "is outside the years 1 to 9999 in UTC") from None
    return int(moment.timestamp() * 1000)


# ---------------------------------------------------------------- pagination

DEFAULT_PAGE_LIMIT = 50
MAX_PAGE_LIMIT = 200
_LIMIT_PATTERN = re.compile(r"[0-9]{1,6}")


def query_limit(request: web.Request) -> int:
    """The ``limit`` query parameter: 1 to :data:`MAX_PAGE_LIMIT`, default 50."""
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_PAGE_LIMIT
    if not _LIMIT_PATTERN.fullmatch(raw) or not 1 <= int(raw) <= MAX_PAGE_LIMIT:
        raise invalid_field("limit", f"must be an integer from 1 to {MAX_PAGE_LIMIT}")
    return int(raw)


def encode_cursor(kind: str, position: Sequence[str | int]) -> str:
    """An opaque cursor: where a listing of ``kind`` stopped (URL-safe, no padding)."""
    raw = orjson.dumps([kind, *position])
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(raw: str, kind: str, shape: Sequence[type]) -> tuple[Any, ...]:
    """The position in a cursor made by :func:`encode_cursor` for ``kind``, or 422.

    ``shape`` is the type of each member of the position; a cursor of another listing,
    a truncated or a forged one is refused rather than misread.
    """
    try:
        text = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        decoded = orjson.loads(text)
    except (binascii.Error, ValueError):
        decoded = None
    if (
        isinstance(decoded, list)
        and len(decoded) == len(shape) + 1
        and decoded[0] == kind
        and all(type(value) is expected for value, expected in zip(decoded[1:], shape, strict=True))
    ):
        return tuple(decoded[1:])
    raise invalid_field("cursor", "is not a cursor returned by this listing")


def page(items: Sequence[Mapping[str, Any]], next_cursor: str | None) -> dict[str, Any]:
    """One page of a listing; ``next_cursor`` is ``None`` at the end."""
    return {"items": list(items), "next_cursor": next_cursor}
