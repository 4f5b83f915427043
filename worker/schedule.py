"""The retry schedule: when each attempt of a delivery is due. Pure functions of time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# The seed's "Retry Policy": attempt 1 immediately, then 1 min, 5 min, 30 min, 2 h
# after the previous failure. After the 5th failure the endpoint is marked failing.
DEFAULT_SCHEDULE_S: tuple[float, ...] = (0, 60, 300, 1800, 7200)
MAX_ATTEMPTS = 50


class ScheduleError(ValueError):
    """A ``RETRY_SCHEDULE`` that cannot be used."""


@dataclass(frozen=True)
class RetrySchedule:
    """``delays_s[k]`` is the wait before attempt ``k + 1`` (after attempt ``k`` failed).

    The first entry is always 0: attempt 1 is made as soon as the event is published.
    """

    delays_s: tuple[float, ...] = DEFAULT_SCHEDULE_S

    @classmethod
    def parse(cls, text: str) -> RetrySchedule:
        """Parse ``"0,60,300,1800,7200"`` (seconds; fractions allowed for tests)."""
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise ScheduleError(f"{text!r}: give comma-separated seconds, e.g. 0,60,300,1800,7200")
        try:
            delays = tuple(float(p) for p in parts)
        except ValueError as exc:
            raise ScheduleError(f"{text!r}: every entry must be a number of seconds") from exc
        return cls.of(delays)

    @classmethod
    def of(cls, delays: Sequence[float]) -> RetrySchedule:
        """Validate a sequence of delays."""
        if not 1 <= len(delays) <= MAX_ATTEMPTS:
            raise ScheduleError(f"between 1 and {MAX_ATTEMPTS} attempts, got {len(delays)}")
        if delays[0] != 0:
            # Publishing enqueues attempt 1 at once; a schedule saying otherwise would lie.
            raise ScheduleError("the first attempt is immediate: the schedule must start with 0")
        for delay in delays:
            if not 0 <= delay <= 7 * 24 * 3600 or delay != delay:
                raise ScheduleError(f"delay {delay!r} must be between 0 s and 7 days")
        return cls(tuple(delays))

    @property
    def attempts(self) -> int:
        """How many attempts a delivery gets before it is dead."""
        return len(self.delays_s)

    def delay_after_failure(
        self, attempt_in_round: int, retry_after_s: float | None = None
    ) -> float | None:
        """Seconds to wait after attempt ``attempt_in_round`` (1-based) failed; None: give up.

        A receiver's ``Retry-After`` pushes the next attempt later, never past the
        schedule's longest step, and never adds attempts.
        """
        if attempt_in_round < 1:
            raise ValueError("attempts are numbered from 1")
        if attempt_in_round >= self.attempts:
            return None
        delay = self.delays_s[attempt_in_round]
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, max(self.delays_s)))
        return delay

    def next_attempt_at(
        self, attempt_in_round: int, failed_at_s: float, retry_after_s: float | None = None
    ) -> float | None:
        """When the attempt after a failed ``attempt_in_round`` is due; None: give up."""
        delay = self.delay_after_failure(attempt_in_round, retry_after_s)
        return None if delay is None else failed_at_s + delay

    def __str__(self) -> str:
        return ",".join(f"{d:g}" for d in self.delays_s)
