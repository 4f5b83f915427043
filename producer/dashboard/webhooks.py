"""The Webhooks screens: seed 000's "Settings → Webhooks".

* ``/ui/webhooks``: every endpoint with its status and the success rate of its recent
  deliveries; ``/ui/webhooks/new``: "Create Webhook" (URL, events grouped by the
  catalogue), then the secret, shown once.
* ``/ui/webhooks/{id}/...``: edit, enable or disable, rotate the secret, delete. The
  endpoint's own page (test sends, delivery log, replay) is
  :mod:`producer.dashboard.webhook_page`; the forms :mod:`.webhook_forms`.

Every read and change goes through the registry and the delivery log
(:mod:`producer.endpoints`, :mod:`producer.deliveries`: listing scans, the delivery-log
scan, summaries) and the test-send protocol (:mod:`producer.testsends`), as the API's
do, so the dashboard applies exactly the API's rules.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlencode

import structlog
from aiohttp import web

from producer.context import Producer
from producer.dashboard.pages import flash_and_redirect, producer_of, render, session_of
from producer.dashboard.search import known_workspaces
from producer.dashboard.webhook_forms import (
    KIND_CHOICES,
    LIST,
    PAGE_SIZE,
    Health,
    WebhookForm,
    endpoint_errors,
    endpoint_id_of,
    event_groups,
    page_url,
)
from producer.deliveries import RECENT_WINDOW
from producer.endpoint import Endpoint, EndpointStatus
from producer.endpoint_rules import MAX_DESCRIPTION_LENGTH, EndpointError
from producer.http.bodies import ENDPOINT_CURSOR, decode_cursor, encode_cursor
from producer.http.problems import redis_deadline

log = structlog.get_logger("cliq.producer.dashboard")


# ---------------------------------------------------------------- the list


async def list_webhooks(request: web.Request) -> web.Response:
    """``GET /ui/webhooks``: endpoints (by workspace, by status), oldest first, with
    their health."""
    producer = producer_of(request)
    raw_status = request.query.get("status", "")
    status = EndpointStatus(raw_status) if raw_status in set(EndpointStatus) else None
    workspace = request.query.get("workspace", "").strip()
    after: tuple[int, str] | None = None
    cursor = request.query.get("cursor")
    if cursor:
        created_ms, endpoint_id = decode_cursor(cursor, ENDPOINT_CURSOR, (int, str))
        after = (created_ms, endpoint_id)
    session = session_of(request)
    bound = session.portal.workspace_id if session and session.portal else None
    async with redis_deadline("Redis is unavailable; the webhooks could not be listed."):
        if bound is not None:  # a portal: its workspace's (few: every publish reads them)
            endpoints = await producer.endpoints.all(workspace_id=bound, status=status)
            next_position = None
        elif workspace:
            endpoints, next_position = await _workspace_page(producer, workspace, status, after)
        else:
            endpoints, next_position = await producer.endpoints.scan(status, after, PAGE_SIZE)
        recents = await asyncio.gather(*(producer.deliveries.recent(e.id) for e in endpoints))
        # The picker's, an operator's only: a portal must not learn the others' names.
        workspaces = [] if bound is not None else await known_workspaces(producer)
    next_link = None
    if next_position:
        params = {"cursor": encode_cursor(ENDPOINT_CURSOR, next_position)}
        if status is not None:
            params["status"] = status.value
        if workspace:
            params["workspace"] = workspace
        next_link = f"{LIST}?{urlencode(params)}"
    return await render(
        request,
        "webhooks.html",
        rows=[(e, Health.of(r)) for e, r in zip(endpoints, recents, strict=True)],
        status_filter=status.value if status else "",
        statuses=[s.value for s in EndpointStatus],
        workspace=workspace,
        workspaces=sorted({*workspaces, workspace} - {""}),
        next_link=next_link,
        window=RECENT_WINDOW,
    )


async def _workspace_page(
    producer: Producer, workspace: str, status: EndpointStatus | None, after: tuple[int, str] | None
) -> tuple[list[Endpoint], tuple[int, str] | None]:
    """A page of one workspace's endpoints (a workspace holds few: read at once)."""
    every = await producer.endpoints.all(workspace_id=workspace, status=status)
    rest = [e for e in every if after is None or (e.created_ms, e.id) > after]
    if len(rest) <= PAGE_SIZE:
        return rest, None
    last = rest[PAGE_SIZE - 1]
    return rest[:PAGE_SIZE], (last.created_ms, last.id)


# ---------------------------------------------------------------- create, edit, delete


