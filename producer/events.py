"""The event model: the seed's payload.

An event has ``id``, ``type``, ``created_at``, ``workspace_id`` and ``data``.

Events are validated and normalized once, at publish time, into an :class:`Event`
whose :attr:`Event.body` is exactly the bytes every subscriber receives.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any

from producer import jsonwire

# The seed's catalogue ("Event Types"): name -> description.
BUILTIN_EVENT_TYPES: dict[str, str] = {
    "issue.created": "A new issue was created",
    "issue.updated": "An issue was updated",
    "issue.deleted": "An issue was deleted",
    "issue.status_changed": "An issue's status changed",
    "issue.assigned": "An issue was assigned",
    "comment.created": "A new comment was added",
    "comment.updated": "A comment was edited",
    "comment.deleted": "A comment was deleted",
    "project.created": "A new project was created",
    "project.updated": "A project was updated",
    "project.deleted": "A project was deleted",
    "member.joined": "A new member joined",
    "member.left": "A member left the workspace",
    "member.role_changed": "A member's role was changed",
    # Pushed in by third parties through token-authenticated incoming webhooks (seed 001).
    "channel.message": "A message posted to a channel through an incoming webhook",
    "bot.incoming": "A notification sent to a bot's incoming webhook",
    "bot.message": "A message sent to a bot through its message webhook",
    "extension.incoming": "A notification sent to an extension's incoming webhook",
}

# Example ``data`` per resource, for test events and the catalogue listing.
EXAMPLE_DATA: dict[str, dict[str, jsonwire.JSONValue]] = {
    "issue": {
        "id": "issue_xyz789",
        "title": "New feature request",
        "status": "backlog",
        "priority": "medium",
        "created_by": "user_456",
    },
    "comment": {"id": "comment_123", "issue_id": "issue_xyz789", "body": "Looks good to me"},
    "project": {"id": "project_42", "name": "Website relaunch", "lead": "user_456"},
    "member": {"id": "user_789", "name": "Ada Lovelace", "role": "member"},
    # What producer.tokens.incoming publishes: the resource, who posted, and the posted body.
    "channel": {
        "channel": "general",
        "user_id": "user_456",
        "token_id": "tok_0123456789abcdef",
        "body": {"text": "Deploy finished"},
    },
    "bot": {
        "bot": "deploybot",
        "user_id": "user_456",
        "token_id": "tok_0123456789abcdef",
        "body": {"text": "Deploy finished"},
    },
    "extension": {
        "app_id": "app_0123456789abcdef",
        "environment": "marketplace",
        "user_id": "user_456",
        "token_id": "tok_0123456789abcdef",
        "body": {"text": "Sync done"},
    },
}


def example_data(event_type: str) -> dict[str, jsonwire.JSONValue]:
    """Plausible ``data`` for a test event of ``event_type``."""
    return dict(EXAMPLE_DATA.get(event_type.split(".", 1)[0], {"example": True}))


# Ids become parts of Redis keys and bullmq job ids: no ':' (Node BullMQ rejects it).
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,128}$")
TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
EVENT_FIELDS = ("id", "type", "created_at", "workspace_id", "data")
# The workspace of the operational events (producer.operations): reserved, so that no
# one else can publish into it or subscribe an endpoint to it.
OPERATIONS_WORKSPACE = "_operations"


class EventError(ValueError):
    """An event that cannot be accepted; ``field`` names the (first) offending field.

    ``errors`` lists every ``(field, message)`` found, the first one included: a caller
    learns all that is wrong with an event at once, not one field per attempt.
    """

    def __init__(self, field: str, message: str, errors: Sequence[tuple[str, str]] = ()) -> None:
        self.errors = list(errors) or [(field, message)]
        super().__init__("; ".join(f"{name}: {text}" for name, text in self.errors))
        self.field = field
        self.message = message

    @classmethod
    def of(cls, errors: Sequence[tuple[str, str]]) -> EventError:
        """One error carrying every ``(field, message)`` of ``errors`` (at least one)."""
        field, message = errors[0]
        return cls(field, message, errors)


@dataclass(frozen=True)
class Catalogue:
    """The event types that may be published: the seed's, plus configured extras."""

    types: Mapping[str, str] = field(default_factory=lambda: dict(BUILTIN_EVENT_TYPES))

    @classmethod
    def with_extras(cls, extras: Iterable[str]) -> Catalogue:
        """The built-in catalogue extended by ``extras`` (validated type names)."""
        types = dict(BUILTIN_EVENT_TYPES)
        for name in extras:
            if not TYPE_PATTERN.match(name):
                raise EventError(
                    "type", f"{name!r} is not a valid event type (e.g. 'issue.created')"
                )
            types.setdefault(name, "Configured event type")
        return cls(types)

    def __contains__(self, name: object) -> bool:
        return name in self.types

    def require(self, name: str) -> None:
        """Raise :class:`EventError` unless ``name`` is in the catalogue."""
        if name not in self.types:
            raise EventError(
                "type",
                f"unknown event type {name!r}; known types: {', '.join(sorted(self.types))}"
                " (add more with EVENT_TYPES_EXTRA)",
            )


