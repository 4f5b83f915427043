"""The OpenAPI 3.1 document of the HTTP API, served at ``GET /openapi.json``.

The document is assembled once, when the application is created, from:

* what every application serves: publishing (:mod:`producer.http.events`), the probes
  (:mod:`producer.http.probes`) and this document itself;
* ``OPENAPI_PATHS`` (and, when a module has them, ``OPENAPI_SCHEMAS``) of each other
  route module, passed by :func:`producer.http.app.create_app`;
* the shared schemas (:mod:`producer.http.openapi`) and the event catalogue of the
  running configuration, so that ``EventTypeName`` lists exactly the types this server
  accepts (``EVENT_TYPES_EXTRA`` included).

Two modules describing the same operation, or the same schema name, is a programming
error and fails at startup.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from aiohttp import web

from producer.events import Catalogue
from producer.http import events, probes
from producer.http.access import ROUTE_ACCESS, Routes, Scope, describe
from producer.http.openapi import (
    OPENAPI_VERSION,
    PROBLEM_RESPONSES,
    SECURITY_SCHEME,
    SHARED_SCHEMAS,
    TOKEN_SECURITY_SCHEME,
    catalogue_schemas,
    json_response,
    operation,
    schema_ref,
)
from producer.http.problems import PROBLEM_CONTENT_TYPE
from producer.http.state import SETTINGS

OPENAPI_DOCUMENT = web.AppKey("openapi_document", bytes)
# (route template, METHOD) -> the query parameters the document gives that operation.
QUERY_PARAMETERS: web.AppKey[dict[tuple[str, str], frozenset[str]]] = web.AppKey("query_parameters")


def _package_version() -> str:
    """The installed package's version, for ``info.version``."""
    try:
        return version("cliq-webhooks")
    except PackageNotFoundError:  # a source tree that was not installed
        return "0.0.0"


SELF_PATHS: dict[str, Any] = {
    # Served by producer.http.app (it knows where the dashboard is mounted).
    "/": {
        "get": operation(
            "root",
            "Redirect to the dashboard",
            tag="probes",
            public=True,
            responses={"302": {"description": "To the dashboard, /ui/."}},
        )
    },
    "/openapi.json": {
        "get": operation(
            "openapi",
            "This document",
            tag="probes",
            public=True,
            responses={"200": json_response("OpenAPI 3.1.", {"type": "object"})},
        )
    },
}


def core_paths() -> dict[str, Any]:
    """The paths every application serves: publishing, the probes, this document."""
    return {**events.OPENAPI_PATHS, **probes.OPENAPI_PATHS, **SELF_PATHS}


# ---------------------------------------------------------------- the document


def _problem_response_components() -> dict[str, Any]:
    """``components.responses``: one problem+json response per status of the table."""
    problem = {PROBLEM_CONTENT_TYPE: {"schema": schema_ref("Problem")}}
    return {
        name: {"description": description, "content": problem}
        for name, description in PROBLEM_RESPONSES.values()
    }


def _merge(target: dict[str, Any], source: Mapping[str, Any], what: str) -> None:
    """Add ``source`` to ``target``; a name already there is a programming error."""
    for name, value in source.items():
        if name in target:
            raise ValueError(f"{what} {name!r} is described twice")
        target[name] = value


def build_document(
    catalogue: Catalogue,
    path_sets: Iterable[Mapping[str, Any]],
    schema_sets: Iterable[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The whole document: :func:`core_paths` plus each module's paths and schemas.

    Raises ``ValueError`` when an operation or a schema is described twice.
    """
    paths: dict[str, dict[str, Any]] = {path: dict(item) for path, item in core_paths().items()}
    for path_set in path_sets:
        for path, item in path_set.items():
            _merge(paths.setdefault(path, {}), item, f"operation of {path}:")
    schemas = {**SHARED_SCHEMAS, **catalogue_schemas(catalogue)}
    for schema_set in schema_sets:
        _merge(schemas, schema_set, "schema")
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "cliq-webhooks",
            "version": _package_version(),
            "description": "Outbound webhooks: publish events, manage endpoints, read the "
            "delivery log, replay, send test events. Errors are RFC 9457 problems "
            "(application/problem+json).",
        },
        "security": [{SECURITY_SCHEME: []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {
                SECURITY_SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "One of API_KEYS (when it is empty, no key is needed).",
                },
                TOKEN_SECURITY_SCHEME: {
                    "type": "apiKey",
                    "in": "query",
                    "name": "zapikey",
                    "description": "A webhook token of the user who owns the resource.",
                },
            },
            "schemas": dict(sorted(schemas.items())),
            "responses": _problem_response_components(),
        },
    }


async def serve_document(request: web.Request) -> web.Response:
    """``GET /openapi.json``: the document built at startup."""
    return web.Response(body=request.app[OPENAPI_DOCUMENT], content_type="application/json")


def add_routes(
    app: web.Application,
    path_sets: Iterable[Mapping[str, Any]],
    schema_sets: Iterable[Mapping[str, Any]] = (),
) -> None:
    """Build the document for ``app`` (after every route module added its routes) and
    serve it; building it here makes a duplicate description fail at startup."""
    Routes(app).get("/openapi.json", serve_document, Scope.PUBLIC, name="openapi")
    catalogue = Catalogue.with_extras(app[SETTINGS].producer.event_types_extra)
    document = build_document(catalogue, path_sets, schema_sets)
    describe(document, app[ROUTE_ACCESS])  # each operation's scope, from its route
    app[OPENAPI_DOCUMENT] = orjson.dumps(document)
    app[QUERY_PARAMETERS] = query_parameters(document)


def query_parameters(document: Mapping[str, Any]) -> dict[tuple[str, str], frozenset[str]]:
    """Each described operation's query parameters: the only ones it accepts (the
    document is the one list of them, so the two cannot drift apart)."""
    accepted: dict[tuple[str, str], frozenset[str]] = {}
    for path, item in document["paths"].items():
        shared = item.get("parameters", [])
        for method, described in item.items():
            if method == "parameters":
                continue
            parameters = [*shared, *described.get("parameters", [])]
            names = frozenset(p["name"] for p in parameters if p.get("in") == "query")
            accepted[(path, method.upper())] = names
    return accepted
