"""The request body's wire format: JSON byte-identical to JavaScript's ``JSON.stringify``.

A receiver following the seed's Express example signs ``JSON.stringify(req.body)``,
not the raw bytes. So the body must be exactly what JavaScript prints for the
value it parses. :func:`normalize` turns a value into one whose encoding survives
that round trip (or raises :class:`WireError` naming where it cannot), and
:func:`encode` prints it.

What differs between Python and JavaScript, and how it is handled:

* integral floats: JS prints ``1`` for ``1.0``; normalized to ints (exact up to 2**53-1);
* ``-0.0``: JS prints ``0``; normalized to ``0``;
* float formatting: JS uses an exponent only outside [1e-6, 1e21) and writes ``1e-7`` /
  ``1e+21``; Python's repr uses one outside [1e-4, 1e16) and writes ``1e-07``, and it
  prints ``9007199254740992.0`` where JS prints ``9007199254740992``. Such floats are
  printed by :func:`js_number`;
* integers beyond ±(2**53-1): JS numbers cannot hold them all exactly; rejected;
* object key order: JS puts "array index" keys (``"0"``..``"4294967294"``, canonical
  decimal) first in ascending order, then the others in insertion order; normalized so;
* NaN, Infinity, lone surrogates, non-string keys, other Python types: rejected.

Strings need nothing: with ``ensure_ascii=False`` Python's encoder escapes exactly what
``JSON.stringify`` escapes (``"``, ``\\``, ``\\b \\f \\n \\r \\t``, other controls as
lowercase ``\\u00xx``) and leaves the rest (DEL, U+2028, emoji) raw.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final, TypeAlias

__all__ = [
    "MAX_ARRAY_INDEX",
    "MAX_DEPTH",
    "MAX_SAFE_INTEGER",
    "JSONValue",
    "WireError",
    "decode",
    "encode",
    "js_number",
    "normalize",
]

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None

MAX_SAFE_INTEGER: Final = 2**53 - 1  # JavaScript's Number.MAX_SAFE_INTEGER
MAX_ARRAY_INDEX: Final = 2**32 - 2  # the largest "array index" property key
MAX_DEPTH: Final = 64  # containers nested deeper than this are rejected

# Candidate array-index keys; the value must also be <= MAX_ARRAY_INDEX. fullmatch, and
# [0-9] not \d: "5\n" and Unicode digits are ordinary keys in JavaScript.
_ARRAY_INDEX = re.compile(r"0|[1-9][0-9]{0,9}")

# Python's encoder prints some floats differently from JavaScript: with an exponent
# ("1e-07", "1e+16") or integral ("9007199254740992.0"). Finding them in the output is
# much cheaper than walking the value: str.find for "e-", "e+" and ".0", then a check
# that the find ends a number token (after ":", "," or "[") rather than sits in a string.
# A string that passes both only costs the slower, equally correct encoder.
_NUMBER_BEFORE = re.compile(r"(?:\A|[:,\[])-?[0-9]+(?:\.[0-9]+)?\Z")
_LONGEST_MANTISSA = 32  # "-" and up to 17 digits and a point, with room to spare
_AFTER_NUMBER = frozenset(",]}")

# One encoder, built once: json.dumps builds a new one per call when given options.
_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False, check_circular=False
)


class WireError(ValueError):
    """A value that cannot be sent byte-identically.

    ``path`` is a JSONPath-like location such as ``$.data.items[3].price`` (keys that are
    not identifiers are quoted: ``$.data["unit price"]``); ``message`` says what is wrong.
    """

    path: str
    message: str

    def __init__(self, path: str, message: str) -> None:
        super().__init__(path, message)  # both in args, so that it pickles
        self.path = path
        self.message = message

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class _Fail(Exception):
    """Raised deep inside :func:`normalize`; each container adds its path segment on the
    way out, so no path string is built unless something fails."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        self.segments: list[str] = []


# --------------------------------------------------------------------------- normalize


def normalize(value: object, path: str = "$") -> JSONValue:
    """Return a copy of ``value`` that ``JSON.stringify(JSON.parse(encode(v)))`` reproduces.

    Accepts None, bool, int, float, str, dict with str keys, list and tuple (as a list),
    and their subclasses (returned as the plain type). Raises :class:`WireError` naming the
    path (``path`` is the prefix, e.g. ``"$.data"``) of the first value that cannot be sent.
    """
    try:
        return _value(value, 0)
    except _Fail as fail:
        raise WireError(path + "".join(reversed(fail.segments)), fail.message) from None


