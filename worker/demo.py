"""``cliq-webhooks demo``: the whole pipeline on one machine, in about half a minute.

It uses ``REDIS_URL`` when set and otherwise starts a private Redis; keeps the delivery
log in ``DATABASE_URL`` when set, and otherwise in a private PostgreSQL when its server
programs are installed (``make postgres``), migrated either way; runs a worker
in-process with a compressed retry schedule; starts two receivers on 127.0.0.1
(one checks every signature as the seed's Express example does, one always
answers 500); publishes events; and shows the failing endpoint going through
every attempt to ``failing`` and the one email its owner gets. ``--keep`` then leaves
the API, its dashboard and a worker running on that data.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import email
import email.message
import email.policy
import hashlib
import hmac
import json
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from producer import jsonwire, logs
from producer.context import Producer
from producer.endpoint import Endpoint, EndpointStatus
from producer.events import BUILTIN_EVENT_TYPES, example_data, parse_event
from producer.http.app import create_app
from producer.http.state import ApiKeys, ApiSettings
from producer.store.startup import migrate_database
from worker.localpostgres import LocalPostgres, find_postgres_bindir
from worker.localredis import LocalRedis, free_port
from worker.schedule import RetrySchedule
from worker.service import WorkerService
from worker.settings import WorkerSettings

DEMO_SCHEDULE = "0,1,1,2,2"
DEMO_TIMEOUT_S = 120.0


def say(text: str = "") -> None:
    """Narration on stdout (the worker's own logs go to stderr)."""
    print(text, flush=True)


@dataclasses.dataclass
class SeedReceiver:
    """A receiver that verifies like the seed: HMAC of ``JSON.stringify(req.body)``."""

    secret: str = ""
    valid: int = 0
    invalid: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        # express.json() then JSON.stringify(req.body): parse, then re-serialize as JS does.
        restringified = jsonwire.encode(jsonwire.normalize(json.loads(raw)))
        expected = hmac.new(self.secret.encode(), restringified, hashlib.sha256).hexdigest()
        if hmac.compare_digest(request.headers.get("X-Cliq-Signature", ""), expected):
            self.valid += 1
            return web.Response(text="OK")
        self.invalid += 1
        return web.Response(status=401, text="Invalid signature")


@contextlib.asynccontextmanager
async def receivers(good: SeedReceiver) -> AsyncIterator[int]:
    """Serve ``/good`` (the seed receiver) and ``/broken`` (always 500) on a loopback port."""

    async def broken(_request: web.Request) -> web.Response:
        return web.Response(status=500, text="database unavailable")

    app = web.Application()
    app.router.add_post("/good", good.handle)
    app.router.add_post("/broken", broken)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        server = site._server
        assert server is not None
        yield server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    finally:
        await runner.cleanup()


async def log_written(producer: Producer) -> bool:
    """Whether every outcome recorded so far is in the delivery log's database (none
    waits in the log outbox); always, without a database."""
    if not producer.settings.database_url:
        return True
    return int(await producer.redis.xlen(producer.keys.log_outbox)) == 0


def demo_log_level(asked: str) -> str:
    """The narration tells the story; log lines (JSON when not on a terminal) only for
    errors, unless a level other than the default was asked for."""
    return "error" if asked == "info" else asked


def readable_email(path: Path) -> str:
    """An outbox email as its reader sees it: who, what, and the body decoded (the
    file is quoted-printable, whose soft line breaks would cut words in two)."""
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    heads = [f"{name}: {message[name]}" for name in ("From", "To", "Subject") if message[name]]
    body = message.get_body(("plain",))
    text = body.get_content() if body is not None else ""
    return "\n".join(heads) + "\n\n" + str(text).strip()


async def run_demo(settings: WorkerSettings, *, events: int, keep: bool = False) -> int:
    """Run the demo; exit status 0 when everything behaved as documented.

    With ``keep``, the API, its dashboard and a worker then keep running on the demo's
    data until SIGINT/SIGTERM; every temporary folder is removed at the end either way.
    """
    # Before anything logs (the migration does): the narration, not log lines.
    logs.configure(settings.log_format, demo_log_level(settings.log_level))
    local: LocalRedis | None = None
    if not settings.producer.redis_url:
        local = LocalRedis()
        await local.start()
        say(f"Started a private Redis on {local.url} (set REDIS_URL to use yours).")
    redis_url = local.url if local else settings.producer.redis_url
    local_pg: LocalPostgres | None = None
    database_url = settings.producer.database_url
    try:
        if not database_url:
            bindir = find_postgres_bindir()
            if bindir is None:
                say("PostgreSQL is not installed (`make postgres`): the log stays in Redis.")
            else:
                local_pg = LocalPostgres(bindir)
                await local_pg.start()
                database_url = local_pg.url
                say(
                    f"Started a private PostgreSQL on 127.0.0.1:{local_pg.port} for the "
                    "delivery log (set DATABASE_URL to use yours)."
                )
        if database_url:
            migrated = await migrate_database(database_url)
            say(f"The delivery log lives in PostgreSQL (schema version {migrated.version}).")
        return await _run(settings, redis_url, database_url, events, keep)
    finally:
        if local_pg is not None:
            await local_pg.stop()
        if local is not None:
            await local.stop()


async def _run(
    settings: WorkerSettings, redis_url: str, database_url: str, events: int, keep: bool
) -> int:
    """The demo on this Redis and delivery log, with the demo's settings."""
    outbox = Path(tempfile.mkdtemp(prefix="cliq-outbox-")) if not settings.smtp_url else None
    schedule = (
        RetrySchedule.parse(DEMO_SCHEDULE)
        if settings.retry_schedule == RetrySchedule()
        else settings.retry_schedule
    )
    settings = dataclasses.replace(
        settings,
        producer=dataclasses.replace(
            settings.producer,
            redis_url=redis_url,
            database_url=database_url,
            allow_private_destinations=True,
        ),
        retry_schedule=schedule,
        metrics_port=0,
        notify_outbox=str(outbox) if outbox else settings.notify_outbox,
        log_level=demo_log_level(settings.log_level),
    )
    logs.configure(settings.log_format, settings.log_level)
    try:
        return await _demo(settings, events, outbox, keep)
    finally:
        if outbox is not None:
            shutil.rmtree(outbox, ignore_errors=True)


async def _demo(settings: WorkerSettings, count: int, outbox: Path | None, keep: bool) -> int:
    good = SeedReceiver()
    async with receivers(good) as port, Producer(settings.producer) as producer:
        workspace = f"ws_demo_{int(time.time())}"
        healthy = await producer.endpoints.create(
            workspace_id=workspace,
            url=f"http://127.0.0.1:{port}/good",
            events=["issue.*", "comment.created"],
            owner_email="alice@example.com",
            description="verifies signatures like the seed's Express example",
        )
        good.secret = healthy.secret
        broken = await producer.endpoints.create(
            workspace_id=workspace,
            url=f"http://127.0.0.1:{port}/broken",
            events=["*"],
            owner_email="bob@example.com",
            description="always answers 500",
        )
        say(f"Registered {healthy.id} (issue.*, comment.created) and {broken.id} (*, always 500).")
        say(
            f"Retry schedule for the demo: {settings.retry_schedule} seconds "
            "(the real one: 0,60,300,1800,7200)."
        )

        service = WorkerService(settings)
        service.handle_signals()  # before the URL is printed: whoever reads it may stop us
        worker = asyncio.create_task(service.run())
        types = sorted(BUILTIN_EVENT_TYPES)
        batch = [
            parse_event(
                {
                    "type": types[i % len(types)],
                    "workspace_id": workspace,
                    "data": {**example_data(types[i % len(types)]), "n": i, "note": "héllo ✓"},
                },
                producer.catalogue,
                max_payload_bytes=settings.producer.max_payload_bytes,
            )
            for i in range(count)
        ]
        results = await producer.publisher.publish_many(batch)
        again = await producer.publisher.publish(batch[0])
        expected_good = sum(1 for e in batch if healthy.wants(e.type))
        say(
            f"Published {len(batch)} events -> {sum(r.deliveries for r in results)} deliveries; "
            f"publishing {batch[0].id} again created {again.deliveries} (idempotent)."
        )

        started = time.monotonic()
        deadline = started + DEMO_TIMEOUT_S
        failing_at: float | None = None
        while time.monotonic() < deadline:
            current: Endpoint = await producer.endpoints.get(broken.id)
            if failing_at is None and current.status == EndpointStatus.FAILING:
                failing_at = time.monotonic() - started
                say(
                    f"{broken.id} is now FAILING after {failing_at:.1f}s "
                    "(every attempt of a delivery failed)."
                )
            emails = list(outbox.glob("*.eml")) if outbox else []
            if (
                good.valid >= expected_good
                and failing_at is not None
                and (outbox is None or emails)
                and await log_written(producer)
            ):
                break
            await asyncio.sleep(0.25)

        service.stop()
        exit_code = await worker
        say(
            f"\nReceiver checks: {good.valid} deliveries with a valid seed signature, "
            f"{good.invalid} invalid."
        )
        # With a database the finished deliveries have left Redis: read the log there.
        await producer.open_log_store()
        first = (await producer.deliveries.for_endpoint(broken.id, limit=count))[-1]
        say(f"\nAttempts of one delivery to the broken endpoint ({first.id}):")
        for attempt in first.attempts:
            say(
                f"  #{attempt.number} status={attempt.status} {attempt.outcome.value:9} "
                f"latency={attempt.latency_ms:.1f}ms response={attempt.response!r}"
            )
        if producer.log_store is not None:
            counts = await producer.log_store.state_counts()
            shown = ", ".join(f"{n} {state.value}" for state, n in sorted(counts.items()))
            say(f"\nThe delivery log in PostgreSQL: {shown or 'empty'}.")
        if outbox is not None:
            emails = sorted(outbox.glob("*.eml"))
            say(f"\nEmails written (no SMTP_URL set): {len(emails)}")
            if emails:
                say("-" * 60 + "\n" + readable_email(emails[0]) + "\n" + "-" * 60)
        ok = (
            exit_code == 0
            and good.valid >= expected_good
            and good.invalid == 0
            and failing_at is not None
            and len(first.attempts) == settings.retry_schedule.attempts
            and (outbox is None or len(list(outbox.glob("*.eml"))) == 1)
        )
        say(
            "\nDemo "
            + ("finished: everything behaved as documented." if ok else "FAILED: see above.")
        )
        if keep:
            await keep_serving(settings)
        return 0 if ok else 1


async def keep_serving(settings: WorkerSettings) -> None:
    """``demo --keep``: the API with its dashboard and a worker on the demo's Redis, until
    SIGINT/SIGTERM (the worker's handlers stop it; then the API stops too)."""
    key = secrets.token_urlsafe(24)
    api = ApiSettings(
        producer=settings.producer,
        port=free_port(),
        api_keys=ApiKeys.parse(key),
        delivery_timeout=settings.delivery_timeout,
        log_format=settings.log_format,
        log_level=settings.log_level,
    )
    runner = web.AppRunner(create_app(api), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, api.api_host, api.port).start()
        service = WorkerService(settings)
        worker = asyncio.create_task(service.run())
        say(
            f"\nThe API, its dashboard and a worker keep running on the demo's data.\n"
            f"Dashboard: {api.dashboard_url}\nSign-in key: {key}\n"
            "Press Ctrl-C to stop them (the private Redis and temporary folders are removed)."
        )
        await worker
    finally:
        await runner.cleanup()
