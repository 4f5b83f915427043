"""The dashboard's views of what was sent, driven in Debian's headless Chromium.

A delivery's page (its exact body, the headers each attempt carried, each answer), an
event's, the charts of deliveries over time, search and the workspace picker, test
sends in the log, and what the phone view must keep. Real worker, real receivers, the
delivery log in Redis or PostgreSQL; the fixtures are :mod:`test_dashboard`'s.
"""

from __future__ import annotations

import re
import time
from itertools import pairwise

import aiohttp
import pytest
import test_dashboard
from playwright.async_api import Browser, Page, expect
from test_dashboard import KEY, PHONE, Dashboard, screenshot, sign_in, subscribe

from producer.activity import DAY_MS, HOUR_MS
from producer.context import Producer
from producer.deliveries import Delivery, DeliveryState

from harness import Receiver, ReceiverFactory, ScriptedResponse
from harness.polling import wait_until
from support import LOG_STORES, RunningWorker, make_event

# test_dashboard's fixtures, which pytest finds by these names.
browser = test_dashboard.browser
dashboard = test_dashboard.dashboard
context = test_dashboard.context
page = test_dashboard.page
producer = test_dashboard.producer
worker = test_dashboard.worker

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


async def delivered(producer: Producer, event_id: str, endpoint_id: str | None = None) -> str:
    """The id of the event's delivery (to ``endpoint_id``, if given), once delivered and
    in the log the pages read."""

    async def mine() -> list[Delivery]:
        found = await producer.deliveries.for_event(event_id)
        return [d for d in found if endpoint_id in (None, d.endpoint_id)]

    async def done() -> bool:
        found = await mine()
        return bool(found) and found[0].state == DeliveryState.DELIVERED

    await wait_until(done, 15, message=f"{event_id} was never delivered")
    (delivery,) = await mine()
    return delivery.id


async def api_get(dashboard: Dashboard, path: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {KEY}"}) as http,
        http.get(dashboard.url(path)) as response,
    ):
        return response.status, await response.json(content_type=None)


# ---------------------------------------------------------------- what was sent


@pytest.mark.parametrize("log_env", LOG_STORES, indirect=True)
async def test_a_log_row_opens_the_exact_body_the_headers_each_attempt_carried_and_answers(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker: RunningWorker,
) -> None:
    receiver = await receiver_factory()
    receiver.script(ScriptedResponse(500, "try later"))
    endpoint = await producer.endpoints.create(
        workspace_id="ws_1",
        url=receiver.url(),
        events=["*"],
        owner_email="owner@example.com",
        headers=[("Authorization", "Bearer very-secret-token")],
    )
    event = make_event(producer, "issue.created", data={"title": "Ünïcode ✓"})
    await producer.publisher.publish(event)
    delivery_id = await delivered(producer, event.id)
    first, second = await receiver.wait_for(2, 10)

    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
    rows = page.locator("table.log tbody tr")
    await expect(rows).to_have_count(2)
    await rows.first.locator("td").first.get_by_role("link").click()
    await page.wait_for_url(dashboard.url(f"/ui/deliveries/{delivery_id}"))

    await expect(page.locator("#sent-body")).to_have_text(first.body.decode())
    assert first.body == second.body == event.body
    attempts = page.locator("article.attempt")
    await expect(attempts).to_have_count(2)
    for article, sent in ((attempts.nth(0), second), (attempts.nth(1), first)):
        await article.locator("details.headers summary").click()
        for name in (
            "X-Cliq-Signature",
            "webhook-id",
            "webhook-timestamp",
            "webhook-signature",
            "X-Cliq-Delivery",
            "X-Cliq-Attempt",
            "X-Cliq-Event",
            "User-Agent",
        ):
            cell = article.locator(f'td[data-label="{name}"]')
            await expect(cell).to_have_text(sent.headers[name])
        hidden = article.locator('td[data-label="Authorization"]')
        await expect(hidden).to_contain_text("hidden")
    await expect(attempts.nth(1).locator("pre.response")).to_have_text("try later")
    await expect(attempts.nth(1).locator(".status")).to_have_text("500")
    html = await page.content()
    assert "very-secret-token" not in html
    assert endpoint.secret not in html
    await screenshot(page, "delivery-page")

    # The API reads the same: the delivery, and the event itself beside its deliveries.
    status, body = await api_get(dashboard, f"/v1/deliveries/{delivery_id}")
    assert status == 200
    assert (body["event_id"], body["state"], len(body["attempts"])) == (  # type: ignore[arg-type]
        event.id,
        "delivered",
        2,
    )
    status, body = await api_get(dashboard, f"/v1/events/{event.id}")
    assert status == 200
    assert body["event"] == {
        "id": event.id,
        "type": "issue.created",
        "workspace_id": "ws_1",
        "created_at": first.json()["created_at"],
        "data": {"title": "Ünïcode ✓"},
    }
    assert [d["id"] for d in body["deliveries"]] == [delivery_id]  # type: ignore[attr-defined]
    status, _ = await api_get(dashboard, "/v1/deliveries/dlv_nowhere")
    assert status == 404

    # The event's page lists its deliveries.
    await page.get_by_role("link", name=event.id).click()
    await expect(page.get_by_role("heading", name=f"Event {event.id}")).to_be_visible()
    await expect(page.locator("#event-body")).to_have_text(event.body.decode())
    await expect(page.locator("table.deliveries tbody tr")).to_have_count(1)


