"""The wire format: our bytes are what ``JSON.stringify(JSON.parse(body))`` prints in Node.

Unit tests pin each rule to exact bytes; the cross-checks send hundreds of tricky and
random documents through one real ``node`` process (``tests/node/roundtrip.js``).
"""

from __future__ import annotations

import base64
import collections
import datetime
import decimal
import enum
import json
import math
import pickle
import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from producer import jsonwire
from producer.jsonwire import (
    MAX_DEPTH,
    MAX_SAFE_INTEGER,
    JSONValue,
    WireError,
    decode,
    encode,
    js_number,
    normalize,
)

ROUNDTRIP_JS = Path(__file__).resolve().parent / "node" / "roundtrip.js"
NODE_TIMEOUT_S = 30.0


def wire(value: object) -> bytes:
    """What we put on the wire for ``value``."""
    return encode(normalize(value))


def node_restringify(documents: list[bytes]) -> list[bytes | str]:
    """``JSON.stringify(JSON.parse(doc))`` per document, from ONE ``node`` process.

    Each result is the UTF-8 bytes Node prints, or (a str) the message of the error
    JSON.parse threw. Fails, never skips, without ``node``: CI installs it.
    """
    node = shutil.which("node")
    if node is None:
        pytest.fail(
            "`node` is not on PATH; the JSON wire format must be checked against real "
            "Node.js (install Node.js >= 18, e.g. `make node-deps`)",
            pytrace=False,
        )
    stdin = b"".join(base64.b64encode(doc) + b"\n" for doc in documents)
    try:
        # run() kills node if it overruns the timeout.
        done = subprocess.run(
            [node, str(ROUNDTRIP_JS)],
            input=stdin,
            capture_output=True,
            timeout=NODE_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"node {ROUNDTRIP_JS.name} took more than {NODE_TIMEOUT_S} s", pytrace=False)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    lines = done.stdout.decode("ascii").splitlines()
    assert len(lines) == len(documents), done.stderr.decode(errors="replace")
    results: list[bytes | str] = []
    for line in lines:
        status, _, rest = line.partition(" ")
        results.append(base64.b64decode(rest) if status == "ok" else rest)
    return results


# ----------------------------------------------------------------------- values to test

TRICKY_STRINGS = [
    "",
    "plain ascii",
    "héllo wörld",
    "日本語テキスト",
    "emoji 😀🎉👩‍👩‍👧 and 𝄞",
    'quote " backslash \\ slash /',
    "controls \x00\x01\x07\x08\x09\x0a\x0b\x0c\x0d\x1b\x1f end",
    "DEL \x7f C1 \x80\x9f NBSP \xa0",
    "line sep \u2028 para sep \u2029",
    "BOM \ufeff noncharacter \uffff",
    "</script><!--",
    "looks like numbers :1.0, ,1e-07] [1e+16,",
    "Mozilla/5.0 (X11; Linux x86_64) v1.0",
]

TRICKY_FLOATS = [
    0.1,
    0.5,
    -2.5,
    1.0,
    -0.0,
    100.0,
    1e21,
    1e20,
    1.5e20,
    1e16,
    1.2345678901234567e16,
    1e-7,
    1.5e-7,
    1e-6,
    1.234e-5,
    0.0001,
    0.000123,
    123456789.123,
    5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    2.0**53,
    2.0**53 + 2,
    2.0**60,
    float(MAX_SAFE_INTEGER),
    -float(MAX_SAFE_INTEGER),
    1 / 3,
    2 / 3,
    -1e-7,
    -1e21,
    123e-20,
    9.999999999999999e20,
    4.35,
    0.3,
    1e300,
]

TRICKY_INTS = [0, 1, -1, 42, 2**31, 2**32, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 10**15]

