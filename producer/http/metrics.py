"""The API's own Prometheus metrics (``GET /metrics``), in a registry of its own."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from producer.http.throttle import Surface
from producer.publisher import PublishResult
from producer.redis_guard import GuardMetrics


class ApiMetrics:
    """The API's own Prometheus registry. Labels are route templates, never raw paths."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.requests = Counter(
            "cliq_api_requests",
            "HTTP requests answered, by route template and status class.",
            ["route", "status_class"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "cliq_api_request_duration_seconds",
            "Time from receiving a request to its response, by route template.",
            ["route"],
            registry=self.registry,
        )
        self.events_published = Counter(
            "cliq_api_events_published",
            "Events stored and fanned out to their subscribers (duplicates not counted).",
            registry=self.registry,
        )
        self.events_duplicate = Counter(
            "cliq_api_events_duplicate",
            "Events whose id was already published: acknowledged, nothing enqueued.",
            registry=self.registry,
        )
        self.incoming_webhooks = Counter(
            "cliq_api_incoming_webhooks",
            "Calls of the incoming-webhook routes, by module and outcome (accepted, or why "
            "refused: missing_token, invalid_token, throttled, disabled, unknown_resource, "
            "forbidden, invalid_appkey).",
            ["module", "outcome"],
            registry=self.registry,
        )
        self.auth_throttled = Counter(
            "cliq_auth_throttled",
            "Failed authentications answered 429 because their source address failed "
            "more than AUTH_FAILURES_PER_MINUTE times in a minute, by surface.",
            ["surface"],
            registry=self.registry,
        )
        for surface in Surface:  # every series exists from the start, at 0
            self.auth_throttled.labels(surface.value)
        self.redis = GuardMetrics(self.registry)

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(route, f"{status // 100}xx").inc()
        self.request_duration.labels(route).observe(seconds)

    def published(self, results: Sequence[PublishResult]) -> None:
        """Count the outcome of a publish."""
        duplicates = sum(r.duplicate for r in results)
        self.events_published.inc(len(results) - duplicates)
        self.events_duplicate.inc(duplicates)

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
