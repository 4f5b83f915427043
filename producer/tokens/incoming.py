"""Incoming webhooks (seed 001): third parties post to Cliq with a user's webhook token.

Routes, authenticated by the ``zapikey`` query parameter (a webhook token), never by
the API key (their scope is :attr:`producer.http.access.Scope.WEBHOOK_TOKEN`):

* ``POST /api/v2/channelsbyname/{channel}/message`` -> ``channel.message``
* ``POST /api/v2/bots/{bot}/incoming`` -> ``bot.incoming``
* ``POST /api/v2/bots/{bot}/message`` -> ``bot.message``
* ``POST /api/v2/applications/{app_id}/incoming?appkey=...`` -> ``extension.incoming``;
  the appkey tells the sandbox from the marketplace endpoint (``data.environment``).

The body is any JSON object. An accepted call counts an invocation of the token, sets
its "last invoked", adds to its usage history, and publishes an event to the token
owner's workspace whose ``data`` is ``{"<resource>": name, "user_id", "token_id",
"body"}`` (plus ``environment`` for extensions); it fans out to subscribed endpoints
like any other event. Refused calls (answered 401, 403 or 404) enqueue nothing and
are counted in ``cliq_api_incoming_webhooks``; those made with a valid token also go
into its usage history, so its owner can see why an integration fails.

The invocation is counted (atomically with a last check that the token is still
active) just before the event is published: should Redis fail in between, the call
is answered 503 and counted without an event.

Checks run in this order, so that nobody learns anything without a valid token:
the token (401, 403 disabled), the body (415, 413, 400, 422), the resource (404, 403
another user's), the appkey (401). No body is read before the token is valid. A source
address that sends too many missing or unknown tokens gets 429 instead of 401
(:mod:`producer.http.throttle`; outcome ``throttled``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import structlog
from aiohttp import web

from producer.events import ID_PATTERN, EventError, new_event_id, parse_event
from producer.http.access import Routes, Scope
from producer.http.bodies import read_json_object
from producer.http.openapi import json_response, operation, problem_responses, schema_ref
from producer.http.problems import INVALID_EVENT, NOT_FOUND, Problem, ProblemKind, redis_deadline
from producer.http.state import METRICS
from producer.http.throttle import Surface, throttled
from producer.tokens.context import TOKEN_SYSTEM, TokenSystem
from producer.tokens.modules import (
    APPKEY_PARAMETER,
    EXTENSION_LABEL,
    MODULE_OF_ENVIRONMENT,
    ROUTES,
    TOKEN_PARAMETER,
    Route,
    WebhookModule,
)
from producer.tokens.registry import TokenGone, TokenStatus, Usage, WebhookToken
from producer.tokens.users import AppEnvironment, ResourceKind

log = structlog.get_logger("cliq.producer.tokens.incoming")

INVALID_TOKEN = ProblemKind("invalid-webhook-token", 401, "Invalid webhook token")
TOKEN_DISABLED = ProblemKind("webhook-token-disabled", 403, "Webhook token disabled")
FORBIDDEN_RESOURCE = ProblemKind(
    "forbidden-resource", 403, "The token's user does not own this resource"
)
INVALID_APPKEY = ProblemKind("invalid-appkey", 401, "Invalid appkey")

# ---------------------------------------------------------------- handling a call


@dataclass
class Call:
    """One incoming call being handled: what it is, and how to refuse it."""

    request: web.Request
    system: TokenSystem
    label: str
    name: str
    token: WebhookToken | None = None

    def usage(self, outcome: str, event_id: str | None = None) -> Usage:
        """A usage entry of this call."""
        return Usage(
            at_ms=self.system.tokens.now_ms(),
            module=self.label,
            resource=self.name,
            source=self.request.remote or "",
            outcome=outcome,
            event_id=event_id,
        )

    async def refuse(self, outcome: str, kind: ProblemKind, detail: str) -> Problem:
        """Count a refusal (and record it when the token is known); the problem to raise."""
        self.request.app[METRICS].incoming_webhooks.labels(self.label, outcome).inc()
        log.info("incoming_refused", module=self.label, outcome=outcome, resource=self.name)
        if self.token is not None:
            # A token deleted meanwhile has no history left to record this in.
            with contextlib.suppress(TokenGone):
                await self.system.tokens.record(self.token, self.usage(outcome), counted=False)
        return Problem(kind, detail)

    async def refuse_unauthenticated(self, outcome: str, detail: str) -> Problem:
        """Refuse a missing or unknown token: 401, or 429 (outcome ``throttled``, not
        logged per call) once its source address failed too often."""
        too_many = throttled(self.request, Surface.INCOMING)
        if too_many is None:
            return await self.refuse(outcome, INVALID_TOKEN, detail)
        self.request.app[METRICS].incoming_webhooks.labels(self.label, "throttled").inc()
        return too_many


async def _authenticate(call: Call) -> WebhookToken:
    """The call's token, or the problem refusing it (401 unknown, 403 disabled)."""
    presented = call.request.query.get(TOKEN_PARAMETER, "")
    if not presented:
        raise await call.refuse_unauthenticated(
            "missing_token", f"Send a webhook token as the {TOKEN_PARAMETER!r} query parameter."
        )
    token = await call.system.tokens.authenticate(presented)
    if token is None:
        raise await call.refuse_unauthenticated(
            "invalid_token", "The webhook token is not valid: unknown, deleted, or mistyped."
        )
    call.token = token
    if token.status is not TokenStatus.ACTIVE:
        raise await call.refuse(
            "disabled", TOKEN_DISABLED, "The webhook token is disabled; its owner can enable it."
        )
    return token