def _value(value: Any, depth: int) -> JSONValue:
    # Exact-type checks first: they are the hot path and exclude bool from int.
    cls = type(value)
    if cls is str:
        if not value.isascii():
            _check_text(value, "string")
        return value  # type: ignore[no-any-return]
    if cls is int:
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return value  # type: ignore[no-any-return]
        raise _Fail(_unsafe_integer(value))
    if value is None or cls is bool:
        return value  # type: ignore[no-any-return]
    if cls is dict:
        return _object(value, depth + 1)
    if cls is list or cls is tuple:
        return _array(value, depth + 1)
    if cls is float:
        return _float(value)
    return _subclass(value, depth)


def _unsafe_integer(value: int) -> str:
    return (
        f"integer {value} is beyond ±(2**53-1), where JavaScript numbers lose precision; "
        "send it as a string"
    )


def _subclass(value: object, depth: int) -> JSONValue:
    """Subclasses (IntEnum, StrEnum, OrderedDict, ...) as their plain base type."""
    # bool cannot be subclassed, so an int subclass here is a number, never true/false.
    if isinstance(value, str):
        return _value(str.__str__(value), depth)
    if isinstance(value, int):
        return _value(int.__int__(value), depth)
    if isinstance(value, float):
        return _value(float.__float__(value), depth)
    if isinstance(value, dict):
        return _object(value, depth + 1)
    if isinstance(value, list | tuple):
        return _array(value, depth + 1)
    kind = type(value)
    name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
    raise _Fail(f"{name} is not a JSON value (convert it to str, int, float, list or dict)")


def _float(value: float) -> JSONValue:
    if value != value or value - value != 0.0:  # NaN, or ±inf (inf - inf is NaN)
        raise _Fail(f"{value} is not a JSON number (JSON.stringify would send null)")
    if value.is_integer() and -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        # JS prints 1.0 as "1" and -0.0 as "0"; an int says so to both encoders.
        return int(value)
    # Larger integral floats stay floats: they are exact doubles that JS prints with its
    # own rounding (2.0**60 -> "1152921504606847000"), which js_number reproduces.
    return value


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = text[exc.start]
        raise _Fail(
            f"{what} contains a lone surrogate U+{ord(bad):04X}, which UTF-8 cannot carry"
        ) from None


def _object(obj: dict[Any, Any], depth: int) -> dict[str, JSONValue]:
    if depth > MAX_DEPTH:
        raise _Fail(f"nested deeper than {MAX_DEPTH} levels")
    out: dict[str, JSONValue] = {}
    reorder = False
    for key, item in obj.items():
        if type(key) is not str:
            if not isinstance(key, str):
                raise _Fail(f"object keys must be strings, got {type(key).__name__} {key!r}")
            key = str.__str__(key)
        if not key.isascii():
            _check_text(key, f"object key {key!r}")
        elif not reorder and "0" <= key[:1] <= "9":
            reorder = _is_array_index(key)
        try:
            # The common scalars inline (as in _array): a call per value costs more than
            # the check itself, and this is the producer's hot path.
            cls = type(item)
            if cls is str:
                if not item.isascii():
                    _check_text(item, "string")
            elif cls is int:
                if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    raise _Fail(_unsafe_integer(item))
            elif item is not None and cls is not bool:
                item = _value(item, depth)
            out[key] = item
        except _Fail as fail:
            fail.segments.append(_key_segment(key))
            raise
    return _js_key_order(out) if reorder else out


def _array(arr: list[Any] | tuple[Any, ...], depth: int) -> list[JSONValue]:
    if depth > MAX_DEPTH:
        raise _Fail(f"nested deeper than {MAX_DEPTH} levels")
    out: list[JSONValue] = []
    append = out.append
    for index, item in enumerate(arr):
        try:
            cls = type(item)
            if cls is str:
                if not item.isascii():
                    _check_text(item, "string")
            elif cls is int:
                if not -MAX_SAFE_INTEGER <= item <= MAX_SAFE_INTEGER:
                    raise _Fail(_unsafe_integer(item))
            elif item is not None and cls is not bool:
                item = _value(item, depth)
            append(item)
        except _Fail as fail:
            fail.segments.append(f"[{index}]")
            raise
    return out


def _is_array_index(key: str) -> bool:
    return _ARRAY_INDEX.fullmatch(key) is not None and int(key) <= MAX_ARRAY_INDEX


def _js_key_order(obj: dict[str, JSONValue]) -> dict[str, JSONValue]:
    """Array-index keys first in ascending numeric order, then the others as inserted."""
    indexes = sorted((key for key in obj if _is_array_index(key)), key=int)
    ordered = {key: obj[key] for key in indexes}
    ordered.update((key, value) for key, value in obj.items() if key not in ordered)
    return ordered


