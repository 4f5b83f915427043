"""Signing in to the dashboard with an admin API key, and signing out.

The dashboard does what the management API does, so it takes the same credential: one
of ``API_KEYS``, checked by the same constant-time comparison. The key is typed once
and never stored in the browser: the session that replaces it is an opaque, HttpOnly
cookie that expires when unused. With ``API_KEYS`` empty the API is open to anyone who
can reach it, and so is the dashboard (a banner says so); it still uses sessions, for
their CSRF tokens. A source address that fails to sign in too often is answered 429
(:mod:`producer.http.throttle`); a right key always signs in.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from producer.dashboard.pages import (
    SESSION_KEY,
    render,
    see_other,
    session_of,
    settings_of,
    store_of,
)
from producer.dashboard.sessions import clear_cookie
from producer.http.throttle import Surface, throttled

log = structlog.get_logger("cliq.producer.dashboard")

HOME = "/ui/webhooks"


def _next_page(raw: object) -> str:
    """Where to go after signing in: a dashboard path only (no open redirect)."""
    if isinstance(raw, str) and raw.startswith("/ui/") and not raw.startswith("/ui//"):
        return raw
    return HOME


async def login_form(request: web.Request) -> web.Response:
    """``GET /ui/login``: the sign-in form (a signed-in browser goes on at once)."""
    session = session_of(request)
    next_page = _next_page(request.query.get("next"))
    if session is not None and session.signed_in:
        return see_other(next_page)
    if session is None:
        request[SESSION_KEY] = await store_of(request).create(signed_in=False)
    return await render(request, "login.html", next_page=next_page, error=None)


async def login(request: web.Request) -> web.Response:
    """``POST /ui/login``: check the key; a new, signed-in session replaces the old one."""
    form = await request.post()
    next_page = _next_page(form.get("next"))
    keys = settings_of(request).api_keys
    presented = form.get("api_key")
    if keys and not (isinstance(presented, str) and keys.accepts(presented.strip())):
        too_many = throttled(request, Surface.DASHBOARD)
        if too_many is not None:
            page = await render(
                request,
                "login.html",
                status=too_many.kind.status,
                next_page=next_page,
                error=too_many.detail,
            )
            page.headers.update(too_many.headers)
            return page
        log.warning("dashboard_login_failed", remote=request.remote)
        return await render(
            request,
            "login.html",
            status=401,
            next_page=next_page,
            error="This is not one of the server's API keys.",
        )
    store = store_of(request)
    old = session_of(request)
    if old is not None:
        await store.destroy(old)
    request[SESSION_KEY] = await store.create(signed_in=True)
    log.info("dashboard_login", remote=request.remote)
    return see_other(next_page)


async def logout(request: web.Request) -> web.Response:
    """``POST /ui/logout``: forget the session."""
    session = session_of(request)
    if session is not None:
        await store_of(request).destroy(session)
    response = see_other("/ui/login")
    clear_cookie(response)
    return response


async def home(_request: web.Request) -> web.Response:
    """``GET /ui/``: the webhooks list."""
    return see_other(HOME)


def add_routes(app: web.Application) -> None:
    """Register the sign-in routes on the dashboard's application."""
    app.router.add_get("/", home)
    app.router.add_get("/login", login_form, name="login")
    app.router.add_post("/login", login, name="login-post")
    app.router.add_post("/logout", logout)
