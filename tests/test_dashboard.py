"""The dashboard (``/ui/``) driven in Debian's headless Chromium through Playwright.

The API serves on 127.0.0.1 with an API key set, against the private Redis; test sends,
failures and replays go through a real in-process worker on the compressed schedule and
real receivers. Each flow saves a screenshot to ``tests/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import (
    Browser,
    BrowserContext,
    Dialog,
    Page,
    ViewportSize,
    async_playwright,
    expect,
)
from test_tokens import FakeClock

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoints import EndpointRegistry
from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.settings import ProducerSettings
from producer.tokens.context import CLOCK, TOKEN_SYSTEM, Clock
from producer.tokens.registry import MAX_TOKENS, TokenStatus
from producer.tokens.totp import code_at
from producer.tokens.twofactor import SESSION_S
from producer.tokens.users import ResourceKind

from harness import Receiver, ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import PROJECT, RunningWorker, make_event, start_worker, worker_env

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = PROJECT / "tests" / "screenshots"
KEY = "dashboard-key-0123456789abcdef"
PWNED = "<script>window.__pwned=1</script>"
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=390, height=844)


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, for the whole session (never a downloaded build)."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail("/usr/bin/chromium is missing: `make system-deps` installs it", pytrace=False)
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield browser
        finally:
            await browser.close()


@dataclass(frozen=True)
class Dashboard:
    """The API server under test: where it listens, and the token system's clock."""

    base_url: str
    clock: FakeClock
    app: web.Application

    def url(self, path: str) -> str:
        return self.base_url.rstrip("/") + path


@pytest.fixture
async def dashboard(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[Dashboard]:
    """The API (with an API key) on 127.0.0.1; a test send waits 2 s for a worker; the
    delivery log in ``log_env``'s store."""
    settings = ApiSettings.from_env(
        {
            "REDIS_URL": redis_url,
            "API_KEYS": KEY,
            "DELIVERY_TIMEOUT": "2",
            # Receivers run on 127.0.0.1 (the policy's own tests turn it on).
            "ALLOW_PRIVATE_DESTINATIONS": "1",
            **log_env,
        }
    )
    app = create_app(replace(settings, test_send_margin_s=0.0))
    # At a TOTP step boundary, near the real time (the pages show times).
    clock = FakeClock(time.time() // 30 * 30)
    injected: Clock = clock
    app[CLOCK] = injected
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Dashboard(str(server.make_url("/")), clock, app)
    finally:
        await server.close()


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies), desktop sized, allowed to use the clipboard."""
    context = await browser.new_context(viewport=DESKTOP)
    await context.grant_permissions(["clipboard-read", "clipboard-write"])
    try:
        yield context
    finally:
        await context.close()


@pytest.fixture
async def page(context: BrowserContext) -> Page:
    return await context.new_page()


@pytest.fixture
async def producer(redis_url: str, log_env: dict[str, str]) -> AsyncIterator[Producer]:
    """A producer on the private Redis, reading the delivery log from ``log_env``'s store."""
    env = {"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "1", **log_env}
    async with Producer(ProducerSettings.from_env(env)) as p:
        await p.open_log_store()
        yield p


@pytest.fixture
async def worker(
    redis_url: str, tmp_path: Path, log_env: dict[str, str]
) -> AsyncIterator[RunningWorker]:
    """A real worker on the compressed retry schedule (answers test sends too)."""
    running = await start_worker(
        worker_env(redis_url, NOTIFY_OUTBOX=str(tmp_path / "outbox"), **log_env)
    )
    try:
        yield running
    finally:
        await running.stop()


async def screenshot(page: Page, name: str) -> None:
    """Save the whole page as ``tests/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


async def sign_in(page: Page, dashboard: Dashboard, path: str = "/ui/webhooks") -> None:
    await page.goto(dashboard.url(path))
    await page.get_by_label("API key").fill(KEY)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(dashboard.url(path))


async def user_portal_link(dashboard: Dashboard, user_id: str) -> str:
    """A single-use link to the user's own Webhook Tokens screens (the operator's API)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            dashboard.url(f"/v1/users/{user_id}/portal-links"),
            headers={"Authorization": f"Bearer {KEY}"},
        ) as response,
    ):
        assert response.status == 201, await response.text()
        url: str = (await response.json())["url"]
        return url


