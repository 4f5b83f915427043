"""Rendering the dashboard's pages: the template environment and what every page gets.

Templates are Jinja2 with autoescaping on for everything: whatever comes from receivers
or users (response bodies, URLs, names, descriptions) is HTML-escaped where it is shown,
and the Content-Security-Policy (:data:`producer.dashboard.app.CONTENT_SECURITY_POLICY`)
refuses inline scripts besides.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import jinja2
from aiohttp import web

from producer.context import Producer
from producer.dashboard.sessions import Session, SessionStore
from producer.http.state import PRODUCER, SETTINGS, ApiSettings

# The request's session (absent: the browser has none), set by the session gate.
SESSION_KEY = web.RequestKey("dashboard_session", Session)
# Where a brand name's phone form ends (:func:`brand_parts`).
BRAND_BREAK = re.compile(r"[ -]")
# Pages show private data: no cache may keep them.
NO_STORE = {"Cache-Control": "no-store"}

ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("producer.dashboard", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def format_ms(ms: int | float | None) -> str:
    """Milliseconds since the epoch in ISO 8601 UTC, ``2025-01-15T10:30:00Z`` (the one
    format of every time the dashboard shows or takes); ``—`` for none."""
    if not ms:
        return "—"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


ENVIRONMENT.filters["when"] = format_ms


def brand_parts(name: str) -> tuple[str, str]:
    """``name`` as its first word and the rest (from the first space or hyphen on), which
    phones leave out so that the navigation keeps to one line: "cliq" of "cliq-webhooks"."""
    found = BRAND_BREAK.search(name, 1)
    return (name, "") if found is None else (name[: found.start()], name[found.start() :])


def producer_of(request: web.Request) -> Producer:
    """The API application's producer (registry, delivery log, Redis)."""
    return request.config_dict[PRODUCER]


def settings_of(request: web.Request) -> ApiSettings:
    """The API application's settings."""
    return request.config_dict[SETTINGS]


def store_of(request: web.Request) -> SessionStore:
    """The session store, on the producer's Redis."""
    producer = producer_of(request)
    return SessionStore(producer.redis, producer.keys, settings_of(request).dashboard_session_ttl)


def session_of(request: web.Request) -> Session | None:
    """The request's session, if the browser has one."""
    return request.get(SESSION_KEY)


def static_url(request: web.Request, filename: str) -> str:
    """The URL of a static file, versioned by its content (so it can be cached)."""
    # request.app is the dashboard's sub-application in its handlers and middlewares.
    return str(request.app.router["static"].url_for(filename=filename))


async def render(
    request: web.Request, template: str, *, status: int = 200, **context: Any
) -> web.Response:
    """The page ``template`` rendered with ``context`` and what every page shows.

    A successful page shows (and so consumes) the session's pending notice.
    """
    session = session_of(request)
    flash = None
    if session is not None and session.signed_in and status < 400:
        flash = await store_of(request).pop_flash(session)
    settings = settings_of(request)
    html = ENVIRONMENT.get_template(template).render(
        # A portal session's grant (its workspace, maybe one user), the operator's brand.
        portal=session.portal if session else None,
        brand_name=settings.portal_brand_name,
        brand_parts=brand_parts(settings.portal_brand_name),
        brand_css=bool(settings.portal_accent_color),
        csrf=session.csrf if session else "",
        signed_in=bool(session and session.signed_in),
        auth_off=not settings.api_keys,
        flash=flash,
        css_url=static_url(request, "dashboard.css"),
        js_url=static_url(request, "dashboard.js"),
        icon_url=static_url(request, "favicon.svg"),
        **context,
    )
    return web.Response(text=html, status=status, content_type="text/html", headers=NO_STORE)


def see_other(location: str) -> web.Response:
    """A 303 to ``location``: the answer to a form that changed something."""
    return web.Response(status=303, headers={"Location": location, **NO_STORE})


async def flash_and_redirect(
    request: web.Request, location: str, message: str, *, warning: bool = False
) -> web.Response:
    """Show ``message`` (a warning if so) on the next page and send the browser to ``location``."""
    session = session_of(request)
    if session is not None:
        await store_of(request).flash(session, message, warning=warning)
    return see_other(location)
