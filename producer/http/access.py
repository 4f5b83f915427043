"""Who may call which route: scopes, declared once beside each route.

Every route module registers its routes through :class:`Routes`, which takes the route's
:class:`Access` with it: the :class:`Scope` a caller needs and, for a route naming a
resource in its path, the :class:`Owner` kind whose workspace must be the caller's. The
table (:data:`ROUTE_ACCESS`) is the one place this is said: the bearer-key middleware
(:func:`producer.http.app.authenticate`) enforces it, the workspace guard
(:mod:`producer.http.ownership`) reads the owners, and the OpenAPI document shows each
operation's scope as ``security`` and ``x-scopes`` (:func:`describe`).

Callers are the operator (a key of ``API_KEYS``: every scope, every workspace) or a
workspace-scoped key (:mod:`producer.api_keys`): only its scopes, only its workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from producer.api_keys import ApiKey
from producer.http.openapi import SECURITY_SCHEME, TOKEN_SECURITY_SCHEME, problem_responses


class Scope(StrEnum):
    """What a route needs. The first three are not grantable to a scoped key."""

    PUBLIC = "public"  # no credential (probes, this document)
    WEBHOOK_TOKEN = "webhook-token"  # a user's webhook token, checked by the handler
    OPERATOR = "operator"  # a key of API_KEYS only (managing API keys)
    ENDPOINTS_READ = "endpoints:read"
    ENDPOINTS_WRITE = "endpoints:write"
    EVENTS_PUBLISH = "events:publish"
    EVENTS_READ = "events:read"
    DELIVERIES_READ = "deliveries:read"
    DELIVERIES_WRITE = "deliveries:write"  # replays and test sends
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"  # users, their resources, 2FA and tokens
    PORTAL_LINKS = "portal-links:create"


# The scopes a workspace-scoped key may hold.
GRANTABLE_SCOPES = frozenset(Scope) - {Scope.PUBLIC, Scope.WEBHOOK_TOKEN, Scope.OPERATOR}


class Owner(StrEnum):
    """The kind of resource a path parameter names, whose workspace must be the caller's."""

    ENDPOINT = "endpoint"
    EVENT = "event"
    DELIVERY = "delivery"
    USER = "user"
    WORKSPACE = "workspace"


@dataclass(frozen=True)
class Access:
    """A route's scope and, if its path names a resource, which one (and the parameter)."""

    scope: Scope
    owner: Owner | None = None
    parameter: str = "id"


ROUTE_ACCESS: web.AppKey[dict[tuple[str, str], Access]] = web.AppKey("route_access")
# The caller of a request: ``None`` for the operator (or no authentication), else the key.
CALLER = web.RequestKey("caller", ApiKey)


class Routes:
    """Registers routes on an application together with their :class:`Access`."""

    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._table = app.setdefault(ROUTE_ACCESS, {})

    def _declare(self, method: str, path: str, access: Access | Scope) -> None:
        declared = access if isinstance(access, Access) else Access(access)
        if (path, method) in self._table:
            raise ValueError(f"{method} {path} is declared twice")
        self._table[(path, method)] = declared

    def add(
        self,
        method: str,
        path: str,
        handler: Handler,
        access: Access | Scope,
        *,
        name: str | None = None,
    ) -> None:
        """Register ``method path`` with its access; a GET answers HEAD the same."""
        self._declare(method, path, access)
        if method == "GET":
            self._declare("HEAD", path, access)
            self._app.router.add_get(path, handler, name=name)
        else:
            self._app.router.add_route(method, path, handler, name=name)

    def get(self, path: str, handler: Handler, access: Access | Scope, **kw: Any) -> None:
        """Register a GET (and HEAD) route."""
        self.add("GET", path, handler, access, **kw)

    def post(self, path: str, handler: Handler, access: Access | Scope, **kw: Any) -> None:
        """Register a POST route."""
        self.add("POST", path, handler, access, **kw)

    def put(self, path: str, handler: Handler, access: Access | Scope, **kw: Any) -> None:
        """Register a PUT route."""
        self.add("PUT", path, handler, access, **kw)

    def patch(self, path: str, handler: Handler, access: Access | Scope, **kw: Any) -> None:
        """Register a PATCH route."""
        self.add("PATCH", path, handler, access, **kw)

    def delete(self, path: str, handler: Handler, access: Access | Scope, **kw: Any) -> None:
        """Register a DELETE route."""
        self.add("DELETE", path, handler, access, **kw)


def access_of(request: web.Request, route: str) -> Access | None:
    """The declared access of the request's route; ``None`` for an unknown route."""
    return request.app[ROUTE_ACCESS].get((route, request.method))


def caller_of(request: web.Request) -> ApiKey | None:
    """The request's scoped key; ``None`` when the operator (or nobody: no keys) calls."""
    return request.get(CALLER)


def caller_workspace(request: web.Request) -> str | None:
    """The only workspace the caller may see; ``None`` for every workspace."""
    caller = caller_of(request)
    return None if caller is None else caller.workspace_id


def describe(document: dict[str, Any], table: dict[tuple[str, str], Access]) -> None:
    """Put each operation's scope in ``document``: ``security`` and ``x-scopes``.

    Raises ``ValueError`` for a described operation without a declared route.
    """
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            access = table.get((path, method.upper()))
            if access is None:
                raise ValueError(f"{method.upper()} {path} is described but has no declared scope")
            operation["x-scopes"] = [access.scope.value]
            if access.scope is Scope.PUBLIC:
                operation["security"] = []
            elif access.scope is Scope.WEBHOOK_TOKEN:
                operation["security"] = [{TOKEN_SECURITY_SCHEME: []}]
            else:
                operation["security"] = [{SECURITY_SCHEME: [access.scope.value]}]
                # A scoped key without the route's scope is refused.
                operation["responses"] = dict(
                    sorted({**operation["responses"], **problem_responses(403)}.items())
                )
            if access.owner is not None:
                operation["x-workspace-owner"] = access.owner.value
