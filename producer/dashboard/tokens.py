"""The Webhook Tokens screens (seed 001), behind the user's second factor.

The dashboard is signed in with an API key, as the operator's system calls the token
API: it manages the tokens of a user named by id (``/ui/tokens/{user_id}``), and only
with that user's TOTP code, exactly as the API requires a 2FA session. The session that
a verified code opens (:mod:`producer.tokens.twofactor`, 15 minutes from verification, not
extended by use) is kept in the dashboard session, sealed, never in the browser; when
it has expired every token page asks for a code again.

* ``/ui/tokens``: choose (or create) the user; ``/ui/tokens/{user}``: set up 2FA or
  verify a code, then "Generated Tokens" (name — rename by clicking it —, id,
  invocations, last invoked, status switch, delete with confirmation) and "Generate New
  Token" (refused past :data:`producer.tokens.registry.MAX_TOKENS`, with the reason).
* ``/ui/tokens/{user}/tokens/{token}``: the token's usage history and "Get Webhook
  URL", a dialog whose options follow the chosen module.

Every change goes through :mod:`producer.tokens.registry`, :mod:`producer.tokens.users`,
:mod:`producer.tokens.twofactor` and :func:`producer.tokens.webhook_urls.make_webhook_url`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from aiohttp import web

from producer.dashboard.pages import (
    flash_and_redirect,
    producer_of,
    render,
    see_other,
    session_of,
    store_of,
)
from producer.dashboard.qr import qr_svg
from producer.dashboard.sessions import Session
from producer.events import ID_PATTERN
from producer.http.problems import Problem, redis_deadline
from producer.tokens.context import TOKEN_SYSTEM, TokenSystem
from producer.tokens.modules import WebhookModule
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
from producer.tokens.users import User, UserError, UserNotFound
from producer.tokens.webhook_urls import make_webhook_url, public_base

log = structlog.get_logger("cliq.producer.dashboard")

HOME = "/ui/tokens"
# Sealed with its own purpose: a stored 2FA session opens nothing else.
TWO_FACTOR_PURPOSE = b"cliq-webhooks dashboard 2fa session"
CODE_LENGTH = 6
# "Get Webhook URL": each module, its label, and the kind of name it asks for.
MODULES: tuple[tuple[str, str, str], ...] = (
    (WebhookModule.CHANNEL.value, "Channel", "channel"),
    (WebhookModule.BOT_INCOMING.value, "Bot: incoming webhook", "bot"),
    (WebhookModule.BOT_MESSAGE.value, "Bot: message", "bot"),
    (WebhookModule.EXTENSION_SANDBOX.value, "Extension: sandbox", "app"),
    (WebhookModule.EXTENSION_MARKETPLACE.value, "Extension: marketplace", "app"),
)
LIMIT_MESSAGE = (
    f"You already have {MAX_TOKENS} tokens, the most a user can hold: "
    "delete one to generate another."
)


def _system(request: web.Request) -> TokenSystem:
    return request.config_dict[TOKEN_SYSTEM]


def _session(request: web.Request) -> Session:
    session = session_of(request)
    assert session is not None  # the session gate lets no signed-out request through
    return session


def _user_url(user_id: str) -> str:
    return f"{HOME}/{user_id}"


def _path_id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID_PATTERN.match(value):
        raise web.HTTPNotFound(text=f"There is no {name.replace('_', ' ')} {value!r}.")
    return value


async def _user(request: web.Request) -> User:
    """The user of the path, or a 404 page."""
    user_id = _path_id(request, "user_id")
    try:
        async with redis_deadline("Redis is unavailable; the user could not be read."):
            return await _system(request).users.get(user_id)
    except UserNotFound:
        raise web.HTTPNotFound(
            text=f"There is no user {user_id!r}: create them on the Webhook Tokens page."
        ) from None


# ---------------------------------------------------------------- the 2FA session


async def _stored_session(request: web.Request, user_id: str) -> str | None:
    """The user's 2FA session kept in the dashboard session, if any."""
    sealed = await store_of(request).read(_session(request), f"tfa:{user_id}")
    if not sealed:
        return None
    return producer_of(request).secret_box.open(sealed, TWO_FACTOR_PURPOSE)


async def _keep_session(request: web.Request, user_id: str, token: str) -> None:
    box = producer_of(request).secret_box
    await store_of(request).write(
        _session(request), f"tfa:{user_id}", box.seal(token, TWO_FACTOR_PURPOSE)
    )


