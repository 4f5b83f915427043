"""The webhook-token API (seed 001): users, their second factor, tokens, webhook URLs.

Every route is under the API key like the rest of ``/v1`` (the operator's system in
front of this API signs its users in and calls it for them); users are named in the
path, ``/v1/users/{user_id}/...``, by an id of that system's choosing.

* ``PUT /v1/users/{user_id}`` ``{"workspace_id"}``: create the user, or move them to
  another workspace (where their incoming webhooks publish); ``GET`` shows them.
* ``PUT /v1/users/{user_id}/channels/{name}``, ``.../bots/{name}``: claim a channel or
  bot name (409 when another user owns it); ``POST /v1/users/{user_id}/apps``
  ``{"name"}``: an extension app with its sandbox and marketplace appkeys (shown once).
* ``POST .../2fa/enroll`` is refused (403 ``enrol-in-portal``): the user enrols in their
  own portal session (``POST .../portal-links``, :mod:`producer.dashboard.portal`);
  ``.../2fa/confirm`` and ``.../2fa/verify`` ``{"code"}``: each returns a 2FA session.
* Token management, each call needing the header ``X-Cliq-2FA-Session`` of a session
  verified within 15 minutes (else 401 ``reauthenticate``): ``POST``/``GET
  .../tokens``, ``GET``/``PATCH``/``DELETE .../tokens/{token_id}``, ``POST
  .../enable``, ``.../disable``, ``GET .../usage``, ``POST .../webhook-url``.

"Get Webhook URL" is :mod:`producer.tokens.webhook_urls`; the OpenAPI description of
these routes :mod:`producer.tokens.routes_spec`, the incoming webhooks
:mod:`producer.tokens.incoming`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from producer.events import ID_PATTERN, iso_time
from producer.http.access import Access, Owner, Routes, Scope
from producer.http.bodies import read_json_object
from producer.http.ownership import refuse_other_workspaces
from producer.http.problems import INVALID_FIELDS, NOT_FOUND, Problem, ProblemKind, invalid_field
from producer.tokens.context import TOKEN_SYSTEM, TokenSystem
from producer.tokens.problems import token_errors
from producer.tokens.registry import MAX_TOKENS, USAGE_HISTORY, TokenStatus, WebhookToken
from producer.tokens.users import AppEnvironment, ResourceKind
from producer.tokens.webhook_urls import make_webhook_url, public_base

SESSION_HEADER = "X-Cliq-2FA-Session"
ENROL_IN_PORTAL = ProblemKind("enrol-in-portal", 403, "Second factors are set up by their user")
CODE_PATTERN = re.compile(r"[0-9]{6}")


# ---------------------------------------------------------------- request helpers


def _system(request: web.Request) -> TokenSystem:
    return request.app[TOKEN_SYSTEM]


def _path(request: web.Request, name: str, what: str) -> str:
    """A path parameter shaped like an id; 404 when it cannot be one."""
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise Problem(NOT_FOUND, f"No {what} {value!r}.")
    return value


async def _require_session(request: web.Request, user_id: str) -> None:
    """404 for an unknown user, 401 ``reauthenticate`` without an open 2FA session."""
    system = _system(request)
    async with token_errors("Redis is unavailable; the 2FA session could not be checked."):
        await system.users.get(user_id)
        await system.twofactor.check(user_id, request.headers.get(SESSION_HEADER))


def _fields(
    body: dict[str, Any], allowed: Sequence[str], required: Sequence[str] = ()
) -> dict[str, Any]:
    """``body`` with only ``allowed`` members, ``required`` ones present, all strings."""
    errors: list[dict[str, object]] = [
        {"field": name, "message": "unknown field"} for name in sorted(set(body) - set(allowed))
    ]
    errors += [{"field": name, "message": "is required"} for name in required if name not in body]
    errors += [
        {"field": name, "message": "must be a string"}
        for name, value in body.items()
        if name in allowed and not isinstance(value, str)
    ]
    if errors:
        fields = ", ".join(str(error["field"]) for error in errors)
        raise Problem(INVALID_FIELDS, f"Invalid fields: {fields}.", errors=errors)
    return body


def _code(body: dict[str, Any]) -> str:
    code: str = _fields(body, ("code",), ("code",))["code"]
    if not CODE_PATTERN.fullmatch(code):
        raise invalid_field("code", "must be the 6 digits the authenticator shows")
    return code


def token_dict(token: WebhookToken) -> dict[str, Any]:
    """A token as "Generated Tokens" shows it (never its secret)."""
    return {
        "id": token.id,
        "name": token.name,
        "status": token.status.value,
        "invocations": token.invocations,
        "last_invoked_at": iso_time(token.last_invoked_ms) if token.last_invoked_ms else None,
        "created_at": iso_time(token.created_ms),
    }


# ---------------------------------------------------------------- users and resources


async def put_user(request: web.Request) -> web.Response:
    """``PUT /v1/users/{user_id}``: create the user or change their workspace."""
    user_id = _path(request, "user_id", "user")
    body = _fields(await read_json_object(request), ("workspace_id",), ("workspace_id",))
    refuse_other_workspaces(request, [body["workspace_id"]])
    system = _system(request)
    async with token_errors("Redis is unavailable; the user was not saved."):
        user, created = await system.users.put(user_id, body["workspace_id"])
        resources = await system.users.resources(user_id)
    return web.json_response(user.public_dict(resources), status=201 if created else 200)


async def get_user(request: web.Request) -> web.Response:
    """``GET /v1/users/{user_id}``: the user, whether 2FA is enrolled, what they own."""
    user_id = _path(request, "user_id", "user")
    system = _system(request)
    async with token_errors("Redis is unavailable; the user could not be read."):
        user = await system.users.get(user_id)
        resources = await system.users.resources(user_id)
    return web.json_response(user.public_dict(resources))


def _claim(kind: ResourceKind) -> Any:
    async def claim(request: web.Request) -> web.Response:
        user_id = _path(request, "user_id", "user")
        name = _path(request, "name", kind.value)
        async with token_errors(f"Redis is unavailable; the {kind.value} was not claimed."):
            created = await _system(request).users.claim(user_id, kind, name)
        return web.json_response(
            {"kind": kind.value, "name": name, "user_id": user_id}, status=201 if created else 200
        )

    claim.__doc__ = f"``PUT /v1/users/{{user_id}}/{kind.value}s/{{name}}``: claim the name."
    return claim


async def create_user_app(request: web.Request) -> web.Response:
    """``POST /v1/users/{user_id}/apps``: an extension app; its appkeys are shown once."""
    user_id = _path(request, "user_id", "user")
    body = _fields(await read_json_object(request), ("name",), ("name",))
    async with token_errors("Redis is unavailable; the app was not created."):
        app, appkeys = await _system(request).users.create_app(user_id, body["name"])
    return web.json_response(
        {
            **app.public_dict(),
            "sandbox_appkey": appkeys[AppEnvironment.SANDBOX],
            "marketplace_appkey": appkeys[AppEnvironment.MARKETPLACE],
        },
        status=201,
    )


# ---------------------------------------------------------------- the second factor


def _session_dict(token: str, expires_ms: int) -> dict[str, Any]:
    return {
        "session": token,
        "header": SESSION_HEADER,
        "expires_at": iso_time(expires_ms),
    }


async def enroll(request: web.Request) -> web.Response:
    """``POST .../2fa/enroll``: refused (403). A user sets up their second factor in their
    own portal session (``POST /v1/users/{user_id}/portal-links``), where the secret is
    shown to them alone: no API key, the operator's included, ever reads a TOTP secret."""
    user_id = _path(request, "user_id", "user")
    async with token_errors("Redis is unavailable; the user could not be read."):
        await _system(request).users.get(user_id)
    raise Problem(
        ENROL_IN_PORTAL,
        f"A second factor is set up by its user: make their link with POST "
        f"/v1/users/{user_id}/portal-links and send it to them.",
    )


