"""``make screenshots``: every dashboard screen at 1280 and 390 px, in docs/screenshots/.

Starts what the demo starts (a private Redis, a private PostgreSQL for the delivery log
when its programs are installed, a worker on a compressed retry schedule, receivers on
127.0.0.1: one healthy, one flaky, one always failing) and the API with its dashboard;
publishes events in two workspaces, backfills a week of history into the delivery log
through its store (so the charts have days to show), sends a test event, then drives
Debian's Chromium through every screen and saves ``<screen>-1280.png`` and
``<screen>-390.png``. Run it with ``.venv/bin/python tests/screenshot_tour.py``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import secrets
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from aiohttp import web
from playwright.async_api import Page, ViewportSize, async_playwright

from producer import logs, testlog
from producer.activity import HOUR_MS
from producer.context import Producer
from producer.deliveries import Attempt, AttemptOutcome
from producer.endpoint import Endpoint, EndpointStatus
from producer.events import example_data, parse_event
from producer.http.app import create_app
from producer.http.state import ApiSettings
from producer.publisher import new_delivery_id
from producer.store.logstore import EventRecord, OutcomeRecord
from producer.store.startup import migrate_database
from producer.testsends import request_test_send
from producer.tokens.totp import code_at
from worker.localpostgres import LocalPostgres, find_postgres_bindir
from worker.localredis import LocalRedis, free_port
from worker.schedule import RetrySchedule
from worker.service import WorkerService
from worker.settings import WorkerSettings

PROJECT = Path(__file__).resolve().parent.parent
OUT = PROJECT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
WIDTHS = (ViewportSize(width=1280, height=900), ViewportSize(width=390, height=844))
KEY = secrets.token_urlsafe(24)


async def _receivers() -> tuple[web.AppRunner, int]:
    """/good answers 200, /flaky 500 every other time, /broken always 500."""
    calls = {"flaky": 0}

    async def good(_request: web.Request) -> web.Response:
        return web.Response(text='{"received":true}', content_type="application/json")

    async def flaky(_request: web.Request) -> web.Response:
        calls["flaky"] += 1
        if calls["flaky"] % 2:
            return web.Response(status=500, text="temporarily unavailable")
        return web.Response(text="ok")

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=500, text="<h1>Internal Server Error</h1>")

    app = web.Application()
    app.router.add_post("/good", good)
    app.router.add_post("/flaky", flaky)
    app.router.add_post("/broken", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


@asynccontextmanager
async def _service() -> AsyncIterator[tuple[str, str]]:
    """Redis, PostgreSQL if installed: their URLs (the database's empty without it)."""
    redis = LocalRedis()
    await redis.start()
    postgres: LocalPostgres | None = None
    try:
        bindir = find_postgres_bindir()
        database_url = ""
        if bindir is not None:
            postgres = LocalPostgres(bindir)
            await postgres.start()
            database_url = postgres.url
            await migrate_database(database_url)
        yield redis.url, database_url
    finally:
        if postgres is not None:
            await postgres.stop()
        await redis.stop()


async def _backfill(producer: Producer, endpoints: list[Endpoint], now_ms: int) -> None:
    """A week of made-up history, written through the log store as the workers write it."""
    store = producer.log_store
    if store is None:
        return
    chance = random.Random(18)
    events: list[EventRecord] = []
    outcomes: list[OutcomeRecord] = []
    for hours_ago in range(1, 24 * 6):
        for endpoint in endpoints:
            for _ in range(chance.randint(0, 4)):
                at = now_ms - hours_ago * HOUR_MS - chance.randint(0, HOUR_MS - 1)
                event = parse_event(
                    {
                        "type": "issue.created",
                        "workspace_id": endpoint.workspace_id,
                        "data": example_data("issue.created"),
                    },
                    producer.catalogue,
                    max_payload_bytes=producer.settings.max_payload_bytes,
                    # Its body's created_at is the time the event page shows.
                    now=datetime.fromtimestamp(at / 1000, UTC),
                )
                delivery_id = new_delivery_id()
                events.append(
                    EventRecord(
                        event.id,
                        event.type,
                        endpoint.workspace_id,
                        at,
                        event.body,
                        at,
                        ((delivery_id, endpoint.id),),
                    )
                )
                failing = "broken" in endpoint.url or chance.random() < 0.15
                attempts = 5 if "broken" in endpoint.url else (2 if failing else 1)
                for number in range(1, attempts + 1):
                    last = number == attempts
                    ok = "broken" not in endpoint.url and last
                    outcome = (
                        AttemptOutcome.DELIVERED
                        if ok
                        else (AttemptOutcome.DEAD if last else AttemptOutcome.RETRY)
                    )
                    attempt = Attempt(
                        number,
                        at + (number - 1) * 60_000,
                        200 if ok else 500,
                        None,
                        float(chance.randint(20, 300)),
                        "ok" if ok else "error",
                        outcome,
                    )
                    outcomes.append(OutcomeRecord(delivery_id, at, event.id, endpoint.id, attempt))
    await store.write(events, outcomes)


async def _visit(page: Page, url: str, name: str, opens: str | None = None) -> str:
    """Open ``url``, unfold the ``<details>`` matching ``opens``, save the whole page."""
    await page.goto(url)
    if opens is not None:
        for details in await page.locator(opens).all():
            await details.evaluate("d => { d.open = true }")
    return await _save(page, name)


async def _save(page: Page, name: str) -> str:
    """Save the whole page as it is, as ``<name>-<width>.png``."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    # What sticks out of the screen: a page must never scroll sideways.
    wider = await page.evaluate(
        """(width) => [...document.querySelectorAll("body *")]
            .filter(e => e.getBoundingClientRect().right > width + 1)
            .slice(0, 5).map(e => e.tagName + "." + e.className)""",
        width,
    )
    if wider:
        print(f"{name} at {width} px: wider than the screen: {', '.join(wider)}")
    filename = f"{name}-{width}.png"
    await page.screenshot(path=str(OUT / filename), full_page=True)
    return filename


async def _screens(page: Page, base: str, ids: dict[str, str]) -> list[str]:
    """Every screen at the page's width, signing in on the way."""
    written = [await _visit(page, base + "/ui/login", "login")]
    await page.get_by_label("API key").fill(KEY)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(base + "/ui/webhooks")
    screens = [
        ("webhooks", "/ui/webhooks", None),
        ("webhooks-workspace", f"/ui/webhooks?workspace={ids['workspace']}", None),
        ("webhooks-empty", "/ui/webhooks?status=disabled", None),
        ("webhook-new", "/ui/webhooks/new", None),
        ("webhook-edit", f"/ui/webhooks/{ids['good']}/edit", None),
        ("webhook-healthy", f"/ui/webhooks/{ids['good']}", None),
        ("webhook-failing", f"/ui/webhooks/{ids['broken']}", ".chart details"),
        ("webhook-flaky", f"/ui/webhooks/{ids['flaky']}", None),
        ("delivery", f"/ui/deliveries/{ids['delivery']}", "details.headers"),
        ("delivery-dead", f"/ui/deliveries/{ids['dead']}", "details.headers"),
        ("test-send", ids["test_path"], "details.headers"),
        ("event", f"/ui/events/{ids['event']}", None),
        ("search", "/ui/search", None),
        ("search-results", "/ui/search?q=127.0.0.1", None),
        ("search-nothing", "/ui/search?q=nowhere.example", None),
        ("tokens", "/ui/tokens", None),
        ("not-found", "/ui/deliveries/dlv_gone", None),
    ]
    for name, path, opens in screens:
        written.append(await _visit(page, base + path, name, opens))
    return written + await _create_screens(page, base) + await _token_screens(page, base)


async def _api(base: str, method: str, path: str, body: object = None) -> object:
    """A call with the operator's key; its JSON answer (``None`` when empty)."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(
            method, base + path, json=body, headers={"Authorization": f"Bearer {KEY}"}
        ) as answer,
    ):
        assert answer.status < 300, await answer.text()
        return await answer.json() if answer.status != 204 else None


async def _create_screens(page: Page, base: str) -> list[str]:
    """Create Webhook refusing an empty form, then the secret shown once; the webhook
    is deleted again (the next width's tour shows the same list)."""
    await page.goto(base + "/ui/webhooks/new")
    await page.get_by_role("button", name="Create", exact=True).click()
    await page.wait_for_selector(".field-error")
    written = [await _save(page, "webhook-new-errors")]
    await page.get_by_label("Endpoint URL").fill("https://hooks.example.com/cliq")
    await page.get_by_label("Workspace id").fill("ws_acme")
    await page.get_by_label("Owner email").fill("dave@example.com")
    await page.get_by_role("group", name="Issue events").get_by_label("All issue events").check()
    await page.get_by_role("button", name="Create", exact=True).click()
    await page.wait_for_selector("#secret")
    written.append(await _save(page, "webhook-created"))
    href = await page.get_by_role("link", name="Continue to the webhook").get_attribute("href")
    assert href is not None
    await _api(base, "DELETE", "/v1/endpoints/" + href.rsplit("/", 1)[1])
    return written


async def _portal_link(base: str, path: str, body: dict[str, object]) -> str:
    """A portal link made with the operator's key (``POST {path}``)."""
    made = await _api(base, "POST", path, body)
    assert isinstance(made, dict)
    url: str = made["url"]
    return url


async def _token_screens(page: Page, base: str) -> list[str]:
    """Webhook Tokens: the operator opens a new user (one per width: a TOTP code is
    accepted once), who enrols in their own portal session (QR code), generates two
    tokens and disables one, so the table shows both switch positions; then a
    workspace's read-only portal."""
    width = page.viewport_size["width"] if page.viewport_size else 0
    user = f"user_ada_{width}"
    await page.goto(base + "/ui/tokens")
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("Workspace id").fill("ws_acme")
    await page.get_by_role("button", name="Continue").click()
    await page.wait_for_selector("text=send them their own link")
    written = [await _save(page, "tokens-operator")]
    await page.goto(await _portal_link(base, f"/v1/users/{user}/portal-links", {}))
    await page.get_by_role("button", name="Set up 2FA").click()
    await page.wait_for_selector(".qr svg")
    written.append(await _save(page, "tokens-enrol"))
    secret = await page.get_by_label("Secret").input_value()
    await page.get_by_label("Authentication code").fill(code_at(secret, time.time()))
    await page.get_by_role("button", name="Continue").click()
    values = []
    for name in ("CI deploys", "Alerts bot"):
        await page.get_by_label("Name", exact=True).fill(name)
        await page.get_by_role("button", name="Generate New Token").click()
        values.append(await page.locator("#new-token").input_value())
    await page.locator("table.tokens tbody tr").last.get_by_role("switch").click()
    await page.wait_for_selector('table.tokens [aria-checked="false"]')
    written.append(await _save(page, "tokens-table"))
    # A channel of theirs, posted to once with the first token: its usage history.
    channel = f"deploys{width}"  # a name has one owner: one per width's user
    await _api(base, "PUT", f"/v1/users/{user}/channels/{channel}")
    posted = f"/api/v2/channelsbyname/{channel}/message?zapikey={values[0]}"
    await _api(base, "POST", posted, {"text": "v2.4.1 deployed"})
    token = f"/ui/tokens/{user}/tokens/{values[0].split('.')[0]}"
    written.append(await _visit(page, base + token, "token"))
    written.append(await _visit(page, base + token + "?url=1#webhook-url", "token-webhook-url"))
    # Their next link asks for a code first (a new session, no 2FA session in it).
    await page.goto(await _portal_link(base, f"/v1/users/{user}/portal-links", {}))
    await page.wait_for_selector("text=Authentication code")
    written.append(await _save(page, "tokens-verify"))
    link = await _portal_link(base, "/v1/workspaces/ws_acme/portal-links", {"read_only": True})
    written.append(await _visit(page, link, "portal-read-only"))
    written.append(await _visit(page, link, "portal-link-used"))
    return written


async def _tour(base: str, ids: dict[str, str]) -> list[str]:
    """Every screen, at every width; returns the files written."""
    OUT.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            for viewport in WIDTHS:
                phone = viewport["width"] < 600
                context = await browser.new_context(
                    viewport=viewport, is_mobile=phone, has_touch=phone
                )
                written += await _screens(await context.new_page(), base, ids)
                await context.close()
        finally:
            await browser.close()
    return written


async def main() -> int:
    """Set up, seed, tour; 0 when every screen was saved."""
    logs.configure("console", "warning")
    receivers, port = await _receivers()
    try:
        with tempfile.TemporaryDirectory(prefix="cliq-outbox-") as outbox:
            async with _service() as (redis_url, database_url):
                written = await _run(redis_url, database_url, outbox, port)
    finally:
        await receivers.cleanup()
    print(f"{len(written)} screenshots in {OUT.relative_to(PROJECT)}/")
    return 0


async def _run(redis_url: str, database_url: str, outbox: str, port: int) -> list[str]:
    """A worker and the API on this Redis and log; seed, then tour."""
    env = {
        "REDIS_URL": redis_url,
        "DATABASE_URL": database_url,
        "ALLOW_PRIVATE_DESTINATIONS": "1",
        # The failing endpoint's email goes to a folder of its own, removed after.
        "NOTIFY_OUTBOX": outbox,
    }
    settings = dataclasses.replace(
        WorkerSettings.from_env(env),
        retry_schedule=RetrySchedule.parse("0,1,1,2,2"),
        metrics_port=0,
    )
    api = dataclasses.replace(ApiSettings.from_env({**env, "API_KEYS": KEY}), port=free_port())
    service = WorkerService(settings)
    worker = asyncio.create_task(service.run())
    runner = web.AppRunner(create_app(api), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", api.port).start()
    try:
        ids = await _seed(settings, port)
        return await _tour(f"http://127.0.0.1:{api.port}", ids)
    finally:
        service.stop()
        await worker
        await runner.cleanup()


async def _seed(settings: WorkerSettings, port: int) -> dict[str, str]:
    """Endpoints in two workspaces, events, history, a test send: the ids the tour opens."""
    async with Producer(settings.producer) as producer:
        await producer.open_log_store()
        made = []
        for workspace, path, events, email in (
            ("ws_acme", "good", ["issue.*", "comment.created"], "alice@example.com"),
            ("ws_acme", "flaky", ["*"], "bob@example.com"),
            ("ws_globex", "broken", ["*"], "carol@example.com"),
        ):
            made.append(
                await producer.endpoints.create(
                    workspace_id=workspace,
                    url=f"http://127.0.0.1:{port}/{path}",
                    events=events,
                    owner_email=email,
                    description=f"the {path} receiver",
                    headers=[("Authorization", "Bearer demo-token")] if path == "good" else [],
                )
            )
        good, flaky, broken = made
        await _backfill(producer, made, int(time.time() * 1000))
        batch = [
            parse_event(
                {"type": kind, "workspace_id": workspace, "data": example_data(kind)},
                producer.catalogue,
                max_payload_bytes=producer.settings.max_payload_bytes,
            )
            for kind in ("issue.created", "comment.created", "member.joined")
            for workspace in ("ws_acme", "ws_globex")
        ]
        await producer.publisher.publish_many(batch)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            dead = await producer.deliveries.dead_ids(broken.id)
            done = [d for d in await producer.deliveries.for_endpoint(good.id, 5) if d.attempts]
            # The broken receiver's endpoint shown failing on every screen, at both widths.
            status = (await producer.endpoints.get(broken.id)).status
            if done and len(dead) >= 3 and status == EndpointStatus.FAILING:
                break
            await asyncio.sleep(0.5)
        else:
            raise RuntimeError("the worker did not deliver the seeded events in time")
        await request_test_send(producer.redis, producer.keys, good.id, "issue.created", 10)
        (test, *_) = await testlog.recent(producer.redis, producer.keys, good.id)
        delivered = done[0]
        return {
            "workspace": "ws_acme",
            "good": good.id,
            "flaky": flaky.id,
            "broken": broken.id,
            "delivery": delivered.id,
            "dead": dead[0],
            "event": delivered.event_id,
            "test_path": f"/ui/webhooks/{good.id}/tests/{test.delivery_id}",
        }


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
