"""Portal links in Debian's headless Chromium (issue 18, "Access"): a session a link opens
sees its workspace only, a read-only one changes nothing, links work once and expire
(the injected clock), CSRF and the CSP are as strict as ever, and the portal can be
framed by the allowed origin only. The API serves on 127.0.0.1 against the private Redis.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, BrowserContext, Page, expect
from test_dashboard import CHROMIUM, DESKTOP, browser
from test_tokens import FakeClock

from producer import dashboard
from producer.dashboard.app import CONTENT_SECURITY_POLICY
from producer.dashboard.qr import qr_svg
from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.tokens.context import CLOCK, Clock
from producer.tokens.totp import otpauth_uri
from producer.tokens.twofactor import ISSUER

from harness.polling import wait_until

__all__ = ["browser"]  # the session's Chromium (test_dashboard's fixture)

KEY = "portal-key-0123456789abcdef"
MINE, OTHER = "ws_mine", "ws_other"


@dataclass
class Server:
    """The API under test, its clock, and calls with the operator key."""

    base_url: str
    clock: FakeClock

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                method, self.url(path), json=body, headers={"Authorization": f"Bearer {KEY}"}
            ) as response,
        ):
            text = await response.text()
            assert response.status == status, text
            return await response.json() if text else None

    async def link(self, workspace_id: str = MINE, **body: Any) -> str:
        made = await self.call("POST", f"/v1/workspaces/{workspace_id}/portal-links", body, 201)
        url: str = made["url"]
        return url

    async def endpoint(self, workspace_id: str) -> dict[str, Any]:
        body = {
            "workspace_id": workspace_id,
            "url": "http://127.0.0.1:9/hook",
            "events": ["*"],
            "owner_email": "ops@example.com",
        }
        created: dict[str, Any] = await self.call("POST", "/v1/endpoints", body, 201)
        return created


ServerFactory = Callable[..., Awaitable[Server]]


@pytest.fixture
async def start(redis_url: str) -> AsyncIterator[ServerFactory]:
    """Starts APIs (an operator key, an injected clock) with extra settings."""
    servers: list[TestServer] = []

    async def factory(**env: str) -> Server:
        settings = ApiSettings.from_env(
            {
                "REDIS_URL": redis_url,
                "API_KEYS": KEY,
                "ALLOW_PRIVATE_DESTINATIONS": "1",
                "DELIVERY_TIMEOUT": "1",
                **env,
            }
        )
        app = create_app(settings)
        clock = FakeClock()
        injected: Clock = clock
        app[CLOCK] = injected
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return Server(str(server.make_url("/")), clock)

    try:
        yield factory
    finally:
        for server in servers:
            await server.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    assert CHROMIUM.exists()
    context = await browser.new_context(viewport=DESKTOP)
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


async def csrf_of(page: Page) -> str:
    token = await page.locator('input[name="csrf"]').first.get_attribute("value")
    assert token
    return token


async def post_status(page: Page, path: str, csrf: str, **form: str) -> int:
    """POST a dashboard form from the page's session (its cookies); the status."""
    response = await page.request.post(
        page.url.split("/ui/")[0] + path,
        form={"csrf": csrf, **form},
        max_redirects=0,
        headers={"Origin": page.url.split("/ui/")[0]},
    )
    return response.status


def dashboard_post_routes() -> list[str]:
    """Every POST route of the dashboard, as a template under /ui."""
    return sorted(
        dashboard.PREFIX + route.resource.canonical
        for route in dashboard.create_app().router.routes()
        if route.method == "POST" and route.resource is not None
    )


