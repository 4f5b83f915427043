"""The Redis key layout: every key this project writes is named here, and only here.

Python code calls the :class:`Keys` methods; the Lua scripts get the same names
from :func:`lua_prelude`, generated from the same table, so the layout cannot
drift between the two. With a hash-tag prefix such as ``{cliq}`` every key lands
in one Redis Cluster slot, which the scripts (they touch many keys) require.
bullmq's own keys are ``{prefix}:{queue}:*`` (e.g. ``cliq:deliveries:wait``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DELIVERY_QUEUE = "deliveries"
# Scheduled attempts (retries, deferrals) wait in their own queue: bullmq promotes a due
# job to the back of its queue's wait list, which behind a backlog of new deliveries
# would make a retry minutes late. A short list of its own keeps it on time.
RETRY_QUEUE = "retries"
DELIVERY_QUEUES = (DELIVERY_QUEUE, RETRY_QUEUE)
NOTIFICATION_QUEUE = "notifications"

# name -> key after "{prefix}:"; "{}" is the id. The comments are the reference.
LAYOUT: dict[str, str] = {
    # Hash: the delivered body (b, stored once), type (t), workspace (w), created ms (c),
    # deliveries still open (o).
    "event": "evt:{}",
    # List: the delivery ids an event fanned out to.
    "event_deliveries": "evt:{}:dlv",
    # String (TTL: IDEMPOTENCY_WINDOW): an event whose record left Redis for the delivery
    # log's database (worker/logdone.lua); publishing its id again is a duplicate.
    "event_seen": "evt:{}:seen",
    # Hash: event (e), endpoint (p), state (s), attempts made (n), attempts before the
    # current round (r), created (c), updated (u), next due (x), attempt k as JSON (ak).
    "delivery": "dlv:{}",
    # Hash: one endpoint (fields: producer.endpoints.Endpoint.to_hash).
    "endpoint": "ep:{}",
    # Sorted set: an endpoint's deliveries by creation time (ms).
    "endpoint_deliveries": "ep:{}:dlv",
    # Sorted set: an endpoint's delivered deliveries by time of delivery (ms), without
    # DATABASE_URL: beyond LOG_KEEP_PER_ENDPOINT the oldest leave Redis (worker/record.lua).
    "endpoint_done": "ep:{}:done",
    # Sorted set: an endpoint's dead deliveries by time of death (ms), for replay.
    "endpoint_dead": "ep:{}:dead",
    # Hash: requests in flight to an endpoint, as leases: field <worker id> = count,
    # <worker id>:exp = lease expiry (ms), <worker id>:run = requests in flight on them,
    # <worker id>:want = expiry of a recent unmet request (worker/leases.lua).
    "endpoint_leases": "ep:{}:leases",
    # String: the endpoint rate limiter's theoretical arrival time (ms, GCRA).
    "endpoint_rate": "ep:{}:rate",
    # Sorted set: a poll endpoint's unacknowledged deliveries, by their cursor (score:
    # a number from endpoint_feed_seq, in publish order); at most POLL_MAX_PER_ENDPOINT
    # (producer/feed.lua, producer/polling.py).
    "endpoint_feed": "ep:{}:feed",
    # Counter: the last cursor given to a delivery of a poll endpoint's feed.
    "endpoint_feed_seq": "ep:{}:feed:seq",
    # Set: a workspace's endpoint ids.
    "workspace_endpoints": "ws:{}:eps",
    # Counter: bumped by every change to a workspace's endpoints (added, edited, deleted,
    # status). Publishers cache a workspace's subscribers under it; the publish script
    # refuses a stale version, so a cached list is never used after a change.
    "workspace_version": "ws:{}:ver",
    # Sorted set: every endpoint id by creation time (ms).
    "endpoints": "eps",
    # Set: ids of endpoints whose status is failing.
    "failing": "failing",
    # Sorted set: JSON job specs written with their cause, not yet added to bullmq
    # (score: ms written). See producer.jobs.
    "outbox": "outbox",
    # Stream (consumer group "writers"): outcomes recorded (worker/record.lua) and not yet
    # written to the delivery log's database (DATABASE_URL), one entry each: delivery (d),
    # its created ms (c), event (e), endpoint (p), the attempt as JSON (a). Taken, written
    # and deleted by worker/logwriter.py.
    "log_outbox": "log:outbox",
    # Counter: source of unique batch job ids.
    "sequence": "seq",
    # List: new deliveries that did not fill a batch (events published one at a time),
    # oldest at the head, as JSON [delivery id, attempt]. Workers take them as they
    # arrive (worker/pickup.py).
    "ready": "ready",
    # Hash: claim id -> worker id, for every claim a worker holds (see worker/claims.lua).
    "claims": "claims",
    # List (1 week TTL): the ready items of one claim, kept until its worker has
    # attempted them; they go back to the ready list if the worker dies first.
    "claimed": "claimed:{}",
    # String (TTL: JOB_LOCK_TIMEOUT): present while a worker is alive (it renews it).
    "worker": "worker:{}",
    # Hash: deliveries now queued / scheduled / dead (gauges: a replay moves dead to
    # queued), delivered (a total); polling: the queued ones waiting in poll endpoints'
    # feeds (a gauge), poll_dropped: those a full feed pushed out as dead (a total).
    "stats": "stats",
    # List: "send test event" requests from the API, taken by any worker (JSON).
    "test_requests": "test:req",
    # String (60 s): the answer to one test request, by request id (JSON).
    "test_result": "test:res:{}",
    # Hash: a user of the webhook-token module: workspace (w), created ms (c), TOTP
    # secret (s) and one awaiting confirmation (p), both sealed, last accepted TOTP step (n).
    "user": "usr:{}",
    # String (TTL): wrong TOTP codes of a user in the current lockout window.
    "user_totp_failures": "usr:{}:2fa:fail",
    # Sorted set: a user's webhook token ids by creation time (ms); at most 5.
    "user_tokens": "usr:{}:tok",
    # Set: a user's channels and bots ("channel:<name>", "bot:<name>") and apps ("app:<id>").
    "user_resources": "usr:{}:res",
    # String: the user owning a channel or bot; the id is "channel:<name>" or "bot:<name>".
    "resource_owner": "own:{}",
    # Hash: an extension app: owner user (u), name (m), created (c), SHA-256 hex of the
    # sandbox (ks) and marketplace (km) appkeys.
    "app": "app:{}",
    # Hash: a webhook token: owner user (u), name (m), status (s), SHA-256 hex of its
    # secret (h), created ms (c), invocations (i), last invoked ms (l).
    "token": "tok:{}",
    # List: a token's usage history, newest first, capped (JSON entries).
    "token_usage": "tok:{}:use",
    # Hash (TTL): a 2FA session by the SHA-256 hex of its bearer value: user (u),
    # verified ms (v).
    "twofa_session": "2fa:{}",
    # Hash (expires when unused): a dashboard session, by the SHA-256 hex of its cookie
    # value: CSRF token (csrf), signed in (auth: 1), created ms (c), a one-shot notice
    # (flash), the Webhook Tokens screen's user (user) and that user's 2FA session
    # (tfa:<user id>, sealed like secrets).
    "dashboard_session": "ui:ses:{}",
    # List (1 h): the delivery ids one dashboard replay enqueued, to show its progress.
    "dashboard_replay": "ui:rpl:{}",
    # String: a random id written with the first endpoint (SET NX). Every API and worker
    # process remembers it; finding it gone or changed means Redis lost its data
    # (producer.redis_guard).
    "generation": "generation",
}


@dataclass(frozen=True)
class DeliveryFields:
    """Fields of the delivery hash (``LAYOUT["delivery"]``); attempt k is ``attempt`` + k."""

    event: str = "e"
    endpoint: str = "p"
    state: str = "s"
    attempts: str = "n"
    round: str = "r"
    created: str = "c"
    updated: str = "u"
    due: str = "x"
    attempt: str = "a"


@dataclass(frozen=True)
class EventFields:
    """Fields of the event hash (``LAYOUT["event"]``)."""

    body: str = "b"
    type: str = "t"
    workspace: str = "w"
    created: str = "c"
    open: str = "o"


@dataclass(frozen=True)
class LogEntryFields:
    """Fields of a log outbox entry (``LAYOUT["log_outbox"]``)."""

    delivery: str = "d"
    created: str = "c"
    event: str = "e"
    endpoint: str = "p"
    attempt: str = "a"


# The one table of the fields that the scripts and Python share: Python reads these
# objects, the scripts the same names as F.delivery.state etc. (lua_prelude), and
# tests/test_structure.py fails on a script that spells one out.
DELIVERY_FIELDS = DeliveryFields()
EVENT_FIELDS = EventFields()
LOG_ENTRY_FIELDS = LogEntryFields()
FIELDS: dict[str, DeliveryFields | EventFields | LogEntryFields] = {
    "delivery": DELIVERY_FIELDS,
    "event": EVENT_FIELDS,
    "log_entry": LOG_ENTRY_FIELDS,
}


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "cliq"

    def _key(self, name: str, ident: str = "") -> str:
        return f"{self.prefix}:{LAYOUT[name].format(ident)}"

    def event(self, event_id: str) -> str:
        """See ``LAYOUT["event"]``."""
        return self._key("event", event_id)

    def event_deliveries(self, event_id: str) -> str:
        """See ``LAYOUT["event_deliveries"]``."""
        return self._key("event_deliveries", event_id)

    def event_seen(self, event_id: str) -> str:
        """See ``LAYOUT["event_seen"]``."""
        return self._key("event_seen", event_id)

    def delivery(self, delivery_id: str) -> str:
        """See ``LAYOUT["delivery"]``."""
        return self._key("delivery", delivery_id)

    def endpoint(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint"]``."""
        return self._key("endpoint", endpoint_id)

    def endpoint_deliveries(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_deliveries"]``."""
        return self._key("endpoint_deliveries", endpoint_id)

    def endpoint_done(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_done"]``."""
        return self._key("endpoint_done", endpoint_id)

    def endpoint_dead(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_dead"]``."""
        return self._key("endpoint_dead", endpoint_id)

    def endpoint_feed(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_feed"]``."""
        return self._key("endpoint_feed", endpoint_id)

    def endpoint_feed_seq(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_feed_seq"]``."""
        return self._key("endpoint_feed_seq", endpoint_id)

    def workspace_endpoints(self, workspace_id: str) -> str:
        """See ``LAYOUT["workspace_endpoints"]``."""
        return self._key("workspace_endpoints", workspace_id)

    def workspace_version(self, workspace_id: str) -> str:
        """See ``LAYOUT["workspace_version"]``."""
        return self._key("workspace_version", workspace_id)

    @property
    def endpoints(self) -> str:
        """See ``LAYOUT["endpoints"]``."""
        return self._key("endpoints")

    @property
    def failing(self) -> str:
        """See ``LAYOUT["failing"]``."""
        return self._key("failing")

    @property
    def outbox(self) -> str:
        """See ``LAYOUT["outbox"]``."""
        return self._key("outbox")

    @property
    def log_outbox(self) -> str:
        """See ``LAYOUT["log_outbox"]``."""
        return self._key("log_outbox")

    @property
    def ready(self) -> str:
        """See ``LAYOUT["ready"]``."""
        return self._key("ready")

    @property
    def claims(self) -> str:
        """See ``LAYOUT["claims"]``."""
        return self._key("claims")

    def claimed(self, claim_id: str) -> str:
        """See ``LAYOUT["claimed"]``."""
        return self._key("claimed", claim_id)

    def worker(self, worker_id: str) -> str:
        """See ``LAYOUT["worker"]``."""
        return self._key("worker", worker_id)

    @property
    def stats(self) -> str:
        """See ``LAYOUT["stats"]``."""
        return self._key("stats")

    @property
    def test_requests(self) -> str:
        """See ``LAYOUT["test_requests"]``."""
        return self._key("test_requests")

    def test_result(self, request_id: str) -> str:
        """See ``LAYOUT["test_result"]``."""
        return self._key("test_result", request_id)

    def user(self, user_id: str) -> str:
        """See ``LAYOUT["user"]``."""
        return self._key("user", user_id)

    def user_totp_failures(self, user_id: str) -> str:
        """See ``LAYOUT["user_totp_failures"]``."""
        return self._key("user_totp_failures", user_id)

    def user_tokens(self, user_id: str) -> str:
        """See ``LAYOUT["user_tokens"]``."""
        return self._key("user_tokens", user_id)

    def user_resources(self, user_id: str) -> str:
        """See ``LAYOUT["user_resources"]``."""
        return self._key("user_resources", user_id)

    def resource_owner(self, resource: str) -> str:
        """See ``LAYOUT["resource_owner"]``."""
        return self._key("resource_owner", resource)

    def app(self, app_id: str) -> str:
        """See ``LAYOUT["app"]``."""
        return self._key("app", app_id)

    def token(self, token_id: str) -> str:
        """See ``LAYOUT["token"]``."""
        return self._key("token", token_id)

    def token_usage(self, token_id: str) -> str:
        """See ``LAYOUT["token_usage"]``."""
        return self._key("token_usage", token_id)

    def twofa_session(self, digest: str) -> str:
        """See ``LAYOUT["twofa_session"]``."""
        return self._key("twofa_session", digest)

    def dashboard_session(self, digest: str) -> str:
        """See ``LAYOUT["dashboard_session"]``."""
        return self._key("dashboard_session", digest)

    def dashboard_replay(self, replay_id: str) -> str:
        """See ``LAYOUT["dashboard_replay"]``."""
        return self._key("dashboard_replay", replay_id)

    @property
    def generation(self) -> str:
        """See ``LAYOUT["generation"]``."""
        return self._key("generation")

    def queue_key(self, queue: str, suffix: str) -> str:
        """A key of bullmq's layout, e.g. ``queue_key("deliveries", "wait")``."""
        return f"{self.prefix}:{queue}:{suffix}"


def lua_prelude() -> str:
    """Lua that defines ``K.<name>(id)`` for every key of :data:`LAYOUT`, the hash fields
    of :data:`FIELDS` as ``F.<hash>.<name>``, and the name of the delivery queue as
    ``DELIVERY_QUEUE``.

    Scripts receive the prefix as ``ARGV[1]`` (and as their one key, see
    :class:`producer.scripts.Script`).
    """
    lines = [
        "local K = {}",
        "local PREFIX = ARGV[1]",
        f"local DELIVERY_QUEUE = '{DELIVERY_QUEUE}'",
    ]
    for name, template in LAYOUT.items():
        head, _, tail = template.partition("{}")
        if _:
            suffix = f" .. '{tail}'" if tail else ""
            lines.append(f"K.{name} = function(id) return PREFIX .. ':{head}' .. id{suffix} end")
        else:
            lines.append(f"K.{name} = function() return PREFIX .. ':{head}' end")
    lines.append("local F = {}")
    for hash_name, fields in FIELDS.items():
        members = ", ".join(f"{name} = '{field}'" for name, field in asdict(fields).items())
        lines.append(f"F.{hash_name} = {{{members}}}")
    return "\n".join(lines) + "\n"