# ---------------------------------------------------------------- the chart


@pytest.mark.parametrize("log_env", LOG_STORES, indirect=True)
async def test_the_charts_count_delivered_retried_and_dead_attempts_from_the_log(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker: RunningWorker,
) -> None:
    receiver = await receiver_factory()
    receiver.script(ScriptedResponse(500), ScriptedResponse(500))
    endpoint = await subscribe(producer, receiver)
    doomed = await subscribe(producer, await receiver_factory(ScriptedResponse(503)))
    event = make_event(producer)
    await producer.publisher.publish(event)
    await delivered(producer, event.id, endpoint.id)

    async def dead() -> bool:
        return await producer.deliveries.dead_total(doomed.id) == 1

    await wait_until(dead, 15, message="the doomed delivery never died")
    now = int(time.time() * 1000)

    async def counted() -> bool:  # the PostgreSQL log is written within a second
        counts = await producer.deliveries.outcome_counts(doomed.id, now - HOUR_MS, HOUR_MS)
        return sum(counts.values()) == 5

    await wait_until(counted, 10, message="the doomed attempts never reached the log")
    hour = now - now % HOUR_MS
    day = now - now % DAY_MS
    by_hour = await producer.deliveries.outcome_counts(endpoint.id, now - HOUR_MS, HOUR_MS)
    assert {k: v for k, v in by_hour.items() if k[0] == hour} == {
        (hour, "retry"): 2,
        (hour, "delivered"): 1,
    }
    by_day = await producer.deliveries.outcome_counts(doomed.id, day, DAY_MS)
    assert by_day == {(day, "retry"): 4, (day, "dead"): 1}
    assert await producer.deliveries.outcome_counts(endpoint.id, now + HOUR_MS, HOUR_MS) == {}

    await sign_in(page, dashboard, f"/ui/webhooks/{doomed.id}")
    for chart_id in ("#chart-hours", "#chart-days"):
        chart = page.locator(chart_id)
        await expect(chart.locator('[data-total="delivered"]')).to_have_text("0")
        await expect(chart.locator('[data-total="retried"]')).to_have_text("4")
        await expect(chart.locator('[data-total="dead"]')).to_have_text("1")
        svg = chart.locator("svg[role=img]")
        await expect(svg).to_have_accessible_name(re.compile("4 retried, 1 dead"))
        # Without colour: each outcome has its own fill pattern, named in the legend.
        fills = await chart.locator("rect.seg").evaluate_all(
            "rects => rects.map(r => r.getAttribute('fill'))"
        )
        assert sorted(set(fills)) == [f"url({chart_id}-dead)", f"url({chart_id}-retried)"]
        await expect(chart.locator(".legend")).to_contain_text("dead (cross-hatched)")
        await chart.locator("summary").click()
        await expect(chart.locator("table.chart-data tbody tr")).to_have_count(1)
    hours = page.locator("#chart-hours g.bar")
    await expect(hours).to_have_count(24)
    await expect(hours.last.locator("title")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\dT\d\d:00Z: 0 delivered, 4 retried, 1 dead$")
    )
    await expect(page.locator("#chart-days g.bar")).to_have_count(7)  # DELIVERY_RETENTION
    await screenshot(page, "charts")


