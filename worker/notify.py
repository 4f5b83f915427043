"""Failure notifications: one email to an endpoint's owner when it turns failing.

Notifications are jobs on their own bullmq queue, so an SMTP outage delays the
emails (bullmq retries them with backoff) but never the deliveries. Without
``SMTP_URL`` the email is written to a local folder and logged: nothing is lost.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import aiosmtplib
import structlog

from producer.endpoint_rules import EndpointNotFound
from producer.endpoints import EndpointRegistry
from producer.events import format_timestamp
from producer.keys import NOTIFICATION_QUEUE
from producer.messages import NotificationJob
from worker.metrics import Metrics

log = structlog.get_logger("cliq.worker.notify")


class NotificationError(RuntimeError):
    """The email could not be handed over; the job is retried."""


def dashboard_page(public_url: str, endpoint_id: str) -> str:
    """The endpoint's dashboard page: absolute under ``PUBLIC_URL``, else its path only."""
    return f"{public_url}/ui/webhooks/{endpoint_id}"


def build_email(
    job: NotificationJob, endpoint_url: str, owner: str, sender: str, public_url: str = ""
) -> EmailMessage:
    """The failure email, to the endpoint's owner: its dashboard page, what failed and
    since when, how to replay from the page; the operator's CLI command below that."""
    failed_at = format_timestamp(datetime.fromtimestamp(job.failed_at_ms / 1000, UTC))
    page = dashboard_page(public_url, job.endpoint_id)
    where = (
        page
        if public_url
        else f"{page} on the dashboard (ask your cliq-webhooks operator for its address)"
    )
    endpoint_id = job.endpoint_id
    gone = job.gone
    message = EmailMessage()
    message["From"] = sender
    message["To"] = owner
    auto = job.reason == "auto_disabled"
    message["Subject"] = (
        f"[cliq-webhooks] Webhook endpoint {endpoint_id} was disabled (410 Gone)"
        if gone
        else f"[cliq-webhooks] Webhook endpoint {endpoint_id} was disabled after failing"
        if auto
        else f"[cliq-webhooks] Webhook endpoint {endpoint_id} is failing"
    )
    if auto:
        return _auto_disabled_email(message, job, endpoint_url, where, failed_at)
    if gone:
        what = (
            "Your webhook endpoint answered 410 Gone, so it has been disabled: its\n"
            "deliveries are paused (kept, no attempt spent) until it is enabled again.\n"
            "If that was a mistake, enable it again with\n\n"
            f"    cliq-webhooks endpoint enable {endpoint_id}\n\n"
            "(the paused deliveries are then sent in publish order), and send the one\n"
            "that got 410 with the replay command below."
        )
    elif job.reason == "refused":
        what = (
            "Your webhook endpoint is now marked as failing: its destination is refused\n"
            "by the destination policy (it is not a public address, see the error below),\n"
            "so the delivery was not sent and is not retried. Deliveries keep being\n"
            "attempted; the endpoint returns to active after its next successful delivery\n"
            "(point its URL, or its DNS, at a public address)."
        )
    else:
        what = (
            "Your webhook endpoint is now marked as failing: a delivery failed every\n"
            "attempt. Deliveries keep being attempted; the endpoint returns to active\n"
            "after its next successful delivery."
        )
    since = "Disabled at" if gone else "Failing since"
    message.set_content(
        f"""{what}

Your webhook's page: {where}

{since}: {failed_at}
What failed: the delivery of event {job.event_id} to {endpoint_url}

Endpoint:   {endpoint_id}
URL:        {endpoint_url}
Event:      {job.event_id}
Delivery:   {job.delivery_id}
Attempts:   {job.attempts} (the last one at {failed_at})
Last error: {job.last_error}

Deliveries that failed every attempt are kept. Once your endpoint answers 2xx
again, replay them from your webhook's page: under "Replay failed deliveries",
set "Failed since" to {failed_at} (or earlier) and press "Replay all failed".
The page also shows each attempt and what your endpoint answered.

For the operator, the same from the command line:

    cliq-webhooks replay --endpoint {endpoint_id}

You get this email once each time the endpoint changes to this state.
"""
    )
    return message