async def new_webhook(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/new``: the "Create Webhook" form."""
    return await _form_page(request, WebhookForm(), endpoint=None)


async def _form_page(
    request: web.Request, form: WebhookForm, endpoint: Endpoint | None, status: int = 200
) -> web.Response:
    producer = producer_of(request)
    catalogue = producer.catalogue
    return await render(
        request,
        "webhook_form.html",
        status=status,
        form=form,
        endpoint=endpoint,
        groups=event_groups(catalogue),
        max_description=MAX_DESCRIPTION_LENGTH,
        max_timeout_s=producer.endpoints.max_timeout_s,
        kind_choices=KIND_CHOICES,
    )


async def create_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks``: register the endpoint; its secret is shown this once."""
    form = WebhookForm.from_post(await request.post())
    producer = producer_of(request)
    if not form.check(producer.catalogue, creating=True):
        return await _form_page(request, form, endpoint=None, status=422)
    try:
        async with redis_deadline("Redis is unavailable; the webhook was not created."):
            endpoint = await producer.endpoints.create(
                workspace_id=form.workspace_id,
                kind=form.kind,
                url=form.url,
                events=form.patterns(),
                owner_email=form.owner_email,
                description=form.description,
                headers=form.header_pairs(),
                timeout_s=form.timeout(),
                ordering=form.ordering,
                filter=form.payload_filter().source,
            )
    except EndpointError as exc:
        form.refused(exc)
        return await _form_page(request, form, endpoint=None, status=422)
    log.info("dashboard_endpoint_created", endpoint_id=endpoint.id)
    return await render(request, "secret.html", endpoint=endpoint, rotated=False)


async def edit_webhook(request: web.Request) -> web.Response:
    """``GET /ui/webhooks/{id}/edit``: the form, filled in."""
    endpoint_id = endpoint_id_of(request)
    producer = producer_of(request)
    async with endpoint_errors("Redis is unavailable; the webhook could not be read."):
        endpoint = await producer.endpoints.get(endpoint_id)
    return await _form_page(
        request, WebhookForm.from_endpoint(endpoint, producer.catalogue), endpoint
    )


async def update_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/edit``: change URL, events, owner email, description."""
    endpoint_id = endpoint_id_of(request)
    form = WebhookForm.from_post(await request.post())
    producer = producer_of(request)
    async with endpoint_errors("Redis is unavailable; the webhook was not changed."):
        endpoint = await producer.endpoints.get(endpoint_id)
        form.workspace_id = endpoint.workspace_id  # not editable
        if form.check(producer.catalogue, creating=False):
            try:
                await producer.endpoints.update(
                    endpoint_id,
                    url=form.url,
                    events=form.patterns(),
                    owner_email=form.owner_email,
                    description=form.description,
                    headers=form.header_pairs(),
                    timeout_s=form.timeout(),
                    ordering=form.ordering,
                    filter=form.payload_filter().source,
                )
            except EndpointError as exc:
                form.refused(exc)
    if form.errors:
        return await _form_page(request, form, endpoint, status=422)
    return await flash_and_redirect(request, page_url(endpoint_id), "Webhook saved.")


async def delete_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/delete``: remove it (its queued deliveries end as dead)."""
    endpoint_id = endpoint_id_of(request)
    async with endpoint_errors("Redis is unavailable; the webhook was not deleted."):
        endpoint = await producer_of(request).endpoints.get(endpoint_id)
        await producer_of(request).endpoints.delete(endpoint_id)
    log.info("dashboard_endpoint_deleted", endpoint_id=endpoint_id)
    return await flash_and_redirect(request, LIST, f"Webhook {endpoint.url} deleted.")


# ---------------------------------------------------------------- status and secret


async def enable_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/enable``: deliver again (clears failing); its paused
    deliveries resume in publish order."""
    return await _set_status(
        request,
        EndpointStatus.ACTIVE,
        "Webhook enabled: its paused deliveries are sent in the order they were published.",
    )


async def disable_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/disable``: its deliveries pause until enabled."""
    return await _set_status(
        request,
        EndpointStatus.DISABLED,
        "Webhook disabled: its deliveries are paused until you enable it; nothing is lost.",
    )


async def drop_webhook(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/drop``: disable it, ending its deliveries dead."""
    return await _set_status(
        request,
        EndpointStatus.DISABLED,
        "Webhook disabled with drop: its deliveries end as failed (replayable) until you "
        "enable it.",
        drop=True,
    )


async def _set_status(
    request: web.Request, status: EndpointStatus, done: str, drop: bool = False
) -> web.Response:
    endpoint_id = endpoint_id_of(request)
    async with endpoint_errors("Redis is unavailable; the webhook was not changed."):
        await producer_of(request).pausing.set_status(endpoint_id, status, drop)
    log.info("dashboard_endpoint_status", endpoint_id=endpoint_id, status=status.value, drop=drop)
    return await flash_and_redirect(request, page_url(endpoint_id), done)


async def rotate_secret(request: web.Request) -> web.Response:
    """``POST /ui/webhooks/{id}/rotate-secret``: a new secret, shown this once."""
    endpoint_id = endpoint_id_of(request)
    async with endpoint_errors("Redis is unavailable; the secret was not rotated."):
        endpoint = await producer_of(request).endpoints.rotate_secret(endpoint_id)
    log.info("dashboard_secret_rotated", endpoint_id=endpoint_id)
    return await render(request, "secret.html", endpoint=endpoint, rotated=True)


def add_routes(app: web.Application) -> None:
    """Register the list, the forms and the actions on an endpoint (before its page)."""
    router = app.router
    router.add_get("/webhooks", list_webhooks)
    router.add_post("/webhooks", create_webhook)
    router.add_get("/webhooks/new", new_webhook)
    router.add_get("/webhooks/{id}/edit", edit_webhook)
    router.add_post("/webhooks/{id}/edit", update_webhook)
    router.add_post("/webhooks/{id}/delete", delete_webhook)
    router.add_post("/webhooks/{id}/enable", enable_webhook)
    router.add_post("/webhooks/{id}/disable", disable_webhook)
    router.add_post("/webhooks/{id}/drop", drop_webhook)
    router.add_post("/webhooks/{id}/rotate-secret", rotate_secret)