TRICKY_DOCUMENTS: list[object] = [
    None,
    True,
    False,
    [],
    {},
    *TRICKY_STRINGS,
    *TRICKY_FLOATS,
    *TRICKY_INTS,
    TRICKY_STRINGS,
    TRICKY_FLOATS,
    {"b": 1, "a": 2, "10": 3, "2": 4, "0": 5, "01": 6, "-1": 7, "1.5": 8, " 1": 9},
    {"4294967294": "max index", "4294967295": "not an index", "x": 0, "4294967293": 1},
    {"9007199254740991": 1, "z": 2, "3": 3},
    {"__proto__": {"polluted": True}, "constructor": 1, "toString": 2},
    {"5\n": 1, "٣": 2, "7": 3},
    {"é": 1, "😀": 2, "\u2028": 3, "": 4, '"': 5, "\\": 6, "\x00": 7},
    {"nested": {"z": [1, {"2": "b", "1": "a", "k": [{"10": 0, "9": 0}]}], "a": -0.0}},
    {
        "id": "evt_01HZX3K9",
        "type": "invoice.paid",
        "created_at": "2024-06-11T09:30:00.000Z",
        "data": {
            "amount": 1999,
            "price": 19.99,
            "rate": 1e-7,
            "big": 1e21,
            "qty": 3.0,
            "tags": ["a", "b"],
            "customer": {"name": "Zoë", "note": "line\nbreak\u2028"},
        },
    },
    ("tuple", 1, 2.5),
]

# Each is (value, fragment of the message).
REJECTED: list[tuple[object, str]] = [
    (float("nan"), "not a JSON number"),
    (float("inf"), "not a JSON number"),
    (float("-inf"), "not a JSON number"),
    (MAX_SAFE_INTEGER + 1, "beyond"),
    (-MAX_SAFE_INTEGER - 1, "beyond"),
    (10**21, "beyond"),
    ("\ud800", "lone surrogate"),
    ("ok \udfff ok", "lone surrogate"),
    ({"\ud83d": 1}, "lone surrogate"),
    ({1: "a"}, "keys must be strings"),
    ({None: "a"}, "keys must be strings"),
    ({("a",): "a"}, "keys must be strings"),
    ({"a"}, "set is not a JSON value"),
    (frozenset(), "frozenset is not a JSON value"),
    (b"bytes", "bytes is not a JSON value"),
    (bytearray(b"x"), "bytearray is not a JSON value"),
    (decimal.Decimal("1.1"), "decimal.Decimal is not a JSON value"),
    (datetime.datetime(2024, 1, 1), "datetime.datetime is not a JSON value"),
    (datetime.date(2024, 1, 1), "datetime.date is not a JSON value"),
    (1j, "complex is not a JSON value"),
    (object(), "object is not a JSON value"),
    (range(3), "range is not a JSON value"),
]


# ---------------------------------------------------------------------- random values

_CHARS = 'aZ09 _-.:,/"\\\x00\x01\x08\t\n\x0c\r\x1f\x7f\x80\xa0é€\u2028\u2029\ufeff\uffff😀𝄞中'
_INDEX_LIKE_KEYS = ["0", "1", "2", "10", "42", "01", "-1", "1.5", "4294967294", "4294967295"]


def _random_string(rng: random.Random) -> str:
    return "".join(rng.choice(_CHARS) for _ in range(rng.randrange(12)))


def _random_double(rng: random.Random) -> float:
    """Any finite double, from 64 random bits."""
    while True:
        (value,) = struct.unpack("<d", rng.getrandbits(64).to_bytes(8, "little"))
        if math.isfinite(value):
            return float(value)


def _random_float(rng: random.Random) -> float:
    kind = rng.randrange(5)
    if kind == 0:
        return _random_double(rng)
    if kind == 1:
        return rng.uniform(-1e6, 1e6)
    if kind == 2:
        return rng.random() * 10.0 ** rng.randint(-30, 30)
    if kind == 3:
        return round(rng.uniform(-1000, 1000), rng.randint(0, 4))
    return float(rng.randint(-(2**60), 2**60))