async def subscribe(
    producer: Producer, receiver: Receiver, description: str = "", events: str = "*"
) -> Endpoint:
    return await producer.endpoints.create(
        workspace_id="ws_1",
        url=receiver.url(),
        events=events.split(","),
        owner_email="owner@example.com",
        description=description,
    )


# ---------------------------------------------------------------- signing in


async def test_signing_in_takes_an_api_key_and_sets_a_protected_session_cookie(
    page: Page, context: BrowserContext, dashboard: Dashboard
) -> None:
    response = await page.goto(dashboard.url("/ui/webhooks"))
    assert response is not None
    assert page.url.startswith(dashboard.url("/ui/login"))
    headers = await response.all_headers()
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "default-src 'none'" in headers["content-security-policy"]

    await page.get_by_label("API key").fill("not-the-key")
    await page.get_by_role("button", name="Sign in").click()
    error = page.locator("#api_key-error")
    await expect(error).to_have_text("This is not one of the server's API keys.")
    await expect(page.get_by_label("API key")).to_have_attribute("aria-invalid", "true")
    await screenshot(page, "login-refused")

    await page.get_by_label("API key").fill(KEY)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(dashboard.url("/ui/webhooks"))
    await expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
    (cookie,) = await context.cookies()
    assert cookie["name"] == "cliq_ui"
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/ui/"
    assert KEY not in cookie["value"]

    await page.get_by_role("button", name="Sign out").click()
    await page.wait_for_url(dashboard.url("/ui/login"))
    await page.goto(dashboard.url("/ui/webhooks"))
    assert page.url.startswith(dashboard.url("/ui/login"))


async def test_the_dashboard_is_exempt_from_the_bearer_key_but_the_api_is_not(
    dashboard: Dashboard,
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(dashboard.url("/ui/login")) as response:
            assert response.status == 200
            assert response.content_type == "text/html"
        async with http.get(dashboard.url("/ui/nowhere"), allow_redirects=False) as response:
            assert response.status == 303  # to the login page, not a 401 problem
            assert response.headers["Location"].startswith("/ui/login?next=")
        async with http.get(dashboard.url("/v1/endpoints")) as response:
            assert response.status == 401
        async with http.post(dashboard.url("/ui/webhooks"), data={"url": "x"}) as response:
            assert response.status == 403  # no session, no CSRF token


async def test_the_cookie_is_secure_behind_a_tls_proxy(dashboard: Dashboard) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(dashboard.url("/ui/login"), headers={"X-Forwarded-Proto": "https"}) as response,
    ):
        cookie = response.cookies["cliq_ui"]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


async def test_without_api_keys_the_dashboard_says_it_is_open(page: Page, redis_url: str) -> None:
    server = TestServer(create_app(ApiSettings.from_env({"REDIS_URL": redis_url})))
    await server.start_server()
    try:
        await page.goto(str(server.make_url("/ui/webhooks")))
        await expect(page.get_by_text("Authentication is off")).to_be_visible()
        await page.get_by_role("button", name="Continue").click()
        await expect(page.get_by_role("heading", name="Webhooks")).to_be_visible()
        await expect(page.locator(".banner.warn")).to_contain_text("API_KEYS")
    finally:
        await server.close()


# ---------------------------------------------------------------- creating a webhook


