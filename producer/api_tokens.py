"""The webhook-token API (seed 001): users, their second factor, tokens, webhook URLs.

Every route is under the API key like the rest of ``/v1`` (the operator's system in
front of this API signs its users in and calls it for them); users are named in the
path, ``/v1/users/{user_id}/...``, by an id of that system's choosing.

* ``PUT /v1/users/{user_id}`` ``{"workspace_id"}``: create the user, or move them to
  another workspace (where their incoming webhooks publish); ``GET`` shows them.
* ``PUT /v1/users/{user_id}/channels/{name}``, ``.../bots/{name}``: claim a channel or
  bot name (409 when another user owns it); ``POST /v1/users/{user_id}/apps``
  ``{"name"}``: an extension app with its sandbox and marketplace appkeys (shown once).
* ``POST .../2fa/enroll`` (a TOTP secret and ``otpauth://`` URI, shown once),
  ``.../2fa/confirm`` and ``.../2fa/verify`` ``{"code"}``: each returns a 2FA session.
* Token management, each call needing the header ``X-Cliq-2FA-Session`` of a session
  verified within 15 minutes (else 401 ``reauthenticate``): ``POST``/``GET
  .../tokens``, ``GET``/``PATCH``/``DELETE .../tokens/{token_id}``, ``POST
  .../enable``, ``.../disable``, ``GET .../usage``, ``POST .../webhook-url``.
  Re-enrolling an enrolled user also needs a session.

"Get Webhook URL": the token is stored only as a digest, so the server cannot put it
back into a URL by itself. The caller may send the token's value (it is checked
against the digest, then put in place); without it the URL carries the placeholder
``{zapikey}`` (and ``{appkey}`` for extensions unless given) and ``complete`` is false.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from aiohttp import web

from producer import incoming
from producer.api import (
    INVALID_FIELDS,
    NOT_FOUND,
    SETTINGS,
    Problem,
    ProblemKind,
    invalid_field,
    read_json_object,
    redis_deadline,
)
from producer.events import ID_PATTERN, iso_time
from producer.incoming import WebhookModule, webhook_url
from producer.openapi import (
    json_response,
    operation,
    path_parameter,
    problem_responses,
    query_parameter,
    schema_ref,
)
from producer.token_context import TOKEN_SYSTEM, TokenSystem, install
from producer.tokens.registry import (
    MAX_NAME_LENGTH,
    MAX_TOKENS,
    USAGE_HISTORY,
    TokenError,
    TokenLimitReached,
    TokenNotFound,
    TokenStatus,
    WebhookToken,
)
from producer.tokens.twofactor import SESSION_S, TwoFactorError, TwoFactorFailure
from producer.tokens.users import (
    MAX_APP_NAME_LENGTH,
    AppEnvironment,
    ResourceKind,
    ResourceTaken,
    UserError,
    UserNotFound,
)

SESSION_HEADER = "X-Cliq-2FA-Session"
CODE_PATTERN = re.compile(r"[0-9]{6}")

REAUTHENTICATE = ProblemKind("reauthenticate", 401, "Re-authenticate with your second factor")
INVALID_CODE = ProblemKind("invalid-totp-code", 401, "TOTP code not accepted")
TOTP_LOCKED = ProblemKind("totp-locked", 429, "Too many wrong TOTP codes")
TWO_FACTOR_STATE = ProblemKind("two-factor-state", 409, "Second factor not ready for this")
TOKEN_LIMIT = ProblemKind("token-limit-reached", 409, "Webhook token limit reached")
RESOURCE_TAKEN = ProblemKind("resource-taken", 409, "Name owned by another user")

_TWO_FACTOR_KINDS = {
    TwoFactorFailure.NOT_ENROLLED: TWO_FACTOR_STATE,
    TwoFactorFailure.NOTHING_TO_CONFIRM: TWO_FACTOR_STATE,
    TwoFactorFailure.WRONG_CODE: INVALID_CODE,
    TwoFactorFailure.REPLAYED: INVALID_CODE,
    TwoFactorFailure.LOCKED: TOTP_LOCKED,
    TwoFactorFailure.SESSION_REQUIRED: REAUTHENTICATE,
}


# ---------------------------------------------------------------- request helpers


def _system(request: web.Request) -> TokenSystem:
    return request.app[TOKEN_SYSTEM]


def _path(request: web.Request, name: str, what: str) -> str:
    """A path parameter shaped like an id; 404 when it cannot be one."""
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise Problem(NOT_FOUND, f"No {what} {value!r}.")
    return value


@asynccontextmanager
async def _errors(detail: str) -> AsyncIterator[None]:
    """Map the token system's errors to problems; 503 with ``detail`` when Redis fails."""
    try:
        async with redis_deadline(detail):
            yield
    except UserNotFound as exc:
        raise Problem(
            NOT_FOUND, f"No user {exc.user_id!r}: create it with PUT /v1/users/{{id}}."
        ) from None
    except TokenNotFound as exc:
        raise Problem(NOT_FOUND, f"The user has no token {exc.token_id!r}.") from None
    except (UserError, TokenError) as exc:
        raise invalid_field(exc.field, exc.message) from None
    except TokenLimitReached:
        raise Problem(
            TOKEN_LIMIT,
            f"A user can hold at most {MAX_TOKENS} webhook tokens: delete one first.",
        ) from None
    except ResourceTaken as exc:
        raise Problem(RESOURCE_TAKEN, str(exc).capitalize() + ".") from None
    except TwoFactorError as exc:
        raise Problem(_TWO_FACTOR_KINDS[exc.failure], exc.message) from None