# ---------------------------------------------------------------- finding things


@pytest.mark.parametrize("log_env", LOG_STORES, indirect=True)
async def test_search_finds_endpoints_by_url_or_id_events_and_deliveries(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver: Receiver,
    worker: RunningWorker,
) -> None:
    endpoint = await subscribe(producer, receiver)
    other = await producer.endpoints.create(
        workspace_id="ws_2",
        url=receiver.url("/second"),
        events=["*"],
        owner_email="owner@example.com",
    )
    event = make_event(producer)
    await producer.publisher.publish(event)
    delivery_id = await delivered(producer, event.id)
    await sign_in(page, dashboard)

    search = page.get_by_role("searchbox")
    await search.fill(receiver.url("/"))
    await search.press("Enter")
    rows = page.locator("table.webhooks tbody tr")
    await expect(rows).to_have_count(2)
    await screenshot(page, "search-results")
    await search.fill("/SECOND")  # any case
    await search.press("Enter")
    await page.wait_for_url(dashboard.url(f"/ui/webhooks/{other.id}"))  # one match: opened

    for text, lands in (
        (endpoint.id, f"/ui/webhooks/{endpoint.id}"),
        (event.id, f"/ui/events/{event.id}"),
        (delivery_id, f"/ui/deliveries/{delivery_id}"),
    ):
        await page.goto(dashboard.url("/ui/search"))
        await page.get_by_role("searchbox").fill(text)
        await page.get_by_role("button", name="Search").click()
        await page.wait_for_url(dashboard.url(lands))

    await page.goto(dashboard.url("/ui/search?q=nowhere.example"))
    await expect(page.locator(".empty")).to_contain_text("Nothing matches nowhere.example")
    await page.goto(dashboard.url("/ui/search"))
    await expect(page.locator(".empty")).to_contain_text("Type an endpoint URL")


async def test_the_workspace_picker_filters_the_list_and_says_when_it_is_empty(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    await subscribe(producer, receiver)
    await producer.endpoints.create(
        workspace_id="ws_2", url=receiver.url("/b"), events=["*"], owner_email="b@example.com"
    )
    await sign_in(page, dashboard)
    rows = page.locator("table.webhooks tbody tr")
    await expect(rows).to_have_count(2)
    await page.get_by_label("Workspace").select_option("ws_2")
    await page.get_by_role("button", name="Filter").click()
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(receiver.url("/b"))
    await expect(page.get_by_label("Workspace")).to_have_value("ws_2")
    await page.get_by_label("Status").select_option("disabled")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator(".empty")).to_have_text(
        "No webhooks in workspace ws_2 with status disabled. Show every webhook."
    )