async def test_create_webhook_shows_errors_by_their_fields_then_the_secret_once(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    await sign_in(page, dashboard)
    await page.get_by_role("link", name="Create Webhook").click()
    await page.get_by_label("Endpoint URL").fill("ftp://example.com/hook")
    await page.get_by_label("Owner email").fill("not an email")
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#url-error")).to_contain_text("must use http or https")
    await expect(page.locator("#owner_email-error")).to_contain_text("is not an email address")
    await expect(page.locator("#events-error")).to_contain_text("select at least one event")
    await expect(page.locator("#workspace_id-error")).to_have_text("is required")
    await screenshot(page, "create-errors")
    assert await producer.endpoints.all() == []

    await page.get_by_label("Endpoint URL").fill(receiver.url())
    await page.get_by_label("Workspace id").fill("ws_1")
    await page.get_by_label("Owner email").fill("owner@example.com")
    await page.get_by_label("Description").fill("Issue tracker sync")
    issue_group = page.get_by_role("group", name="Issue events")
    await issue_group.get_by_label("All issue events").check()
    await page.get_by_role("group", name="Comment events").get_by_label("comment.created").check()
    await page.get_by_role("button", name="Create").click()

    await expect(page.get_by_role("heading", name="Webhook created")).to_be_visible()
    secret = await page.get_by_label("Signing secret").input_value()
    assert secret.startswith("whsec_")
    await page.get_by_role("button", name="Copy").click()
    await expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await screenshot(page, "create-secret")

    (endpoint,) = await producer.endpoints.all()
    assert endpoint.secret == secret
    assert endpoint.events == ("issue.*", "comment.created")
    assert endpoint.description == "Issue tracker sync"

    await page.get_by_role("link", name="Continue to the webhook").click()
    await expect(page.get_by_role("heading", name=receiver.url())).to_be_visible()
    assert secret not in await page.content()  # masked from now on

    await page.goto(dashboard.url("/ui/webhooks"))
    row = page.locator("table.webhooks tbody tr")
    await expect(row).to_have_count(1)
    await expect(row.locator(".badge")).to_have_text("active")
    await expect(row.locator(".rate")).to_have_text("—")


async def test_disable_enable_edit_and_rotate_from_the_detail_page(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver, events="issue.created")
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")

    await page.get_by_role("button", name="Disable").click()
    await expect(page.locator(".flash")).to_have_text(
        "Webhook disabled: its deliveries are paused until you enable it; nothing is lost."
    )
    await expect(page.locator(".heading .badge")).to_have_text("disabled")
    assert (await producer.endpoints.get(endpoint.id)).status == EndpointStatus.DISABLED
    await producer.publisher.publish(make_event(producer, "issue.created"))
    await page.reload()
    await expect(page.locator(".banner.warn")).to_contain_text(
        "its deliveries are paused, nothing is lost. 1 paused delivery waits"
    )
    await expect(page.locator(".banner.warn")).to_contain_text(
        "At most 100,000 are kept (PAUSED_MAX_PER_ENDPOINT): past it the oldest end as failed"
    )
    await page.get_by_role("button", name="Enable").click()
    await expect(page.locator(".heading .badge")).to_have_text("active")

    await page.get_by_role("link", name="Edit").click()
    await expect(page.get_by_label("issue.created")).to_be_checked()
    await page.get_by_label("All events").check()
    await page.get_by_label("Endpoint URL").fill("")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#url-error")).to_have_text("is required")
    await expect(page.get_by_label("All events")).to_be_checked()  # what was typed stays
    await page.get_by_label("Endpoint URL").fill(receiver.url("/v2"))
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_have_text("Webhook saved.")
    changed = await producer.endpoints.get(endpoint.id)
    assert (changed.url, changed.events) == (receiver.url("/v2"), ("*", "issue.created"))

    confirmations: list[str] = []

    async def accept(dialog: Dialog) -> None:
        confirmations.append(dialog.message)
        await dialog.accept()

    page.once("dialog", accept)
    await page.get_by_role("button", name="Rotate secret").click()
    await expect(page.get_by_role("heading", name="Secret rotated")).to_be_visible()
    rotated = await producer.endpoints.get(endpoint.id)
    assert await page.get_by_label("Signing secret").input_value() == rotated.secret
    assert rotated.previous_secret == endpoint.secret
    # The confirmation names the grace the rotation gave.
    grace_h = (rotated.previous_secret_until_ms - time.time() * 1000) / 3_600_000
    assert 23.9 < grace_h <= 24
    assert "For 24 hours X-Cliq-Signature is still made with the old one" in confirmations[0]


async def test_the_webhook_form_sets_fifo_ordering_and_refuses_another(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver, events="issue.created")
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}/edit")
    order = page.get_by_label("Delivery order")
    await expect(order).to_have_value("parallel")
    # A value the list does not offer (a hand-made post) is refused next to the field.
    await order.evaluate("s => { s.options[1].value = 'lifo'; s.value = 'lifo'; }")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#ordering-error")).to_contain_text(
        "must be 'parallel' (the default) or 'fifo', not 'lifo'"
    )
    assert (await producer.endpoints.get(endpoint.id)).ordering == "parallel"
    await page.get_by_label("Delivery order").select_option("fifo")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_have_text("Webhook saved.")
    assert (await producer.endpoints.get(endpoint.id)).ordering == "fifo"
    await expect(page.locator("dl.facts").first).to_contain_text(
        "FIFO: one at a time, in publish order"
    )
    await screenshot(page, "webhook-fifo")
    await page.get_by_role("link", name="Edit").click()
    await expect(page.get_by_label("Delivery order")).to_have_value("fifo")