def _key_segment(key: str) -> str:
    return f".{key}" if key.isidentifier() else f"[{json.dumps(key, ensure_ascii=False)}]"


# ------------------------------------------------------------------------------ encode


def encode(value: JSONValue) -> bytes:
    """Compact UTF-8 JSON exactly as ``JSON.stringify`` prints the normalized ``value``.

    ``value`` must come from :func:`normalize` (key order, integer range and surrogates
    are not checked again); what the stdlib encoder refuses raises :class:`WireError`.
    """
    try:
        text = _ENCODER.encode(value)
        if _has_python_only_float(text):
            # Rare: a float (< 1e-4, or >= 2**53) that JS prints differently.
            text = _encode_js(value)
        return text.encode("utf-8")
    except (ValueError, TypeError, RecursionError) as exc:  # UnicodeEncodeError included
        raise WireError("$", f"not a normalized JSON value ({exc}); normalize() it first") from exc


def _has_python_only_float(text: str) -> bool:
    for marker in ("e-", "e+"):
        at = text.find(marker)
        while at != -1:
            if _ends_number(text, at):
                return True
            at = text.find(marker, at + 2)
    at = text.find(".0")
    while at != -1:
        # ".0" then the token's end: not "0.05" nor "12.000Z" in a timestamp.
        after = text[at + 2 : at + 3]
        if (not after or after in _AFTER_NUMBER) and _ends_number(text, at):
            return True
        at = text.find(".0", at + 2)
    return False


def _ends_number(text: str, at: int) -> bool:
    """Whether a number token such as ``-12.5`` ends just before ``text[at]``."""
    if at == 0 or not "0" <= text[at - 1] <= "9":
        return False  # the usual case: "acme-prod", "v1.0,"... ruled out by one character
    return _NUMBER_BEFORE.search(text, max(0, at - _LONGEST_MANTISSA), at) is not None


def _encode_js(value: Any) -> str:
    # The slow path, only for documents holding a float that needs js_number.
    cls = type(value)
    if cls is float:
        return js_number(value)
    if cls is dict:
        return (
            "{" + ",".join(_ENCODER.encode(k) + ":" + _encode_js(v) for k, v in value.items()) + "}"
        )
    if cls is list:
        return "[" + ",".join(_encode_js(item) for item in value) + "]"
    return _ENCODER.encode(value)


def js_number(value: float) -> str:
    """ECMAScript ``Number::toString(value)`` for a finite float.

    Python's repr already gives the shortest digits that round-trip (as JavaScript
    does); only their placement differs, so this rearranges repr's digits.
    """
    if value != value or value - value != 0.0:
        raise ValueError(f"{value} is not a finite number")
    if value == 0:
        return "0"  # also -0.0: JavaScript prints "0"
    if value < 0:
        return "-" + js_number(-value)
    mantissa, _, exponent = repr(value).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    # value == 0.<digits> * 10**n
    n = len(whole) + int(exponent or "0")
    significant = digits.lstrip("0")
    n -= len(digits) - len(significant)
    digits = significant.rstrip("0")
    k = len(digits)
    # The cases of ECMA-262 Number::toString, with value == digits * 10**(n-k).
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return "0." + "0" * -n + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    if k == 1:
        return f"{digits}e{sign}{abs(e)}"
    return f"{digits[0]}.{digits[1:]}e{sign}{abs(e)}"


# ------------------------------------------------------------------------------ decode


def _reject_constant(name: str) -> None:
    raise WireError("$", f"{name} is not valid JSON")


# parse_constant is only called for NaN, Infinity and -Infinity, which JSON.parse rejects.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant)


def decode(data: bytes | str) -> JSONValue:
    """Parse JSON text as ``JSON.parse`` would; raise :class:`WireError` if it is not JSON.

    Bytes must be UTF-8 (RFC 8259), without a byte order mark. NaN and Infinity are
    rejected; so are documents nested too deeply for the parser. Lone-surrogate escapes
    and numbers such as ``1e400`` parse (as in JavaScript); :func:`normalize` refuses them.
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WireError("$", f"not valid UTF-8 at byte {exc.start}") from None
    else:
        text = data
    try:
        value: JSONValue = _DECODER.decode(text)
    except WireError:
        raise
    except json.JSONDecodeError as exc:
        raise WireError("$", f"not valid JSON: {exc}") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        raise WireError("$", f"not acceptable JSON: {exc}") from None
    except RecursionError:
        raise WireError("$", "not acceptable JSON: nested too deeply") from None
    return value
