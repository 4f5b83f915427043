"""An endpoint (a subscription) as stored and shown: its fields, status, secrets,
and a workspace's set of them that an event fans out to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from redis.typing import EncodableT, FieldT

from producer.endpoint_kind import EndpointKind
from producer.endpoint_options import (
    Headers,
    headers_from_text,
    headers_to_text,
)
from producer.endpoint_rules import (
    DEFAULT_MAX_IN_FLIGHT,
    filter_matches,
    mask_secret,
)
from producer.events import Event, format_timestamp
from producer.fifo import Ordering
from producer.filters import MATCH_ALL, PayloadFilter, filter_from_text
from producer.secretbox import SecretBox


class EndpointStatus(StrEnum):
    """``failing`` endpoints still receive deliveries; ``disabled`` ones keep theirs paused
    (or end them dead, disabled with drop) until enabled: docs/endpoint-states.md."""

    ACTIVE = "active"
    FAILING = "failing"
    DISABLED = "disabled"


@dataclass(frozen=True)
class Endpoint:
    """A subscriber: where to deliver which events of one workspace, and who to tell."""

    id: str
    workspace_id: str
    url: str
    secret: str
    events: tuple[str, ...]
    owner_email: str
    description: str
    status: EndpointStatus
    created_ms: int
    updated_ms: int
    previous_secret: str = ""
    previous_secret_until_ms: int = 0
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    rate_limit: float = 0.0
    headers: Headers = ()
    # Seconds an attempt may take; 0: the workers' DELIVERY_TIMEOUT.
    timeout_s: float = 0.0
    # fifo: deliveries start one at a time, in publish order (producer/fifo.py).
    ordering: Ordering = Ordering.PARALLEL
    # The payload filter (producer/filters.py), compiled when loaded; MATCH_ALL: none.
    filter: PayloadFilter = MATCH_ALL
    kind: EndpointKind = EndpointKind.HTTP

    def wants(self, event_type: str) -> bool:
        """Whether events of ``event_type`` get a delivery to this endpoint (a disabled
        one's is paused or dropped by publish.lua: producer/pause.lua)."""
        return filter_matches(self.events, event_type)

    def signing_secrets(self, now_ms: int) -> tuple[str, ...]:
        """The current secret, plus the previous one during a rotation's grace period."""
        if self.previous_secret and now_ms < self.previous_secret_until_ms:
            return (self.secret, self.previous_secret)
        return (self.secret,)

    @property
    def signature_switches_at(self) -> str | None:
        """When ``X-Cliq-Signature`` changes (changed) to the newest secret, ISO UTC:
        the end of the last rotation's grace period; ``None`` if never rotated."""
        if not self.previous_secret:
            return None
        until = datetime.fromtimestamp(self.previous_secret_until_ms / 1000, UTC)
        return format_timestamp(until)

    def to_hash(self, box: SecretBox) -> dict[FieldT, EncodableT]:
        """The Redis hash fields, secrets sealed by ``box`` (the Lua scripts read ``status``)."""
        fields: dict[FieldT, EncodableT] = {
            "id": self.id,
            "workspace": self.workspace_id,
            "url": self.url,
            "secret": box.seal(self.secret),
            "events": ",".join(self.events),
            "email": self.owner_email,
            "description": self.description,
            "status": self.status.value,
            "created": str(self.created_ms),
            "updated": str(self.updated_ms),
            "prev_secret": box.seal(self.previous_secret),
            "prev_until": str(self.previous_secret_until_ms),
            "max_in_flight": str(self.max_in_flight),
            "rate_limit": repr(self.rate_limit),
            # Sealed: custom headers often carry the receiver's own credentials.
            "headers": box.seal(headers_to_text(self.headers)),
            "timeout_s": repr(self.timeout_s),
            "ordering": self.ordering.value,
            "filter": self.filter.text,
            "kind": self.kind.value,
        }
        return fields

    @classmethod
    def from_hash(cls, fields: Mapping[str, str], box: SecretBox) -> Endpoint:
        """Parse the Redis hash written by :meth:`to_hash`."""
        return cls(
            id=fields["id"],
            workspace_id=fields["workspace"],
            url=fields["url"],
            secret=box.open(fields["secret"]),
            events=tuple(p for p in fields["events"].split(",") if p),
            owner_email=fields["email"],
            description=fields.get("description", ""),
            status=EndpointStatus(fields["status"]),
            created_ms=int(fields["created"]),
            updated_ms=int(fields["updated"]),
            previous_secret=box.open(fields.get("prev_secret", "")),
            previous_secret_until_ms=int(fields.get("prev_until") or 0),
            max_in_flight=int(fields.get("max_in_flight") or DEFAULT_MAX_IN_FLIGHT),
            rate_limit=float(fields.get("rate_limit") or 0),
            headers=headers_from_text(box.open(fields.get("headers", ""))),
            timeout_s=float(fields.get("timeout_s") or 0),
            ordering=Ordering(fields.get("ordering") or Ordering.PARALLEL),
            filter=filter_from_text(fields.get("filter", "")),
            kind=EndpointKind(fields.get("kind") or EndpointKind.HTTP),
        )

    def public_dict(self, *, reveal_secret: bool = False) -> dict[str, object]:
        """The endpoint as shown to users; the secret is masked unless just created."""
        return {
            "id": self.id,
            "workspace_id": self.workspace_id,
            "kind": self.kind.value,
            "url": self.url,
            "events": list(self.events),
            "owner_email": self.owner_email,
            "description": self.description,
            "status": self.status.value,
            "max_in_flight": self.max_in_flight,
            "rate_limit": self.rate_limit,
            "headers": dict(self.headers),
            "timeout_s": self.timeout_s,
            "ordering": self.ordering.value,
            "filter": self.filter.source,
            "secret": self.secret if reveal_secret else mask_secret(self.secret),
            "signature_switches_at": self.signature_switches_at,
            "created_ms": self.created_ms,
            "updated_ms": self.updated_ms,
        }


@dataclass(frozen=True)
class Subscribers:
    """A workspace's endpoints as of one version of them (``LAYOUT["workspace_version"]``)."""

    version: str
    endpoints: tuple[Endpoint, ...]

    def for_event(self, event: Event) -> list[str]:
        """Ids of the endpoints that receive ``event``: its type, then its payload filter."""
        wanted = [e for e in self.endpoints if e.wants(event.type)]
        if not any(e.filter for e in wanted):
            return [e.id for e in wanted]
        document = event.to_dict()
        return [e.id for e in wanted if e.filter.matches(document)]
