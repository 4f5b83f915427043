"""The dashboard's webhook form takes a payload filter (docs/filters.md), refusing a
malformed one under the field with its pointer, in a real browser."""

from __future__ import annotations

from playwright.async_api import Page, expect
from test_dashboard import (
    Dashboard,
    browser,
    context,
    dashboard,
    page,
    producer,
    sign_in,
    subscribe,
)

from producer.context import Producer

from harness import Receiver

# The fixtures imported above are used by name.
__all__ = ["browser", "context", "dashboard", "page", "producer"]


async def test_the_edit_form_sets_checks_shows_and_clears_a_payload_filter(
    page: Page, dashboard: Dashboard, producer: Producer, receiver: Receiver
) -> None:
    endpoint = await subscribe(producer, receiver, events="issue.created")
    await sign_in(page, dashboard, f"/ui/webhooks/{endpoint.id}/edit")
    field = page.get_by_label("Payload filter")
    await field.fill('{"data.priority": {"$in": "high"}}')
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#filter-error")).to_have_text(
        "at /data.priority/$in: $in takes an array, not a string"
    )
    await field.fill("{not json")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator("#filter-error")).to_contain_text("is not valid JSON")
    assert not (await producer.endpoints.get(endpoint.id)).filter  # nothing saved

    await field.fill('{"data.priority": {"$in": ["high", "urgent"]}}')
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_have_text("Webhook saved.")
    saved = await producer.endpoints.get(endpoint.id)
    assert saved.filter.source == {"data.priority": {"$in": ["high", "urgent"]}}
    await expect(page.locator("dl.facts").first).to_contain_text('"$in":["high","urgent"]')

    await page.goto(dashboard.url(f"/ui/webhooks/{endpoint.id}/edit"))
    await expect(field).to_contain_text('"urgent"')  # filled in with the saved filter
    await field.fill("")
    await page.get_by_role("button", name="Save").click()
    await expect(page.locator(".flash")).to_have_text("Webhook saved.")
    assert not (await producer.endpoints.get(endpoint.id)).filter