async def test_a_workspace_session_sees_and_changes_its_workspace_only(
    page: Page, start: ServerFactory
) -> None:
    server = await start()
    mine, theirs = await server.endpoint(MINE), await server.endpoint(OTHER)
    await server.call("PUT", "/v1/users/their_user", {"workspace_id": OTHER}, 201)
    await server.call("PUT", "/v1/users/my_user", {"workspace_id": MINE}, 201)
    event = {"type": "issue.created", "workspace_id": OTHER, "data": {"id": "i1"}}
    published = await server.call("POST", "/v1/events", event, 202)
    delivery = (await server.call("GET", f"/v1/events/{published['id']}"))["deliveries"][0]

    await page.goto(await server.link())
    await expect(page).to_have_url(re.compile(r"/ui/webhooks$"))
    rows = page.locator("table tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(mine["id"])
    csrf = await csrf_of(page)

    # Another workspace's webhook page, log, edit form: the unknown id's 404 page.
    unknown = await page.goto(server.url("/ui/webhooks/ep_nope"))
    assert unknown is not None
    assert unknown.status == 404
    nope_text = await page.locator("main").inner_text()
    tid = theirs["id"]
    for path in (
        f"/ui/webhooks/{tid}",
        f"/ui/webhooks/{tid}/edit",
        f"/ui/webhooks/{tid}/tests/{delivery['id']}",
        f"/ui/webhooks/{tid}/replays/rpl_0123456789abcdef",
    ):
        response = await page.goto(server.url(path))
        assert response is not None
        assert response.status == 404, path
        assert await page.locator("main").inner_text() == nope_text.replace("ep_nope", tid)
    # Its delivery's and event's pages: 404, as for ids that do not exist.
    for path, word in (
        (f"/ui/deliveries/{delivery['id']}", "delivery"),
        (f"/ui/events/{published['id']}", "event"),
    ):
        response = await page.goto(server.url(path))
        assert response is not None
        assert response.status == 404, path
        assert f"There is no {word}" in await page.locator("main").inner_text()
    # Search finds nothing of it, by id or by URL.
    for query in (tid, delivery["id"], published["id"]):
        await page.goto(server.url(f"/ui/search?q={quote(query)}"))
        await expect(page).to_have_url(re.compile(r"/ui/search"))
        assert "Nothing matches" in await page.locator("main").inner_text(), query
    await page.goto(server.url(f"/ui/search?q={quote(theirs['url'])}"))  # mine's URL too
    assert tid not in page.url
    assert tid not in await page.locator("main").inner_text()
    # Its changes: test send, replay, a delivery's replay, edit, delete, status, secret.
    for path in (
        f"/ui/webhooks/{tid}/test",
        f"/ui/webhooks/{tid}/replay",
        f"/ui/webhooks/{tid}/deliveries/{delivery['id']}/replay",
        f"/ui/webhooks/{tid}/edit",
        f"/ui/webhooks/{tid}/delete",
        f"/ui/webhooks/{tid}/disable",
        f"/ui/webhooks/{tid}/rotate-secret",
    ):
        assert await post_status(page, path, csrf) == 404, path
    # Nor through a webhook of its own.
    theirs_via_mine = f"/ui/webhooks/{mine['id']}/deliveries/{delivery['id']}/replay"
    assert await post_status(page, theirs_via_mine, csrf) == 404
    await server.call("GET", f"/v1/endpoints/{tid}")  # still there, untouched
    # Another workspace's user: their tokens screens are 404 too.
    response = await page.goto(server.url("/ui/tokens/their_user"))
    assert response is not None
    assert response.status == 404
    assert await post_status(page, "/ui/tokens/their_user/tokens", csrf, name="x") == 404
    assert await post_status(page, "/ui/tokens", csrf, user_id="their_user") == 404
    # Creating a webhook in another workspace is refused; the form is its workspace's.
    await page.goto(server.url("/ui/webhooks/new"))
    await expect(page.locator("#workspace_id")).to_have_value(MINE)
    create = {"url": "http://127.0.0.1:9/x", "events": "*", "owner_email": "a@example.com"}
    assert await post_status(page, "/ui/webhooks", csrf, workspace_id=OTHER, **create) == 403
    listed = await server.call("GET", f"/v1/endpoints?workspace_id={OTHER}")
    assert [e["id"] for e in listed["items"]] == [tid]


async def test_a_portals_search_pages_through_its_workspaces_webhooks_only(
    page: Page, start: ServerFactory
) -> None:
    server = await start()
    # A full page of another workspace's matches first, then two of mine.
    for _ in range(51):  # PAGE_SIZE + 1
        await server.endpoint(OTHER)
    mine = [(await server.endpoint(MINE))["id"] for _ in range(2)]
    await page.goto(await server.link())
    await page.goto(server.url("/ui/search?q=127.0.0.1:9"))
    rows = page.locator("table.webhooks tbody tr")
    await expect(rows).to_have_count(2)
    text = await page.locator("main").inner_text()
    assert all(endpoint_id in text for endpoint_id in mine)
    await expect(page.get_by_role("link", name="More results →")).to_have_count(0)


async def test_links_work_once_and_expire(browser: Browser, start: ServerFactory) -> None:
    server = await start()
    link = await server.link(ttl_s=60)
    first = await browser.new_context()
    second = await browser.new_context()
    try:
        page = await first.new_page()
        await page.goto(link)
        await expect(page).to_have_url(re.compile(r"/ui/webhooks$"))
        other = await second.new_page()
        response = await other.goto(link)  # used up
        assert response is not None
        assert response.status == 404
        await expect(other.locator("main")).to_contain_text("expired or was already used")
        late = await server.link(ttl_s=60)
        server.clock.advance(61)
        response = await other.goto(late)
        assert response is not None
        assert response.status == 404
        # An expired link signs nobody in.
        await other.goto(server.url("/ui/webhooks"))
        await expect(other).to_have_url(re.compile(r"/ui/login"))
    finally:
        await first.close()
        await second.close()


async def test_a_read_only_session_changes_nothing(page: Page, start: ServerFactory) -> None:
    server = await start()
    mine = await server.endpoint(MINE)
    await server.call("PUT", "/v1/users/my_user", {"workspace_id": MINE}, 201)
    await page.goto(await server.link(read_only=True))
    await expect(page.locator("table tbody tr")).to_have_count(1)
    # Nothing it could not do is offered: no Create Webhook, no other workspaces to pick.
    await expect(page.get_by_role("link", name="Create Webhook")).to_have_count(0)
    await expect(page.locator("#workspace")).to_have_count(0)
    csrf = await csrf_of(page)
    # Every form on its pages, submitted as the browser would: 403.
    forms: set[str] = set()
    for path in (
        "/ui/webhooks",
        f"/ui/webhooks/{mine['id']}",
        f"/ui/webhooks/{mine['id']}/edit",
        "/ui/webhooks/new",
        "/ui/tokens/my_user",
    ):
        await page.goto(server.url(path))
        actions = await page.locator('form[method="post"]').evaluate_all(
            "forms => forms.map(f => new URL(f.action).pathname)"
        )
        forms.update(a for a in actions if a != "/ui/logout")
    assert f"/ui/webhooks/{mine['id']}/disable" in forms
    for action in sorted(forms):
        assert await post_status(page, action, csrf) == 403, action
    # Every POST route of the dashboard (but signing out).
    values = {"id": mine["id"], "delivery": "dlv_x", "user_id": "my_user", "token_id": "tok_x"}
    for template in dashboard_post_routes():
        if template == "/ui/logout":
            continue
        path = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], template)
        assert await post_status(page, path, csrf) == 403, path
    # And through the page itself: the refusal is shown.
    await page.goto(server.url(f"/ui/webhooks/{mine['id']}"))
    await page.get_by_role("button", name="Disable").first.click()
    await expect(page.locator("main")).to_contain_text("read-only")
    assert (await server.call("GET", f"/v1/endpoints/{mine['id']}"))["status"] == "active"


