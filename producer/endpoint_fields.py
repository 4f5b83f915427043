"""Every error of an endpoint's fields at once, for callers that report them all.

The registry checks each field as it creates or edits an endpoint and stops at the first
bad one; the API and the CLI run every field's own rule (:mod:`producer.endpoints`) first,
so a request with three bad values hears of all three.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from producer.endpoint_options import validate_headers, validate_timeout
from producer.endpoint_rules import (
    EndpointError,
    checked,
    validate_email,
    validate_filter,
    validate_max_in_flight,
    validate_rate_limit,
    validate_url,
    validate_workspace,
)
from producer.events import Catalogue
from producer.fifo import validate_ordering
from producer.filters import compile_filter


def invalid_fields(
    fields: Mapping[str, Any], catalogue: Catalogue, max_timeout_s: float
) -> list[EndpointError]:
    """Every error of the given endpoint fields (named as :meth:`EndpointRegistry.create`
    takes them; ``headers`` as (name, value) pairs), each found by its field's own rule:
    a caller reports them all at once instead of the first. ``max_timeout_s``: the
    registry's (DELIVERY_TIMEOUT). The destination policy is checked on registering."""
    checks: dict[str, Callable[[Any], object]] = {
        "workspace_id": validate_workspace,
        "url": validate_url,
        "events": lambda patterns: validate_filter(patterns, catalogue),
        "owner_email": validate_email,
        "max_in_flight": validate_max_in_flight,
        "rate_limit": validate_rate_limit,
        "ordering": lambda value: checked("ordering", validate_ordering, value),
        "filter": lambda source: checked("filter", compile_filter, source),
        "headers": lambda pairs: checked("headers", validate_headers, pairs),
        "timeout_s": lambda value: checked("timeout_s", validate_timeout, value, max_timeout_s),
    }
    if fields.get("kind") == "poll":
        # A poll endpoint takes no URL and an optional email: the registry's rule of its
        # kind (producer.endpoint_kind) says so, naming the field.
        del checks["url"], checks["owner_email"]
    errors: list[EndpointError] = []
    for name, check in checks.items():
        if name in fields:
            try:
                check(fields[name])
            except EndpointError as exc:
                errors.append(exc)
    return errors