def _random_int(rng: random.Random) -> int:
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randint(-1000, 1000)
    if kind == 1:
        return rng.choice([1, -1]) * (MAX_SAFE_INTEGER - rng.randrange(1000))
    return rng.randint(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 4 and roll < 0.2:
        return [_random_value(rng, depth + 1) for _ in range(rng.randrange(5))]
    if depth < 4 and roll < 0.4:
        keys = [
            rng.choice(_INDEX_LIKE_KEYS) if rng.random() < 0.3 else _random_string(rng)
            for _ in range(rng.randrange(7))
        ]
        return {key: _random_value(rng, depth + 1) for key in keys}
    kind = rng.randrange(6)
    if kind == 0:
        return rng.choice([None, True, False])
    if kind == 1:
        return _random_int(rng)
    if kind in (2, 3):
        return _random_float(rng)
    return _random_string(rng)


def random_documents(count: int, seed: int = 20240611) -> list[Any]:
    rng = random.Random(seed)
    return [_random_value(rng) for _ in range(count)]


# ------------------------------------------------------------------------------- Node


def test_node_reproduces_our_bytes_exactly() -> None:
    """The spec's requirement, checked with real JavaScript on hundreds of documents."""
    rng = random.Random(7)
    documents: list[object] = [
        *TRICKY_DOCUMENTS,
        *random_documents(400),
        # Number::toString on thousands of doubles: one array each.
        [_random_double(rng) for _ in range(3000)],
        [rng.random() * 10.0 ** rng.randint(-25, 25) for _ in range(3000)],
        [round(rng.uniform(-1e4, 1e4), rng.randint(0, 6)) for _ in range(3000)],
    ]
    ours = [wire(document) for document in documents]
    theirs = node_restringify(ours)
    mismatches = [
        f"{document!r:.200}\n  ours: {mine[:200]!r}\n  node: {node!r:.200}"
        for document, mine, node in zip(documents, ours, theirs, strict=True)
        if mine != node
    ]
    assert not mismatches, f"{len(mismatches)} of {len(documents)} differ:\n" + "\n".join(
        mismatches[:10]
    )


def test_node_changes_what_normalize_rejects() -> None:
    """Why rejecting is needed: naive JSON of these does not survive JSON.parse/stringify."""
    naive = [
        b"9007199254740993",
        b"-9007199254740993",
        b"1000000000000000000000",
        b"NaN",
        b"Infinity",
        b"1e400",
    ]
    theirs = node_restringify(naive)
    for text, node in zip(naive, theirs, strict=True):
        assert node != text, text
        with pytest.raises(WireError):
            normalize(json.loads(text))


def test_python_json_alone_would_differ_from_node() -> None:
    """The cases that need our normalization, so the cross-check is not vacuous."""
    values: list[object] = [1.0, -0.0, 1e-7, 1e16, 2.0**53, {"b": 1, "1": 2}]
    naive = [
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode() for value in values
    ]
    theirs = node_restringify(naive)
    for value, text, node in zip(values, naive, theirs, strict=True):
        assert node != text, value
        assert wire(value) == node


# ------------------------------------------------------------------------ object keys


def test_array_index_keys_come_first_in_numeric_order() -> None:
    value = {"b": 1, "10": 2, "2": 3, "01": 4, "-1": 5, "4294967295": 6, "4294967294": 7, "0": 8}
    normalized = normalize(value)
    assert isinstance(normalized, dict)
    assert list(normalized) == ["0", "2", "10", "4294967294", "b", "01", "-1", "4294967295"]
    assert wire(value) == (
        b'{"0":8,"2":3,"10":2,"4294967294":7,"b":1,"01":4,"-1":5,"4294967295":6}'
    )


@pytest.mark.parametrize("key", ["01", "-1", "+1", "1.0", "1e3", " 1", "1 ", "5\n", "٣", "0x1"])
def test_keys_that_are_not_array_indexes_keep_insertion_order(key: str) -> None:
    encoded = json.dumps(key, ensure_ascii=False).encode()
    assert wire({"z": 1, key: 2, "3": 3}) == b'{"3":3,"z":1,' + encoded + b":2}"


def test_nested_objects_are_reordered_too() -> None:
    value = {"x": [{"b": 0, "1": 1, "0": 0}], "9": {"2": 2, "a": 1, "1": 1}}
    assert wire(value) == b'{"9":{"1":1,"2":2,"a":1},"x":[{"0":0,"1":1,"b":0}]}'


def test_other_keys_keep_insertion_order() -> None:
    assert wire({"z": 1, "a": 2, "m": 3}) == b'{"z":1,"a":2,"m":3}'


def test_keys_must_be_strings() -> None:
    with pytest.raises(WireError) as caught:
        normalize({"data": {"items": [{"ok": 1}, {2: "two"}]}})
    assert caught.value.path == "$.data.items[1]"
    assert "object keys must be strings, got int 2" in str(caught.value)


# ------------------------------------------------------------------------------ numbers


def test_integers_within_the_safe_range_are_exact() -> None:
    assert wire([MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER, 0, -1]) == (
        b"[9007199254740991,-9007199254740991,0,-1]"
    )


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**64, 10**21, -(10**30)])
def test_integers_beyond_the_safe_range_are_rejected(value: int) -> None:
    with pytest.raises(WireError, match=r"beyond ±\(2\*\*53-1\).*send it as a string") as caught:
        normalize({"n": value})
    assert caught.value.path == "$.n"


