"""A workspace-scoped caller sees only its workspace: the other ones' resources are 404.

For a route whose :class:`~producer.http.access.Access` names an :class:`Owner`,
:func:`workspace_guard` finds the workspace of the resource in the path before the
handler runs; when it is another workspace than the caller's, the answer is the very
404 the handler gives for an id that does not exist, so a scoped key cannot tell another
workspace's ids from unknown ones. A resource that does not exist is left to the handler
(its own 404, or ``PUT /v1/users/{id}`` creating it). Bodies naming a workspace
(publishing, creating an endpoint or a user) are checked by their handlers with
:func:`refuse_other_workspaces`: 403, as the caller named the workspace itself.

The dashboard's workspace-bound sessions (portal links) use :func:`workspace_of` too.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler

from producer.deliveries import DeliveryNotFound
from producer.endpoint_rules import EndpointNotFound
from producer.events import ID_PATTERN
from producer.http.access import Owner, access_of, caller_workspace
from producer.http.problems import NOT_FOUND, Problem, ProblemKind, missing
from producer.http.state import PRODUCER
from producer.tokens.context import TOKEN_SYSTEM
from producer.tokens.users import UserNotFound

OTHER_WORKSPACE = ProblemKind("other-workspace", 403, "Another workspace")
# A resource whose workspace cannot be told (a delivery of a deleted endpoint): nobody's.
NOBODYS = ""


async def _endpoint_workspace(request: web.Request, endpoint_id: str) -> str | None:
    try:
        return (await request.config_dict[PRODUCER].endpoints.get(endpoint_id)).workspace_id
    except EndpointNotFound:
        return None


async def workspace_of(request: web.Request, owner: Owner, ident: str) -> str | None:
    """The workspace of the resource ``ident`` of kind ``owner``; ``None`` if none exists."""
    if not ID_PATTERN.match(ident):
        return None
    producer = request.config_dict[PRODUCER]
    if owner is Owner.WORKSPACE:
        return ident
    if owner is Owner.ENDPOINT:
        return await _endpoint_workspace(request, ident)
    if owner is Owner.USER:
        try:
            return (await request.config_dict[TOKEN_SYSTEM].users.get(ident)).workspace_id
        except UserNotFound:
            return None
    if owner is Owner.EVENT:
        stored = await producer.event_workspace(ident)
        if stored is not None:
            return stored
        # Gone from Redis (kept by the delivery log only): its deliveries tell.
        deliveries = await producer.deliveries.for_event(ident)
        if not deliveries:
            return None
        return await _endpoint_workspace(request, deliveries[0].endpoint_id) or NOBODYS
    try:
        delivery = await producer.deliveries.get(ident)
    except DeliveryNotFound:
        return None
    return await _endpoint_workspace(request, delivery.endpoint_id) or NOBODYS


def not_found(owner: Owner, ident: str) -> Problem:
    """The 404 the handlers give for an unknown ``ident`` of kind ``owner``."""
    if owner is Owner.USER:
        return Problem(NOT_FOUND, f"No user {ident!r}: create it with PUT /v1/users/{{id}}.")
    return missing(owner.value, ident)


@web.middleware
async def workspace_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """404 for another workspace's resource named in the path of a scoped caller."""
    scoped = caller_workspace(request)
    if scoped is not None:
        resource = request.match_info.route.resource
        access = access_of(request, resource.canonical) if resource is not None else None
        if access is not None and access.owner is not None:
            ident = request.match_info.get(access.parameter, "")
            found = await workspace_of(request, access.owner, ident)
            if found is not None and found != scoped:
                raise not_found(access.owner, ident)
    return await handler(request)


def refuse_other_workspaces(request: web.Request, workspaces: Iterable[str]) -> None:
    """403 when a scoped caller names a workspace other than its own (nothing was done)."""
    scoped = caller_workspace(request)
    if scoped is None:
        return
    others = sorted(set(workspaces) - {scoped})
    if others:
        raise Problem(
            OTHER_WORKSPACE,
            f"This API key is for workspace {scoped!r} only; {', '.join(map(repr, others))} "
            "refused, nothing was done.",
        )