async def _check_resource(call: Call, kind: ResourceKind, user_id: str) -> None:
    """404 for an unknown channel or bot, 403 for one of another user."""
    owner = await call.system.users.owner(kind, call.name)
    if owner is None:
        raise await call.refuse(
            "unknown_resource", NOT_FOUND, f"No {kind.value} named {call.name!r}."
        )
    if owner != user_id:
        raise await call.refuse(
            "forbidden",
            FORBIDDEN_RESOURCE,
            f"The {kind.value} {call.name!r} belongs to another user than the token's.",
        )


async def _check_app(call: Call, user_id: str) -> AppEnvironment:
    """The environment the appkey opens: 404 unknown app, 403 another user's, 401 bad key."""
    app = await call.system.users.app(call.name)
    if app is None:
        raise await call.refuse("unknown_resource", NOT_FOUND, f"No app with id {call.name!r}.")
    if app.user_id != user_id:
        raise await call.refuse(
            "forbidden",
            FORBIDDEN_RESOURCE,
            f"The app {call.name!r} belongs to another user than the token's.",
        )
    environment = app.environment_of(call.request.query.get(APPKEY_PARAMETER, ""))
    if environment is None:
        raise await call.refuse(
            "invalid_appkey",
            INVALID_APPKEY,
            f"The {APPKEY_PARAMETER!r} query parameter is not this app's sandbox or "
            "marketplace appkey.",
        )
    return environment


async def _handle(request: web.Request, route: Route) -> web.Response:
    """Authenticate, check, count, publish: see the module's docstring."""
    system = request.app[TOKEN_SYSTEM]
    name = request.match_info[route.name_parameter]
    label = EXTENSION_LABEL if route.kind is ResourceKind.APP else route.event_type
    call = Call(request, system, label, name)
    async with redis_deadline("Redis is unavailable; the webhook was not accepted."):
        token = await _authenticate(call)
    body = await read_json_object(request, limit=system.producer.settings.max_payload_bytes)
    async with redis_deadline("Redis is unavailable; the webhook was not accepted."):
        if not ID_PATTERN.match(name):
            raise await call.refuse(
                "unknown_resource", NOT_FOUND, f"No {route.kind.value} named {name!r}."
            )
        user = await system.users.get(token.user_id)
        data: dict[str, Any] = {route.name_parameter: name}
        if route.kind is ResourceKind.APP:
            environment = await _check_app(call, user.id)
            call.label = MODULE_OF_ENVIRONMENT[environment].value
            data["environment"] = environment.value
        else:
            await _check_resource(call, route.kind, user.id)
        data |= {"user_id": user.id, "token_id": token.id, "body": body}
        try:
            event = parse_event(
                {
                    "id": new_event_id(),
                    "type": route.event_type,
                    "workspace_id": user.workspace_id,
                    "data": data,
                },
                system.producer.catalogue,
                max_payload_bytes=system.producer.settings.max_payload_bytes,
            )
        except EventError as exc:
            raise Problem(
                INVALID_EVENT,
                f"The body cannot be published ({exc.message}).",
                errors=[{"field": "body", "message": exc.message}],
            ) from None
        try:
            await system.tokens.record(token, call.usage("accepted", event.id), counted=True)
        except TokenGone as gone:
            if gone.disabled:
                raise await call.refuse(
                    "disabled", TOKEN_DISABLED, "The webhook token was disabled."
                ) from None
            call.token = None
            raise await call.refuse(
                "invalid_token", INVALID_TOKEN, "The webhook token was deleted."
            ) from None
        result = await system.producer.publisher.publish(event)
    request.app[METRICS].incoming_webhooks.labels(call.label, "accepted").inc()
    log.info("incoming_accepted", module=call.label, event_id=event.id, token_id=token.id)
    return web.json_response(result.to_dict(), status=202)


