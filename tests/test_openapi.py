"""``/openapi.json``: it describes every route, and the server keeps to it.

The schemathesis run generates requests from the document the server itself serves
(``python -m producer`` on 127.0.0.1 with the private Redis, an API key required) and
fails on any 5xx, any status the document does not list for the operation, and any
response body that breaks its schema.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis import Case, Response
from schemathesis.checks import not_a_server_error
from schemathesis.generation.stateful import run_state_machine_as_test
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from test_api import spawn_api

from producer import dashboard
from producer.events import BUILTIN_EVENT_TYPES, Catalogue
from producer.http.access import ROUTE_ACCESS
from producer.http.app import create_app
from producer.http.document import OPENAPI_DOCUMENT, build_document
from producer.http.openapi import operation
from producer.http.problems import PROBLEM_CONTENT_TYPE
from producer.http.state import ApiSettings
from producer.tokens import routes_spec

from harness import RedisServer
from harness.polling import wait_until_sync
from harness.redis_server import free_port

KEY = "openapi-key-0123456789abcdef"
# Bounds the schemathesis run: examples per operation (per generation mode) and a
# fixed seed, so that a failure shows again on the next run.
MAX_EXAMPLES = 25
STATEFUL_SCENARIOS = 30
SEED = 20251123
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")
# No 5xx, no status the operation does not list, no body that breaks its schema.
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


def document(**env: str) -> dict[str, Any]:
    """The document an application with these settings serves (no Redis needed)."""
    app = create_app(ApiSettings.from_env(env))
    loaded: dict[str, Any] = json.loads(app[OPENAPI_DOCUMENT])
    return loaded


def operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in METHODS
    }


# ---------------------------------------------------------------- the document itself


def test_every_route_is_described_and_nothing_else() -> None:
    app = create_app(ApiSettings())
    routes = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"
        and route.resource is not None
        # The dashboard's HTML pages are not part of the API.
        and not route.resource.canonical.startswith(dashboard.PREFIX + "/")
    }
    assert operations(document()) == routes
    assert ("GET", "/openapi.json") in routes


def test_every_operation_declares_its_problems_and_security() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "One of API_KEYS (when it is empty, no key is needed).",
    }
    public = {"/", "/healthz", "/readyz", "/metrics", "/openapi.json"}  # "/": issue 19
    for path, item in doc["paths"].items():
        for method, op in item.items():
            responses = op["responses"]
            assert op["operationId"], (method, path)
            if path in public:
                assert op["security"] == [], path
                assert "401" not in responses
            elif path.startswith("/api/v2/"):  # incoming webhooks: a webhook token
                assert op["security"] == [{"zapikey": []}], path
                assert {"401", "403"} <= set(responses), path
            else:
                # The bearer key with the route's scope (a scoped key without it: 403).
                assert op["security"] == [{"bearer": op["x-scopes"]}], (method, path)
                assert {"401", "403"} <= set(responses), (method, path)
            if "requestBody" in op:
                assert {"400", "413", "415"} <= set(responses), (method, path)
            if "{id}" in path:
                assert "404" in responses, (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    name = response["$ref"].rsplit("/", 1)[1]
                    content = doc["components"]["responses"][name]["content"]
                    assert list(content) == [PROBLEM_CONTENT_TYPE]


def test_the_catalogue_of_the_configuration_is_in_the_document() -> None:
    schemas = document(EVENT_TYPES_EXTRA="invoice.paid")["components"]["schemas"]
    names = schemas["EventTypeName"]["enum"]
    assert names == sorted([*BUILTIN_EVENT_TYPES, "invoice.paid"])
    patterns = schemas["EventFilterPattern"]["enum"]
    assert {"*", "issue.*", "invoice.*", "issue.created"} <= set(patterns)
    assert "issue.created.*" not in patterns  # matches no type: the registry refuses it


def test_the_document_says_what_each_state_does_to_the_deliveries() -> None:
    spec = document()
    status = spec["components"]["schemas"]["Endpoint"]["properties"]["status"]["description"]
    for said in (
        "`failing`: a delivery failed every attempt",
        "deliveries go on as for `active`",
        "its queued, retrying and new deliveries are kept as `paused`, spend no attempt and "
        "resume in publish order",
        "with `drop` they end dead instead",
    ):
        assert said in status, said
    disable = spec["paths"]["/v1/endpoints/{id}/disable"]["post"]
    assert "at most PAUSED_MAX_PER_ENDPOINT" in disable["description"]
    drop = disable["requestBody"]["content"]["application/json"]["schema"]["properties"]["drop"]
    assert "('endpoint disabled (drop)')" in drop["description"]
    rotate = spec["paths"]["/v1/endpoints/{id}/rotate-secret"]["post"]
    assert "`X-Cliq-Signature` is still made with the old secret" in rotate["description"]


def test_paths_of_the_token_routes_are_merged(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = {
        "/v1/tokens": {
            "get": operation(
                "listTokens", "List tokens", tag="tokens", responses={"200": {"description": "x"}}
            )
        }
    }
    monkeypatch.setattr(routes_spec, "OPENAPI_PATHS", {**routes_spec.OPENAPI_PATHS, **extra})
    # Read when the application is made: an operation without a route (so no scope) fails.
    with pytest.raises(ValueError, match="GET /v1/tokens is described but has no declared scope"):
        document()
    merged = build_document(Catalogue(), [routes_spec.OPENAPI_PATHS])
    assert merged["paths"]["/v1/tokens"] == extra["/v1/tokens"]


def test_an_operation_or_schema_described_twice_fails_at_startup() -> None:
    twice: dict[str, Any] = {"/v1/events": {"post": {"responses": {}}}}
    with pytest.raises(ValueError, match="described twice"):
        build_document(Catalogue(), [twice])
    with pytest.raises(ValueError, match="schema 'Problem' is described twice"):
        build_document(Catalogue(), [], [{"Problem": {}}])


# ---------------------------------------------------------------- the server keeps to it


@pytest.fixture(scope="module")
def live_api(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``python -m producer`` on a free loopback port, for the whole module; its base URL."""
    if not redis_server.running:
        redis_server.restart()
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    env = {
        "REDIS_URL": redis_server.url,
        "PORT": str(port),
        # Fuzzed URLs are never resolved: the tests send nothing off 127.0.0.1.
        "ALLOW_PRIVATE_DESTINATIONS": "1",
        "API_KEYS": KEY,
        "LOG_LEVEL": "warning",
        "SHUTDOWN_GRACE": "5",
    }
    process = spawn_api(env, log_path)
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"the API exited early:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError):
            return False

    try:
        wait_until_sync(ready, 20, message="the API did not become ready")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# The document the live server serves: built the same way, from the same settings (the
