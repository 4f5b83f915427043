"""The OpenAPI description of the token API's routes (:mod:`producer.tokens.routes`)."""

from __future__ import annotations

from typing import Any

from producer.events import ID_PATTERN
from producer.http.openapi import (
    json_response,
    operation,
    path_parameter,
    problem_responses,
    query_parameter,
    schema_ref,
)
from producer.tokens.modules import WebhookModule
from producer.tokens.registry import MAX_NAME_LENGTH, MAX_TOKENS, USAGE_HISTORY, TokenStatus
from producer.tokens.routes import SESSION_HEADER
from producer.tokens.twofactor import SESSION_S
from producer.tokens.users import MAX_APP_NAME_LENGTH, ResourceKind

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
            "Refused: a user enrols their TOTP second factor in their own portal session",
            tag="two-factor",
            description="Always 403 `enrol-in-portal` for an existing user: no API key reads "
            "a TOTP secret. Make the user's link with `POST /v1/users/{user_id}/portal-links`; "
            "there they scan a QR code (or type the secret) and confirm a first code. "
            "Re-enrolling there needs an open 2FA session; the current secret stays until "
            "the new one is confirmed.",
            parameters=[_USER_ID],
            responses={**problem_responses(403, 404, 503)},
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
}