async def _require_session(request: web.Request, user_id: str) -> None:
    """404 for an unknown user, 401 ``reauthenticate`` without an open 2FA session."""
    system = _system(request)
    async with _errors("Redis is unavailable; the 2FA session could not be checked."):
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
    system = _system(request)
    async with _errors("Redis is unavailable; the user was not saved."):
        user, created = await system.users.put(user_id, body["workspace_id"])
        resources = await system.users.resources(user_id)
    return web.json_response(user.public_dict(resources), status=201 if created else 200)


async def get_user(request: web.Request) -> web.Response:
    """``GET /v1/users/{user_id}``: the user, whether 2FA is enrolled, what they own."""
    user_id = _path(request, "user_id", "user")
    system = _system(request)
    async with _errors("Redis is unavailable; the user could not be read."):
        user = await system.users.get(user_id)
        resources = await system.users.resources(user_id)
    return web.json_response(user.public_dict(resources))


def _claim(kind: ResourceKind) -> Any:
    async def claim(request: web.Request) -> web.Response:
        user_id = _path(request, "user_id", "user")
        name = _path(request, "name", kind.value)
        async with _errors(f"Redis is unavailable; the {kind.value} was not claimed."):
            created = await _system(request).users.claim(user_id, kind, name)
        return web.json_response(
            {"kind": kind.value, "name": name, "user_id": user_id}, status=201 if created else 200
        )

    claim.__doc__ = f"``PUT /v1/users/{{user_id}}/{kind.value}s/{{name}}``: claim the name."
    return claim


async def create_app(request: web.Request) -> web.Response:
    """``POST /v1/users/{user_id}/apps``: an extension app; its appkeys are shown once."""
    user_id = _path(request, "user_id", "user")
    body = _fields(await read_json_object(request), ("name",), ("name",))
    async with _errors("Redis is unavailable; the app was not created."):
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
    """``POST .../2fa/enroll``: a new TOTP secret, to be confirmed with a first code."""
    user_id = _path(request, "user_id", "user")
    system = _system(request)
    async with _errors("Redis is unavailable; nothing was enrolled."):
        await system.users.get(user_id)
        if await system.twofactor.enrolled(user_id):
            # Replacing a second factor needs the current one: the API key alone must not.
            await system.twofactor.check(user_id, request.headers.get(SESSION_HEADER))
        enrolment = await system.twofactor.enroll(user_id)
    return web.json_response(
        {"secret": enrolment.secret, "otpauth_uri": enrolment.otpauth_uri}, status=201
    )


async def confirm(request: web.Request) -> web.Response:
    """``POST .../2fa/confirm``: the first code of a new secret; opens a session."""
    user_id = _path(request, "user_id", "user")
    code = _code(await read_json_object(request))
    async with _errors("Redis is unavailable; the code was not checked."):
        session = await _system(request).twofactor.confirm(user_id, code)
    return web.json_response(_session_dict(session.token, session.expires_ms))


async def verify(request: web.Request) -> web.Response:
    """``POST .../2fa/verify``: a code of the enrolled secret; opens a session."""
    user_id = _path(request, "user_id", "user")
    code = _code(await read_json_object(request))
    async with _errors("Redis is unavailable; the code was not checked."):
        session = await _system(request).twofactor.verify(user_id, code)
    return web.json_response(_session_dict(session.token, session.expires_ms))


