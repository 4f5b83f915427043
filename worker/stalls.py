"""What the limiter knows about endpoints that stall, beyond each one's cap.

* :class:`StallBudget`: each endpoint's cap bounds what one hung endpoint holds, but
  twenty hung endpoints with a cap of 10 hold 200 requests: a whole worker. So the
  requests of endpoints not known to answer (none of their requests ended here lately,
  the last one timed out, or requests in flight without an answer for
  ``stalled_after_s``) count against one budget per worker,
  ``STALLED_CONCURRENCY_SHARE`` x ``WORKER_CONCURRENCY``. Past it, such a delivery is
  deferred without spending an attempt, and endpoints that answer keep the rest.
* :class:`IdleDeferrals`: endpoints whose deliveries are deferred at their cap while no
  request is in flight for them on any worker, the signature of leases that leaked;
  counted in ``cliq_endpoints_deferring_idle`` for an alert.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field

# An endpoint none of whose requests ended for this long is not known to answer.
ANSWER_MEMORY_S = 600.0
# Deferred at the cap with nothing in flight anywhere for this long: reported.
IDLE_AFTER_S = 30.0
# Forgotten when its last such deferral is this old (a stalled endpoint's backlog
# comes back at most every MAX_STALLED_DEFERRAL_S = 60 s).
IDLE_MEMORY_S = 120.0


@dataclass
class StallBudget:
    """Requests in flight to endpoints not known to answer, against ``size`` at most."""

    size: int
    stalled_after_s: float
    in_flight: int = 0
    # endpoint id -> (when its last request ended, whether it ended with an answer)
    _ended: dict[str, tuple[float, bool]] = field(default_factory=dict)

    def ended(self, endpoint_id: str, answered: bool, now: float) -> None:
        """A request ended: with an answer (any status, a refused connection), or a timeout."""
        self._ended[endpoint_id] = (now, answered)

    def stalled(self, endpoint_id: str, busy: int, active_since: float, now: float) -> bool:
        """Its last request timed out, or its requests here got no answer for a while."""
        last = self._ended.get(endpoint_id)
        if last is not None and not last[1]:
            return True
        answered_at = last[0] if last is not None else -math.inf
        return busy > 0 and now - max(answered_at, active_since) >= self.stalled_after_s

    def suspect(self, endpoint_id: str, busy: int, active_since: float, now: float) -> bool:
        """Counted against the budget: stalled, or not seen to answer lately."""
        return endpoint_id not in self._ended or self.stalled(endpoint_id, busy, active_since, now)

    @property
    def full(self) -> bool:
        """No room for another request of a suspect endpoint."""
        return self.in_flight >= self.size

    def forget(self, now: float) -> None:
        """Drop what is known of endpoints none of whose requests ended lately."""
        old = [e for e, (at, _answered) in self._ended.items() if now - at >= ANSWER_MEMORY_S]
        for endpoint_id in old:
            del self._ended[endpoint_id]


@dataclass
class IdleDeferrals:
    """Endpoints deferred at their cap while nothing is in flight for them."""

    # endpoint id -> (nothing in flight since, last deferral)
    _since: dict[str, tuple[float, float]] = field(default_factory=dict)

    def deferred(self, endpoint_id: str, running: bool, now: float) -> None:
        """A delivery to it was deferred at its cap; ``running``: a request is in flight."""
        if running:
            self._since.pop(endpoint_id, None)
            return
        since, _ = self._since.get(endpoint_id, (now, now))
        self._since[endpoint_id] = (since, now)

    def running(self, endpoint_id: str) -> None:
        """A request for it is in flight."""
        self._since.pop(endpoint_id, None)

    def count(self, now: float) -> int:
        """Endpoints idle for ``IDLE_AFTER_S`` while still being deferred."""
        for endpoint_id, (_, last) in list(self._since.items()):
            if now - last >= IDLE_MEMORY_S:
                del self._since[endpoint_id]
        return sum(1 for since, _ in self._since.values() if now - since >= IDLE_AFTER_S)


@dataclass(frozen=True)
class Stalls:
    """A worker process's stalled-request budget and idle deferrals: one for all its
    lanes (one per partition), so ``STALLED_CONCURRENCY_SHARE`` bounds the process, not
    a lane."""

    budget: StallBudget
    idle: IdleDeferrals

    @classmethod
    def of(cls, size: int | None, stalled_after_s: float) -> Stalls:
        """``size``: requests stalled endpoints may hold together (None: no bound);
        ``stalled_after_s``: how long unanswered requests take to count as stalled."""
        return cls(
            StallBudget(sys.maxsize if size is None else size, stalled_after_s), IdleDeferrals()
        )
