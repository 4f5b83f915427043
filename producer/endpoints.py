"""The registry that stores endpoints (producer.endpoint) in Redis."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, cast

from redis.asyncio.client import Pipeline
from redis.asyncio.cluster import ClusterPipeline

from producer import scans
from producer.destinations import DestinationRefused, RegistrationCheck
from producer.endpoint import Endpoint, EndpointStatus, Subscribers
from producer.endpoint_index import EndpointIndex
from producer.endpoint_kind import EndpointKind, validate_destination, validate_kind
from producer.endpoint_options import (
    validate_headers,
    validate_timeout,
)
from producer.endpoint_rules import (
    DEFAULT_MAX_IN_FLIGHT,
    ROTATION_GRACE_S,
    DestinationError,
    EndpointError,
    EndpointNotFound,
    checked,
    new_secret,
    url_host_port,
    validate_filter,
    validate_max_in_flight,
    validate_rate_limit,
    validate_workspace,
)
from producer.events import Catalogue
from producer.feeds import PollFeeds
from producer.fields import ENDPOINT_PAUSE_FIELDS
from producer.fifo import FifoLines, Ordering, validate_ordering
from producer.filters import compile_filter
from producer.jobs import JobDispatcher
from producer.keys import Keys
from producer.operations import OPERATIONS_ENDPOINT_ID, endpoint_disabled, is_operational
from producer.partitioning import stage_partition_count
from producer.redis.clients import RedisClient
from producer.redis_guard import stage_generation
from producer.secretbox import SecretBox
from producer.settings import DELIVERY_TIMEOUT


def _now_ms() -> int:
    return int(time.time() * 1000)


# Compares endpoints field by field (sealing the same secret twice gives two values).
UNSEALED = SecretBox()


class EndpointRegistry:
    """Create, read, change and delete endpoints; find an event's subscribers."""

    def __init__(
        self,
        redis: RedisClient,
        keys: Keys,
        catalogue: Catalogue,
        box: SecretBox,
        destinations: RegistrationCheck | None = None,
        max_timeout_s: float = DELIVERY_TIMEOUT.value,
        dispatcher: JobDispatcher | None = None,
        feeds: PollFeeds | None = None,
        index: EndpointIndex | None = None,
        partition: int = 0,
    ) -> None:
        """``destinations``: the destination policy that URLs must pass (None: none);
        ``max_timeout_s``: the longest timeout an endpoint may ask for (DELIVERY_TIMEOUT);
        ``dispatcher``: hands on at once the jobs a change causes (else the workers'
        outbox sweep does, seconds later); ``feeds``: poll endpoints' feeds, closed when
        their endpoint is deleted; ``index`` (PARTITIONS > 1): where the endpoints
        of this registry's ``partition`` are recorded for lookups by id."""
        self._redis = redis
        self._dispatcher = dispatcher
        self._feeds = feeds
        self.max_timeout_s = max_timeout_s
        self._keys = keys
        self.catalogue = catalogue
        self._box = box
        self._destinations = destinations
        self._fifo = FifoLines(redis, keys)
        self._index = index
        self.partition = partition

    async def _check_destination(self, url: str) -> None:
        """Raise :class:`DestinationError` if the policy refuses where ``url`` leads."""
        if self._destinations is None:
            return
        try:
            await self._destinations.check(*url_host_port(url))
        except DestinationRefused as exc:
            raise DestinationError(str(exc)) from None

    async def create(
        self,
        *,
        workspace_id: str,
        events: Iterable[str],
        url: str = "",
        owner_email: str = "",
        description: str = "",
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        rate_limit: float = 0.0,
        headers: Iterable[tuple[str, str]] = (),
        timeout_s: float = 0.0,
        ordering: str = Ordering.PARALLEL,
        filter: object = None,
        kind: str = EndpointKind.HTTP,
    ) -> Endpoint:
        """Register an endpoint; the returned object carries the secret (shown once).

        ``headers``: custom ``(name, value)`` pairs sent with every delivery;
        ``timeout_s``: seconds an attempt may take (0: DELIVERY_TIMEOUT);
        ``ordering``: ``fifo`` starts its deliveries one at a time, in publish order;
        ``filter``: a payload filter (JSON, docs/filters.md; None or {}: every event);
        ``kind``: ``http`` (needs ``url`` and ``owner_email``) or ``poll`` (no URL, and
        no ``fifo``: its feed is in publish order already; :mod:`producer.endpoint_kind`)."""
        now = _now_ms()
        checked_kind = validate_kind(kind)
        if checked_kind == EndpointKind.POLL and ordering == Ordering.FIFO:
            raise EndpointError("ordering", "a poll endpoint's feed is in publish order already")
        checked_url, checked_email = validate_destination(checked_kind, url, owner_email)
        endpoint = Endpoint(
            id="ep_" + secrets.token_hex(8),
            workspace_id=validate_workspace(workspace_id),
            url=checked_url,
            secret=new_secret(),
            events=validate_filter(events, self.catalogue),
            owner_email=checked_email,
            description=description,
            status=EndpointStatus.ACTIVE,
            created_ms=now,
            updated_ms=now,
            max_in_flight=validate_max_in_flight(max_in_flight),
            rate_limit=validate_rate_limit(rate_limit),
            headers=checked("headers", validate_headers, headers),
            timeout_s=checked("timeout_s", validate_timeout, timeout_s, self.max_timeout_s),
            ordering=checked("ordering", validate_ordering, ordering),
            filter=checked("filter", compile_filter, filter),
            kind=checked_kind,
        )
        # Last: the other fields' errors come first, without waiting for DNS.
        if endpoint.kind == EndpointKind.HTTP:
            await self._check_destination(endpoint.url)
        await self._add(endpoint)
        return endpoint

    async def get(self, endpoint_id: str) -> Endpoint:
        """The endpoint with this id, or :class:`EndpointNotFound`."""
        fields = cast(dict[str, str], await self._redis.hgetall(self._keys.endpoint(endpoint_id)))
        if not fields:
            raise EndpointNotFound(endpoint_id)
        return Endpoint.from_hash(fields, self._box)

    async def all(
        self, *, workspace_id: str | None = None, status: EndpointStatus | None = None
    ) -> list[Endpoint]:
        """Endpoints, oldest first, optionally of one workspace and/or status."""
        if workspace_id is not None:
            members = await self._redis.smembers(self._keys.workspace_endpoints(workspace_id))
            ids = sorted(cast(set[str], members))
        else:
            ids = cast(list[str], await self._redis.zrange(self._keys.endpoints, 0, -1))
        endpoints = await self._load(ids)
        if status is not None:
            endpoints = [e for e in endpoints if e.status == status]
        return sorted(endpoints, key=lambda e: (e.created_ms, e.id))

    async def scan(
        self, status: EndpointStatus | None, after: tuple[int, str] | None, limit: int
    ) -> tuple[list[Endpoint], tuple[int, str] | None]:
        """A page of every endpoint (optionally of one status), oldest first, after ``after``.

        Positions are ``(created ms, id)`` in the index of all endpoints. The page ends
        with the position to continue from, ``None`` at the end; it examines at most
        :data:`producer.scans.SCAN_BUDGET` entries, so it may end early.
        """
        found: list[tuple[tuple[int, str], Endpoint]] = []
        examined = 0
        start: float | str = after[0] if after else "-inf"
        async for chunk in scans.scan_index(
            self._redis, self._keys.endpoints, start, descending=False
        ):
            positions = [p for p in chunk if after is None or p > after]
            loaded = await self._load_each([member for _, member in positions])
            for position, endpoint in zip(positions, loaded, strict=True):
                examined += 1
                if endpoint is not None and (status is None or endpoint.status == status):
                    found.append((position, endpoint))
                if len(found) > limit:
                    return [e for _, e in found[:limit]], found[limit - 1][0]
                if examined >= scans.SCAN_BUDGET:
                    return [e for _, e in found], position
        return [e for _, e in found], None

    async def workspace_endpoints(self, workspace_ids: Iterable[str]) -> dict[str, Subscribers]:
        """Every endpoint of each workspace, with its version, in two round trips in all.

        The version is read before the endpoints: a change in between makes the list
        newer than its version says, which only costs a publish one more try.
        """
        ws_list = sorted(set(workspace_ids))
        async with self._redis.pipeline(transaction=False) as pipe:
            for ws in ws_list:
                pipe.get(self._keys.workspace_version(ws))
                pipe.smembers(self._keys.workspace_endpoints(ws))
            replies: list[Any] = await pipe.execute()
        versions: list[str | None] = replies[0::2]
        members: list[set[str]] = replies[1::2]
        loaded = {e.id: e for e in await self._load(sorted(set().union(*members)))}
        return {
            ws: Subscribers(version or "0", tuple(loaded[i] for i in sorted(ids) if i in loaded))
            for ws, version, ids in zip(ws_list, versions, members, strict=True)
        }

    async def update(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        events: Iterable[str] | None = None,
        owner_email: str | None = None,
        description: str | None = None,
        max_in_flight: int | None = None,
        rate_limit: float | None = None,
        headers: Iterable[tuple[str, str]] | None = None,
        timeout_s: float | None = None,
        ordering: str | None = None,
        filter: object = None,
    ) -> Endpoint:
        """Change the given fields; the others stay as they are (``headers`` replaces
        them all; ``filter={}`` removes the payload filter). From ``fifo`` to
        ``parallel``, the deliveries in line go at once."""
        endpoint = await self.get(endpoint_id)
        new_url, new_email = validate_destination(
            endpoint.kind,
            url if url is not None else endpoint.url,
            owner_email if owner_email is not None else endpoint.owner_email,
        )
        changed = replace(
            endpoint,
            url=new_url,
            events=validate_filter(events, self.catalogue)
            if events is not None
            else endpoint.events,
            owner_email=new_email,
            description=description if description is not None else endpoint.description,
            max_in_flight=validate_max_in_flight(max_in_flight)
            if max_in_flight is not None
            else endpoint.max_in_flight,
            rate_limit=validate_rate_limit(rate_limit)
            if rate_limit is not None
            else endpoint.rate_limit,
            headers=checked("headers", validate_headers, headers)
            if headers is not None
            else endpoint.headers,
            timeout_s=checked("timeout_s", validate_timeout, timeout_s, self.max_timeout_s)
            if timeout_s is not None
            else endpoint.timeout_s,
            ordering=checked("ordering", validate_ordering, ordering)
            if ordering is not None
            else endpoint.ordering,
            filter=checked("filter", compile_filter, filter)
            if filter is not None
            else endpoint.filter,
            updated_ms=_now_ms(),
        )
        if changed.url != endpoint.url:
            await self._check_destination(changed.url)
        await self._write(changed, endpoint)
        # After the write: a publish that read the old ordering is refused as stale.
        if endpoint.ordering == Ordering.FIFO and changed.ordering != Ordering.FIFO:
            await self._fifo.release(endpoint_id)
        return changed

    async def set_status(
        self, endpoint_id: str, status: EndpointStatus, drop: bool = False
    ) -> Endpoint:
        """Enable (``active``) or disable an endpoint; enabling clears ``failing``.

        A disabled endpoint's deliveries pause, or with ``drop`` end dead (use
        :class:`producer.pausing.Pausing`, which also moves a backlog already paused)."""
        endpoint = await self.get(endpoint_id)
        changed = replace(endpoint, status=status, updated_ms=_now_ms())
        # Turning disabled is an operational event (producer.operations), written with
        # the change; its job id names the state left, so racing disables make one. None
        # while no worker has registered the operations endpoint (nobody would get it).
        announce = ""
        if (
            status == EndpointStatus.DISABLED
            and endpoint.status != EndpointStatus.DISABLED
            and not is_operational(endpoint_id)
            and await self._operations_registered()
        ):
            job = endpoint_disabled(
                endpoint_id,
                transition=f"m{endpoint.updated_ms}",
                at_ms=changed.updated_ms,
                reason="manual",
                workspace_id=endpoint.workspace_id,
                endpoint_url=endpoint.url,
            )
            announce = job.spec().to_json()
        async with self._redis.pipeline(transaction=True) as pipe:
            mode = "1" if drop and status == EndpointStatus.DISABLED else "0"
            pipe.hset(self._keys.endpoint(endpoint_id), ENDPOINT_PAUSE_FIELDS.drop, mode)
            if status == EndpointStatus.FAILING:
                pipe.sadd(self._keys.failing, endpoint_id)
            else:
                pipe.srem(self._keys.failing, endpoint_id)
            if status != EndpointStatus.DISABLED:  # its paused backlog resumes
                pipe.sadd(self._keys.resuming, endpoint_id)
            self._stage(pipe, changed, endpoint)
            if announce:
                pipe.zadd(self._keys.outbox, {announce: changed.updated_ms})
            await pipe.execute()
        if announce and self._dispatcher is not None:
            await self._dispatcher.dispatch([announce])
        return changed

    async def ensure(self, endpoint: Endpoint) -> Endpoint:
        """Store an endpoint built whole by the caller (a reserved one: the operations
        endpoint), past the destination policy: created if missing, else the fields that
        differ are written, its status and creation time kept. Returns it as stored."""
        await self._check_destination(endpoint.url)
        try:
            before: Endpoint | None = await self.get(endpoint.id)
        except EndpointNotFound:
            before = None
        if before is not None:
            endpoint = replace(
                endpoint,
                status=before.status,
                created_ms=before.created_ms,
                updated_ms=before.updated_ms,
            )
            if endpoint.to_hash(UNSEALED) == before.to_hash(UNSEALED):
                return before
            endpoint = replace(endpoint, updated_ms=_now_ms())
            await self._write(endpoint, before)
            return endpoint
        await self._add(endpoint)
        return endpoint

    async def rotate_secret(self, endpoint_id: str, grace_s: int = ROTATION_GRACE_S) -> Endpoint:
        """A new secret; the old one keeps signing for ``grace_s``: ``webhook-signature``
        carries both, ``X-Cliq-Signature`` the old one until then (see producer/signing.py)."""
        endpoint = await self.get(endpoint_id)
        now = _now_ms()
        changed = replace(
            endpoint,
            secret=new_secret(),
            previous_secret=endpoint.secret,
            previous_secret_until_ms=now + grace_s * 1000,
            updated_ms=now,
        )
        await self._write(changed, endpoint)
        return changed

    async def delete(self, endpoint_id: str) -> None:
        """Remove the endpoint; its queued and paused deliveries end as dead ("endpoint
        deleted"): the workers take its paused backlog (``resuming``) to end it; a poll
        endpoint's feed is closed here (after the workspace's version moved on, so no
        publish adds to it any more)."""
        endpoint = await self.get(endpoint_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.endpoint(endpoint_id))
            pipe.srem(self._keys.workspace_endpoints(endpoint.workspace_id), endpoint_id)
            pipe.zrem(self._keys.endpoints, endpoint_id)
            pipe.srem(self._keys.failing, endpoint_id)
            pipe.sadd(self._keys.resuming, endpoint_id)
            pipe.incr(self._keys.workspace_version(endpoint.workspace_id))
            await pipe.execute()
        if self._index is not None:
            await self._index.remove(endpoint_id)
        if endpoint.ordering == Ordering.FIFO:  # those in line end dead like the rest
            await self._fifo.release(endpoint_id)
        if endpoint.kind == EndpointKind.POLL and self._feeds is not None:
            await self._feeds.close(endpoint_id)

    async def _operations_registered(self) -> bool:
        """Whether a worker registered the operations endpoint (in its own workspace's
        partition, which the index knows)."""
        if self._index is not None:
            return await self._index.locate(OPERATIONS_ENDPOINT_ID) is not None
        return bool(await self._redis.exists(self._keys.endpoint(OPERATIONS_ENDPOINT_ID)))

    async def _add(self, endpoint: Endpoint) -> None:
        """Store a new endpoint (recorded in the index first, which stamps partition 0's
        generation marker; this transaction stamps its own partition's)."""
        if self._index is not None:
            await self._index.add(endpoint.id, self.partition)
        async with self._redis.pipeline(transaction=True) as pipe:
            self._stage(pipe, endpoint)
            pipe.sadd(self._keys.workspace_endpoints(endpoint.workspace_id), endpoint.id)
            pipe.zadd(self._keys.endpoints, {endpoint.id: endpoint.created_ms})
            # Each partition's own marker (producer.redis_guard checks every one).
            stage_generation(pipe, self._keys)
            if self._index is None:
                stage_partition_count(pipe, self._keys, 1)  # no index: one partition
            await pipe.execute()

    async def _write(self, endpoint: Endpoint, before: Endpoint) -> None:
        """Store the fields of ``endpoint`` that differ from ``before`` (see :meth:`_stage`)."""
        async with self._redis.pipeline(transaction=True) as pipe:
            self._stage(pipe, endpoint, before)
            await pipe.execute()

    def _stage(
        self, pipe: Pipeline | ClusterPipeline, endpoint: Endpoint, before: Endpoint | None = None
    ) -> None:
        """Queue the writes of a new or changed endpoint, and bump its workspace's version.

        Of a changed one (``before`` given) only the fields that differ are written: an
        edit must not undo a status a worker set meanwhile (failing, disabled).
        """
        fields = endpoint.to_hash(self._box)
        if before is not None:
            old, new = before.to_hash(UNSEALED), endpoint.to_hash(UNSEALED)
            fields = {name: value for name, value in fields.items() if old[name] != new[name]}
        if fields:
            pipe.hset(self._keys.endpoint(endpoint.id), mapping=fields)
        pipe.incr(self._keys.workspace_version(endpoint.workspace_id))

    async def _load(self, ids: Sequence[str]) -> list[Endpoint]:
        return [endpoint for endpoint in await self._load_each(ids) if endpoint is not None]

    async def _load_each(self, ids: Sequence[str]) -> list[Endpoint | None]:
        """Endpoints by id in one round trip; ``None`` for one deleted meanwhile."""
        if not ids:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for endpoint_id in ids:
                pipe.hgetall(self._keys.endpoint(endpoint_id))
            rows: list[dict[str, str]] = await pipe.execute()
        return [Endpoint.from_hash(row, self._box) if row else None for row in rows]
