"""The endpoint registry over every partition (PARTITIONS > 1).

Each partition has a registry of its own (:class:`producer.endpoints.EndpointRegistry`
over its keys), holding the endpoints of the workspaces that hash to it
(:func:`producer.partitioning.partition_of`). :class:`RoutedRegistry` sends a call to
the one it concerns: by workspace straight, by endpoint id through the home partition's
index (:mod:`producer.endpoint_index`); listings merge every partition's. With one
partition none of this is used: the producer's registry is partition 0's own.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from producer.endpoint import Endpoint, EndpointStatus, Subscribers
from producer.endpoint_index import EndpointIndex
from producer.endpoint_kind import EndpointKind
from producer.endpoint_rules import DEFAULT_MAX_IN_FLIGHT, ROTATION_GRACE_S, EndpointNotFound
from producer.endpoints import EndpointRegistry
from producer.fifo import Ordering
from producer.partitioning import partition_of


def _position(endpoint: Endpoint) -> tuple[int, str]:
    return (endpoint.created_ms, endpoint.id)


class RoutedRegistry(EndpointRegistry):
    """Partition ``k``'s registry is ``lanes[k]``; every call goes to the right one(s)."""

    def __init__(self, lanes: Sequence[EndpointRegistry], index: EndpointIndex) -> None:
        # No state of its own but the lanes and the index: nothing of the base's is used.
        self.lanes = tuple(lanes)
        self._where = index
        self.catalogue = lanes[0].catalogue
        self.max_timeout_s = lanes[0].max_timeout_s
        self.partition = 0

    def for_workspace(self, workspace_id: str) -> EndpointRegistry:
        """The registry of the workspace's partition."""
        return self.lanes[partition_of(workspace_id, len(self.lanes))]

    async def partition_of_endpoint(self, endpoint_id: str) -> int:
        """The partition holding the endpoint; :class:`EndpointNotFound` if none does."""
        found = await self._where.locate(endpoint_id)
        if found is None:
            raise EndpointNotFound(endpoint_id)
        return found

    async def _lane(self, endpoint_id: str) -> EndpointRegistry:
        return self.lanes[await self.partition_of_endpoint(endpoint_id)]

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
        """Register an endpoint in its workspace's partition (see the base class)."""
        return await self.for_workspace(workspace_id).create(
            workspace_id=workspace_id,
            events=events,
            url=url,
            owner_email=owner_email,
            description=description,
            max_in_flight=max_in_flight,
            rate_limit=rate_limit,
            headers=headers,
            timeout_s=timeout_s,
            ordering=ordering,
            filter=filter,
            kind=kind,
        )

    async def get(self, endpoint_id: str) -> Endpoint:
        """The endpoint with this id, or :class:`EndpointNotFound`."""
        return await (await self._lane(endpoint_id)).get(endpoint_id)

    async def all(
        self, *, workspace_id: str | None = None, status: EndpointStatus | None = None
    ) -> list[Endpoint]:
        """Endpoints, oldest first, optionally of one workspace and/or status."""
        if workspace_id is not None:
            return await self.for_workspace(workspace_id).all(
                workspace_id=workspace_id, status=status
            )
        found = [e for lane in self.lanes for e in await lane.all(status=status)]
        return sorted(found, key=_position)

    async def scan(
        self, status: EndpointStatus | None, after: tuple[int, str] | None, limit: int
    ) -> tuple[list[Endpoint], tuple[int, str] | None]:
        """A page of every endpoint, merged from each partition's page (see the base).

        A partition's page that ended early (at its budget or its limit) has shown
        everything up to where it ended, and nothing past: the merged page ends at the
        earliest such end, so that the next page misses nothing of any partition."""
        pages = [await lane.scan(status, after, limit) for lane in self.lanes]
        bound = min((end for _, end in pages if end is not None), default=None)
        found = sorted((e for page, _ in pages for e in page), key=_position)
        if bound is not None:
            found = [e for e in found if _position(e) <= bound]
        if len(found) > limit:
            return found[:limit], _position(found[limit - 1])
        return found, bound

    async def workspace_endpoints(self, workspace_ids: Iterable[str]) -> dict[str, Subscribers]:
        """Every endpoint of each workspace, each from its partition (see the base)."""
        by_lane: dict[int, list[str]] = {}
        for ws in sorted(set(workspace_ids)):
            by_lane.setdefault(partition_of(ws, len(self.lanes)), []).append(ws)
        found: dict[str, Subscribers] = {}
        for lane, members in by_lane.items():
            found.update(await self.lanes[lane].workspace_endpoints(members))
        return {ws: found[ws] for ws in sorted(found)}

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
        """Change the given fields (see the base class)."""
        return await (await self._lane(endpoint_id)).update(
            endpoint_id,
            url=url,
            events=events,
            owner_email=owner_email,
            description=description,
            max_in_flight=max_in_flight,
            rate_limit=rate_limit,
            headers=headers,
            timeout_s=timeout_s,
            ordering=ordering,
            filter=filter,
        )

    async def set_status(
        self, endpoint_id: str, status: EndpointStatus, drop: bool = False
    ) -> Endpoint:
        """Enable or disable an endpoint (see the base class)."""
        return await (await self._lane(endpoint_id)).set_status(endpoint_id, status, drop)

    async def ensure(self, endpoint: Endpoint) -> Endpoint:
        """Store a reserved endpoint in its workspace's partition (see the base class)."""
        return await self.for_workspace(endpoint.workspace_id).ensure(endpoint)

    async def rotate_secret(self, endpoint_id: str, grace_s: int = ROTATION_GRACE_S) -> Endpoint:
        """A new secret (see the base class)."""
        return await (await self._lane(endpoint_id)).rotate_secret(endpoint_id, grace_s)

    async def delete(self, endpoint_id: str) -> None:
        """Remove the endpoint (see the base class)."""
        await (await self._lane(endpoint_id)).delete(endpoint_id)
