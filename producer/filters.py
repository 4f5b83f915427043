"""Payload filters: a small declarative language over an event, beside the type filter.

An endpoint's ``filter`` is a JSON object such as
``{"data.priority": {"$in": ["high", "urgent"]}}``, compiled once into a predicate when
the endpoint is registered or loaded, and evaluated at publish time against the event
(``id``, ``type``, ``created_at``, ``workspace_id``, ``data``). ``{}`` matches every event.
The language and its type rules are documented in docs/filters.md; every refusal is a
:class:`FilterError` whose ``pointer`` (RFC 6901) points at the bad spot of the filter.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from producer.events import EVENT_FIELDS

# Bounds what one filter may cost at every publish (and what one request may store).
MAX_FILTER_BYTES = 4096
MAX_DEPTH = 8
MAX_NODES = 256
MAX_IN_ITEMS = 100
MAX_PATH_SEGMENTS = 16

COMPARISONS = ("$gt", "$gte", "$lt", "$lte")
FIELD_OPERATORS = ("$eq", "$ne", "$in", "$nin", "$exists", *COMPARISONS, "$not")
LOGICAL_OPERATORS = ("$and", "$or", "$not")

Document = Mapping[str, Any]
Predicate = Callable[[Document], bool]
ValueTest = Callable[[Any], bool]
# What a path lookup gives when the event has nothing there ($exists: false holds).
MISSING: Any = object()


class FilterError(ValueError):
    """A malformed filter: ``pointer`` is the JSON Pointer of the bad spot ('' the whole)."""

    def __init__(self, pointer: str, message: str) -> None:
        super().__init__(f"at {pointer or '/'}: {message}" if pointer else message)
        self.pointer = pointer
        self.message = message


def _child(pointer: str, token: str | int) -> str:
    """``pointer`` extended by one reference token, escaped as RFC 6901 says."""
    return pointer + "/" + str(token).replace("~", "~0").replace("/", "~1")


@dataclass(frozen=True)
class PayloadFilter:
    """A compiled filter: ``source`` as given (the stored and shown form) and its test."""

    source: dict[str, Any]
    _test: Predicate = field(compare=False, repr=False)

    @property
    def text(self) -> str:
        """The stored form: canonical JSON ('' for the filter that matches everything)."""
        return json.dumps(self.source, sort_keys=True, separators=(",", ":")) if self else ""

    def __bool__(self) -> bool:
        """Whether the filter restricts anything (``{}`` does not)."""
        return bool(self.source)

    def matches(self, event: Document) -> bool:
        """Whether ``event`` (an event's ``to_dict()``) passes the filter."""
        return self._test(event)


MATCH_ALL = PayloadFilter({}, lambda _event: True)


def compile_filter(source: object) -> PayloadFilter:
    """Check ``source`` (a JSON value) and compile it, or raise :class:`FilterError`."""
    if source is None or source == {}:
        return MATCH_ALL
    if not isinstance(source, dict):
        raise FilterError("", f"must be a JSON object, not {_kind(source)}")
    try:
        # NaN passes here to be refused where it stands, with its pointer.
        size = len(json.dumps(source, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise FilterError("", f"is not JSON: {exc}") from None
    if size > MAX_FILTER_BYTES:
        raise FilterError("", f"is {size} bytes of JSON; the limit is {MAX_FILTER_BYTES}")
    compiler = _Compiler()
    return PayloadFilter(source, compiler.filter(source, "", 1))


def filter_from_text(text: str) -> PayloadFilter:
    """Parse and compile the stored form (:attr:`PayloadFilter.text`)."""
    return compile_filter(json.loads(text)) if text else MATCH_ALL


def parse_filter_text(text: str) -> PayloadFilter:
    """A filter given as JSON text (the CLI's ``--filter``, the dashboard's form)."""
    if not text.strip():
        return MATCH_ALL
    try:
        source = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FilterError("", f"is not valid JSON: {exc}") from None
    return compile_filter(source)


def _kind(value: object) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def json_equal(left: object, right: object) -> bool:
    """JSON equality: numbers by value (``1 == 1.0``), booleans never equal to numbers,
    arrays element by element, objects key by key."""
    if _is_number(left) and _is_number(right):
        return left == right
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if type(left) is not type(right):
        return False
    return left == right


def _lookup(segments: Sequence[str]) -> Callable[[Document], Any]:
    """A function giving the value at a dotted path of an event, or :data:`MISSING`."""

    def lookup(event: Document) -> Any:
        value: Any = event
        for segment in segments:
            if isinstance(value, dict):
                value = value.get(segment, MISSING)
            elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
                value = value[int(segment)]
            else:
                return MISSING
            if value is MISSING:
                return MISSING
        return value

    return lookup


def _ordered(operator: str, operand: float | str) -> ValueTest:
    """``$gt`` and company: true only for a value of the operand's kind (number or
    string, strings by code point); any other value (missing, null, bool...) fails."""
    number = _is_number(operand)
    compare: Callable[[Any, Any], bool] = {
        "$gt": lambda a, b: a > b,
        "$gte": lambda a, b: a >= b,
        "$lt": lambda a, b: a < b,
        "$lte": lambda a, b: a <= b,
    }[operator]

    def test(value: Any) -> bool:
        if number:
            return _is_number(value) and compare(value, operand)
        return isinstance(value, str) and compare(value, operand)

    return test


class _Compiler:
    """One compilation: counts nodes against :data:`MAX_NODES` as it goes."""

    def __init__(self) -> None:
        self.nodes = 0

    def _count(self, pointer: str, depth: int) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise FilterError(pointer, f"the filter has more than {MAX_NODES} parts")
        if depth > MAX_DEPTH:
            raise FilterError(pointer, f"nested deeper than {MAX_DEPTH} levels")

    def filter(self, source: object, pointer: str, depth: int) -> Predicate:
        """A filter object: every key (a path or ``$and``/``$or``/``$not``) must hold."""
        self._count(pointer, depth)
        if not isinstance(source, dict):
            raise FilterError(pointer, f"must be a filter object, not {_kind(source)}")
        tests: list[Predicate] = []
        for key, value in source.items():
            here = _child(pointer, key)
            if not isinstance(key, str):
                raise FilterError(pointer, "keys must be strings")
            if key.startswith("$"):
                tests.append(self._logical(key, value, here, depth))
            else:
                tests.append(self._field(key, value, here, depth))
        if len(tests) == 1:
            return tests[0]
        return lambda event: all(test(event) for test in tests)

    def _logical(self, key: str, value: object, pointer: str, depth: int) -> Predicate:
        if key == "$not":
            inner = self.filter(value, pointer, depth + 1)
            return lambda event: not inner(event)
        if key not in LOGICAL_OPERATORS:
            raise FilterError(
                pointer,
                f"unknown operator {key}: a filter's keys are paths such as data.priority "
                f"or one of {', '.join(LOGICAL_OPERATORS)}",
            )
        if not isinstance(value, list) or not value:
            raise FilterError(pointer, f"{key} takes a non-empty array of filters")
        parts = [self.filter(item, _child(pointer, i), depth + 1) for i, item in enumerate(value)]
        if key == "$and":
            return lambda event: all(part(event) for part in parts)
        return lambda event: any(part(event) for part in parts)

    def _field(self, path: str, condition: object, pointer: str, depth: int) -> Predicate:
        segments = path.split(".")
        if len(segments) > MAX_PATH_SEGMENTS:
            raise FilterError(pointer, f"the path has more than {MAX_PATH_SEGMENTS} parts")
        if any(not segment for segment in segments):
            raise FilterError(pointer, f"{path!r} has an empty part: write data.a.b")
        if segments[0] not in EVENT_FIELDS:
            raise FilterError(
                pointer,
                f"{path!r} is not a path into the event: start with one of "
                f"{', '.join(EVENT_FIELDS)} (such as data.{path})",
            )
        lookup = _lookup(segments)
        test = self._condition(condition, pointer, depth + 1)
        return lambda event: test(lookup(event))

    def _condition(self, condition: object, pointer: str, depth: int) -> ValueTest:
        """A path's condition: a literal (equality) or an object of field operators."""
        self._count(pointer, depth)
        if not isinstance(condition, dict) or not any(k.startswith("$") for k in condition):
            literal = self._literal(condition, pointer, depth)
            return lambda value: value is not MISSING and json_equal(value, literal)
        tests: list[ValueTest] = []
        for operator, operand in condition.items():
            here = _child(pointer, operator)
            if not operator.startswith("$"):
                raise FilterError(
                    here, f"{operator!r} beside operators: an object with $ keys holds only those"
                )
            tests.append(self._operator(operator, operand, here, depth))
        if len(tests) == 1:
            return tests[0]
        return lambda value: all(test(value) for test in tests)

    def _operator(self, operator: str, operand: object, pointer: str, depth: int) -> ValueTest:
        if operator in ("$eq", "$ne"):
            literal = self._literal(operand, pointer, depth + 1)
            if operator == "$eq":
                return lambda value: value is not MISSING and json_equal(value, literal)
            return lambda value: value is MISSING or not json_equal(value, literal)
        if operator in ("$in", "$nin"):
            if not isinstance(operand, list):
                raise FilterError(pointer, f"{operator} takes an array, not {_kind(operand)}")
            if len(operand) > MAX_IN_ITEMS:
                raise FilterError(pointer, f"{operator} takes at most {MAX_IN_ITEMS} values")
            items = [self._literal(v, _child(pointer, i), depth + 1) for i, v in enumerate(operand)]

            def found(value: Any) -> bool:
                return value is not MISSING and any(json_equal(value, item) for item in items)

            if operator == "$in":
                return found
            return lambda value: not found(value)
        if operator == "$exists":
            if not isinstance(operand, bool):
                raise FilterError(pointer, f"$exists takes true or false, not {_kind(operand)}")
            wanted = operand
            return lambda value: (value is not MISSING) == wanted
        if operator in COMPARISONS:
            if not (_is_number(operand) or isinstance(operand, str)):
                raise FilterError(
                    pointer, f"{operator} compares with a number or a string, not {_kind(operand)}"
                )
            assert isinstance(operand, int | float | str)  # for mypy: checked just above
            return _ordered(operator, operand)
        if operator == "$not":
            if not isinstance(operand, dict) or not operand:
                raise FilterError(
                    pointer, '$not here takes an object of operators, such as {"$in": [...]}'
                )
            inner = self._condition(operand, pointer, depth + 1)
            return lambda value: not inner(value)
        raise FilterError(
            pointer, f"unknown operator {operator}; one of {', '.join(FIELD_OPERATORS)}"
        )

    def _literal(self, value: object, pointer: str, depth: int) -> Any:
        """A JSON value compared for equality; checked for depth, size and finiteness."""
        self._count(pointer, depth)
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise FilterError(pointer, "object keys must be strings")
                self._literal(item, _child(pointer, key), depth + 1)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self._literal(item, _child(pointer, i), depth + 1)
        elif isinstance(value, float) and not math.isfinite(value):
            raise FilterError(pointer, "numbers must be finite")
        elif not (value is None or isinstance(value, str | int | float | bool)):
            raise FilterError(pointer, f"{_kind(value)} is not a JSON value")
        return value