def test_bool_is_not_an_int() -> None:
    assert normalize(True) is True
    assert normalize(False) is False
    assert wire([True, False, None, 1, 0]) == b"[true,false,null,1,0]"


def test_int_and_str_subclasses_become_plain_values() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    class Colour(enum.StrEnum):
        RED = "red"

    normalized = normalize({"level": Level.HIGH, "colour": Colour.RED})
    assert normalized == {"level": 3, "colour": "red"}
    assert isinstance(normalized, dict)
    assert type(normalized["level"]) is int
    assert type(normalized["colour"]) is str
    assert encode(normalized) == b'{"level":3,"colour":"red"}'


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, b"1"),
        (-0.0, b"0"),
        (100.0, b"100"),
        (0.1, b"0.1"),
        (-2.5, b"-2.5"),
        (1 / 3, b"0.3333333333333333"),
        (123456789.123, b"123456789.123"),
        (1e20, b"100000000000000000000"),
        (1.5e20, b"150000000000000000000"),
        (1e21, b"1e+21"),
        (-1e21, b"-1e+21"),
        (1.5e21, b"1.5e+21"),
        (1e16, b"10000000000000000"),
        (2.0**53, b"9007199254740992"),
        (2.0**60, b"1152921504606847000"),
        (1e-6, b"0.000001"),
        (1.234e-5, b"0.00001234"),
        (0.0001, b"0.0001"),
        (1e-7, b"1e-7"),
        (-1e-7, b"-1e-7"),
        (1.5e-7, b"1.5e-7"),
        (123e-20, b"1.23e-18"),
        (5e-324, b"5e-324"),
        (2.2250738585072014e-308, b"2.2250738585072014e-308"),
        (1.7976931348623157e308, b"1.7976931348623157e+308"),
        (1e300, b"1e+300"),
    ],
)
def test_floats_print_as_javascript_prints_them(value: float, expected: bytes) -> None:
    assert wire(value) == expected
    assert wire({"v": value}) == b'{"v":' + expected + b"}"
    assert wire([value, value]) == b"[" + expected + b"," + expected + b"]"
    assert js_number(value).encode() == expected


def test_integral_floats_normalize_to_ints() -> None:
    normalized = normalize([1.0, -0.0, 3.0, float(MAX_SAFE_INTEGER), 0.5, 1e21])
    assert normalized == [1, 0, 3, MAX_SAFE_INTEGER, 0.5, 1e21]
    assert isinstance(normalized, list)
    assert [type(item) for item in normalized] == [int, int, int, int, float, float]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinity_are_rejected(value: float) -> None:
    with pytest.raises(WireError, match="not a JSON number") as caught:
        normalize({"data": {"items": [0, 1, 2, {"price": value}]}})
    assert caught.value.path == "$.data.items[3].price"
    with pytest.raises(ValueError, match="not a finite number"):
        js_number(value)


def test_js_number_matches_repr_digits_for_many_doubles() -> None:
    rng = random.Random(99)
    for _ in range(20000):
        value = _random_double(rng)
        text = js_number(value)
        assert float(text) == value, (value, text)
        # Exponent form exactly outside [1e-6, 1e21), as in ECMAScript.
        assert ("e" in text) == (value != 0 and not 1e-6 <= abs(value) < 1e21), (value, text)


