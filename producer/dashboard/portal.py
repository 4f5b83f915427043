"""The dashboard as a portal: sessions opened by a link, bound to one workspace.

* ``GET /ui/portal/{link}``: redeems a single-use link (:mod:`producer.portal_links`,
  made by ``POST /v1/workspaces/{id}/portal-links`` or ``/v1/users/{id}/portal-links``)
  and opens a new session carrying its grant;
* :func:`portal_gate` keeps such a session to its grant: another workspace's webhook or
  user answers the same 404 page as an unknown id; a form naming another workspace is
  refused (403); a read-only session may look but every change is 403; a user's own
  link reaches that user's Webhook Tokens screens alone;
* ``GET /ui/brand.css``: the operator's accent colour (``PORTAL_ACCENT_COLOR``) as a
  stylesheet, since the Content-Security-Policy allows no inline style.

Framing (``PORTAL_FRAME_ANCESTORS``) is the security headers' (:mod:`.app`) and the
cookie's (:func:`producer.dashboard.sessions.set_cookie`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from producer.dashboard.pages import (
    NO_STORE,
    SESSION_KEY,
    producer_of,
    render,
    see_other,
    session_of,
    settings_of,
    store_of,
)
from producer.http.access import Owner
from producer.http.ownership import workspace_of
from producer.portal_links import PortalLinks
from producer.tokens.context import CLOCK

log = structlog.get_logger("cliq.producer.dashboard")

# Routes any session reaches, bound or not.
UNBOUND_ROUTE_NAMES = frozenset({"static", "portal-link", "brand-css"})
# Routes a signed-out browser may reach (the session gate's list adds them).
PUBLIC_ROUTE_NAMES = frozenset({"portal-link", "brand-css"})
LOGOUT_PATH = "/ui/logout"
FRAME_ANCESTORS = re.compile(r"frame-ancestors [^;]*")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Path parameters naming a resource of some workspace, and the 404 page of an unknown one
# (the handlers' own words: another workspace's ids read as unknown ones).
OWNED_PARAMETERS = {
    "id": (Owner.ENDPOINT, "There is no webhook with id {} (was it deleted?)."),
    "user_id": (Owner.USER, "There is no user {}: create them on the Webhook Tokens page."),
    # The delivery and event pages' own words for an id they do not know.
    "delivery_id": (Owner.DELIVERY, "There is no delivery {} (or its retention ran out)."),
    "event_id": (Owner.EVENT, "There is no event {} (or its retention ran out)."),
}
# Forms that name the workspace they act in.
WORKSPACE_FORMS = frozenset({"/ui/webhooks", "/ui/tokens"})


def _links(request: web.Request) -> PortalLinks:
    producer = producer_of(request)
    return PortalLinks(producer.redis, producer.keys, request.config_dict.get(CLOCK, time.time))


async def open_link(request: web.Request) -> web.Response:
    """``GET /ui/portal/{link}``: a new session bound to the link's workspace, once."""
    grant = await _links(request).redeem(request.match_info["link"])
    if grant is None:
        return await render(
            request,
            "error.html",
            status=404,
            title="This link cannot be used",
            detail="It has expired or was already used. Ask for a new one.",
        )
    store = store_of(request)
    old = session_of(request)
    if old is not None:
        await store.destroy(old)
    request[SESSION_KEY] = await store.create(signed_in=True, portal=grant)
    log.info(
        "portal_opened",
        workspace_id=grant.workspace_id,
        user_id=grant.user_id,
        read_only=grant.read_only,
    )
    if grant.user_id is not None:
        return see_other(f"/ui/tokens/{grant.user_id}")
    return see_other("/ui/webhooks")


async def brand_css(request: web.Request) -> web.Response:
    """``GET /ui/brand.css``: the accent colour setting (empty when it is not set)."""
    colour = settings_of(request).portal_accent_color
    text = f":root {{ --accent: {colour}; }}\n" if colour else ""
    return web.Response(text=text, content_type="text/css", headers=NO_STORE)


def _enrols(request: web.Request) -> bool:
    """Whether the request sets up a user's second factor (its secret is shown)."""
    return request.path.startswith("/ui/tokens/") and request.path.endswith("/2fa/enroll")


@web.middleware
async def portal_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keep a portal session to its grant (after the session gate: CSRF already checked)."""
    session = session_of(request)
    grant = session.portal if session is not None else None
    if _enrols(request) and (grant is None or grant.user_id != request.match_info["user_id"]):
        raise web.HTTPForbidden(
            text="A second factor is set up by its user, from their own portal link."
        )
    if (
        grant is None
        or request.match_info.route.name in UNBOUND_ROUTE_NAMES
        or request.path == LOGOUT_PATH
    ):
        return await handler(request)
    if grant.read_only and request.method not in SAFE_METHODS:
        raise web.HTTPForbidden(text="This portal is read-only: it can look, not change.")
    match = request.match_info
    if grant.user_id is not None:
        if match.get("user_id") != grant.user_id:
            raise web.HTTPNotFound(text="This portal shows your Webhook Tokens only.")
        return await handler(request)
    for parameter, (owner, missing) in OWNED_PARAMETERS.items():
        if parameter in match:
            found = await workspace_of(request, owner, match[parameter])
            if found is not None and found != grant.workspace_id:
                shown = match[parameter] if owner is not Owner.USER else repr(match[parameter])
                raise web.HTTPNotFound(text=missing.format(shown))
    if request.method == "POST" and request.path in WORKSPACE_FORMS:
        form = await request.post()
        named = str(form.get("workspace_id", "")).strip()
        if named and named != grant.workspace_id:
            raise web.HTTPForbidden(text=f"This portal is for workspace {grant.workspace_id}.")
        user_id = str(form.get("user_id", "")).strip()
        if user_id:
            found = await workspace_of(request, Owner.USER, user_id)
            if found is not None and found != grant.workspace_id:
                raise web.HTTPNotFound(text=OWNED_PARAMETERS["user_id"][1].format(repr(user_id)))
    return await handler(request)


def security_headers(headers: Mapping[str, str], request: web.Request) -> dict[str, str]:
    """``headers`` with ``frame-ancestors`` set to ``PORTAL_FRAME_ANCESTORS``; when other
    sites may frame the dashboard, without ``X-Frame-Options: DENY`` (CSP decides)."""
    settings = settings_of(request)
    result = dict(headers)
    result["Content-Security-Policy"] = FRAME_ANCESTORS.sub(
        f"frame-ancestors {settings.portal_frame_ancestors}", result["Content-Security-Policy"]
    )
    if settings.portal_embeddable:
        del result["X-Frame-Options"]
    return result


def add_routes(app: web.Application) -> None:
    """Register the portal's routes on the dashboard's application."""
    app.router.add_get("/portal/{link}", open_link, name="portal-link")
    app.router.add_get("/brand.css", brand_css, name="brand-css")