async def confirm(request: web.Request) -> web.Response:
    """``POST .../2fa/confirm``: the first code of a new secret; opens a session."""
    user_id = _path(request, "user_id", "user")
    code = _code(await read_json_object(request))
    async with token_errors("Redis is unavailable; the code was not checked."):
        session = await _system(request).twofactor.confirm(user_id, code)
    return web.json_response(_session_dict(session.token, session.expires_ms))


async def verify(request: web.Request) -> web.Response:
    """``POST .../2fa/verify``: a code of the enrolled secret; opens a session."""
    user_id = _path(request, "user_id", "user")
    code = _code(await read_json_object(request))
    async with token_errors("Redis is unavailable; the code was not checked."):
        session = await _system(request).twofactor.verify(user_id, code)
    return web.json_response(_session_dict(session.token, session.expires_ms))


# ---------------------------------------------------------------- tokens


async def create_token(request: web.Request) -> web.Response:
    """``POST .../tokens``: generate a token; its value is shown this once."""
    user_id = _path(request, "user_id", "user")
    await _require_session(request, user_id)
    body = _fields(await read_json_object(request), ("name",), ("name",))
    async with token_errors("Redis is unavailable; no token was generated."):
        token, value = await _system(request).tokens.create(user_id, body["name"])
    return web.json_response({**token_dict(token), "token": value}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    """``GET .../tokens``: "Generated Tokens", oldest first."""
    user_id = _path(request, "user_id", "user")
    await _require_session(request, user_id)
    async with token_errors("Redis is unavailable; the tokens could not be listed."):
        tokens = await _system(request).tokens.all(user_id)
    return web.json_response({"items": [token_dict(t) for t in tokens], "max_tokens": MAX_TOKENS})


async def _token_route(request: web.Request) -> tuple[str, str]:
    """The user and token of the path, after the 2FA session check."""
    user_id = _path(request, "user_id", "user")
    token_id = _path(request, "token_id", "token")
    await _require_session(request, user_id)
    return user_id, token_id


async def get_token(request: web.Request) -> web.Response:
    """``GET .../tokens/{token_id}``: one token."""
    user_id, token_id = await _token_route(request)
    async with token_errors("Redis is unavailable; the token could not be read."):
        token = await _system(request).tokens.get(user_id, token_id)
    return web.json_response(token_dict(token))


async def rename_token(request: web.Request) -> web.Response:
    """``PATCH .../tokens/{token_id}`` ``{"name"}``: rename the token."""
    user_id, token_id = await _token_route(request)
    body = _fields(await read_json_object(request), ("name",), ("name",))
    async with token_errors("Redis is unavailable; the token was not renamed."):
        token = await _system(request).tokens.rename(user_id, token_id, body["name"])
    return web.json_response(token_dict(token))


def _set_status(status: TokenStatus) -> Any:
    async def set_status(request: web.Request) -> web.Response:
        user_id, token_id = await _token_route(request)
        async with token_errors("Redis is unavailable; the token was not changed."):
            token = await _system(request).tokens.set_status(user_id, token_id, status)
        return web.json_response(token_dict(token))

    set_status.__doc__ = f"Make the token {status.value}."
    return set_status


async def delete_token(request: web.Request) -> web.Response:
    """``DELETE .../tokens/{token_id}``: it authenticates nothing more; its slot is free."""
    user_id, token_id = await _token_route(request)
    async with token_errors("Redis is unavailable; the token was not deleted."):
        await _system(request).tokens.delete(user_id, token_id)
    return web.Response(status=204)


async def token_usage(request: web.Request) -> web.Response:
    """``GET .../tokens/{token_id}/usage``: its latest uses, newest first."""
    user_id, token_id = await _token_route(request)
    raw = request.query.get("limit", str(USAGE_HISTORY))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= USAGE_HISTORY:
        raise invalid_field("limit", f"must be an integer from 1 to {USAGE_HISTORY}")
    async with token_errors("Redis is unavailable; the usage could not be read."):
        rows = await _system(request).tokens.usage(user_id, token_id, int(raw))
    items = [{"at": iso_time(use.at_ms), **use.to_dict()} for use in rows]
    return web.json_response({"items": items})


async def get_webhook_url(request: web.Request) -> web.Response:
    """``POST .../tokens/{token_id}/webhook-url``: the URL of a module and name."""
    user_id, token_id = await _token_route(request)
    body = _fields(
        await read_json_object(request),
        ("module", "name", "token", "appkey"),
        ("module", "name"),
    )
    return web.json_response(
        await make_webhook_url(_system(request), user_id, token_id, public_base(request), body)
    )


def add_routes(app: web.Application) -> None:
    """Register the user, 2FA and token routes."""
    routes = Routes(app)
    user = "/v1/users/{user_id}"
    token = f"{user}/tokens/{{token_id}}"
    read = Access(Scope.USERS_READ, Owner.USER, "user_id")
    write = Access(Scope.USERS_WRITE, Owner.USER, "user_id")
    routes.put(user, put_user, write)
    routes.get(user, get_user, read)
    routes.put(f"{user}/channels/{{name}}", _claim(ResourceKind.CHANNEL), write)
    routes.put(f"{user}/bots/{{name}}", _claim(ResourceKind.BOT), write)
    routes.post(f"{user}/apps", create_user_app, write)
    routes.post(f"{user}/2fa/enroll", enroll, write)
    routes.post(f"{user}/2fa/confirm", confirm, write)
    routes.post(f"{user}/2fa/verify", verify, write)
    routes.post(f"{user}/tokens", create_token, write)
    routes.get(f"{user}/tokens", list_tokens, read)
    routes.get(token, get_token, read)
    routes.patch(token, rename_token, write)
    routes.delete(token, delete_token, write)
    routes.post(f"{token}/enable", _set_status(TokenStatus.ACTIVE), write)
    routes.post(f"{token}/disable", _set_status(TokenStatus.DISABLED), write)
    routes.get(f"{token}/usage", token_usage, read)
    routes.post(f"{token}/webhook-url", get_webhook_url, write)