async def test_csrf_and_the_csp_are_unchanged_in_a_portal(page: Page, start: ServerFactory) -> None:
    server = await start()
    mine = await server.endpoint(MINE)
    await page.goto(await server.link())
    response = await page.goto(server.url("/ui/webhooks"))
    assert response is not None
    headers = await response.all_headers()
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert headers["x-frame-options"] == "DENY"
    # Without the session's CSRF token, or from another origin, nothing changes.
    assert await post_status(page, f"/ui/webhooks/{mine['id']}/disable", "wrong") == 403
    cross = await page.request.post(
        server.url(f"/ui/webhooks/{mine['id']}/disable"),
        form={"csrf": await csrf_of(page)},
        headers={"Origin": "http://evil.example"},
        max_redirects=0,
    )
    assert cross.status == 403
    assert (await server.call("GET", f"/v1/endpoints/{mine['id']}"))["status"] == "active"
    # The cookie of a session that cannot be framed: Lax.
    (cookie,) = await page.context.cookies()
    assert cookie["sameSite"] == "Lax"


async def parent_page(frame_url: str) -> tuple[TestServer, str]:
    """A page of another origin that frames ``frame_url``."""

    async def framing(_request: web.Request) -> web.Response:
        html = f'<!doctype html><title>Product</title><iframe src="{frame_url}"></iframe>'
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", framing)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server, str(server.make_url("/"))


