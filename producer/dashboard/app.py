"""The dashboard's sub-application: routes, security headers, sessions and CSRF checks.

Mounted by :func:`producer.http.app.create_app` under :data:`PREFIX` and marked
:data:`producer.http.state.SESSION_AUTHENTICATED`: its requests carry a session cookie instead of
a bearer key. The middlewares, outermost first:

* :func:`security_headers`: a strict Content-Security-Policy (scripts and styles from
  our own static files only, no inline code, no framing) and friends on every answer;
* :func:`html_errors`: errors as HTML pages rather than problem documents;
* :func:`session_gate`: loads the session, refuses any POST whose CSRF token (or
  ``Origin``) does not match, sends a signed-out browser to the login page.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, urlsplit

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler

from producer.dashboard import auth, tokens, webhook_page, webhooks
from producer.dashboard.pages import SESSION_KEY, render, session_of, store_of
from producer.dashboard.sessions import COOKIE_NAME, Session, set_cookie
from producer.http.problems import REDIS_UNAVAILABLE, Problem
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
PUBLIC_ROUTE_NAMES = frozenset({"static", "login", "login-post"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every answer of the dashboard carries :data:`SECURITY_HEADERS`."""
    try:
        response = await handler(request)
    except web.HTTPException as exc:  # redirects
        exc.headers.update(SECURITY_HEADERS)
        raise
    response.headers.update(SECURITY_HEADERS)
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
    if request.method not in SAFE_METHODS:
        await _check_csrf(request, session)
    if route_name not in PUBLIC_ROUTE_NAMES and (session is None or not session.signed_in):
        if request.method in SAFE_METHODS:
            raise web.HTTPSeeOther(f"{PREFIX}/login?next={quote(request.path_qs)}")
        raise web.HTTPForbidden(text="Sign in first.")
    response = await handler(request)
    current = session_of(request)  # signing in replaces the session
    if current is not None and current.new:
        set_cookie(request, response, current)
    return response


async def _check_csrf(request: web.Request, session: Session | None) -> None:
    """403 unless the form (or header) carries the session's token and the origin is ours."""
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        log.warning("dashboard_cross_origin_post", path=request.path)
        raise web.HTTPForbidden(text="This form was sent from another site.")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        form = await request.post()
        field = form.get(CSRF_FIELD)
        presented = field if isinstance(field, str) else ""
    if session is None or not session.csrf_matches(presented):
        raise web.HTTPForbidden(
            text="This form has expired (or did not come from this dashboard). "
            "Reload the page and try again."
        )


def create_app() -> web.Application:
    """The dashboard, to mount under :data:`PREFIX` in the API application."""
    app = web.Application(middlewares=[security_headers, html_errors, session_gate])
    app[SESSION_AUTHENTICATED] = True
    app.router.add_static("/static/", STATIC_FOLDER, name="static", append_version=True)
    auth.add_routes(app)
    webhooks.add_routes(app)
    webhook_page.add_routes(app)  # after webhooks: /webhooks/new before /webhooks/{id}
    tokens.add_routes(app)
    return app
