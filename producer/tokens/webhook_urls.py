""" "Get Webhook URL": the URL of a module and name for a token, checked.

The token is stored only as a digest, so the server cannot put it back into a URL by
itself. The caller may send the token's value (it is checked against the digest, then
put in place); without it the URL carries the placeholder ``{zapikey}`` (and
``{appkey}`` for extensions unless given) and ``complete`` is false. The API's route
and the dashboard's dialog both call :func:`make_webhook_url`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from producer.events import ID_PATTERN
from producer.http.problems import invalid_field
from producer.http.state import SETTINGS
from producer.tokens.context import TokenSystem
from producer.tokens.modules import ENVIRONMENT_OF_MODULE, ROUTES, WebhookModule, webhook_url
from producer.tokens.problems import token_errors
from producer.tokens.users import ResourceKind


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
    async with token_errors("Redis is unavailable; the URL could not be made."):
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
    kind = ROUTES[module].kind
    if kind is ResourceKind.APP:
        app = await system.users.app(name)
        if app is None or app.user_id != user_id:
            raise invalid_field("name", f"the user has no app {name!r}")
        if appkey is not None:
            wanted = ENVIRONMENT_OF_MODULE[module]
            if app.environment_of(appkey) is not wanted:
                raise invalid_field("appkey", f"is not the app's {wanted.value} appkey")
    elif await system.users.owner(kind, name) != user_id:
        raise invalid_field("name", f"the user has no {kind.value} {name!r}")