async def test_the_portal_is_framed_by_the_allowed_origin_only(
    browser: Browser, start: ServerFactory, unused_tcp_port_factory: Callable[[], int]
) -> None:
    allowed_port = unused_tcp_port_factory()
    allowed = f"http://127.0.0.1:{allowed_port}"
    server = await start(
        PORTAL_FRAME_ANCESTORS=allowed,
        PORTAL_BRAND_NAME="Acme Hooks",
        PORTAL_ACCENT_COLOR="#0a7d5a",
    )
    await server.endpoint(MINE)

    async def framing(_request: web.Request) -> web.Response:
        html = f'<!doctype html><title>Product</title><iframe src="{link}"></iframe>'
        return web.Response(text=html, content_type="text/html")

    link = await server.link()
    product = web.Application()
    product.router.add_get("/", framing)
    runner = web.AppRunner(product)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", allowed_port)
    await site.start()
    context = await browser.new_context()
    try:
        page = await context.new_page()
        await page.goto(allowed + "/")
        frame = page.frame_locator("iframe")
        await expect(frame.get_by_role("heading", name="Webhooks")).to_be_visible()
        await expect(frame.locator("a.brand")).to_have_text("Acme Hooks")
        accent = await frame.locator("a.brand").evaluate(
            "a => getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()"
        )
        assert accent == "#0a7d5a"
        cookies = await context.cookies(server.url("/ui/webhooks"))
        assert [(c["sameSite"], c["secure"]) for c in cookies] == [("None", True)]

        # Another origin: the browser refuses to show the dashboard in its frame.
        other_server, other_url = await parent_page(await server.link())
        try:
            other = await context.new_page()
            await other.goto(other_url)
            (framed,) = [f for f in other.frames if f != other.main_frame]
            # Chromium answers a frame-ancestors refusal with its own error page.
            await wait_until(
                lambda: framed.url.startswith("chrome-error://"), 10, message=framed.url
            )
            await expect(
                other.frame_locator("iframe").get_by_role("heading", name="Webhooks")
            ).to_have_count(0)
        finally:
            await other_server.close()
    finally:
        await context.close()
        await runner.cleanup()


async def test_a_users_link_opens_their_own_tokens_and_2fa_only(
    page: Page, start: ServerFactory
) -> None:
    server = await start()
    mine = await server.endpoint(MINE)
    await server.call("PUT", "/v1/users/ada", {"workspace_id": MINE}, 201)
    await server.call("PUT", "/v1/users/bob", {"workspace_id": MINE}, 201)
    made = await server.call("POST", "/v1/users/ada/portal-links", None, 201)
    assert made["user_id"] == "ada"
    await page.goto(made["url"])
    await expect(page).to_have_url(re.compile(r"/ui/tokens/ada$"))
    await expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    await page.get_by_role("button", name="Set up 2FA").click()
    qr = page.locator(".qr svg")
    await expect(qr).to_be_visible()
    box = await qr.bounding_box()
    assert box is not None
    assert box["width"] > 100
    secret = await page.get_by_label("Secret").input_value()
    # The QR code is of the secret shown: the very otpauth:// URI, drawn on the server.
    found = re.search(r' d="([^"]+)"', qr_svg(otpauth_uri(secret, "ada", ISSUER)))
    assert found is not None
    await expect(qr.locator("path")).to_have_attribute("d", found[1])
    # The operator never reads it: not in the user, and the API refuses to enrol.
    assert secret not in str(await server.call("GET", "/v1/users/ada"))
    await server.call("POST", "/v1/users/ada/2fa/enroll", None, 403)
    # Nothing else: not the webhooks, not another user.
    for path in ("/ui/webhooks", f"/ui/webhooks/{mine['id']}", "/ui/tokens/bob", "/ui/tokens"):
        response = await page.goto(server.url(path))
        assert response is not None
        assert response.status == 404, path