# ---------------------------------------------------------------- tokens


async def create_token(request: web.Request) -> web.Response:
    """``POST .../tokens``: generate a token; its value is shown this once."""
    user_id = _path(request, "user_id", "user")
    await _require_session(request, user_id)
    body = _fields(await read_json_object(request), ("name",), ("name",))
    async with _errors("Redis is unavailable; no token was generated."):
        token, value = await _system(request).tokens.create(user_id, body["name"])
    return web.json_response({**token_dict(token), "token": value}, status=201)


async def list_tokens(request: web.Request) -> web.Response:
    """``GET .../tokens``: "Generated Tokens", oldest first."""
    user_id = _path(request, "user_id", "user")
    await _require_session(request, user_id)
    async with _errors("Redis is unavailable; the tokens could not be listed."):
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
    async with _errors("Redis is unavailable; the token could not be read."):
        token = await _system(request).tokens.get(user_id, token_id)
    return web.json_response(token_dict(token))


async def rename_token(request: web.Request) -> web.Response:
    """``PATCH .../tokens/{token_id}`` ``{"name"}``: rename the token."""
    user_id, token_id = await _token_route(request)
    body = _fields(await read_json_object(request), ("name",), ("name",))
    async with _errors("Redis is unavailable; the token was not renamed."):
        token = await _system(request).tokens.rename(user_id, token_id, body["name"])
    return web.json_response(token_dict(token))


def _set_status(status: TokenStatus) -> Any:
    async def set_status(request: web.Request) -> web.Response:
        user_id, token_id = await _token_route(request)
        async with _errors("Redis is unavailable; the token was not changed."):
            token = await _system(request).tokens.set_status(user_id, token_id, status)
        return web.json_response(token_dict(token))

    set_status.__doc__ = f"Make the token {status.value}."
    return set_status


async def delete_token(request: web.Request) -> web.Response:
    """``DELETE .../tokens/{token_id}``: it authenticates nothing more; its slot is free."""
    user_id, token_id = await _token_route(request)
    async with _errors("Redis is unavailable; the token was not deleted."):
        await _system(request).tokens.delete(user_id, token_id)
    return web.Response(status=204)


async def token_usage(request: web.Request) -> web.Response:
    """``GET .../tokens/{token_id}/usage``: its latest uses, newest first."""
    user_id, token_id = await _token_route(request)
    raw = request.query.get("limit", str(USAGE_HISTORY))
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= USAGE_HISTORY:
        raise invalid_field("limit", f"must be an integer from 1 to {USAGE_HISTORY}")
    async with _errors("Redis is unavailable; the usage could not be read."):
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


def public_base(request: web.Request) -> str:
    """Where third parties reach this API: ``PUBLIC_URL``, else the request's own origin."""
    return request.config_dict[SETTINGS].public_url or f"{request.scheme}://{request.host}"


async def make_webhook_url(
    system: TokenSystem, user_id: str, token_id: str, base: str, body: dict[str, str]
) -> dict[str, Any]:
    """ "Get Webhook URL" for ``body`` (``module``, ``name``, optionally ``token`` and
    ``appkey``, all strings): 422 naming the field at fault. The dashboard uses it too."""
    modules = [m.value for m in WebhookModule]
    if body["module"] not in modules:
        raise invalid_field("module", f"must be one of {', '.join(modules)}")
    module = WebhookModule(body["module"])
    name: str = body["name"]
    if not ID_PATTERN.match(name):
        raise invalid_field("name", "must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'")
    extension = module in (WebhookModule.EXTENSION_SANDBOX, WebhookModule.EXTENSION_MARKETPLACE)
    if "appkey" in body and not extension:
        raise invalid_field("appkey", "is only for the extension modules")
    async with _errors("Redis is unavailable; the URL could not be made."):
        await system.tokens.get(user_id, token_id)
        await _check_owned(system, user_id, module, name, body.get("appkey"))
        if "token" in body:
            presented = await system.tokens.authenticate(body["token"])
            if presented is None or presented.id != token_id:
                raise invalid_field("token", f"is not the value of token {token_id!r}")
    token = body.get("token", "{zapikey}")
    appkey = body.get("appkey", "{appkey}") if extension else ""
    return {
        "module": module.value,
        "name": name,
        "url": webhook_url(base, module, name, token, appkey),
        "complete": "token" in body and (not extension or "appkey" in body),
    }


