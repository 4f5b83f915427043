"""The failure email speaks to the endpoint's owner: through a real worker and real SMTP."""

from __future__ import annotations

from datetime import UTC, datetime

from producer.context import Producer
from producer.deliveries import DeliveryState
from producer.events import format_timestamp
from producer.messages import NotificationJob
from worker.notify import build_email

from harness import ReceiverFactory, ScriptedResponse, SmtpServer
from support import PROJECT, make_event, start_worker, worker_env

PUBLIC_URL = "https://hooks.example.com"


async def test_the_email_links_the_dashboard_page_says_what_failed_since_when_and_how_to_replay(
    redis_url: str,
    producer: Producer,
    receiver_factory: ReceiverFactory,
    smtp_server: SmtpServer,
) -> None:
    receiver = await receiver_factory(default=ScriptedResponse(status=500, body="boom"))
    ep = await producer.endpoints.create(
        workspace_id="ws_1", url=receiver.url(), events=["*"], owner_email="owner@example.com"
    )
    worker = await start_worker(
        worker_env(
            redis_url, RETRY_SCHEDULE="0", SMTP_URL=smtp_server.url, PUBLIC_URL=PUBLIC_URL + "/"
        )
    )
    try:
        published = await producer.publisher.publish(make_event(producer))
        (message,) = await smtp_server.wait_for(1, 15)
    finally:
        await worker.stop()
    (delivery,) = await producer.deliveries.for_event(published.event_id)
    assert delivery.state == DeliveryState.DEAD
    last = delivery.attempts[-1]
    since = format_timestamp(datetime.fromtimestamp(last.at_ms / 1000, UTC))
    text = message.text
    page = f"Your webhook's page: {PUBLIC_URL}/ui/webhooks/{ep.id}\n"
    assert page in text
    assert f"Failing since: {since}\n" in text
    assert f"What failed: the delivery of event {published.event_id} to {receiver.url()}" in text
    assert "Last error: HTTP 500" in text
    assert '"Replay failed deliveries"' in text
    assert '"Replay all failed"' in text
    # The owner's way comes first, the operator's command below it.
    command = f"cliq-webhooks replay --endpoint {ep.id}"
    assert text.index(page) < text.index('"Replay all failed"') < text.index(command)
    assert "For the operator" in text[: text.index(command)]
    # The page the email sends the owner to has what it names.
    template = (PROJECT / "producer/dashboard/templates/webhook.html").read_text()
    for words in ("Replay failed deliveries", "Failed since", "Replay all failed"):
        assert words in template


def test_without_public_url_the_email_gives_the_pages_path() -> None:
    job = NotificationJob("ep_1", "dlv_1", "evt_1", 5, "HTTP 500", 1_700_000_000_000)
    text = build_email(job, "https://r.example/h", "o@example.com", "s@example.com").get_content()
    assert "Your webhook's page: /ui/webhooks/ep_1 on the dashboard (ask your" in text
    assert "Failing since: 2023-11-14T22:13:20Z" in text
    gone = NotificationJob("ep_1", "dlv_1", "evt_1", 1, "HTTP 410", 1_700_000_000_000, "gone")
    assert (
        "Disabled at: 2023-11-14T22:13:20Z"
        in build_email(
            gone, "https://r.example/h", "o@example.com", "s@example.com", PUBLIC_URL
        ).get_content()
    )