# ------------------------------------------------------------------------------ strings


def test_strings_escape_exactly_what_json_stringify_escapes() -> None:
    value = '"\\/\b\f\n\r\t\x00\x01\x1f\x7f\u2028\u2029é€😀'
    assert wire(value) == (
        b'"\\"\\\\/\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f' + "\x7f\u2028\u2029é€😀".encode() + b'"'
    )


def test_control_characters_use_lowercase_hex() -> None:
    assert wire("\x0b\x1b\x1e") == b'"\\u000b\\u001b\\u001e"'


@pytest.mark.parametrize("text", [chr(0xD800), f"a{chr(0xDC00)}b", chr(0xDFFF), f"😀{chr(0xD83D)}"])
def test_lone_surrogates_are_rejected(text: str) -> None:
    with pytest.raises(WireError, match=r"lone surrogate U\+D[89A-F][0-9A-F]{2}") as caught:
        normalize({"data": {"list": ["fine", text]}})
    assert caught.value.path == "$.data.list[1]"


def test_lone_surrogate_in_a_key_is_rejected_at_the_object() -> None:
    with pytest.raises(WireError, match=r"object key .* lone surrogate") as caught:
        normalize({"data": {"ok": 1, "bad\udc80": 2}})
    assert caught.value.path == "$.data"


def test_paired_surrogates_are_just_characters() -> None:
    assert wire("\U0001f600") == '"😀"'.encode()


# --------------------------------------------------------------------------- structure


@pytest.mark.parametrize(("value", "fragment"), REJECTED)
def test_unsendable_values_are_rejected_with_their_path(value: object, fragment: str) -> None:
    with pytest.raises(WireError) as caught:
        normalize({"data": {"items": [0, 1, 2, {"price": value}]}}, path="$.event")
    assert fragment in caught.value.message
    # A bad key is reported at its object, which here is the value itself.
    assert caught.value.path == "$.event.data.items[3].price"
    assert str(caught.value).startswith(caught.value.path + ": ")
    assert isinstance(caught.value, ValueError)


def test_paths_quote_keys_that_are_not_identifiers() -> None:
    with pytest.raises(WireError) as caught:
        normalize({"unit price": {"a.b": [{"x": math.nan}]}})
    assert caught.value.path == '$["unit price"]["a.b"][0].x'


def test_tuples_are_lists_and_subclasses_are_plain() -> None:
    value = collections.OrderedDict([("t", (1, "a", (2.0,))), ("d", collections.defaultdict(int))])
    normalized = normalize(value)
    assert normalized == {"t": [1, "a", [2]], "d": {}}
    assert type(normalized) is dict
    assert wire(value) == b'{"t":[1,"a",[2]],"d":{}}'


def test_normalize_returns_a_copy() -> None:
    inner = {"b": 1, "0": 2.0}
    value = {"x": [inner]}
    normalized = normalize(value)
    assert normalized == {"x": [{"0": 2, "b": 1}]}
    assert value == {"x": [{"b": 1, "0": 2.0}]}
    assert isinstance(normalized, dict)
    assert normalized["x"] is not value["x"]


def _nested(levels: int) -> JSONValue:
    value: JSONValue = []
    for _ in range(levels - 1):
        value = [value]
    return value


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert wire(_nested(MAX_DEPTH)) == b"[" * MAX_DEPTH + b"]" * MAX_DEPTH
    assert wire({"a": _nested(MAX_DEPTH - 1)}) == b'{"a":' + b"[" * 63 + b"]" * 63 + b"}"


def test_nesting_beyond_the_limit_is_rejected() -> None:
    with pytest.raises(WireError, match=f"nested deeper than {MAX_DEPTH} levels") as caught:
        normalize({"a": _nested(MAX_DEPTH)})
    assert caught.value.path == "$.a" + "[0]" * (MAX_DEPTH - 1)


def test_a_cycle_is_rejected_not_looped() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(WireError, match="nested deeper"):
        normalize(loop)


# ------------------------------------------------------------------------------ encode