async def _open_session_until(request: web.Request, user_id: str) -> int | None:
    """When the user's 2FA session expires (ms), or ``None`` when there is none open."""
    token = await _stored_session(request, user_id)
    try:
        async with redis_deadline("Redis is unavailable; the 2FA session was not checked."):
            session = await _system(request).twofactor.check(user_id, token)
    except TwoFactorError:
        return None
    return session.expires_ms


class TwoFactorNeeded(Exception):
    """The action needs a code first."""


async def _require_2fa(request: web.Request, user_id: str) -> int:
    """The open session's expiry; else the browser goes to the code prompt."""
    expires_ms = await _open_session_until(request, user_id)
    if expires_ms is None:
        raise TwoFactorNeeded
    return expires_ms


def _needs_code(handler: Any) -> Any:
    """Send an action whose 2FA session has expired back to the prompt, saying why."""

    async def guarded(request: web.Request) -> web.Response:
        try:
            response: web.Response = await handler(request)
        except TwoFactorNeeded:
            return await flash_and_redirect(
                request,
                _user_url(request.match_info["user_id"]),
                f"Your 2FA session has expired ({SESSION_S // 60} minutes): enter a new "
                "code, then try again.",
                warning=True,
            )
        return response

    guarded.__doc__ = handler.__doc__
    return guarded


# ---------------------------------------------------------------- choosing the user


async def choose_user(request: web.Request) -> web.Response:
    """``GET /ui/tokens``: the user whose tokens to manage (the last one, if any)."""
    last = await store_of(request).read(_session(request), "user")
    if last and "change" not in request.query:
        return see_other(_user_url(last))
    return await _choose_page(request, {"user_id": last or "", "workspace_id": ""}, {})


async def _choose_page(
    request: web.Request, values: dict[str, str], errors: dict[str, str], status: int = 200
) -> web.Response:
    return await render(
        request, "tokens_user.html", status=status, values=values, errors=errors, nav="tokens"
    )


async def pick_user(request: web.Request) -> web.Response:
    """``POST /ui/tokens``: open a user's tokens, creating the user if a workspace is given."""
    form = await request.post()
    values = {name: str(form.get(name, "")).strip() for name in ("user_id", "workspace_id")}
    users = _system(request).users
    errors: dict[str, str] = {}
    user_id = values["user_id"]
    if not ID_PATTERN.match(user_id):
        errors["user_id"] = "must be 1-128 characters of A-Z, a-z, 0-9, '_', '-'"
    else:
        async with redis_deadline("Redis is unavailable; the user could not be read."):
            try:
                await users.get(user_id)
            except UserNotFound:
                if values["workspace_id"]:
                    try:
                        await users.put(user_id, values["workspace_id"])
                    except UserError as exc:
                        errors[exc.field] = exc.message
                else:
                    errors["workspace_id"] = (
                        f"There is no user {user_id!r} yet: give the workspace their "
                        "webhooks publish to, to create them."
                    )
    if errors:
        return await _choose_page(request, values, errors, status=422)
    await store_of(request).write(_session(request), "user", values["user_id"])
    return see_other(_user_url(values["user_id"]))


# ---------------------------------------------------------------- the main page


async def tokens_page(request: web.Request) -> web.Response:
    """``GET /ui/tokens/{user_id}``: the 2FA prompt, or the user's Generated Tokens."""
    user = await _user(request)
    expires_ms = await _open_session_until(request, user.id)
    if expires_ms is None:
        return await _prompt(request, user)
    return await _tokens_view(request, user, expires_ms)