# ---------------------------------------------------------------- test sends, escaping


async def test_send_test_event_shows_the_answer_and_nothing_from_a_receiver_runs(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver: Receiver,
    worker: RunningWorker,
) -> None:
    receiver.default = ScriptedResponse(200, PWNED)
    hostile = "<img src=x onerror=window.__pwned=2>"
    endpoint = await subscribe(producer, receiver, description=hostile)
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")

    await page.get_by_label("Event type").select_option("comment.created")
    await page.get_by_role("button", name="Send Test Event").click()
    result = page.locator("#test-result")
    await expect(result).to_contain_text("Delivered")
    await expect(result.locator(".status")).to_have_text("200")
    await expect(result.locator("pre.response")).to_have_text(PWNED)
    await expect(page.get_by_text(hostile)).to_be_visible()
    (request,) = receiver.received
    assert request.headers["X-Cliq-Event"] == "comment.created"
    assert request.json()["data"]["body"] == "Looks good to me"

    assert await page.evaluate("window.__pwned") is None
    assert await page.locator("script").count() == 1  # the dashboard's own, nothing else
    assert await page.locator("img").count() == 0
    await screenshot(page, "test-event-escaped")


async def test_a_test_send_nobody_answers_says_so(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver)
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
    await page.get_by_role("button", name="Send Test Event").click()
    await expect(page.locator("#test-result")).to_have_text(
        "No worker answered within 2 s: is a worker running?"
    )
    assert receiver.received == []


# ---------------------------------------------------------------- failing, log, replay


