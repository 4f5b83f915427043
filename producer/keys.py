"""The Redis key layout: every key this project writes is named here, and only here.

Python code calls the :class:`Keys` methods; the Lua scripts get the same names
from :func:`lua_prelude`, generated from the same table, so the layout cannot
drift between the two. With a hash-tag prefix such as ``{cliq}`` every key lands
in one Redis Cluster slot, which the scripts (they touch many keys) require.
bullmq's own keys are ``{prefix}:{queue}:*`` (e.g. ``cliq:deliveries:wait``).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass

from producer.fields import FIELDS

DELIVERY_QUEUE = "deliveries"
# Scheduled attempts (retries, deferrals) wait in their own queue: bullmq promotes a due
# job to the back of its queue's wait list, which behind a backlog of new deliveries
# would make a retry minutes late. A short list of its own keeps it on time.
RETRY_QUEUE = "retries"
DELIVERY_QUEUES = (DELIVERY_QUEUE, RETRY_QUEUE)
NOTIFICATION_QUEUE = "notifications"
# Operational events waiting to be published into the operations workspace
# (producer.operations; a worker publishes each: worker/operations.py).
OPERATIONS_QUEUE = "operations"

# name -> key after "{prefix}:"; "{}" is the id. The comments are the reference.
LAYOUT: dict[str, str] = {
    # Hash: the delivered body (b, stored once), type (t), workspace (w), created ms (c),
    # deliveries still open (o), and for an event of one delivery its id (s) and
    # endpoint (p) (producer/fields.py EventFields).
    "event": "evt:{}",
    # List: the delivery ids an event of more than one delivery fanned out to (one of a
    # single delivery, most events, keeps it in its hash instead: a key fewer to write,
    # read and expire; forget.lua's fan_out_of reads either).
    "event_deliveries": "evt:{}:dlv",
    # Hash (TTL): idempotency markers of events whose records left Redis (for the delivery
    # log's database, worker/logdone.lua, or past LOG_KEEP_PER_ENDPOINT, record.lua): field
    # = MARKER_DIGEST_BYTES of the SHA-1 of the event id after its shard, value 1;
    # publishing a marked id again is a duplicate. The id is "<window s>:<bucket>:<shard>":
    # the window (s) a marker lasts at least (IDEMPOTENCY_WINDOW, or DELIVERY_RETENTION
    # without DATABASE_URL), the bucket (its written time // window, so a bucket expires at
    # the end of the next one: publish checks both) and the first hex digits of the digest,
    # as many as the bucket's width (marker_bucket), so that each hash stays small and
    # listpack-encoded (producer/markers.lua).
    "event_seen": "seen:{}",
    # Hash (TTL: its bucket's): one bucket of markers, by "<window s>:<bucket>": its shard
    # width (F.marker_bucket.width, hex digits: set by its first writer from the previous
    # bucket's count, see MARKER_SHARD_TARGET; absent: MARKER_SHARD_HEX_UNKNOWN, as every
    # bucket written before widths adapted) and the markers written in it
    # (F.marker_bucket.count).
    "marker_bucket": "seenb:{}",
    # String: the window (s) of the markers written last, by which publish finds them; a
    # changed window hides the markers of the old one.
    "marker_window": "seenw",
    # Hash: event (e), endpoint (p), state (s), attempts made (n), attempts before the
    # current round (r), created (c), updated (u), next due (x), attempt k as JSON (ak).
    "delivery": "dlv:{}",
    # Hash: one endpoint (fields: producer.endpoint.Endpoint.to_hash).
    "endpoint": "ep:{}",
    # Sorted set: an endpoint's deliveries by creation time (ms), for the delivery log of
    # Redis (without DATABASE_URL: with it the database has the index).
    "endpoint_deliveries": "ep:{}:dlv",
    # Sorted set: an endpoint's delivered deliveries by time of delivery (ms), without
    # DATABASE_URL: beyond LOG_KEEP_PER_ENDPOINT the oldest leave Redis (worker/record.lua).
    "endpoint_done": "ep:{}:done",
    # Sorted set: an endpoint's dead deliveries by time of death (ms), for replay; with
    # DATABASE_URL only those not written yet (then the database has them: worker/logdone.lua).
    "endpoint_dead": "ep:{}:dead",
    # Sorted set: an endpoint's paused deliveries (it is disabled, or they wait to be
    # resumed) by publish order (the delivery's F.delivery.order); at most
    # PAUSED_MAX_PER_ENDPOINT (producer/pause.lua, docs/endpoint-states.md).
    "endpoint_paused": "ep:{}:paused",
    # List (TTL: DELIVERY_RETENTION): an endpoint's latest test sends, newest first, as
    # JSON (producer.testlog.TestSend), capped; the dashboard's log shows them as tests.
    "endpoint_tests": "ep:{}:tests",
    # Hash: requests in flight to an endpoint, as leases: field <worker id> = count,
    # <worker id>:exp = lease expiry (ms), <worker id>:run = requests in flight on them,
    # <worker id>:want = expiry of a recent unmet request (worker/leases.lua).
    "endpoint_leases": "ep:{}:leases",
    # String: the endpoint rate limiter's theoretical arrival time (ms, GCRA).
    "endpoint_rate": "ep:{}:rate",
    # List: a FIFO endpoint's deliveries waiting for their turn, in publish order (ids;
    # producer/fifo.lua). Only the one named by endpoint_fifo_head is ever enqueued.
    "endpoint_fifo": "ep:{}:fifo",
    # String: the delivery of a FIFO endpoint whose turn it is (queued, in flight or
    # scheduled for a retry); the next waits until it is delivered or dead.
    "endpoint_fifo_head": "ep:{}:fifo:head",
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
    # Sorted set: every endpoint id by creation time (ms). With PARTITIONS > 1 each
    # partition has its own (its endpoints), written with them in one transaction.
    "endpoints": "eps",
    # Hash, in partition 0, only with PARTITIONS > 1: endpoint id -> the partition (its
    # workspace's) that holds it, so that a lookup by id alone (an operator's API key,
    # the CLI) reads one partition instead of probing each. Written before the endpoint
    # is (so no endpoint a caller was told of is missing from it), removed after it is
    # deleted (producer.routing).
    "endpoint_partitions": "eps:part",
    # Hash (TTL), PARTITIONS > 1 only: which workspace published an event id, in the
    # partition of the id's own hash (producer/claims.py), so that an id is one
    # workspace's across partitions as it is with one partition. The id is
    # "<window s>:<bucket>:<shard>" (IDEMPOTENCY_WINDOW buckets, CLAIM_SHARD_HEX hex digits
    # of the id's SHA-1), field = the next 16 hex digits, value = the workspace's tag
    # (8 hex digits of its SHA-1); a bucket lasts until the next one ends.
    "event_claim": "claim:{}",
    # Set: ids of endpoints whose status is failing.
    "failing": "failing",
    # Set: ids of endpoints enabled (or deleted) with paused deliveries left, which the
    # workers re-enqueue in publish order (worker/resume.py).
    "resuming": "resuming",
    # Counter: the publish order of events (publish.lua), kept on each delivery.
    "publish_sequence": "pubseq",
    # Sorted set: JSON job specs written with their cause, not yet added to bullmq
    # (score: ms written). See producer.jobs.
    "outbox": "outbox",
    # Stream (consumer group "writers"): outcomes recorded (worker/record.lua) and not yet
    # written to the delivery log's database (DATABASE_URL), one entry each: delivery (d),
    # its created ms (c), event (e), endpoint (p), the attempt as JSON (a). Taken, written
    # and deleted by worker/logwriter.py.
    "log_outbox": "log:outbox",
    # Hash, in partition 0: log-writer process id -> "<ms>:<1 while its writes fail, else
    # 0>", renewed every second by each `cliq-webhooks log-writer` and removed when it
    # stops (a field not renewed for 10 s is dropped by its readers), so that workers
    # which leave the writing to them can tell whether the log is written (worker/logwatch.py).
    "log_writers": "log:writers",
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
    # (tfa:<user id>, sealed like secrets); a portal link's grant (portal:w, portal:r,
    # portal:u: producer.portal_links.PortalGrant).
    "dashboard_session": "ui:ses:{}",
    # List (1 h): the delivery ids one dashboard replay enqueued, to show its progress.
    "dashboard_replay": "ui:rpl:{}",
    # Hash: a workspace-scoped API key: workspace (w), name (m), scopes (s, comma-separated),
    # SHA-256 hex of its secret (h), created ms (c), last used ms (l). producer.api_keys.
    "api_key": "key:{}",
    # Sorted set: every API key id by creation time (ms).
    "api_keys": "keys",
    # Hash (TTL: the link's ttl_s): an unused portal link by the SHA-256 hex of its value:
    # workspace (w), user (u, a user's own link), read only (r: 1), expires ms (x).
    "portal_link": "ui:lnk:{}",
    # String: a random id written with the first endpoint (SET NX). Every API and worker
    # process remembers it; finding it gone or changed means Redis lost its data
    # (producer.redis_guard).
    "generation": "generation",
    # String: the PARTITIONS this Redis was written with, in partition 0 (set by the first
    # process; a process configured otherwise refuses to start: producer.partitioning).
    "partitions": "partitions",
}


# A bucket of markers has 16 ** width hashes, its width (hex digits of the digest) chosen
# when it is first written (producer/markers.lua marker_width, the one rule): the
# narrowest from MARKER_SHARD_HEX_MIN to MARKER_SHARD_HEX_MAX for which the markers of the
# previous bucket would be at most MARKER_SHARD_TARGET per hash. A hash stays listpack-
# encoded (14-25 B a marker) up to the server's hash-max-listpack-entries and turns into
# a hashtable (about 60 B a marker) past it. The setting is not read: 128 is assumed, the
# lowest these widths are made for (Redis's default is 512), and 100 leaves room for the
# spread between shards and a rate rising by a quarter from one bucket to the next.
# Width 0 (one hash) serves up to 100 markers per window, 1 up to 1,600, 2 up to 25,600,
# 3 up to 409,600 (4.7 events/s over 24 h), 4 up to 6.6 M (76/s), 5 up to 105 M
# (1,200/s), 6 up to 1.7 G (19,000/s) and beyond: a low rate needs few hashes, whose own
# cost (about 100 B each) would otherwise dominate its markers'.
MARKER_SHARD_HEX_MIN = 0
MARKER_SHARD_HEX_MAX = 6
# The width of a bucket without a stored one (every marker written before widths adapted
# had this fixed width, so it must stay 3), and of a bucket whose previous bucket has no
# count (the first one, or one after a quiet window): wide enough for a burst.
MARKER_SHARD_HEX_UNKNOWN = 3
MARKER_SHARD_TARGET = 100
# Bytes of the event id's SHA-1 in its marker's field, after the shard's: 64 bits or more.
MARKER_DIGEST_BYTES = 8


# The claims' hashes per bucket (16 ** CLAIM_SHARD_HEX): partitions are for high rates,
# where 65,536 hashes keep each small (listpack) up to ~8 M events a window.
CLAIM_SHARD_HEX = 4


def event_marker(
    event_id: str, window_s: int, now_s: int, width: int = MARKER_SHARD_HEX_UNKNOWN
) -> tuple[str, bytes]:
    """The ``LAYOUT["event_seen"]`` id and field of an event's marker written at
    ``now_s`` by Redis's clock in a bucket of shard width ``width`` (its
    ``LAYOUT["marker_bucket"]``'s; producer/markers.lua computes the same)."""
    digest = hashlib.sha1(event_id.encode()).hexdigest()
    bucket = now_s // window_s
    field = bytes.fromhex(digest[width : width + 2 * MARKER_DIGEST_BYTES])
    return f"{window_s}:{bucket}:{digest[:width]}", field


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

    @property
    def marker_window(self) -> str:
        """See ``LAYOUT["marker_window"]``."""
        return self._key("marker_window")

    def event_seen(self, marker_id: str) -> str:
        """See ``LAYOUT["event_seen"]`` (the id: :func:`event_marker`)."""
        return self._key("event_seen", marker_id)

    def marker_bucket(self, window_s: int, bucket: int) -> str:
        """See ``LAYOUT["marker_bucket"]``."""
        return self._key("marker_bucket", f"{window_s}:{bucket}")

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

    def endpoint_fifo(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_fifo"]``."""
        return self._key("endpoint_fifo", endpoint_id)

    def endpoint_fifo_head(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_fifo_head"]``."""
        return self._key("endpoint_fifo_head", endpoint_id)

    def endpoint_paused(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_paused"]``."""
        return self._key("endpoint_paused", endpoint_id)

    def endpoint_tests(self, endpoint_id: str) -> str:
        """See ``LAYOUT["endpoint_tests"]``."""
        return self._key("endpoint_tests", endpoint_id)

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

    def event_claim(self, claim_id: str) -> str:
        """See ``LAYOUT["event_claim"]``."""
        return self._key("event_claim", claim_id)

    @property
    def endpoint_partitions(self) -> str:
        """See ``LAYOUT["endpoint_partitions"]``."""
        return self._key("endpoint_partitions")

    @property
    def failing(self) -> str:
        """See ``LAYOUT["failing"]``."""
        return self._key("failing")

    @property
    def resuming(self) -> str:
        """See ``LAYOUT["resuming"]``."""
        return self._key("resuming")

    @property
    def publish_sequence(self) -> str:
        """See ``LAYOUT["publish_sequence"]``."""
        return self._key("publish_sequence")

    @property
    def outbox(self) -> str:
        """See ``LAYOUT["outbox"]``."""
        return self._key("outbox")

    @property
    def log_outbox(self) -> str:
        """See ``LAYOUT["log_outbox"]``."""
        return self._key("log_outbox")

    @property
    def log_writers(self) -> str:
        """See ``LAYOUT["log_writers"]``."""
        return self._key("log_writers")

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

    def api_key(self, key_id: str) -> str:
        """See ``LAYOUT["api_key"]``."""
        return self._key("api_key", key_id)

    @property
    def api_keys(self) -> str:
        """See ``LAYOUT["api_keys"]``."""
        return self._key("api_keys")

    def portal_link(self, digest: str) -> str:
        """See ``LAYOUT["portal_link"]``."""
        return self._key("portal_link", digest)

    @property
    def generation(self) -> str:
        """See ``LAYOUT["generation"]``."""
        return self._key("generation")

    @property
    def partitions(self) -> str:
        """See ``LAYOUT["partitions"]``."""
        return self._key("partitions")

    def queue_key(self, queue: str, suffix: str) -> str:
        """A key of bullmq's layout, e.g. ``queue_key("deliveries", "wait")``."""
        return f"{self.prefix}:{queue}:{suffix}"


def lua_prelude() -> str:
    """Lua that defines ``K.<name>(id)`` for every key of :data:`LAYOUT`, the hash fields
    of :data:`FIELDS` as ``F.<hash>.<name>``, the name of the delivery queue as
    ``DELIVERY_QUEUE`` and the markers' constants (``MARKER_SHARD_HEX_MIN`` etc.).

    Scripts receive the prefix as ``ARGV[1]`` (and as their one key, see
    :class:`producer.scripts.Script`).
    """
    lines = [
        "local K = {}",
        "local PREFIX = ARGV[1]",
        f"local DELIVERY_QUEUE = '{DELIVERY_QUEUE}'",
        f"local MARKER_SHARD_HEX_MIN = {MARKER_SHARD_HEX_MIN}",
        f"local MARKER_SHARD_HEX_MAX = {MARKER_SHARD_HEX_MAX}",
        f"local MARKER_SHARD_HEX_UNKNOWN = {MARKER_SHARD_HEX_UNKNOWN}",
        f"local MARKER_SHARD_TARGET = {MARKER_SHARD_TARGET}",
        f"local MARKER_DIGEST_BYTES = {MARKER_DIGEST_BYTES}",
        f"local CLAIM_SHARD_HEX = {CLAIM_SHARD_HEX}",
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