def new_event_id() -> str:
    """A fresh ``evt_`` id: 20 random base32-ish characters."""
    return "evt_" + secrets.token_hex(10)


def format_timestamp(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, milliseconds only when they are not zero."""
    # isoformat pads years before 1000 ("0492-...") and truncates to milliseconds; it is
    # twice as fast as strftime, which shows when an API batch stamps 1,000 events.
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00")
    return f"{text.removesuffix('.000')}Z"


def iso_time(ms: int) -> str:
    """Milliseconds since the epoch as ISO 8601 UTC (``Z``), as the API shows times."""
    return format_timestamp(datetime.fromtimestamp(ms / 1000, UTC))


def parse_timestamp(raw: object) -> datetime:
    """Parse an ISO 8601 timestamp that carries a timezone (``Z`` or an offset)."""
    if not isinstance(raw, str):
        raise EventError("created_at", "must be an ISO 8601 string such as 2025-01-15T10:30:00Z")
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise EventError("created_at", f"{raw!r} is not an ISO 8601 timestamp") from exc
    if moment.tzinfo is None:
        raise EventError("created_at", f"{raw!r} has no timezone; use Z for UTC")
    try:
        return moment.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59:59-01:00 is past year 9999 in UTC
        raise EventError("created_at", f"{raw!r} is out of range") from exc


@dataclass(frozen=True)
class Event:
    """A validated event. Build it with :func:`parse_event`, not directly."""

    id: str
    type: str
    created_at: str
    workspace_id: str
    data: dict[str, jsonwire.JSONValue]

    def to_dict(self) -> dict[str, jsonwire.JSONValue]:
        """The payload in the seed's field order."""
        return {
            "id": self.id,
            "type": self.type,
            "created_at": self.created_at,
            "workspace_id": self.workspace_id,
            "data": self.data,
        }

    @cached_property
    def body(self) -> bytes:
        """The exact request body every subscriber receives (and every signature covers)."""
        return jsonwire.encode(self.to_dict())

    @property
    def created_ms(self) -> int:
        """``created_at`` in milliseconds since the epoch."""
        return int(parse_timestamp(self.created_at).timestamp() * 1000)


def parse_event(
    raw: Any,
    catalogue: Catalogue,
    *,
    max_payload_bytes: int,
    now: datetime | None = None,
) -> Event:
    """Validate and normalize one event; ``id`` and ``created_at`` are generated when absent.

    Raises :class:`EventError` listing every field at fault (its ``errors``): nothing
    half-valid gets through.
    """
    if not isinstance(raw, Mapping):
        raise EventError("event", f"must be a JSON object, got {type(raw).__name__}")
    # Every check runs, so that the error lists everything wrong with the event.
    errors: list[tuple[str, str]] = [
        (name, f"unknown field; an event has only {', '.join(EVENT_FIELDS)}")
        for name in sorted(set(raw) - set(EVENT_FIELDS))
    ]

    event_id = raw.get("id")
    if event_id is None:
        event_id = new_event_id()
    elif not isinstance(event_id, str) or not ID_PATTERN.match(event_id):
        errors.append(("id", "must be 1-128 characters of A-Z, a-z, 0-9, '_' or '-'"))

    event_type = raw.get("type")
    if not isinstance(event_type, str) or not event_type:
        errors.append(("type", "is required, e.g. 'issue.created'"))
    else:
        try:
            catalogue.require(event_type)
        except EventError as exc:
            errors += exc.errors

    workspace_id = raw.get("workspace_id")
    if not isinstance(workspace_id, str) or not ID_PATTERN.match(workspace_id):
        errors.append(("workspace_id", "is required: 1-128 characters of A-Z, a-z, 0-9, '_', '-'"))
    elif workspace_id == OPERATIONS_WORKSPACE:
        errors.append(
            ("workspace_id", f"{OPERATIONS_WORKSPACE!r} is reserved for operational events")
        )

    created_raw = raw.get("created_at")
    moment = now or datetime.now(UTC)
    if created_raw is not None:
        try:
            moment = parse_timestamp(created_raw)
        except EventError as exc:
            errors += exc.errors

    data = raw.get("data")
    normalized: jsonwire.JSONValue = None
    if not isinstance(data, Mapping):
        kind = "missing" if data is None else f"a {type(data).__name__}"
        errors.append(("data", f"must be a JSON object, got {kind}"))
    else:
        try:
            normalized = jsonwire.normalize(dict(data), path="$.data")
        except jsonwire.WireError as exc:
            errors.append(("data", str(exc)))
    if errors:
        raise EventError.of(errors)
    assert isinstance(normalized, dict)
    assert isinstance(event_id, str)
    assert isinstance(event_type, str)
    assert isinstance(workspace_id, str)

    event = Event(
        id=event_id,
        type=event_type,
        created_at=format_timestamp(moment),
        workspace_id=workspace_id,
        data=normalized,
    )
    size = len(event.body)
    if size > max_payload_bytes:
        raise EventError("data", f"event is {size} bytes; the limit is {max_payload_bytes} bytes")
    return event