@pytest.mark.both_stores
async def test_an_endpoint_turns_failing_then_replay_recovers_its_deliveries(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker: RunningWorker,
) -> None:
    receiver = await receiver_factory(ScriptedResponse(500, PWNED))
    endpoint = await subscribe(producer, receiver)
    first, second = make_event(producer, "issue.created"), make_event(producer, "member.joined")
    await producer.publisher.publish_many([first, second])
    await sign_in(page, dashboard)

    async def listed_as_failing() -> bool:
        await page.reload()
        return await page.locator("table.webhooks .badge").text_content() == "failing"

    await wait_until(listed_as_failing, 30, interval=0.5, message="never listed as failing")
    await expect(page.locator("table.webhooks .rate")).to_have_text("0%")
    await screenshot(page, "list-failing")

    await page.get_by_role("link", name=receiver.url()).click()
    await expect(page.locator(".banner.bad")).to_contain_text("This webhook is failing")
    log = page.locator("table.log tbody tr")

    async def both_dead() -> bool:  # in the log the page reads (Redis or PostgreSQL)
        return await producer.deliveries.dead_total(endpoint.id) == 2

    await wait_until(both_dead, 10, message="the second delivery never died")
    await page.reload()
    await expect(log).to_have_count(10)  # 5 attempts of each event
    await expect(log.first.locator("pre.excerpt")).to_have_text(PWNED)
    assert await page.evaluate("window.__pwned") is None
    await page.get_by_label("Outcome").select_option("dead")
    await page.get_by_role("button", name="Filter").click()
    await expect(log).to_have_count(2)
    await expect(page.get_by_text("issue.created", exact=True)).to_be_visible()
    await screenshot(page, "detail-failing")

    receiver.default = ScriptedResponse(200, b"fixed")
    # One delivery on its own, from its row of the log ...
    await log.filter(has_text="member.joined").get_by_role("button", name="Replay").click()
    await expect(page.locator(".flash")).to_have_text("Replaying 1 failed delivery.")
    await expect(page.locator(".progress-text")).to_contain_text("1 delivered", timeout=15_000)
    # ... then every failed one since a time: the other one (the first is delivered now).
    await page.get_by_role("button", name="Replay all failed").click()
    await expect(page.locator(".flash")).to_have_text("Replaying 1 failed delivery.")
    await expect(page.locator(".progress-text")).to_have_text(
        "1 delivered, 0 failed again, 0 pending of 1 replayed.", timeout=15_000
    )
    await screenshot(page, "replay-progress")
    for event in (first, second):
        (delivery,) = await producer.deliveries.for_event(event.id)
        assert delivery.state == DeliveryState.DELIVERED
    assert (await producer.endpoints.get(endpoint.id)).status == EndpointStatus.ACTIVE
    await page.get_by_role("button", name="Replay all failed").click()
    await expect(page.locator(".flash")).to_have_text(
        "No failed deliveries since then: nothing to replay."
    )


async def test_bad_log_filters_are_explained_next_to_their_fields(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver)
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
    await page.goto(
        dashboard.url(
            f"/ui/webhooks/{endpoint.id}?since=yesterday&until=2025-01-01T00:00&outcome=lost"
        )
    )
    await expect(page.locator("#since-error")).to_contain_text("'yesterday' is not a date")
    await expect(page.locator("#outcome-error")).to_have_text("Choose an outcome from the list.")


# ---------------------------------------------------------------- CSRF, phone width


