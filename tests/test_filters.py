"""The payload-filter language (producer/filters.py): every operator and its type rules,
the examples of docs/filters.md, and property tests over valid and malformed filters."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from producer.filters import (
    MATCH_ALL,
    MAX_DEPTH,
    MAX_FILTER_BYTES,
    MAX_IN_ITEMS,
    MAX_NODES,
    FilterError,
    PayloadFilter,
    compile_filter,
    filter_from_text,
    json_equal,
    parse_filter_text,
)

from support import PROJECT

EVENT_BASE: dict[str, Any] = {
    "id": "evt_1",
    "type": "issue.created",
    "created_at": "2025-01-15T10:00:00.000Z",
    "workspace_id": "ws_1",
    "data": {},
}


def event(**fields: Any) -> dict[str, Any]:
    """An event document (what a filter sees) with ``fields`` replaced."""
    return {**EVENT_BASE, **fields}


def matches(source: dict[str, Any], **fields: Any) -> bool:
    """Whether ``source`` compiled matches the event with these fields."""
    return compile_filter(source).matches(event(**fields))


def refusal(source: object) -> FilterError:
    """The error compiling ``source`` raises (the test fails if it compiles)."""
    with pytest.raises(FilterError) as caught:
        compile_filter(source)
    return caught.value


# ---------------------------------------------------------------- operators


@pytest.mark.parametrize(
    ("condition", "value", "expected"),
    [
        # $eq / literal: JSON equality, no coercion.
        ({"$eq": "high"}, "high", True),
        ({"$eq": "high"}, "HIGH", False),
        ({"$eq": 1}, 1.0, True),
        ({"$eq": 1}, True, False),
        ({"$eq": True}, 1, False),
        ({"$eq": 5}, "5", False),
        ({"$eq": None}, None, True),
        ({"$eq": None}, 0, False),
        ({"$eq": [1, "a"]}, [1.0, "a"], True),
        ({"$eq": [1, "a"]}, ["a", 1], False),
        ({"$eq": {"a": 1}}, {"a": 1}, True),
        ({"$eq": {"a": 1}}, {"a": 1, "b": 2}, False),
        ("high", "high", True),
        ({"a": 1}, {"a": 1}, True),  # an object without $ keys is a literal
        ({"$eq": "bug"}, ["bug"], False),  # arrays are not searched
        # $ne: true when missing or different.
        ({"$ne": "low"}, "high", True),
        ({"$ne": "low"}, "low", False),
        ({"$ne": 1}, True, True),
        # $in / $nin
        ({"$in": ["high", "urgent"]}, "urgent", True),
        ({"$in": ["high", "urgent"]}, "low", False),
        ({"$in": [1, 2]}, 2.0, True),
        ({"$in": [1, 2]}, "1", False),
        ({"$in": []}, "x", False),
        ({"$nin": ["draft"]}, "open", True),
        ({"$nin": ["draft"]}, "draft", False),
        ({"$nin": []}, "x", True),
        # $exists: null counts as present.
        ({"$exists": True}, None, True),
        ({"$exists": False}, None, False),
        ({"$exists": True}, 0, True),
        # Ordering: numbers with numbers, strings with strings, anything else false.
        ({"$gt": 5}, 6, True),
        ({"$gt": 5}, 5, False),
        ({"$gte": 5}, 5.0, True),
        ({"$lt": 5}, 4.5, True),
        ({"$lte": 5}, 5, True),
        ({"$lte": 5}, 6, False),
        ({"$gt": 5}, "10", False),
        ({"$lte": 5}, "1", False),
        ({"$gt": 0}, True, False),
        ({"$lt": 1}, False, False),
        ({"$gt": 0}, None, False),
        ({"$gt": 0}, [1], False),
        ({"$gt": "b"}, "c", True),
        ({"$gt": "b"}, "B", False),  # by code point: uppercase sorts first
        ({"$lt": "b"}, 1, False),
        ({"$gte": "2025-01-15"}, "2025-02-01T00:00:00.000Z", True),
        ({"$gt": 1, "$lt": 3}, 2, True),
        ({"$gt": 1, "$lt": 3}, 3, False),
        # $not over operators.
        ({"$not": {"$in": ["a", "b"]}}, "c", True),
        ({"$not": {"$in": ["a", "b"]}}, "a", False),
        ({"$not": {"$gt": 5}}, "x", True),
    ],
)
def test_each_operator_on_a_present_value(condition: object, value: object, expected: bool) -> None:
    assert matches({"data.v": condition}, data={"v": value}) is expected


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("x", False),
        ({"$eq": None}, False),
        ({"$ne": None}, True),
        ({"$in": [None]}, False),
        ({"$nin": [None]}, True),
        ({"$exists": True}, False),
        ({"$exists": False}, True),
        ({"$gt": 0}, False),
        ({"$lte": "z"}, False),
        ({"$not": {"$exists": True}}, True),
        ({"$not": {"$exists": False}}, False),
    ],
)
def test_each_operator_on_a_missing_value(condition: object, expected: bool) -> None:
    assert matches({"data.v": condition}, data={}) is expected
    # A path through a non-container is missing too.
    assert matches({"data.v.w": condition}, data={"v": "text"}) is expected


def test_paths_reach_nested_objects_arrays_and_top_level_fields() -> None:
    data = {"issue": {"labels": ["bug", {"name": "ui"}]}}
    assert matches({"data.issue.labels.0": "bug"}, data=data)
    assert matches({"data.issue.labels.1.name": "ui"}, data=data)
    assert not matches({"data.issue.labels.2": {"$exists": True}}, data=data)
    assert not matches({"data.issue.labels.x": {"$exists": True}}, data=data)
    assert matches({"type": "issue.created", "workspace_id": "ws_1", "id": "evt_1"})
    assert not matches({"type": {"$ne": "issue.created"}})


def test_logical_operators() -> None:
    either = {"$or": [{"data.a": 1}, {"data.b": 2}]}
    assert matches(either, data={"a": 1})
    assert matches(either, data={"b": 2})
    assert not matches(either, data={"a": 2})
    both = {"$and": [{"data.a": 1}, {"data.b": 2}]}
    assert matches(both, data={"a": 1, "b": 2})
    assert not matches(both, data={"a": 1})
    assert not matches({"$not": both}, data={"a": 1, "b": 2})
    assert matches({"$not": both}, data={"a": 1})
    # Several keys: all must hold.
    assert matches({"data.a": 1, "data.b": 2}, data={"a": 1, "b": 2})
    assert not matches({"data.a": 1, "data.b": 2}, data={"a": 1, "b": 3})


def test_the_empty_filter_matches_everything_and_restricts_nothing() -> None:
    assert compile_filter({}) is MATCH_ALL
    assert compile_filter(None) is MATCH_ALL
    assert not MATCH_ALL
    assert MATCH_ALL.text == ""
    assert MATCH_ALL.matches(event())
    assert parse_filter_text("  ") is MATCH_ALL


def test_the_stored_form_round_trips() -> None:
    source = {"data.b": {"$in": [1, "x"]}, "$or": [{"type": "issue.created"}]}
    compiled = compile_filter(source)
    assert compiled.text == json.dumps(source, sort_keys=True, separators=(",", ":"))
    again = filter_from_text(compiled.text)
    assert again == compiled
    assert again.matches(event(data={"b": "x"}))
    assert not again.matches(event(data={"b": "y"}))


def test_json_equal_distinguishes_booleans_from_numbers_deeply() -> None:
    assert json_equal({"a": [1, {"b": 2.0}]}, {"a": [1.0, {"b": 2}]})
    assert not json_equal({"a": [True]}, {"a": [1]})
    assert not json_equal("1", 1)


# ---------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("source", "pointer", "message"),
    [
        ([], "", "must be a JSON object, not an array"),
        ("x", "", "must be a JSON object, not a string"),
        ({"data..a": 1}, "/data..a", "has an empty part"),
        ({"data.a": {"$in": 1}}, "/data.a/$in", "$in takes an array, not a number"),
        ({"data.a": {"$nin": None}}, "/data.a/$nin", "$nin takes an array, not null"),
        ({"data.a": {"$exists": 1}}, "/data.a/$exists", "$exists takes true or false"),
        ({"data.a": {"$gte": True}}, "/data.a/$gte", "not a boolean"),
        ({"data.a": {"$lt": None}}, "/data.a/$lt", "not null"),
        ({"data.a": {"$lt": {"x": 1}}}, "/data.a/$lt", "not an object"),
        ({"data.a": {"$not": 1}}, "/data.a/$not", "$not here takes an object of operators"),
        ({"data.a": {"$not": {}}}, "/data.a/$not", "$not here takes an object of operators"),
        ({"$and": {}}, "/$and", "$and takes a non-empty array of filters"),
        ({"$or": [1]}, "/$or/0", "must be a filter object, not a number"),
        ({"$not": []}, "/$not", "must be a filter object, not an array"),
        ({"$nor": []}, "/$nor", "unknown operator $nor"),
        ({"data.a": {"$eq": 1, "x": 2}}, "/data.a/x", "beside operators"),
        ({"a/b~c": 1}, "/a~1b~0c", "is not a path into the event"),
        (
            {"$and": [{"data.a": {"$in": [1, {"x": float("nan")}]}}]},
            "/$and/0/data.a/$in/1/x",
            "numbers must be finite",
        ),
        ({"data." + ".".join("p" * 17): 1}, "/data." + ".".join("p" * 17), "more than 16"),
        ({"data.a": {"$in": list(range(MAX_IN_ITEMS + 1))}}, "/data.a/$in", "at most 100"),
    ],
)
def test_malformed_filters_are_refused_at_the_bad_spot(
    source: object, pointer: str, message: str
) -> None:
    error = refusal(source)
    assert error.pointer == pointer
    assert message in error.message
    if pointer:
        assert str(error).startswith(f"at {pointer}: ")


def test_size_depth_and_part_limits() -> None:
    deep: dict[str, Any] = {"data.a": 1}
    for _ in range(MAX_DEPTH):
        deep = {"$not": deep}
    error = refusal(deep)
    assert f"nested deeper than {MAX_DEPTH} levels" in error.message
    assert error.pointer.startswith("/$not/$not")
    # Each item is two parts (a filter and its condition), small enough for the size limit.
    wide = {"$or": [{"data.a": 1}] * (MAX_NODES // 2)}
    assert f"more than {MAX_NODES} parts" in refusal(wide).message
    big = {"data.a": "x" * MAX_FILTER_BYTES}
    assert refusal(big).message.startswith(f"is {MAX_FILTER_BYTES + 13} bytes of JSON")
    with pytest.raises(FilterError, match="is not valid JSON"):
        parse_filter_text("{")


# ---------------------------------------------------------------- the documented examples

DOC = (PROJECT / "docs" / "filters.md").read_text()
EXAMPLES = [
    json.loads(block)
    for block in re.findall(r"```json\n(.*?)```", DOC, re.DOTALL)
    if '"filter"' in block
]


def test_the_docs_have_examples_of_both_kinds() -> None:
    assert sum("error" in example for example in EXAMPLES) >= 4
    assert sum("delivered" in example for example in EXAMPLES) >= 5


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: json.dumps(e["filter"])[:60])
def test_each_documented_example_holds(example: dict[str, Any]) -> None:
    if "error" in example:
        assert str(refusal(example["filter"])) == example["error"]
        return
    compiled = compile_filter(example["filter"])
    for fields in example["delivered"]:
        assert compiled.matches(event(**fields)), fields
    for fields in example["not delivered"]:
        assert not compiled.matches(event(**fields)), fields


# ---------------------------------------------------------------- properties

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(max_size=8)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
PATHS = st.builds(
    lambda tail: ".".join(["data", *tail]),
    st.lists(st.sampled_from(["a", "b", "0", "priority"]), min_size=1, max_size=3),
)
ORDERABLE = st.integers(-100, 100) | st.text(max_size=4)
CONDITIONS = st.one_of(
    JSON_SCALARS,
    st.fixed_dictionaries({"$eq": JSON_VALUES}),
    st.fixed_dictionaries({"$ne": JSON_VALUES}),
    st.fixed_dictionaries({"$in": st.lists(JSON_VALUES, max_size=4)}),
    st.fixed_dictionaries({"$nin": st.lists(JSON_VALUES, max_size=4)}),
    st.fixed_dictionaries({"$exists": st.booleans()}),
    st.dictionaries(st.sampled_from(["$gt", "$gte", "$lt", "$lte"]), ORDERABLE, min_size=1),
)
VALID_FILTERS = st.recursive(
    st.dictionaries(PATHS, CONDITIONS, min_size=1, max_size=3),
    lambda inner: (
        st.fixed_dictionaries({"$and": st.lists(inner, min_size=1, max_size=3)})
        | st.fixed_dictionaries({"$or": st.lists(inner, min_size=1, max_size=3)})
        | st.fixed_dictionaries({"$not": inner})
    ),
    max_leaves=6,
)
EVENTS = st.builds(
    lambda data: event(data=data),
    st.dictionaries(st.sampled_from(["a", "b", "priority"]), JSON_VALUES, max_size=3),
)
# Anything JSON, with operator-looking keys sprinkled in: mostly malformed filters.
KEYS = st.sampled_from(
    ["$and", "$or", "$not", "$in", "$gt", "$exists", "$x", "data.a", "a", "data.", ""]
)
ANYTHING = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=20,
)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(ANYTHING)
def test_any_json_compiles_or_is_refused_with_a_pointer_into_it(source: object) -> None:
    error: FilterError | None = None
    try:
        compiled = compile_filter(source)
    except FilterError as exc:
        error = exc
    if error is not None:
        assert error.message
        assert _resolves(source, error.pointer), (source, error.pointer)
        return
    # A filter that compiled evaluates without raising on any event.
    for data in ({}, {"a": 1}, {"a": {"b": [1, "x"]}}, {"a": None}):
        assert compiled.matches(event(data=data)) in (True, False)


@FAST
@given(VALID_FILTERS, EVENTS)
def test_valid_filters_compile_and_agree_with_their_negation(
    source: dict[str, Any], doc: dict[str, Any]
) -> None:
    negated = _within_depth({"$not": source})
    compiled = compile_filter(source)
    stored = filter_from_text(compiled.text)
    result = compiled.matches(doc)
    assert stored.matches(doc) is result
    assert negated.matches(doc) is not result


@FAST
@given(VALID_FILTERS, EVENTS)
def test_or_and_and_combine_as_boolean_logic(source: dict[str, Any], doc: dict[str, Any]) -> None:
    either = _within_depth({"$or": [source, {"type": "nope.nope"}]})
    both = _within_depth({"$and": [source, {"type": "issue.created"}]})
    inner = compile_filter(source).matches(doc)
    assert either.matches(doc) is inner
    assert both.matches(doc) is inner


def _within_depth(source: dict[str, Any]) -> PayloadFilter:
    """``source`` compiled; generated filters nested past the limit are skipped (only the
    depth limit may refuse what the valid strategies build)."""
    try:
        return compile_filter(source)
    except FilterError as exc:
        assume(not exc.message.startswith("nested deeper"))
        raise


def _resolves(document: object, pointer: str) -> bool:
    """Whether the JSON Pointer ``pointer`` names a spot inside ``document``."""
    if not pointer:
        return True
    node = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            return False
    return True