# test below checks that they are equal), so that each operation is its own test item.
SCHEMA = schemathesis.openapi.from_dict(
    document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
        }
    ),
)


def test_the_document_is_valid_openapi_3_1() -> None:
    SCHEMA.validate()


def test_the_live_server_serves_the_document_under_test_without_a_key(live_api: str) -> None:
    with urllib.request.urlopen(f"{live_api}/openapi.json", timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/json")
        assert json.load(response) == SCHEMA.raw_schema


@SCHEMA.parametrize()
def test_the_server_keeps_to_its_document(case: Case[Any], live_api: str) -> None:
    case.call_and_validate(
        base_url=live_api,
        headers={"Authorization": f"Bearer {KEY}"},
        checks=CHECKS,
    )


def test_sequences_of_calls_keep_to_the_document(live_api: str) -> None:
    """Create endpoints, then follow the document's links: 2xx answers get checked too."""
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "base-url": live_api,
            "headers": {"Authorization": f"Bearer {KEY}"},
            "generation": {"mode": "positive", "deterministic": True, "database": "none"},
            # Only the document's own links: no guessed ones.
            "phases": {"stateful": {"inference": {"algorithms": []}}},
        }
    )
    loaded = schemathesis.openapi.from_url(f"{live_api}/openapi.json", config=config)

    class Sequences(loaded.as_state_machine()):  # type: ignore[misc]
        def validate_response(
            self,
            response: Response,
            case: Case[Any],
            additional_checks: Any = None,
            **kwargs: Any,
        ) -> None:
            case.validate_response(
                response,
                checks=CHECKS,
                transport_kwargs=kwargs,
            )

    run_state_machine_as_test(
        Sequences,
        settings=hypothesis.settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
        ),
    )


def test_every_route_declares_its_scope_and_the_document_shows_it() -> None:
    """Each registered route (but the dashboard's, which has sessions) has a declared
    scope, and each described operation shows that scope as ``x-scopes``."""
    app = create_app(ApiSettings())
    table = app[ROUTE_ACCESS]
    registered = {
        (route.resource.canonical, route.method)
        for route in app.router.routes()
        if route.resource is not None and not route.resource.canonical.startswith("/ui")
    }
    assert len(registered) > 40
    assert registered <= set(table)
    doc = document()
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert op["x-scopes"] == [table[(path, method.upper())].scope.value], (method, path)
    assert doc["paths"]["/v1/events"]["post"]["x-scopes"] == ["events:publish"]
    assert doc["paths"]["/v1/api-keys"]["post"]["x-scopes"] == ["operator"]
    assert doc["paths"]["/healthz"]["get"]["x-scopes"] == ["public"]