async def test_an_unexpected_error_is_a_page_not_a_json_problem(
    page: Page, dashboard: Dashboard, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*_args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(EndpointRegistry, "scan", broken)
    await sign_in(page, dashboard)
    response = await page.reload()
    assert response is not None
    assert response.status == 500
    assert response.headers["content-type"].startswith("text/html")
    await expect(page.get_by_role("heading", name="Something went wrong")).to_be_visible()
    await expect(page.get_by_text("a bug")).to_have_count(0)  # no details for the browser


async def test_a_post_without_the_sessions_csrf_token_is_refused(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver)
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
    status = await page.evaluate(
        """async (path) => (await fetch(path, {method: "POST",
            headers: {"Content-Type": "application/x-www-form-urlencoded"},
            body: "csrf=forged"})).status""",
        f"/ui/webhooks/{endpoint.id}/disable",
    )
    assert status == 403
    await page.locator("form[action$='/disable'] input[name=csrf]").evaluate(
        "input => { input.value = 'stale' }"
    )
    await page.get_by_role("button", name="Disable").click()
    await expect(page.get_by_role("heading", name="Forbidden")).to_be_visible()
    await expect(page.get_by_text("This form has expired")).to_be_visible()
    assert (await producer.endpoints.get(endpoint.id)).status == EndpointStatus.ACTIVE


async def test_pages_fit_a_phone_screen(
    browser: Browser,
    dashboard: Dashboard,
    producer: Producer,
    receiver: Receiver,
    worker: RunningWorker,
) -> None:
    endpoint = await subscribe(producer, receiver, description="A rather long description")
    await producer.publisher.publish(make_event(producer, "issue.created"))
    await receiver.wait_for(1, 10)

    async def attempt_recorded() -> bool:  # the receiver answers before the worker records
        found = await producer.deliveries.for_endpoint(endpoint.id)
        return bool(found and found[0].attempts)

    await wait_until(attempt_recorded, 10, message="the attempt was never recorded")
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
        await expect(page.locator("table.log tbody tr")).to_have_count(1)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        await screenshot(page, "phone-detail")
        await page.goto(dashboard.url("/ui/webhooks/new"))
        assert await page.evaluate(
            "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
        await screenshot(page, "phone-create")
    finally:
        await context.close()


# ---------------------------------------------------------------- webhook tokens, 2FA


async def test_webhook_tokens_behind_2fa_from_enrolment_to_webhook_url(
    page: Page, dashboard: Dashboard, redis_url: str
) -> None:
    clock = dashboard.clock
    await sign_in(page, dashboard)
    await page.get_by_role("link", name="Webhook Tokens").click()
    await page.get_by_label("User id").fill("user_ada")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#workspace_id-error")).to_contain_text("no user 'user_ada' yet")
    await page.get_by_label("Workspace id").fill("ws_1")
    await page.get_by_role("button", name="Continue").click()

    # Enrol, in the user's own session (the operator's has no way to): a QR code and the
    # secret, shown once; the first code confirms it and opens a 2FA session.
    await expect(page.get_by_text("send them their own link")).to_be_visible()
    await expect(page.get_by_role("button", name="Set up 2FA")).to_have_count(0)
    await page.goto(await user_portal_link(dashboard, "user_ada"))
    await page.get_by_role("button", name="Set up 2FA").click()
    await expect(page.locator(".qr svg")).to_be_visible()
    secret = await page.get_by_label("Secret").input_value()
    await page.get_by_label("Authentication code").fill("000000")
    await page.get_by_role("button", name="Continue").click()
    await expect(page.locator("#code-error")).to_have_text("The code is not valid now.")
    await page.get_by_label("Authentication code").fill(code_at(secret, clock()))
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Generated Tokens")).to_be_visible()

    # Generate up to the limit; the value is shown once; one more is refused, saying why.
    values = []
    for number in range(1, MAX_TOKENS + 1):
        await page.get_by_label("Name", exact=True).fill(f"CI {number}")
        await page.get_by_role("button", name="Generate New Token").click()
        values.append(await page.locator("#new-token").input_value())
    assert all(value.startswith("tok_") for value in values)
    await page.get_by_label("Name", exact=True).fill("One too many")
    await page.get_by_role("button", name="Generate New Token").click()
    await expect(page.locator("#name-error")).to_have_text(
        f"You already have {MAX_TOKENS} tokens, the most a user can hold: "
        "delete one to generate another."
    )
    rows = page.locator("table.tokens tbody tr")
    await expect(rows).to_have_count(MAX_TOKENS)
    await screenshot(page, "tokens-limit")

    # Rename by clicking the name.
    token_id = values[0].split(".")[0]
    row = page.locator(f'tr[data-token="{token_id}"]')
    await row.get_by_role("button", name="CI 1", exact=True).click()
    await row.get_by_label("New name of CI 1").fill("Deploy <bot>")
    await row.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_have_text("Token renamed to Deploy <bot>.")
    await expect(row.locator(".rename-toggle")).to_have_text("Deploy <bot>")

    # The status switch: on is its knob on the right of its text, off on the left.
    system = dashboard.app[TOKEN_SYSTEM]
    knob_right = (
        "b => b.querySelector('.knob').getBoundingClientRect().left"
        " > b.querySelector('.switch-text').getBoundingClientRect().left"
    )
    await expect(row.get_by_role("switch")).to_have_attribute("aria-checked", "true")
    assert await row.get_by_role("switch").evaluate(knob_right)
    await row.get_by_role("switch").click()
    await expect(row.get_by_role("switch")).to_have_attribute("aria-checked", "false")
    assert not await row.get_by_role("switch").evaluate(knob_right)
    assert (await system.tokens.get("user_ada", token_id)).status == TokenStatus.DISABLED
    await row.get_by_role("switch").click()
    await expect(row.get_by_role("switch")).to_have_attribute("aria-checked", "true")

    # Copy the id: the button shows on hover.
    id_cell = row.locator(".hover-copy")
    await expect(id_cell.get_by_role("button")).to_be_hidden()
    await id_cell.hover()
    await id_cell.get_by_role("button").click()
    assert await page.evaluate("navigator.clipboard.readText()") == token_id

    # Delete, after a confirmation (dismissed once).
    last = page.locator(f'tr[data-token="{values[-1].split(".")[0]}"]')
    page.once("dialog", lambda dialog: dialog.dismiss())
    await last.get_by_role("button", name=f"Delete CI {MAX_TOKENS}").click()
    await expect(rows).to_have_count(MAX_TOKENS)
    page.once("dialog", lambda dialog: dialog.accept())
    await last.get_by_role("button", name=f"Delete CI {MAX_TOKENS}").click()
    await expect(page.locator(".flash")).to_have_text(f"CI {MAX_TOKENS} deleted.")
    await expect(rows).to_have_count(MAX_TOKENS - 1)
    await screenshot(page, "tokens-table")

    # A use of the token shows in its usage history.
    await system.users.claim("user_ada", ResourceKind.CHANNEL, "general")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            dashboard.url(f"/api/v2/channelsbyname/general/message?zapikey={values[0]}"),
            json={"text": "<b>deployed</b>"},
        ) as response,
    ):
        assert response.status == 202, await response.text()
    await page.reload()
    await expect(row.locator(".invocations")).to_have_text("1")
    await row.get_by_role("link", name=token_id).click()
    await expect(page.get_by_role("heading", name="Deploy <bot>")).to_be_visible()
    usage = page.locator("table.usage tbody tr")
    await expect(usage).to_have_count(1)
    await expect(usage.first).to_contain_text("general")

    # Get Webhook URL: the options follow the module.
    await page.get_by_role("link", name="Get Webhook URL").click()
    dialog = page.get_by_role("dialog")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Channel unique name")).to_have_value("general")
    await expect(dialog.get_by_label("Appkey")).to_be_hidden()
    await dialog.get_by_role("button", name="Show URL").click()
    url = dialog.get_by_label("Webhook URL")
    await expect(url).to_have_value(
        dashboard.url("/api/v2/channelsbyname/general/message?zapikey={zapikey}")
    )
    await expect(dialog.locator(".url-incomplete")).to_be_visible()
    await dialog.get_by_label("Token").fill(values[0])
    await dialog.get_by_role("button", name="Show URL").click()
    await expect(url).to_have_value(
        dashboard.url(f"/api/v2/channelsbyname/general/message?zapikey={values[0]}")
    )
    await expect(dialog.locator(".url-incomplete")).to_be_hidden()
    await dialog.get_by_label("Token").fill(values[1])
    await dialog.get_by_role("button", name="Show URL").click()
    await expect(dialog.locator(".field-error")).to_contain_text("is not the value of token")
    await dialog.get_by_label("Module").select_option("extension_sandbox")
    await expect(dialog.get_by_label("App id")).to_be_visible()
    await expect(dialog.get_by_label("Appkey")).to_be_visible()
    await expect(dialog.locator(".none-owned")).to_be_visible()
    await dialog.get_by_label("Module").select_option("bot_incoming")
    await expect(dialog.get_by_label("Bot unique name")).to_be_visible()
    await dialog.get_by_label("Module").select_option("channel")
    await dialog.get_by_label("Token").fill(values[0])
    await dialog.get_by_role("button", name="Show URL").click()
    await expect(url).to_have_value(
        dashboard.url(f"/api/v2/channelsbyname/general/message?zapikey={values[0]}")
    )
    await screenshot(page, "token-webhook-url")
    await dialog.get_by_role("button", name="Close").click()

    # After 15 minutes every action asks for a code again; then it works again.
    await page.goto(dashboard.url("/ui/tokens/user_ada"))
    clock.advance(SESSION_S)
    await row.get_by_role("switch").click()
    await expect(page.locator(".flash.flash-warning")).to_contain_text(
        "Your 2FA session has expired"
    )
    await expect(page.get_by_label("Authentication code")).to_be_visible()
    assert (await system.tokens.get("user_ada", token_id)).status == TokenStatus.ACTIVE
    await screenshot(page, "tokens-reprompt")
    await page.get_by_label("Authentication code").fill(code_at(secret, clock()))
    await page.get_by_role("button", name="Continue").click()
    await expect(page.get_by_role("heading", name="Generated Tokens")).to_be_visible()
    assert "tfs_" not in str(await page.context.cookies())


