"""The request body's wire format: JSON byte-identical to JavaScript's ``JSON.stringify``.

A receiver following the seed's Express example signs ``JSON.stringify(req.body)``,
not the raw bytes. So the body must be exactly what JavaScript prints for the
value it parses. :func:`normalize` turns a value into one whose encoding survives
that round trip (or raises :class:`WireError` naming where it cannot), and
:func:`encode` prints it.

What differs between Python and JavaScript, and how it is handled:

* integral floats: JS prints ``1`` for ``1.0``; normalized to ints (exact below 2**53);
* ``-0.0``: JS prints ``0``; normalized to ``0``;
* float formatting: JS switches to exponent form only outside [1e-6, 1e21) and writes
  ``1e-7`` / ``1e+21``; Python's repr switches outside [1e-4, 1e16) and writes ``1e-07``.
  Such floats are printed by :func:`js_number`;
* integers beyond 2**53-1: JS numbers cannot hold them exactly; rejected;
* object key order: JS puts "array index" keys (``"0"``..``"4294967294"``) first in
  ascending order; normalized to that order;
* NaN, Infinity, lone surrogates, non-string keys: JSON cannot carry them; rejected.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

JSONValue = None | bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"]

MAX_SAFE_INTEGER = 2**53 - 1
MAX_ARRAY_INDEX = 2**32 - 2
MAX_DEPTH = 64
# Python's repr uses an exponent where JavaScript may not (and writes it differently).
_EXPONENT_IN_NUMBER = re.compile(r"[0-9]e[-+]")
_ARRAY_INDEX = re.compile(r"^(0|[1-9][0-9]{0,9})$")


class WireError(ValueError):
    """A value that cannot be sent byte-identically; ``path`` locates it (``$.data.items[3]``)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def normalize(value: object, path: str = "$") -> JSONValue:
    """Return a value that ``JSON.stringify(JSON.parse(encode(v)))`` reproduces exactly.

    Raises :class:`WireError` naming the path of the first value that cannot be sent.
    """
    return _normalize(value, path, 0)


def _normalize(value: object, path: str, depth: int) -> JSONValue:
    if depth > MAX_DEPTH:
        raise WireError(path, f"nested deeper than {MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        _check_text(value, path)
        return value
    if isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            raise WireError(
                path,
                f"integer {value} is beyond ±(2**53-1); JavaScript would change it (send a string)",
            )
        return int(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise WireError(path, f"{value} is not representable in JSON")
        if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER:
            return int(value)  # 1.0 -> 1 and -0.0 -> 0, as JavaScript prints them
        return float(value)
    if isinstance(value, dict):
        items: list[tuple[str, JSONValue]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise WireError(
                    path, f"object keys must be strings, got {type(key).__name__} {key!r}"
                )
            _check_text(key, path)
            items.append((key, _normalize(item, f"{path}.{key}", depth + 1)))
        if any(_ARRAY_INDEX.match(k) and int(k) <= MAX_ARRAY_INDEX for k, _ in items):
            items = _js_key_order(items)
        return dict(items)
    if isinstance(value, list | tuple):
        return [_normalize(item, f"{path}[{i}]", depth + 1) for i, item in enumerate(value)]
    raise WireError(path, f"{type(value).__name__} is not a JSON value")


def _check_text(text: str, path: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WireError(path, "contains a lone surrogate, which UTF-8 cannot carry") from exc


def _js_key_order(items: list[tuple[str, JSONValue]]) -> list[tuple[str, JSONValue]]:
    """Array-index keys first, ascending; then the others in insertion order."""
    indexes = [(k, v) for k, v in items if _ARRAY_INDEX.match(k) and int(k) <= MAX_ARRAY_INDEX]
    others = [(k, v) for k, v in items if not (_ARRAY_INDEX.match(k) and int(k) <= MAX_ARRAY_INDEX)]
    return sorted(indexes, key=lambda kv: int(kv[0])) + others


def encode(value: JSONValue) -> bytes:
    """Compact UTF-8 JSON exactly as ``JSON.stringify`` prints the normalized ``value``."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    if _EXPONENT_IN_NUMBER.search(text):
        # Rare: some float needs JavaScript's formatting (or a string merely looks like one).
        text = _encode_js(value)
    return text.encode("utf-8")


def _encode_js(value: Any) -> str:
    if isinstance(value, float):
        return js_number(value)
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(k)}:{_encode_js(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_encode_js(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def _string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def js_number(value: float) -> str:
    """ECMAScript ``Number::toString`` for a finite float (shortest round-trip digits)."""
    if value == 0:
        return "0"
    if value < 0:
        return "-" + js_number(-value)
    _sign, digit_tuple, exponent = Decimal(repr(value)).as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple)).rstrip("0")
    exponent += len(digit_tuple) - len(digits)
    k = len(digits)
    n = exponent + k  # value = 0.digits * 10**n
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"


def decode(data: bytes | str) -> JSONValue:
    """Parse JSON text as ``JSON.parse`` would (NaN and Infinity are not JSON)."""

    def reject(constant: str) -> None:
        raise WireError("$", f"{constant} is not valid JSON")

    try:
        value: JSONValue = json.loads(data, parse_constant=reject)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise WireError("$", f"not valid JSON: {exc}") from exc
    return value
