"""The modules of incoming webhooks: where each one posts, what it publishes, its URL.

A third party posts to one of these routes with a user's webhook token in the
``zapikey`` query parameter (and an extension's appkey in ``appkey``);
:func:`webhook_url` is the URL "Get Webhook URL" gives for a module and a name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import quote

from producer.tokens.users import AppEnvironment, ResourceKind

TOKEN_PARAMETER = "zapikey"
APPKEY_PARAMETER = "appkey"


class WebhookModule(StrEnum):
    """The modules of "Get Webhook URL": where an incoming webhook posts."""

    CHANNEL = "channel"
    BOT_INCOMING = "bot_incoming"
    BOT_MESSAGE = "bot_message"
    EXTENSION_SANDBOX = "extension_sandbox"
    EXTENSION_MARKETPLACE = "extension_marketplace"


@dataclass(frozen=True)
class Route:
    """One incoming route: its path, the event it publishes, what it posts to."""

    path: str
    name_parameter: str
    event_type: str
    kind: ResourceKind


ROUTES: dict[WebhookModule, Route] = {
    WebhookModule.CHANNEL: Route(
        "/api/v2/channelsbyname/{channel}/message",
        "channel",
        "channel.message",
        ResourceKind.CHANNEL,
    ),
    WebhookModule.BOT_INCOMING: Route(
        "/api/v2/bots/{bot}/incoming", "bot", "bot.incoming", ResourceKind.BOT
    ),
    WebhookModule.BOT_MESSAGE: Route(
        "/api/v2/bots/{bot}/message", "bot", "bot.message", ResourceKind.BOT
    ),
    WebhookModule.EXTENSION_SANDBOX: Route(
        "/api/v2/applications/{app_id}/incoming", "app_id", "extension.incoming", ResourceKind.APP
    ),
}
ROUTES[WebhookModule.EXTENSION_MARKETPLACE] = ROUTES[WebhookModule.EXTENSION_SANDBOX]
MODULE_OF_ENVIRONMENT = {
    AppEnvironment.SANDBOX: WebhookModule.EXTENSION_SANDBOX,
    AppEnvironment.MARKETPLACE: WebhookModule.EXTENSION_MARKETPLACE,
}
ENVIRONMENT_OF_MODULE = {module: env for env, module in MODULE_OF_ENVIRONMENT.items()}
# The ``module`` label of metrics and usage entries before the appkey is known.
EXTENSION_LABEL = "extension"


def webhook_url(base: str, module: WebhookModule, name: str, token: str, appkey: str = "") -> str:
    """The full URL a third party posts to (``token`` and ``appkey`` put in place)."""
    route = ROUTES[module]
    path = route.path.replace("{" + route.name_parameter + "}", quote(name, safe=""))
    query = f"{TOKEN_PARAMETER}={quote(token, safe='{}')}"
    if route.kind is ResourceKind.APP:
        query = f"{APPKEY_PARAMETER}={quote(appkey, safe='{}')}&{query}"
    return f"{base}{path}?{query}"