async def _check_owned(
    system: TokenSystem, user_id: str, module: WebhookModule, name: str, appkey: str | None
) -> None:
    """422 unless ``name`` is the user's channel, bot or app (and ``appkey`` its key)."""
    kind = incoming.ROUTES[module].kind
    if kind is ResourceKind.APP:
        app = await system.users.app(name)
        if app is None or app.user_id != user_id:
            raise invalid_field("name", f"the user has no app {name!r}")
        if appkey is not None:
            wanted = incoming.ENVIRONMENT_OF_MODULE[module]
            if app.environment_of(appkey) is not wanted:
                raise invalid_field("appkey", f"is not the app's {wanted.value} appkey")
    elif await system.users.owner(kind, name) != user_id:
        raise invalid_field("name", f"the user has no {kind.value} {name!r}")


# ---------------------------------------------------------------- OpenAPI

_ID = {"type": "string", "pattern": ID_PATTERN.pattern}
_TIME = {"type": "string", "format": "date-time"}
_USER_ID = path_parameter("user_id", "The user's id (chosen by the operator).")
_TOKEN_ID = path_parameter("token_id", "The token's id (`tok_…`).")
_SESSION = {
    "name": SESSION_HEADER,
    "in": "header",
    "required": False,
    "description": f"A 2FA session (from verify or confirm), valid {SESSION_S // 60} minutes "
    "after its verification; without it the call is refused (401 reauthenticate).",
    "schema": {"type": "string"},
}

OPENAPI_SCHEMAS: dict[str, Any] = {
    "User": {
        "type": "object",
        "required": [
            "id",
            "workspace_id",
            "created_ms",
            "totp_enrolled",
            "channels",
            "bots",
            "apps",
        ],
        "properties": {
            "id": _ID,
            "workspace_id": _ID,
            "created_ms": {"type": "integer"},
            "totp_enrolled": {"type": "boolean"},
            "channels": {"type": "array", "items": {"type": "string"}},
            "bots": {"type": "array", "items": {"type": "string"}},
            "apps": {"type": "array", "items": {"type": "string"}},
        },
    },
    "TwoFactorSession": {
        "type": "object",
        "required": ["session", "header", "expires_at"],
        "properties": {
            "session": {"type": "string", "description": f"Send as {SESSION_HEADER}."},
            "header": {"type": "string"},
            "expires_at": _TIME,
        },
    },
    "WebhookToken": {
        "type": "object",
        "required": ["id", "name", "status", "invocations", "last_invoked_at", "created_at"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "status": {"type": "string", "enum": [s.value for s in TokenStatus]},
            "invocations": {"type": "integer", "minimum": 0},
            "last_invoked_at": {"type": ["string", "null"], "format": "date-time"},
            "created_at": _TIME,
            "token": {"type": "string", "description": "The full value: at creation only."},
        },
    },
    "TokenUsage": {
        "type": "object",
        "required": ["at", "at_ms", "module", "resource", "source", "outcome", "event_id"],
        "properties": {
            "at": _TIME,
            "at_ms": {"type": "integer"},
            "module": {"type": "string"},
            "resource": {"type": "string"},
            "source": {"type": "string", "description": "The caller's address."},
            "outcome": {
                "type": "string",
                "description": "accepted, or why refused: disabled, unknown_resource, "
                "forbidden, invalid_appkey.",
            },
            "event_id": {"type": ["string", "null"]},
        },
    },
}

_CODE_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["code"],
    "properties": {"code": {"type": "string", "pattern": "^[0-9]{6}$"}},
}
_NAME_BODY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["name"],
    "properties": {"name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH}},
}
_TOKEN_RESPONSE = json_response("The token.", schema_ref("WebhookToken"))
_SESSION_RESPONSE = json_response("A 2FA session is open.", schema_ref("TwoFactorSession"))
_USER_RESPONSES = {
    "200": json_response("Updated.", schema_ref("User")),
    "201": json_response("Created.", schema_ref("User")),
}


def _claim_operation(kind: ResourceKind) -> dict[str, Any]:
    return operation(
        f"claim{kind.value.title()}",
        f"Claim a {kind.value} name for the user (its incoming webhooks need this)",
        tag="users",
        parameters=[_USER_ID, path_parameter("name", f"The {kind.value}'s unique name.")],
        responses={
            "200": json_response("Already the user's.", {"type": "object"}),
            "201": json_response("Claimed.", {"type": "object"}),
            **problem_responses(404, 409, 503),
        },
    )