async def _prompt(
    request: web.Request,
    user: User,
    *,
    error: str | None = None,
    enrolment: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    """Set up the second factor, confirm it, or verify a code."""
    return await render(
        request,
        "tokens_2fa.html",
        status=status,
        user=user,
        enrolled=user.totp_enrolled,
        enrolment=enrolment,
        error=error,
        session_minutes=SESSION_S // 60,
        nav="tokens",
    )


async def _tokens_view(
    request: web.Request,
    user: User,
    expires_ms: int,
    *,
    new_token: tuple[WebhookToken, str] | None = None,
    errors: dict[str, str] | None = None,
    name: str = "",
    status: int = 200,
) -> web.Response:
    async with redis_deadline("Redis is unavailable; the tokens could not be listed."):
        tokens = await _system(request).tokens.all(user.id)
    return await render(
        request,
        "tokens.html",
        status=status,
        user=user,
        tokens=tokens,
        max_tokens=MAX_TOKENS,
        max_name=MAX_NAME_LENGTH,
        expires_ms=expires_ms,
        new_token=new_token,
        errors=errors or {},
        name=name,
        nav="tokens",
    )


# ---------------------------------------------------------------- the second factor


def _code(form: Any) -> str:
    value = form.get("code", "")
    return value.strip().replace(" ", "") if isinstance(value, str) else ""


async def enroll(request: web.Request) -> web.Response:
    """``POST /ui/tokens/{user_id}/2fa/enroll``: a TOTP secret, shown once, to confirm."""
    user = await _user(request)
    twofactor = _system(request).twofactor
    async with redis_deadline("Redis is unavailable; nothing was enrolled."):
        replacing = await twofactor.enrolled(user.id)
        if replacing and await _open_session_until(request, user.id) is None:
            # Replacing a second factor needs the current one: an open 2FA session.
            return await _prompt(request, user, error="2FA is set up already: enter a code.")
        enrolment = await twofactor.enroll(user.id)
    log.info("dashboard_2fa_enrolment", user_id=user.id)
    shown = {
        "secret": enrolment.secret,
        "otpauth_uri": enrolment.otpauth_uri,
        "qr_svg": qr_svg(enrolment.otpauth_uri),
    }
    return await _prompt(request, user, enrolment=shown)


async def confirm(request: web.Request) -> web.Response:
    """``POST /ui/tokens/{user_id}/2fa/confirm``: the first code of the new secret."""
    return await _accept_code(request, confirming=True)


async def verify(request: web.Request) -> web.Response:
    """``POST /ui/tokens/{user_id}/2fa/verify``: a code; opens a 15-minute session."""
    return await _accept_code(request, confirming=False)


async def _accept_code(request: web.Request, *, confirming: bool) -> web.Response:
    user = await _user(request)
    code = _code(await request.post())
    twofactor = _system(request).twofactor
    if not (len(code) == CODE_LENGTH and code.isascii() and code.isdigit()):
        return await _prompt(
            request, user, error="Enter the 6 digits your authenticator shows.", status=422
        )
    try:
        async with redis_deadline("Redis is unavailable; the code was not checked."):
            if confirming:
                session = await twofactor.confirm(user.id, code)
            else:
                session = await twofactor.verify(user.id, code)
    except TwoFactorError as exc:
        status = 429 if exc.failure is TwoFactorFailure.LOCKED else 401
        return await _prompt(request, user, error=exc.message, status=status)
    await _keep_session(request, user.id, session.token)
    log.info("dashboard_2fa_verified", user_id=user.id)
    return see_other(_user_url(user.id))


# ---------------------------------------------------------------- tokens


@_needs_code
async def generate(request: web.Request) -> web.Response:
    """``POST /ui/tokens/{user_id}/tokens``: a new token, its value shown this once."""
    user = await _user(request)
    expires_ms = await _require_2fa(request, user.id)
    form = await request.post()
    name = str(form.get("name", "")).strip()
    try:
        async with redis_deadline("Redis is unavailable; no token was generated."):
            created = await _system(request).tokens.create(user.id, name)
    except TokenError as exc:
        errors = {"name": exc.message}
    except TokenLimitReached:
        errors = {"limit": LIMIT_MESSAGE}
    else:
        log.info("dashboard_token_generated", user_id=user.id, token_id=created[0].id)
        return await _tokens_view(request, user, expires_ms, new_token=created)
    status = 409 if "limit" in errors else 422
    return await _tokens_view(request, user, expires_ms, errors=errors, name=name, status=status)


async def _token_action(request: web.Request) -> tuple[User, str]:
    user = await _user(request)
    await _require_2fa(request, user.id)
    return user, _path_id(request, "token_id")


@asynccontextmanager
async def _token_errors(user: User, token_id: str, detail: str) -> AsyncIterator[None]:
    """Redis trouble is a 503 page; a token the user does not have (any more) a 404."""
    try:
        async with redis_deadline(detail):
            yield
    except TokenNotFound:
        raise web.HTTPNotFound(
            text=f"{user.id} has no token {token_id} (was it deleted?)."
        ) from None


@_needs_code
async def rename(request: web.Request) -> web.Response:
    """``POST .../tokens/{token_id}/rename``: a new name (errors shown by the name)."""
    user, token_id = await _token_action(request)
    name = str((await request.post()).get("name", "")).strip()
    try:
        async with _token_errors(user, token_id, "Redis is unavailable; nothing was renamed."):
            await _system(request).tokens.rename(user.id, token_id, name)
    except TokenError as exc:
        return await flash_and_redirect(
            request, _user_url(user.id), f"The name was not changed: it {exc.message}."
        )
    return await flash_and_redirect(request, _user_url(user.id), f"Token renamed to {name}.")


def _status_action(status: TokenStatus, done: str) -> Any:
    @_needs_code
    async def set_status(request: web.Request) -> web.Response:
        user, token_id = await _token_action(request)
        async with _token_errors(user, token_id, "Redis is unavailable; nothing was changed."):
            token = await _system(request).tokens.set_status(user.id, token_id, status)
        log.info("dashboard_token_status", user_id=user.id, token_id=token_id, status=status.value)
        return await flash_and_redirect(request, _user_url(user.id), f"{token.name} {done}.")

    set_status.__doc__ = f"``POST .../tokens/{{token_id}}/{status.value}``."
    return set_status


@_needs_code
async def delete(request: web.Request) -> web.Response:
    """``POST .../tokens/{token_id}/delete``: it authenticates nothing more."""
    user, token_id = await _token_action(request)
    async with _token_errors(user, token_id, "Redis is unavailable; nothing was deleted."):
        token = await _system(request).tokens.get(user.id, token_id)
        await _system(request).tokens.delete(user.id, token_id)
    log.info("dashboard_token_deleted", user_id=user.id, token_id=token_id)
    return await flash_and_redirect(request, _user_url(user.id), f"{token.name} deleted.")


# ---------------------------------------------------------------- one token


@_needs_code
async def token_page(request: web.Request) -> web.Response:
    """``GET .../tokens/{token_id}``: usage history and "Get Webhook URL"."""
    return await _token_view(request, dialog_open="url" in request.query)


async def _token_view(
    request: web.Request,
    *,
    dialog_open: bool = False,
    url_values: dict[str, str] | None = None,
    url_errors: dict[str, str] | None = None,
    url_result: dict[str, Any] | None = None,
    status: int = 200,
) -> web.Response:
    user, token_id = await _token_action(request)
    system = _system(request)
    async with _token_errors(user, token_id, "Redis is unavailable; the token was not read."):
        token = await system.tokens.get(user.id, token_id)
        usage = await system.tokens.usage(user.id, token_id, USAGE_HISTORY)
        resources = await system.users.resources(user.id)
    owned: dict[str, list[str]] = {"channel": [], "bot": [], "app": []}
    for resource in resources:
        kind, _, name = resource.partition(":")
        owned.setdefault(kind, []).append(name)
    return await render(
        request,
        "token.html",
        status=status,
        user=user,
        token=token,
        usage=usage,
        owned=owned,
        modules=MODULES,
        dialog_open=dialog_open or bool(url_errors or url_result),
        url_values=url_values or {"module": MODULES[0][0]},
        url_errors=url_errors or {},
        url_result=url_result,
        nav="tokens",
    )


@_needs_code
async def webhook_url(request: web.Request) -> web.Response:
    """``POST .../tokens/{token_id}/webhook-url``: the URL; JSON for the page's script."""
    user, token_id = await _token_action(request)
    form = await request.post()
    values = {
        name: str(form.get(name, "")).strip() for name in ("module", "name", "token", "appkey")
    }
    body = {k: v for k, v in values.items() if v or k in ("module", "name")}
    wants_json = request.headers.get("Accept", "").startswith("application/json")
    try:
        result = await make_webhook_url(
            _system(request), user.id, token_id, public_base(request), body
        )
    except Problem as problem:
        errors = {str(e["field"]): str(e["message"]) for e in problem.errors or []}
        if not errors:
            errors["module"] = problem.detail
        if wants_json:
            return web.json_response({"errors": errors}, status=422)
        return await _token_view(request, url_values=values, url_errors=errors, status=422)
    if wants_json:
        return web.json_response(result)
    return await _token_view(request, url_values=values, url_result=result)


def add_routes(app: web.Application) -> None:
    """Register the Webhook Tokens screens on the dashboard's application."""
    router = app.router
    user = "/tokens/{user_id}"
    token = f"{user}/tokens/{{token_id}}"
    router.add_get("/tokens", choose_user)
    router.add_post("/tokens", pick_user)
    router.add_get(user, tokens_page)
    router.add_post(f"{user}/2fa/enroll", enroll)
    router.add_post(f"{user}/2fa/confirm", confirm)
    router.add_post(f"{user}/2fa/verify", verify)
    router.add_post(f"{user}/tokens", generate)
    router.add_get(token, token_page)
    router.add_post(f"{token}/rename", rename)
    router.add_post(f"{token}/enable", _status_action(TokenStatus.ACTIVE, "enabled"))
    router.add_post(f"{token}/disable", _status_action(TokenStatus.DISABLED, "disabled"))
    router.add_post(f"{token}/delete", delete)
    router.add_post(f"{token}/webhook-url", webhook_url)
