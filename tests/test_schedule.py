"""The retry schedule: the seed's default exactly, and what RETRY_SCHEDULE accepts."""

import pytest

from worker.schedule import DEFAULT_SCHEDULE_S, RetrySchedule, ScheduleError


def test_default_is_the_seed_policy() -> None:
    schedule = RetrySchedule()
    assert schedule.delays_s == (0, 60, 300, 1800, 7200)
    assert schedule.attempts == 5
    # After attempt k fails, attempt k+1 waits: 1 min, 5 min, 30 min, 2 h; after 5, give up.
    assert [schedule.delay_after_failure(k) for k in range(1, 6)] == [60, 300, 1800, 7200, None]


def test_next_attempt_at_is_a_pure_function_of_the_failure_time() -> None:
    schedule = RetrySchedule()
    failed_at = 1_700_000_000.0
    assert schedule.next_attempt_at(1, failed_at) == failed_at + 60
    assert schedule.next_attempt_at(4, failed_at) == failed_at + 7200
    assert schedule.next_attempt_at(5, failed_at) is None


def test_parse_round_trips_the_default() -> None:
    assert RetrySchedule.parse("0,60,300,1800,7200") == RetrySchedule(DEFAULT_SCHEDULE_S)
    assert str(RetrySchedule()) == "0,60,300,1800,7200"


def test_compressed_schedules_for_tests_are_accepted() -> None:
    schedule = RetrySchedule.parse("0, 0.2, 0.5, 1, 2")
    assert schedule.delays_s == (0, 0.2, 0.5, 1, 2)
    assert schedule.delay_after_failure(2) == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "comma-separated"),
        ("0,,60", "comma-separated"),
        ("0,abc", "must be a number"),
        ("0,-5", "between 0 s and 7 days"),
        ("0,nan", "between 0 s and 7 days"),
        ("10,60", "must start with 0"),
        (",".join(["0"] * 51), "between 1 and 50 attempts"),
    ],
)
def test_bad_schedules_are_rejected_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message):
        RetrySchedule.parse(text)


def test_attempt_numbers_start_at_one() -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        RetrySchedule().delay_after_failure(0)


def test_retry_after_pushes_the_next_attempt_later_but_not_past_the_longest_step() -> None:
    schedule = RetrySchedule()
    assert schedule.delay_after_failure(1, retry_after_s=120) == 120
    assert schedule.delay_after_failure(1, retry_after_s=5) == 60  # never earlier than planned
    assert schedule.delay_after_failure(2, retry_after_s=86_400) == 7200  # capped
    assert schedule.delay_after_failure(5, retry_after_s=10) is None  # adds no attempt
    assert schedule.next_attempt_at(1, 1000.0, retry_after_s=90) == 1090.0
