"""The layout keeps its promises: no import circle, no module over 600 lines, producer/
never importing worker/ or cli/, one logger namespace, and every setting's default
declared once (its Option's) and taken from there by the settings classes."""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import MISSING, asdict, fields
from pathlib import Path
from typing import Any

import pytest

from producer.fields import FIELDS
from producer.http.state import API_OPTIONS, ApiSettings
from producer.settings import PROCESS_OPTIONS, PRODUCER_OPTIONS, Option, ProducerSettings
from worker.settings import WORKER_OPTIONS, WorkerSettings

PROJECT = Path(__file__).resolve().parent.parent
PACKAGES = ("producer", "worker", "cli")
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((PROJECT / package).rglob("*.py")):
            parts = path.relative_to(PROJECT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that ``name`` imports, at module level or in a function."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            candidates = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in known:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    # A package's __init__ that imports its own modules is no circle of design.
    if path.name == "__init__.py":
        targets = {t for t in targets if not t.startswith(name + ".")}
    return targets


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported(name, path, set(found)) for name, path in found.items()}


def cycle_through(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (its modules in order), or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_the_walk_finds_a_circle_when_there_is_one() -> None:
    assert cycle_through({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_through({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_module_imports_itself_back_through_others() -> None:
    graph = import_graph()
    assert len(graph) > 50  # the walk found the project
    assert cycle_through(graph) is None, " -> ".join(cycle_through(graph) or [])


def test_the_producer_never_imports_the_worker_or_the_cli() -> None:
    upward = {
        (module, target)
        for module, targets in import_graph().items()
        if module.split(".")[0] == "producer"
        for target in targets
        if target.split(".")[0] in {"worker", "cli"}
    }
    assert upward == set()


# Top to bottom: a module imports modules of its own layer or of the layers below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "producer.__main__", "worker.__main__"),  # entry points
    ("worker",),
    ("producer.http", "producer.dashboard", "producer.tokens"),
    ("producer",),  # the contract and the domain
    ("producer.redis", "producer.backoff"),  # plumbing
)


def layer_of(module: str) -> int:
    """The layer of ``module``: that of the longest prefix naming it."""
    matches = [
        (len(prefix), index)
        for index, prefixes in enumerate(LAYERS)
        for prefix in prefixes
        if module == prefix or module.startswith(prefix + ".")
    ]
    return max(matches)[1]


def test_every_import_goes_down_the_layers() -> None:
    upward = {
        (module, target)
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(target) < layer_of(module)
    }
    assert upward == set()
    assert layer_of("producer.http.app") == 2
    assert layer_of("producer.redis.clients") == 4


def test_no_module_is_over_600_lines() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in modules().items()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_LINES} == {}


def logger_names(path: Path) -> Iterator[str]:
    """The literal names given to ``structlog.get_logger`` in a module."""
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get_logger"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            yield str(node.args[0].value)


def test_every_logger_is_named_after_its_package_under_cliq() -> None:
    names = {
        (name, logger)
        for name, path in modules().items()
        if name.split(".")[0] in {"producer", "worker"}
        for logger in logger_names(path)
    }
    assert len(names) > 10
    assert {(m, n) for m, n in names if not n.startswith(f"cliq.{m.split('.')[0]}.")} == set()


# ---------------------------------------------------------------- settings defaults

SETTINGS: list[tuple[type[Any], Sequence[Option], Path]] = [
    (ProducerSettings, PRODUCER_OPTIONS, PROJECT / "producer" / "settings.py"),
    (WorkerSettings, WORKER_OPTIONS, PROJECT / "worker" / "settings.py"),
    (ApiSettings, API_OPTIONS + PROCESS_OPTIONS, PROJECT / "producer" / "http" / "state.py"),
]


def declared_defaults(cls: type[Any], source: Path) -> dict[str, ast.expr]:
    """The default expression of each field, as written in the class's source."""
    (node,) = (
        n
        for n in ast.walk(ast.parse(source.read_text()))
        if isinstance(n, ast.ClassDef) and n.name == cls.__name__
    )
    return {
        statement.target.id: statement.value
        for statement in node.body
        if isinstance(statement, ast.AnnAssign)
        and isinstance(statement.target, ast.Name)
        and statement.value is not None
    }


def option_default(expression: ast.expr) -> str | None:
    """``NAME`` when ``expression`` is ``NAME.value`` (or ``field(default=NAME.value, ...)``)."""
    if isinstance(expression, ast.Call):
        keywords = {k.arg: k.value for k in expression.keywords}
        expression = keywords.get("default", expression)
    if (
        isinstance(expression, ast.Attribute)
        and expression.attr == "value"
        and isinstance(expression.value, ast.Name)
    ):
        return expression.value.id
    return None


@pytest.mark.parametrize(
    ("cls", "options", "source"), SETTINGS, ids=lambda v: getattr(v, "__name__", "")
)
def test_settings_take_their_defaults_from_their_options(
    cls: type[Any], options: Sequence[Option], source: Path
) -> None:
    by_field = {option.dest: option for option in options}
    declared = declared_defaults(cls, source)
    module = sys.modules[cls.__module__]
    instance = cls()
    for dest, option in by_field.items():
        assert dest in {f.name for f in fields(cls)}, (
            f"{cls.__name__} has no field for {option.env}"
        )
        # Declared once: the field's default is written as the option's value ...
        name = option_default(declared[dest])
        assert name is not None, f"{cls.__name__}.{dest} has a default of its own"
        assert getattr(module, name) is option, f"{cls.__name__}.{dest} is not {option.env}"
        # ... and it is what reading an empty environment gives.
        assert getattr(instance, dest) == option.read({}), f"{cls.__name__}.{dest}"
    # Every other field with a default is no setting (the producer's own, a test knob).
    others = {f.name for f in fields(cls) if f.default is not MISSING} - set(by_field)
    assert others <= {"test_send_margin_s"}


# ---------------------------------------------------------------- hash fields in scripts

_HASH_CALL = re.compile(r"redis\.call\(\s*'(H[A-Z]+|XADD)'")
_LITERAL = re.compile(r"'([^'\n]*)'")


def _call_text(source: str, start: int) -> str:
    """The text of the redis.call(...) starting at ``start``, up to its closing paren."""
    depth = 0
    for index in range(start, len(source)):
        if source[index] == "(":
            depth += 1
        elif source[index] == ")":
            depth -= 1
            if depth == 0:
                return source[start : index + 1]
    return source[start:]


def bare_field_literals(source: str) -> list[str]:
    """The quoted literals of a script's hash and stream calls that spell out a field of
    :data:`producer.keys.FIELDS` (which the scripts must name as ``F.<hash>.<name>``)."""
    fields = {field for table in FIELDS.values() for field in asdict(table).values()}
    code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
    found: list[str] = []
    for call in _HASH_CALL.finditer(code):
        text = _call_text(code, call.start() + len("redis.call"))
        found += [f"{literal!r} in {text!r}" for literal in _LITERAL.findall(text)[1:]
                  if literal in fields]  # fmt: skip
    return found


def test_scripts_name_hash_fields_from_the_one_table() -> None:
    scripts = sorted((PROJECT / "producer").glob("*.lua")) + sorted(
        (PROJECT / "worker").glob("*.lua")
    )
    assert len(scripts) >= 10
    offenders = {
        path.name: literals
        for path in scripts
        if (literals := bare_field_literals(path.read_text()))
    }
    assert offenders == {}


def test_the_field_check_finds_a_bare_field() -> None:
    assert bare_field_literals("redis.call('HSET', K.delivery(id), 's', 'dead')") == [
        "'s' in \"('HSET', K.delivery(id), 's', 'dead')\""
    ]
    assert bare_field_literals("redis.call('HSET', key, F.delivery.state, 'dead')") == []
    assert bare_field_literals("-- redis.call('HGET', key, 'o')") == []