def _token_operation(
    operation_id: str, summary: str, responses: dict[str, Any], **kwargs: Any
) -> dict[str, Any]:
    """A token-management operation: a 2FA session header, 404 and 503 besides."""
    parameters = kwargs.pop("parameters", [_USER_ID, _TOKEN_ID])
    return operation(
        operation_id,
        summary,
        tag="webhook tokens",
        parameters=[*parameters, _SESSION],
        responses={**responses, **problem_responses(404, 503)},
        **kwargs,
    )


OPENAPI_PATHS: dict[str, Any] = {
    "/v1/users/{user_id}": {
        "put": operation(
            "putUser",
            "Create a user, or move them to another workspace",
            tag="users",
            parameters=[_USER_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "required": ["workspace_id"],
                "properties": {"workspace_id": _ID},
            },
            responses={**_USER_RESPONSES, **problem_responses(404, 422, 503)},
        ),
        "get": operation(
            "getUser",
            "A user: workspace, 2FA enrolment, channels, bots and apps",
            tag="users",
            parameters=[_USER_ID],
            responses={
                "200": json_response("The user.", schema_ref("User")),
                **problem_responses(404, 503),
            },
        ),
    },
    "/v1/users/{user_id}/channels/{name}": {"put": _claim_operation(ResourceKind.CHANNEL)},
    "/v1/users/{user_id}/bots/{name}": {"put": _claim_operation(ResourceKind.BOT)},
    "/v1/users/{user_id}/apps": {
        "post": operation(
            "createApp",
            "An extension app with a sandbox and a marketplace appkey (shown once)",
            tag="users",
            parameters=[_USER_ID],
            body={
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": MAX_APP_NAME_LENGTH}
                },
            },
            responses={
                "201": json_response(
                    "Created; both appkeys in full.",
                    {
                        "type": "object",
                        "required": [
                            "id",
                            "user_id",
                            "name",
                            "sandbox_appkey",
                            "marketplace_appkey",
                        ],
                        "properties": {
                            "id": {"type": "string"},
                            "user_id": {"type": "string"},
                            "name": {"type": "string"},
                            "sandbox_appkey": {"type": "string"},
                            "marketplace_appkey": {"type": "string"},
                        },
                    },
                ),
                **problem_responses(404, 422, 503),
            },
        )
    },
    "/v1/users/{user_id}/2fa/enroll": {
        "post": operation(
            "enrollTwoFactor",
            "Enrol a TOTP second factor (the secret is shown once)",
            tag="two-factor",
            description="Confirm with a first code. An enrolled user re-enrols only within "
            "a 2FA session; the current secret stays until the new one is confirmed.",
            parameters=[_USER_ID, _SESSION],
            responses={
                "201": json_response(
                    "A secret awaiting confirmation.",
                    {
                        "type": "object",
                        "required": ["secret", "otpauth_uri"],
                        "properties": {
                            "secret": {"type": "string", "description": "Base32."},
                            "otpauth_uri": {"type": "string"},
                        },
                    },
                ),
                **problem_responses(404, 503),
            },
        )
    },
    **{
        f"/v1/users/{{user_id}}/2fa/{action}": {
            "post": operation(
                f"{action}TwoFactor",
                summary,
                tag="two-factor",
                parameters=[_USER_ID],
                body=_CODE_BODY,
                responses={
                    "200": _SESSION_RESPONSE,
                    **problem_responses(404, 409, 422, 429, 503),
                },
            )
        }
        for action, summary in (
            ("confirm", "Confirm an enrolment with its first code; opens a 2FA session"),
            ("verify", "Verify a TOTP code; opens a 2FA session (15 minutes)"),
        )
    },
    "/v1/users/{user_id}/tokens": {
        "post": _token_operation(
            "createToken",
            f"Generate a webhook token (at most {MAX_TOKENS}; the value is shown once)",
            {
                "201": json_response("Generated; `token` in full.", schema_ref("WebhookToken")),
                **problem_responses(409, 422),
            },
            parameters=[_USER_ID],
            body=_NAME_BODY,
        ),
        "get": _token_operation(
            "listTokens",
            "Generated Tokens: name, id, invocations, last invoked, status",
            {
                "200": json_response(
                    "The user's tokens, oldest first.",
                    {
                        "type": "object",
                        "required": ["items", "max_tokens"],
                        "properties": {
                            "items": {"type": "array", "items": schema_ref("WebhookToken")},
                            "max_tokens": {"type": "integer"},
                        },
                    },
                )
            },
            parameters=[_USER_ID],
        ),
    },
    "/v1/users/{user_id}/tokens/{token_id}": {
        "get": _token_operation("getToken", "One token", {"200": _TOKEN_RESPONSE}),
        "patch": _token_operation(
            "renameToken",
            "Rename a token",
            {"200": _TOKEN_RESPONSE, **problem_responses(422)},
            body=_NAME_BODY,
        ),
        "delete": _token_operation(
            "deleteToken",
            "Delete a token (integrations using it fail from now on)",
            {"204": {"description": "Deleted."}},
        ),
    },
    **{
        f"/v1/users/{{user_id}}/tokens/{{token_id}}/{action}": {
            "post": _token_operation(f"{action}Token", summary, {"200": _TOKEN_RESPONSE})
        }
        for action, summary in (
            ("enable", "Enable a token"),
            ("disable", "Disable a token: it authenticates nothing until enabled"),
        )
    },
    "/v1/users/{user_id}/tokens/{token_id}/usage": {
        "get": _token_operation(
            "tokenUsage",
            f"A token's usage history, newest first (the last {USAGE_HISTORY} uses)",
            {
                "200": json_response(
                    "The uses.",
                    {
                        "type": "object",
                        "required": ["items"],
                        "properties": {
                            "items": {"type": "array", "items": schema_ref("TokenUsage")}
                        },
                    },
                ),
                **problem_responses(422),
            },
            parameters=[
                _USER_ID,
                _TOKEN_ID,
                query_parameter(
                    "limit",
                    f"Uses to show, 1 to {USAGE_HISTORY} (default {USAGE_HISTORY}).",
                    {"type": "integer", "minimum": 1, "maximum": USAGE_HISTORY},
                ),
            ],
        )
    },
    "/v1/users/{user_id}/tokens/{token_id}/webhook-url": {
        "post": _token_operation(
            "getWebhookUrl",
            "Get Webhook URL: the URL of a module and name, for this token",
            {
                "200": json_response(
                    "The URL; `complete` is false while it carries placeholders.",
                    {
                        "type": "object",
                        "required": ["module", "name", "url", "complete"],
                        "properties": {
                            "module": {"type": "string"},
                            "name": {"type": "string"},
                            "url": {"type": "string"},
                            "complete": {"type": "boolean"},
                        },
                    },
                ),
                **problem_responses(422),
            },
            description="The token is stored only as a digest: send its value as `token` "
            "to have it put in place (it is checked), else the URL carries `{zapikey}`; "
            "likewise `appkey` / `{appkey}` for extensions.",
            body={
                "type": "object",
                "additionalProperties": False,
                "required": ["module", "name"],
                "properties": {
                    "module": {"type": "string", "enum": [m.value for m in WebhookModule]},
                    "name": {
                        "type": "string",
                        "pattern": ID_PATTERN.pattern,
                        "description": "The channel's or bot's unique name, or the app id.",
                    },
                    "token": {"type": "string"},
                    "appkey": {"type": "string"},
                },
            },
        )
    },
    **incoming.OPENAPI_PATHS,
}


