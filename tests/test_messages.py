"""The messages between processes: each round-trips through to_dict/from_dict, and a
malformed one is a ValueError (its consumer counts it and drops it)."""

from __future__ import annotations

import pytest

from producer.messages import NotificationJob, TestSendRequest, TestSendResult


def test_a_notification_job_round_trips_and_a_malformed_one_is_refused() -> None:
    job = NotificationJob("ep_1", "dlv_1", "evt_1", 5, "HTTP 500: boom", 1_700_000_000_000, "gone")
    assert NotificationJob.from_dict(job.to_dict()) == job
    assert job.gone
    older = {k: v for k, v in job.to_dict().items() if k != "reason"}
    assert NotificationJob.from_dict(older).reason == "failing"  # before reasons were sent
    for broken in ("x", {}, {**job.to_dict(), "attempts": "5"}, {**job.to_dict(), "event_id": 1}):
        with pytest.raises(ValueError, match=r"notification job data|must be"):
            NotificationJob.from_dict(broken)


def test_a_test_send_request_round_trips_and_a_malformed_one_is_refused() -> None:
    request = TestSendRequest.new("ep_1", "issue.created", 2.5)
    assert request.id.startswith("ts_")
    assert request.deadline_ms == request.requested_ms + 2500
    assert TestSendRequest.from_dict(request.to_dict()) == request
    broken_requests: list[object] = [[], {"id": "ts_1"}, {**request.to_dict(), "deadline_ms": "x"}]
    for broken in broken_requests:
        with pytest.raises(ValueError, match=r"JSON object|deadline_ms"):
            TestSendRequest.from_dict(broken)


def test_a_test_send_result_round_trips_and_reads_wrong_members_as_absent() -> None:
    result = TestSendResult("ep_1", "evt_1", "issue.created", True, 204, None, 12.5, "")
    assert TestSendResult.from_dict(result.to_dict()) == result
    odd = TestSendResult.from_dict({"ok": 1, "status": True, "latency_ms": "fast", "error": 5})
    assert (odd.ok, odd.status, odd.latency_ms, odd.error, odd.response) == (
        False,
        None,
        0.0,
        None,
        "",
    )
    with pytest.raises(ValueError, match="JSON object"):
        TestSendResult.from_dict(["not", "an", "object"])