async def test_the_list_pages_on_within_a_workspace(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    made = [
        await producer.endpoints.create(
            workspace_id="ws_many",
            url=receiver.url(f"/{n}"),
            events=["*"],
            owner_email="o@example.com",
        )
        for n in range(51)  # PAGE_SIZE + 1
    ]
    await sign_in(page, dashboard, "/ui/webhooks?workspace=ws_many")
    rows = page.locator("table.webhooks tbody tr")
    await expect(rows).to_have_count(50)
    await page.get_by_role("link", name="More webhooks →").click()
    await expect(rows).to_have_count(1)
    # The list is oldest first by (creation ms, id): two made in the same millisecond
    # come in the order of their ids.
    last = max(made, key=lambda e: (e.created_ms, e.id))
    await expect(rows.first).to_contain_text(last.url)


async def test_search_results_page_on(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    for n in range(51):  # PAGE_SIZE + 1
        await producer.endpoints.create(
            workspace_id="ws_many",
            url=receiver.url(f"/paged/{n}"),
            events=["*"],
            owner_email="o@example.com",
        )
    await sign_in(page, dashboard, "/ui/search?q=/PAGED/")
    rows = page.locator("table.webhooks tbody tr")
    await expect(rows).to_have_count(50)
    more = page.get_by_role("link", name="More results →")
    await more.click()
    await expect(rows).to_have_count(1)
    await expect(more).to_have_count(0)


# ---------------------------------------------------------------- the log's rows


@pytest.mark.parametrize("log_env", LOG_STORES, indirect=True)
async def test_the_delivery_log_pages_on_and_says_when_a_filter_matches_nothing(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver: Receiver,
    worker: RunningWorker,
) -> None:
    endpoint = await subscribe(producer, receiver)
    await producer.publisher.publish_many([make_event(producer, data={"n": n}) for n in range(51)])

    async def logged() -> bool:  # in the log the page reads (PostgreSQL: a moment later)
        return (await producer.deliveries.recent(endpoint.id)).delivered == 51

    await wait_until(logged, 20, message="the 51 deliveries never reached the log")
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
    rows = page.locator("table.log tbody tr")
    await expect(rows).to_have_count(50)
    older = page.get_by_role("link", name="Older attempts →")
    await older.click()
    await expect(rows).to_have_count(1)
    await expect(older).to_have_count(0)
    await page.goto(dashboard.url(f"/ui/webhooks/{endpoint.id}?outcome=dead"))
    await expect(page.locator("#log .empty")).to_have_text("No attempts match these filters.")


async def test_test_sends_appear_in_the_log_marked_as_tests_and_open_what_was_sent(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver: Receiver,
    worker: RunningWorker,
) -> None:
    endpoint = await subscribe(producer, receiver)
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
    await expect(page.locator("#log .empty")).to_contain_text("No attempts yet")
    await page.get_by_label("Event type").select_option("comment.created")
    await page.get_by_role("button", name="Send Test Event").click()
    await expect(page.locator("#test-result")).to_contain_text("Delivered")
    (sent,) = receiver.received

    row = page.locator("table.log tbody tr.test-row")
    await expect(row).to_have_count(1)
    await expect(row.locator(".badge-test")).to_have_text("test")
    await expect(row).to_contain_text("comment.created")
    assert (await producer.deliveries.for_endpoint(endpoint.id)) == []  # not a delivery
    await row.get_by_role("link").click()
    await expect(page.get_by_role("heading", name=re.compile("^Test send"))).to_be_visible()
    await expect(page.locator("#sent-body")).to_have_text(sent.body.decode())
    await page.locator("details.headers summary").click()
    for name in ("X-Cliq-Signature", "webhook-signature", "webhook-timestamp"):
        await expect(page.locator(f'td[data-label="{name}"]')).to_have_text(sent.headers[name])
    await screenshot(page, "test-send-page")


@pytest.mark.parametrize("log_env", LOG_STORES, indirect=True)
async def test_a_replayed_delivery_since_delivered_has_no_replay_button(
    page: Page,
    dashboard: Dashboard,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    worker: RunningWorker,
) -> None:
    receiver = await receiver_factory(ScriptedResponse(500))
    endpoint = await subscribe(producer, receiver)
    event = make_event(producer)
    await producer.publisher.publish(event)

    async def dead() -> bool:
        return await producer.deliveries.dead_total(endpoint.id) == 1

    await wait_until(dead, 15, message="the delivery never died")
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}?outcome=dead")
    row = page.locator("table.log tbody tr")
    await expect(row.get_by_role("button", name="Replay")).to_have_count(1)
    receiver.default = ScriptedResponse(200)
    await row.get_by_role("button", name="Replay").click()
    await expect(page.locator(".progress-text")).to_contain_text("1 delivered", timeout=15_000)
    await delivered(producer, event.id)
    await page.goto(dashboard.url(f"/ui/webhooks/{endpoint.id}?outcome=dead"))
    await expect(row).to_have_count(1)  # the attempt that died stays in the log ...
    await expect(row.get_by_role("button", name="Replay")).to_have_count(0)  # ... its button not
    await expect(row).to_contain_text("replayed: now delivered")


# ---------------------------------------------------------------- dates, phones


async def test_times_are_iso_utc_in_text_and_in_the_time_fields(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver)
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
    created = page.locator("dl.facts dd").filter(has_text=re.compile(r"^\d{4}-"))
    assert ISO_UTC.match(await created.first.inner_text())
    for field in ("Failed since (UTC)", "Since (UTC)", "Until (UTC)"):
        await expect(page.get_by_label(field, exact=True)).to_have_attribute("type", "text")
    since = await page.get_by_label("Failed since (UTC)").input_value()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\dZ", since)
    await page.get_by_label("Since (UTC)", exact=True).fill("2025-01-15T10:30Z")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_label("Since (UTC)", exact=True)).to_have_value("2025-01-15T10:30Z")
    await expect(page.locator(".field-error")).to_have_count(0)