async def test_the_create_form_shows_a_refused_destination_under_its_url(
    page: Page, redis_url: str, producer: Producer
) -> None:
    # The destination policy on, as in production (the fixture above turns it off).
    settings = ApiSettings.from_env({"REDIS_URL": redis_url, "ALLOW_PRIVATE_DESTINATIONS": "0"})
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server()
    try:
        new = str(server.make_url("/ui/webhooks/new"))
        await page.goto(new)
        await page.get_by_role("button", name="Continue").click()  # no API_KEYS: no key
        await page.wait_for_url(new)
        await page.get_by_label("Endpoint URL").fill("http://169.254.169.254/latest/meta-data/")
        await page.get_by_label("Workspace id").fill("ws_1")
        await page.get_by_label("Owner email").fill("owner@example.com")
        await (
            page.get_by_role("group", name="Issue events").get_by_label("All issue events").check()
        )
        await page.get_by_role("button", name="Create").click()
        error = page.locator("#url-error")
        await expect(error).to_contain_text(
            "destination 169.254.169.254 is not a public address: it is link-local"
        )
        await expect(error).to_contain_text("set ALLOW_PRIVATE_DESTINATIONS=1")
        await expect(page.get_by_label("Endpoint URL")).to_have_value(
            "http://169.254.169.254/latest/meta-data/"
        )
        await screenshot(page, "create-refused-destination")
        assert await producer.endpoints.all() == []
    finally:
        await server.close()