# ---------------------------------------------------------------- registration


def add_routes(app: web.Application) -> None:
    """Register this module's routes (and the incoming webhooks') on the API application."""
    install(app)
    router = app.router
    user = "/v1/users/{user_id}"
    token = f"{user}/tokens/{{token_id}}"
    router.add_put(user, put_user)
    router.add_get(user, get_user)
    router.add_put(f"{user}/channels/{{name}}", _claim(ResourceKind.CHANNEL))
    router.add_put(f"{user}/bots/{{name}}", _claim(ResourceKind.BOT))
    router.add_post(f"{user}/apps", create_app)
    router.add_post(f"{user}/2fa/enroll", enroll)
    router.add_post(f"{user}/2fa/confirm", confirm)
    router.add_post(f"{user}/2fa/verify", verify)
    router.add_post(f"{user}/tokens", create_token)
    router.add_get(f"{user}/tokens", list_tokens)
    router.add_get(token, get_token)
    router.add_patch(token, rename_token)
    router.add_delete(token, delete_token)
    router.add_post(f"{token}/enable", _set_status(TokenStatus.ACTIVE))
    router.add_post(f"{token}/disable", _set_status(TokenStatus.DISABLED))
    router.add_get(f"{token}/usage", token_usage)
    router.add_post(f"{token}/webhook-url", get_webhook_url)
    incoming.add_routes(app)