def test_event_bytes() -> None:
    event = {
        "id": "evt_1",
        "type": "invoice.paid",
        "data": {"amount": 1999, "price": 19.99, "qty": 3.0, "who": "Zoë", "ok": True},
    }
    assert wire(event) == (
        '{"id":"evt_1","type":"invoice.paid","data":'
        '{"amount":1999,"price":19.99,"qty":3,"who":"Zoë","ok":true}}'.encode()
    )


def test_strings_that_look_like_python_floats_are_untouched() -> None:
    value = {"a": ":1.0,", "b": ",1e-07]", "c": [1e-7, "[1.0]"], "d": "1.0"}
    assert wire(value) == b'{"a":":1.0,","b":",1e-07]","c":[1e-7,"[1.0]"],"d":"1.0"}'


def test_common_events_stay_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow_path(value: object) -> str:
        raise AssertionError(f"slow path taken for {value!r}")

    monkeypatch.setattr(jsonwire, "_encode_js", slow_path)
    event = {
        "ua": "Mozilla/5.0 (X11; Linux x86_64) Firefox/126.0",
        "version": "1.0",
        "price": 19.99,
        "ratio": 0.25,
        "n": [1, 2.5, -3.75, 123456.789],
        "when": "2024-06-11T09:30:00.000Z",
    }
    assert wire(event).startswith(b'{"ua":"Mozilla/5.0')


def test_encode_refuses_values_it_cannot_print() -> None:
    for value in [math.nan, "\ud800", {"s": {1, 2}}]:
        with pytest.raises(WireError, match="not a normalized JSON value"):
            encode(value)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ decode


def test_wire_error_is_a_value_error_that_pickles() -> None:
    error = WireError("$.data.x", "is wrong")
    assert isinstance(error, ValueError)
    assert str(error) == "$.data.x: is wrong"
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.message, str(copy)) == ("$.data.x", "is wrong", "$.data.x: is wrong")


def test_decode_parses_bytes_and_str() -> None:
    assert decode(b'{"a":[1,2.5,"\xc3\xa9",null,true]}') == {"a": [1, 2.5, "é", None, True]}
    assert decode(' {"a": 1}\n') == {"a": 1}


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", '{"a":[1,NaN]}'])
def test_decode_rejects_nan_and_infinity(text: str) -> None:
    with pytest.raises(WireError, match="is not valid JSON"):
        decode(text)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"{", "not valid JSON"),
        (b"{'a': 1}", "not valid JSON"),
        (b'{"a":1,}', "not valid JSON"),
        (b"[1] [2]", "not valid JSON"),
        (b'"raw\ncontrol"', "not valid JSON"),
        (b"\xef\xbb\xbf{}", "not valid JSON"),
        (b'{"a":"\xff"}', "not valid UTF-8 at byte 6"),
        (b"1" * 5000, "not acceptable JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
)
def test_decode_rejects_what_json_parse_rejects(data: bytes, fragment: str) -> None:
    with pytest.raises(WireError, match=fragment) as caught:
        decode(data)
    assert caught.value.path == "$"


def test_decode_accepts_what_normalize_then_refuses() -> None:
    # JSON.parse accepts these too; they are refused when normalized, with a reason.
    assert decode(b'"\\ud800"') == "\ud800"
    assert decode(b"1e400") == math.inf
    for text in [b'"\\ud800"', b"1e400", b"9007199254740993"]:
        with pytest.raises(WireError):
            normalize(decode(text))


def _holds_unsafe_int(value: JSONValue) -> bool:
    if isinstance(value, dict):
        return any(_holds_unsafe_int(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_unsafe_int(item) for item in value)
    return type(value) is int and abs(value) > MAX_SAFE_INTEGER


def test_round_trip_through_decode_is_stable() -> None:
    for document in [*TRICKY_DOCUMENTS, *random_documents(300, seed=5)]:
        first = wire(document)
        decoded = decode(first)
        if _holds_unsafe_int(decoded):
            # A float in [2**53, 1e21) prints as bare digits; read back it is an int
            # beyond the safe range, which the producer refuses (as the spec asks).
            with pytest.raises(WireError, match="beyond"):
                normalize(decoded)
        else:
            assert wire(decoded) == first, document