def _auto_disabled_email(
    message: EmailMessage, job: NotificationJob, endpoint_url: str, where: str, since: str
) -> EmailMessage:
    """The email of an endpoint disabled for failing too long (DISABLE_FAILING_AFTER)."""
    endpoint_id = job.endpoint_id
    message.set_content(
        f"""Your webhook endpoint has been failing without a successful delivery since
{since}, so it has been disabled: its deliveries are paused. Nothing is lost: they
are kept, spend no attempt, and are sent in the order they were published once the
endpoint is enabled again, each with the attempts it had left.

Your webhook's page: {where}

Endpoint:     {endpoint_id}
URL:          {endpoint_url}
Failing since: {since}

Once your endpoint answers 2xx again, press "Enable" on your webhook's page. For the
operator, the same from the command line:

    cliq-webhooks endpoint enable {endpoint_id}

You get this email once each time the endpoint is disabled this way.
"""
    )
    return message


class Notifier:
    """The processor of the notification queue."""

    def __init__(
        self,
        *,
        registry: EndpointRegistry,
        smtp_url: str,
        sender: str,
        outbox_dir: str,
        metrics: Metrics,
        public_url: str = "",
    ) -> None:
        """``public_url``: where the owner reaches the dashboard (``PUBLIC_URL``)."""
        self._registry = registry
        self._public_url = public_url
        self._smtp_url = smtp_url
        self._sender = sender
        self._outbox_dir = Path(outbox_dir)
        self._metrics = metrics

    async def process(self, job: Any, _token: str) -> str:
        """Send one notification; raise to have bullmq retry it later."""
        try:
            notification = NotificationJob.from_dict(job.data)
        except ValueError as exc:
            self._metrics.bad_jobs.inc()
            log.error("bad_job", queue=NOTIFICATION_QUEUE, job_id=job.id, error=str(exc))
            return "bad job"
        bound = log.bind(
            endpoint_id=notification.endpoint_id,
            delivery_id=notification.delivery_id,
            event_id=notification.event_id,
        )
        try:
            endpoint = await self._registry.get(notification.endpoint_id)
        except EndpointNotFound:
            bound.info("notification_skipped", reason="endpoint deleted")
            return "endpoint deleted"
        message = build_email(
            notification, endpoint.url, endpoint.owner_email, self._sender, self._public_url
        )
        if not self._smtp_url:
            path = self._write_outbox(message, job.id)
            self._metrics.notifications.labels("outbox").inc()
            bound.warning("notification_written", path=str(path), to=endpoint.owner_email)
            return str(path)
        try:
            await self._send(message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._metrics.notifications.labels("failed").inc()
            bound.warning("notification_failed", error=str(exc), attempt=job.attemptsMade + 1)
            raise NotificationError(str(exc)) from exc
        self._metrics.notifications.labels("sent").inc()
        bound.info("notification_sent", to=endpoint.owner_email)
        return "sent"

    async def _send(self, message: EmailMessage) -> None:
        parts = urlsplit(self._smtp_url)
        if parts.scheme not in ("smtp", "smtps"):
            raise NotificationError(f"SMTP_URL must be smtp:// or smtps://, not {parts.scheme!r}")
        await aiosmtplib.send(
            message,
            hostname=parts.hostname or "localhost",
            port=parts.port or (465 if parts.scheme == "smtps" else 25),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_tls=parts.scheme == "smtps",
            start_tls=None if parts.scheme == "smtp" else False,
            timeout=30,
        )

    def _write_outbox(self, message: EmailMessage, job_id: str) -> Path:
        """Write atomically (temp file, then rename) so a reader never sees half an email."""
        self._outbox_dir.mkdir(parents=True, exist_ok=True)
        target = self._outbox_dir / f"{job_id}.eml"
        fd, tmp = tempfile.mkstemp(dir=self._outbox_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            handle.write(message.as_bytes())
        os.replace(tmp, target)
        return target
