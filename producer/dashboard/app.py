"""The dashboard's sub-application: routes, security headers, sessions and CSRF checks.

Mounted by :func:`producer.http.app.create_app` under :data:`PREFIX` and marked
:data:`producer.http.state.SESSION_AUTHENTICATED`: its requests carry a session cookie instead of
a bearer key. The middlewares, outermost first:

* :func:`security_headers`: a strict Content-Security-Policy (scripts and styles from
  our own static files only, no inline code, no framing) and friends on every answer;
* :func:`html_errors`: errors as HTML pages rather than problem documents;
* :func:`session_gate`: loads the session, refuses any POST whose CSRF token (or
  ``Origin``) does not match, sends a signed-out browser to the login page.

No body is read before it is allowed: a POST is refused (403) without reading it when
it comes from another origin, has no session, or needs a signed-in one it lacks, and
(413) when it declares more than :data:`MAX_FORM_BYTES`; a body without a declared
length is read only up to that limit.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from producer.dashboard import (
    auth,
    delivery_page,
    portal,
    search,
    tokens,
    webhook_page,
    webhooks,
)
from producer.dashboard.pages import SESSION_KEY, render, session_of, store_of
from producer.dashboard.sessions import COOKIE_NAME, Session, set_cookie
from producer.http.problems import PAYLOAD_TOO_LARGE, REDIS_UNAVAILABLE, Problem
from producer.http.state import SESSION_AUTHENTICATED
from producer.redis.errors import REDIS_UNAVAILABLE_ERRORS, RedisUnavailable

log = structlog.get_logger("cliq.producer.dashboard")

PREFIX = "/ui"
STATIC_FOLDER = Path(__file__).parent / "static"
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# Routes a signed-out browser may reach.
PUBLIC_ROUTE_NAMES = frozenset({"static", "login", "login-post", *portal.PUBLIC_ROUTE_NAMES})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
# Largest body of a dashboard request: its forms carry a few short fields (the longest,
# a webhook's URL and description, are limited to a few KiB each).
MAX_FORM_BYTES = 64 * 1024


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of the dashboard carries :data:`SECURITY_HEADERS`."""
    headers = portal.security_headers(SECURITY_HEADERS, request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects
        exc.headers.update(headers)
        raise
    response.headers.update(headers)
    return response


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Errors as pages: HTTP errors, problems raised by shared API helpers, Redis outages."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return await render(
            request, "error.html", status=exc.status, title=exc.reason, detail=exc.text or ""
        )
    except Problem as problem:
        return await render(
            request,
            "error.html",
            status=problem.kind.status,
            title=problem.kind.title,
            detail=problem.detail,
        )
    except RedisUnavailable as exc:  # a step that said what it could not do
        return await render(
            request,
            "error.html",
            status=REDIS_UNAVAILABLE.status,
            title=REDIS_UNAVAILABLE.title,
            detail=exc.detail,
        )
    except REDIS_UNAVAILABLE_ERRORS as exc:
        log.warning("redis_unavailable", path=request.path, error=repr(exc))
        return await render(
            request,
            "error.html",
            status=503,
            title="Redis unavailable",
            detail="The dashboard cannot reach Redis right now; try again shortly.",
        )
    except Exception:  # a bug: a page that says so, not the API's JSON problem
        log.exception("dashboard_error", path=request.path)
        return await render(
            request,
            "error.html",
            status=500,
            title="Something went wrong",
            detail="The error was logged. Try again; if it persists, tell the operator.",
        )


@web.middleware
async def session_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Load the session; check CSRF on every POST; require signing in but for the login."""
    route_name = request.match_info.route.name
    if route_name == "static":
        return await handler(request)
    session = await store_of(request).load(request.cookies.get(COOKIE_NAME))
    if session is not None:
        request[SESSION_KEY] = session
    needs_sign_in = route_name not in PUBLIC_ROUTE_NAMES and (
        session is None or not session.signed_in
    )
    if request.method in SAFE_METHODS:
        if needs_sign_in:
            raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(request.path_qs)}")
        response = await handler(request)
    else:
        # Everything that can refuse a POST without its body does so first.
        _check_origin(request)
        if session is None:
            raise _expired_form()
        if needs_sign_in:
            raise web.HTTPForbidden(text="Sign in first.")
        request = _limited(request)
        try:
            await _check_csrf(request, session)
            response = await handler(request)
        except web.HTTPRequestEntityTooLarge:  # a body without Content-Length, read
            raise _form_too_large() from None
    current = session_of(request)  # signing in replaces the session
    if current is not None and current.new:
        set_cookie(request, response, current)
    return response


def _check_origin(request: web.Request) -> None:
    """403 when the browser says the POST comes from another site."""
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        log.warning("dashboard_cross_origin_post", path=request.path)
        raise web.HTTPForbidden(text="This form was sent from another site.")


def _expired_form() -> web.HTTPForbidden:
    return web.HTTPForbidden(
        text="This form has expired (or did not come from this dashboard). "
        "Reload the page and try again."
    )


def _form_too_large() -> Problem:
    return Problem(PAYLOAD_TOO_LARGE, f"A dashboard form may be at most {MAX_FORM_BYTES} bytes.")


def _limited(request: web.Request) -> web.Request:
    """413 when the declared length is over :data:`MAX_FORM_BYTES`; else the request,
    whose form (``request.post()``) is read up to that limit only.

    The API application's own limit is its largest batch (``MAX_BATCH_BYTES``).
    """
    declared = request.content_length
    if declared is not None and declared > MAX_FORM_BYTES:
        raise _form_too_large()
    return request.clone(client_max_size=MAX_FORM_BYTES)


async def _check_csrf(request: web.Request, session: Session) -> None:
    """403 unless the form (or header) carries the session's token."""
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.post()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else ""
    if not session.csrf_matches(presented):
        raise _expired_form()


def create_app() -> web.Application:
    """The dashboard, to mount under :data:`PREFIX` in the API application."""
    app = web.Application(
        middlewares=[security_headers, html_errors, session_gate, portal.portal_gate]
    )
    app[SESSION_AUTHENTICATED] = True
    app.router.add_static("/static/", STATIC_FOLDER, name="static", append_version=True)
    auth.add_routes(app)
    webhooks.add_routes(app)
    webhook_page.add_routes(app)  # after webhooks: /webhooks/new before /webhooks/{id}
    tokens.add_routes(app)
    delivery_page.add_routes(app)
    search.add_routes(app)
    portal.add_routes(app)
    return app
