"""The messages that cross processes besides delivery jobs: typed, with ``to_dict``/``from_dict``.

* :class:`NotificationJob`: a worker tells the notification queue that an endpoint
  turned failing (or was disabled by ``410 Gone``); a worker emails its owner.
* :class:`TestSendRequest` and :class:`TestSendResult`: the API asks a worker to send
  a test event and gets the receiver's answer back (:mod:`producer.testsends`).

``from_dict`` raises ``ValueError`` on a malformed message, so that a consumer can
count it and drop it rather than fail on it.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any


def _text(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {value!r}")
    return value


def _count(data: dict[str, Any], name: str) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    return value


def _object(data: object, what: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValueError(f"{what} must be a JSON object")
    return data


@dataclass(frozen=True)
class NotificationJob:
    """An endpoint turned failing (``reason``: ``failing`` after its last failed attempt,
    ``refused`` when the destination policy refused its address) or was disabled
    (``gone``: it answered 410 Gone; ``auto_disabled``: failing for DISABLE_FAILING_AFTER,
    no delivery named)."""

    endpoint_id: str
    delivery_id: str
    event_id: str
    attempts: int
    last_error: str
    failed_at_ms: int
    reason: str = "failing"

    @property
    def gone(self) -> bool:
        """The receiver answered ``410 Gone``: the endpoint was disabled."""
        return self.reason == "gone"

    def to_dict(self) -> dict[str, Any]:
        """The job data stored in bullmq."""
        return {
            "endpoint_id": self.endpoint_id,
            "delivery_id": self.delivery_id,
            "event_id": self.event_id,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "failed_at_ms": self.failed_at_ms,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: object) -> NotificationJob:
        """Parse job data; ``ValueError`` names what is malformed."""
        fields = _object(data, "notification job data")
        return cls(
            endpoint_id=_text(fields, "endpoint_id"),
            delivery_id=_text(fields, "delivery_id"),
            event_id=_text(fields, "event_id"),
            attempts=_count(fields, "attempts"),
            last_error=_text(fields, "last_error"),
            failed_at_ms=_count(fields, "failed_at_ms"),
            reason=_text(fields, "reason") if "reason" in fields else "failing",
        )


@dataclass(frozen=True)
class TestSendRequest:
    """The API's request that a worker send a test event, answered before ``deadline_ms``."""

    __test__ = False  # not a pytest test class

    id: str
    endpoint_id: str
    event_type: str
    requested_ms: int
    deadline_ms: int

    @classmethod
    def new(cls, endpoint_id: str, event_type: str, wait_s: float) -> TestSendRequest:
        """A request with a fresh id that the API waits ``wait_s`` for."""
        now_ms = int(time.time() * 1000)
        return cls(
            id="ts_" + secrets.token_hex(10),
            endpoint_id=endpoint_id,
            event_type=event_type,
            requested_ms=now_ms,
            deadline_ms=now_ms + int(wait_s * 1000),
        )

    def to_dict(self) -> dict[str, Any]:
        """The request as the worker reads it."""
        return {
            "id": self.id,
            "endpoint_id": self.endpoint_id,
            "event_type": self.event_type,
            "requested_ms": self.requested_ms,
            "deadline_ms": self.deadline_ms,
        }

    @classmethod
    def from_dict(cls, data: object) -> TestSendRequest:
        """Parse a request; ``ValueError`` names what is malformed."""
        fields = _object(data, "a test-send request")
        try:
            requested_ms = int(fields.get("requested_ms", 0))
            deadline_ms = int(fields["deadline_ms"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"deadline_ms is missing or not a number: {exc}") from None
        return cls(
            id=_text(fields, "id"),
            endpoint_id=_text(fields, "endpoint_id"),
            event_type=_text(fields, "event_type"),
            requested_ms=requested_ms,
            deadline_ms=deadline_ms,
        )


@dataclass(frozen=True)
class TestSendResult:
    """What the receiver of a test event answered (or why nothing came back)."""

    __test__ = False  # not a pytest test class

    endpoint_id: str
    event_id: str | None
    event_type: str
    ok: bool
    status: int | None
    error: str | None
    latency_ms: float
    response: str

    @classmethod
    def failed(cls, endpoint_id: str, event_type: str, error: str) -> TestSendResult:
        """A test event that could not be sent: the reason, no status."""
        return cls(endpoint_id, None, event_type, False, None, error, 0, "")

    def to_dict(self) -> dict[str, Any]:
        """The result as the API answers it (``TestResult``) and the CLI prints it."""
        return {
            "endpoint_id": self.endpoint_id,
            "event_id": self.event_id,
            "event_type": self.event_type,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "latency_ms": self.latency_ms,
            "response": self.response,
        }

    @classmethod
    def from_dict(cls, data: object) -> TestSendResult:
        """Parse a worker's answer, leniently: a member of the wrong type reads as absent.

        ``ValueError`` only when it is not a JSON object at all.
        """
        fields = _object(data, "a test result")
        status = fields.get("status")
        latency = fields.get("latency_ms")
        response = fields.get("response")
        return cls(
            endpoint_id=_str_or_none(fields.get("endpoint_id")) or "",
            event_id=_str_or_none(fields.get("event_id")),
            event_type=_str_or_none(fields.get("event_type")) or "",
            ok=fields.get("ok") is True,
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            error=_str_or_none(fields.get("error")),
            latency_ms=latency
            if isinstance(latency, int | float) and not isinstance(latency, bool)
            else 0.0,
            response=response if isinstance(response, str) else "",
        )


def _str_or_none(value: object) -> str | None:
    """``value`` if it is a string."""
    return value if isinstance(value, str) else None