async def test_on_a_phone_cells_are_labelled_and_the_navigation_is_one_line(
    browser: Browser,
    dashboard: Dashboard,
    producer: Producer,
    receiver: Receiver,
    worker: RunningWorker,
) -> None:
    endpoint = await subscribe(producer, receiver, description="A rather long description")
    event = make_event(producer)
    await producer.publisher.publish(event)
    delivery_id = await delivered(producer, event.id)
    context = await browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    try:
        page = await context.new_page()
        await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}")
        for path in (
            "/ui/webhooks",
            f"/ui/webhooks/{endpoint.id}",
            f"/ui/deliveries/{delivery_id}",
            f"/ui/events/{event.id}",
            f"/ui/search?q={receiver.url('/')}",
        ):
            await page.goto(dashboard.url(path))
            assert await page.evaluate(
                "document.documentElement.scrollWidth <= document.documentElement.clientWidth"
            ), path
            header = await page.locator("header.top").bounding_box()
            assert header is not None
            assert header["height"] < 60, path  # one line
            # Side by side, none over another, all on the screen, the brand not cut.
            items = page.locator("header.top .brand, header.top nav a, header.top .signout")
            boxes = await items.evaluate_all(
                "items => items.map(i => { const r = i.getBoundingClientRect();"
                " return [r.left, r.right]; })"
            )
            assert len(boxes) == 5, path
            edges = sorted(boxes)
            assert all(a[1] <= b[0] for a, b in pairwise(edges)), (path, edges)
            assert edges[-1][1] <= PHONE["width"], (path, edges)
            brand = page.locator("header.top .brand")
            await expect(brand).to_have_text("cliq-webhooks")  # "cliq" shows on a phone
            assert await brand.evaluate("a => a.scrollWidth <= a.clientWidth"), path
            # Every cell with more than buttons in it says which column it is.
            unlabelled = await page.locator(".table-wrap table td:not([data-label])").evaluate_all(
                """cells => cells.filter(td => {
                    const copy = td.cloneNode(true);
                    copy.querySelectorAll("form, button").forEach(e => e.remove());
                    return copy.textContent.trim() !== "";
                }).map(td => td.outerHTML)"""
            )
            assert unlabelled == [], path
        await page.goto(dashboard.url(f"/ui/webhooks/{endpoint.id}"))
        cell = page.locator('table.log tbody td[data-label="Latency"]').first
        label = await cell.evaluate("td => getComputedStyle(td, '::before').content")
        assert label == '"Latency: "'
        await screenshot(page, "phone-log-labelled")
    finally:
        await context.close()