def _handler(route: Route) -> Any:
    async def handler(request: web.Request) -> web.Response:
        return await _handle(request, route)

    handler.__doc__ = f"``POST {route.path}``: publish a ``{route.event_type}`` event."
    return handler


# ---------------------------------------------------------------- OpenAPI

_TOKEN_QUERY = {
    "name": TOKEN_PARAMETER,
    "in": "query",
    "required": True,
    "description": "A webhook token (`tok_….…`) of the user who owns the resource.",
    "schema": {"type": "string"},
}
_APPKEY_QUERY = {
    "name": APPKEY_PARAMETER,
    "in": "query",
    "required": True,
    "description": "The app's sandbox (`sbx_…`) or marketplace (`mkt_…`) appkey.",
    "schema": {"type": "string"},
}


def _name_parameter(name: str, description: str) -> dict[str, Any]:
    # Any string: a name that is not an id shape is answered 404 after the token check.
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {"type": "string"},
    }


def _incoming_operation(module: WebhookModule, summary: str) -> dict[str, Any]:
    route = ROUTES[module]
    parameters = [_name_parameter(route.name_parameter, f"The {route.kind.value}'s name or id.")]
    if route.kind is ResourceKind.APP:
        parameters.append(_APPKEY_QUERY)
    return operation(
        f"incoming{''.join(part.title() for part in route.event_type.split('.'))}",
        summary,
        tag="incoming webhooks",
        description=f"Publishes a `{route.event_type}` event to the token owner's workspace "
        "(the body, any JSON object, becomes `data.body`). Counts an invocation of the "
        "token and adds to its usage history.",
        token_auth=True,
        parameters=[*parameters, _TOKEN_QUERY],
        body={"type": "object"},
        responses={
            "202": json_response("Published.", schema_ref("PublishResult")),
            **problem_responses(404, 422, 503),
        },
    )


OPENAPI_PATHS: dict[str, Any] = {
    ROUTES[WebhookModule.CHANNEL].path: {
        "post": _incoming_operation(WebhookModule.CHANNEL, "Post a message to a channel")
    },
    ROUTES[WebhookModule.BOT_INCOMING].path: {
        "post": _incoming_operation(WebhookModule.BOT_INCOMING, "Notify a bot")
    },
    ROUTES[WebhookModule.BOT_MESSAGE].path: {
        "post": _incoming_operation(WebhookModule.BOT_MESSAGE, "Send a message to a bot")
    },
    ROUTES[WebhookModule.EXTENSION_SANDBOX].path: {
        "post": _incoming_operation(
            WebhookModule.EXTENSION_SANDBOX,
            "Notify an extension (sandbox or marketplace, by appkey)",
        )
    },
}


def add_routes(app: web.Application) -> None:
    """Register the incoming-webhook routes."""
    for module in (
        WebhookModule.CHANNEL,
        WebhookModule.BOT_INCOMING,
        WebhookModule.BOT_MESSAGE,
        WebhookModule.EXTENSION_SANDBOX,
    ):
        route = ROUTES[module]
        Routes(app).post(route.path, _handler(route), Scope.WEBHOOK_TOKEN)
