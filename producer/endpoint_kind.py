"""An endpoint's kind: ``http`` (deliveries are POSTed to its URL) or ``poll`` (its
consumer fetches them, in order, and acknowledges them: :mod:`producer.polling`).

A poll endpoint has no URL (giving one is refused, naming the field) and may have no
owner email: nothing is sent anywhere for it, and it never turns failing. The kind is
chosen at creation and never changes.
"""

from __future__ import annotations

from collections.abc import Callable
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
    both; a poll endpoint takes no URL and an optional email. Raises the first error of
    :func:`destination_errors`."""
    errors = destination_errors(kind, url, owner_email)
    if errors:
        raise errors[0]
    return url, owner_email


def destination_errors(kind: EndpointKind, url: str, owner_email: str) -> list[EndpointError]:
    """Every error of the URL and the owner email for an endpoint of ``kind`` (the URL's
    first)."""
    errors: list[EndpointError] = []
    if kind == EndpointKind.POLL and url:
        errors.append(
            EndpointError("url", "a poll endpoint has no URL: its consumer fetches its messages")
        )
    checks: list[Callable[[], object]] = []
    if kind == EndpointKind.HTTP:
        checks.append(lambda: validate_url(url))
    if kind == EndpointKind.HTTP or owner_email:
        checks.append(lambda: validate_email(owner_email))
    for check in checks:
        try:
            check()
        except EndpointError as exc:
            errors.append(exc)
    return errors
