"""An endpoint's kind: ``http`` (deliveries are POSTed to its URL) or ``poll`` (its
consumer fetches them, in order, and acknowledges them: :mod:`producer.polling`).

A poll endpoint has no URL (giving one is refused, naming the field) and may have no
owner email: nothing is sent anywhere for it, and it never turns failing. The kind is
chosen at creation and never changes.
"""

from __future__ import annotations

from enum import StrEnum

from producer.endpoint_rules import EndpointError, validate_email, validate_url


class EndpointKind(StrEnum):
    """How an endpoint receives its deliveries."""

    HTTP = "http"
    POLL = "poll"


KINDS = ", ".join(kind.value for kind in EndpointKind)


def validate_kind(value: object) -> EndpointKind:
    """``http`` or ``poll``."""
    if not isinstance(value, str) or value not in tuple(EndpointKind):
        raise EndpointError("kind", f"must be one of {KINDS}")
    return EndpointKind(value)


def validate_destination(kind: EndpointKind, url: str, owner_email: str) -> tuple[str, str]:
    """The URL and owner email an endpoint of ``kind`` may have: an http endpoint needs
    both; a poll endpoint takes no URL and an optional email."""
    if kind == EndpointKind.HTTP:
        return validate_url(url), validate_email(owner_email)
    if url:
        raise EndpointError("url", "a poll endpoint has no URL: its consumer fetches its messages")
    return "", validate_email(owner_email) if owner_email else ""