async def test_the_edit_form_checks_custom_headers_and_timeout_and_rotation_says_when(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver, events="issue.created")
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}/edit")
    await page.get_by_label("Custom headers").fill("Content-Type: text/plain")
    await page.get_by_label("Timeout in seconds").fill("soon")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#headers-error")).to_have_text(
        "Content-Type is set by cliq-webhooks on every delivery"
    )
    await expect(page.locator("#timeout_s-error")).to_have_text("must be a number of seconds")
    await page.get_by_label("Custom headers").fill("X-Team: billing\nAuthorization: Bearer t")
    await page.get_by_label("Timeout in seconds").fill("1000")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#timeout_s-error")).to_contain_text(
        "must be a number of seconds from 0 to"
    )
    assert (await producer.endpoints.get(endpoint.id)).headers == ()  # nothing saved
    await page.get_by_label("Timeout in seconds").fill("1.5")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_have_text("Webhook saved.")
    changed = await producer.endpoints.get(endpoint.id)
    assert changed.headers == (("X-Team", "billing"), ("Authorization", "Bearer t"))
    assert changed.timeout_s == 1.5
    await expect(page.locator("dl.facts").first).to_contain_text("X-Team")

    page.once("dialog", lambda dialog: dialog.accept())
    await page.get_by_role("button", name="Rotate secret").click()
    rotated = await producer.endpoints.get(endpoint.id)
    switch = page.locator("#signature-switch")
    await expect(switch).to_contain_text(str(rotated.signature_switches_at))
    await expect(switch).to_contain_text("is still made with the previous secret")
