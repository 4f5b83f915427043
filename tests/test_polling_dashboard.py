"""The dashboard's side of poll endpoints: the Create Webhook form's kind, in a real
browser (the fixtures of tests/test_dashboard.py)."""

from __future__ import annotations

from playwright.async_api import Page, expect
from test_dashboard import (  # noqa: F401  # fixtures, found by pytest through the import
    Dashboard,
    browser,
    context,
    dashboard,
    page,
    producer,
    sign_in,
)

from producer.context import Producer
from producer.endpoint_kind import EndpointKind


async def test_the_create_form_makes_a_poll_endpoint_without_a_url(
    page: Page,  # noqa: F811
    dashboard: Dashboard,  # noqa: F811
    producer: Producer,  # noqa: F811
) -> None:
    await sign_in(page, dashboard)
    await page.get_by_role("link", name="Create Webhook").click()
    await page.get_by_label("Kind").select_option("poll")
    await page.get_by_label("Endpoint URL").fill("https://example.com/hook")
    await page.get_by_label("Workspace id").fill("ws_1")
    await page.get_by_role("group", name="Issue events").get_by_label("All issue events").check()
    await page.get_by_role("button", name="Create").click()
    await expect(page.locator("#url-error")).to_contain_text("a poll endpoint has no URL")
    assert await producer.endpoints.all() == []

    await page.get_by_label("Endpoint URL").fill("")
    await page.get_by_role("button", name="Create").click()
    await expect(page.get_by_role("heading", name="Webhook created")).to_be_visible()
    (endpoint,) = await producer.endpoints.all()
    assert endpoint.kind == EndpointKind.POLL
    assert endpoint.url == ""
    assert endpoint.owner_email == ""

    await page.goto(dashboard.url(f"/ui/webhooks/{endpoint.id}"))
    await expect(page.get_by_role("heading", name=f"Poll endpoint {endpoint.id}")).to_be_visible()
    await page.goto(dashboard.url("/ui/webhooks"))
    await expect(page.locator("table.webhooks tbody tr")).to_contain_text(f"(poll) {endpoint.id}")
