"""Fan-out jobs as they travel on the queue, and the pacing primitives the delivery workers
share: pure values, no sockets."""

from __future__ import annotations

import json

import pytest

from wschat.delivery.jobs import MAX_JOB_BYTES, FanoutJob, FanoutSettings, JobError
from wschat.delivery.pacing import Backoff, TokenBucket
from wschat.delivery.sqs import MAX_BATCH_ENTRIES, _batches

ENDPOINT = "https://abc123.execute-api.ap-northeast-2.amazonaws.com/prod"


def test_a_plan_job_round_trips_with_its_cursor_and_exclusions() -> None:
    job = FanoutJob.plan("general", ENDPOINT, b'{"type":"message"}', after="m-41", exclude=["x"])
    again = FanoutJob.from_json(job.to_json())
    assert again == job
    assert again.kind == "plan" and again.after == "m-41" and again.exclude == {"x"}


def test_a_deliver_job_round_trips_its_ids_in_order() -> None:
    ids = [f"L0SM{i:04d}cOFvHcCIhw=" for i in range(500)]
    job = FanoutJob.deliver("general", ENDPOINT, "안녕 🌏".encode(), ids)
    again = FanoutJob.from_json(job.to_json())
    assert list(again.ids) == ids
    assert again.data.decode() == "안녕 🌏"


def test_a_frame_that_is_not_utf8_travels_as_base64() -> None:
    data = b"\x00\xff\xfe binary"
    body = FanoutJob.deliver("r", ENDPOINT, data, ["a"]).to_json()
    assert "b64" in json.loads(body)
    assert FanoutJob.from_json(body).data == data


def test_a_page_of_500_ids_with_a_long_message_fits_in_one_sqs_message() -> None:
    ids = [f"L0SM{i:04d}cOFvHcCIhw=" for i in range(FanoutSettings().page_size)]
    frame = json.dumps({"type": "message", "text": "가" * 4000}, ensure_ascii=False).encode()
    assert len(FanoutJob.deliver("r", ENDPOINT, frame, ids).to_json().encode()) < MAX_JOB_BYTES


def test_a_job_over_256_kib_is_refused_before_it_is_sent() -> None:
    ids = [f"{i:020d}" for i in range(20_000)]
    with pytest.raises(JobError, match="256 KiB"):
        FanoutJob.deliver("r", ENDPOINT, b"x", ids).to_json()


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        "[]",
        '{"v": 2, "kind": "plan", "room": "r", "endpoint": "e", "text": ""}',
        '{"v": 1, "kind": "shout", "room": "r", "endpoint": "e", "text": ""}',
        '{"v": 1, "kind": "plan", "room": "r", "text": ""}',
        '{"v": 1, "kind": "plan", "room": "r", "endpoint": "e"}',
        '{"v": 1, "kind": "deliver", "room": "r", "endpoint": "e", "text": "x"}',
        '{"v": 1, "kind": "deliver", "room": "r", "endpoint": "e", "text": "x", "ids": [1]}',
        '{"v": 1, "kind": "plan", "room": "r", "endpoint": "e", "text": "x", "after": 3}',
    ],
)
def test_a_message_that_is_not_a_job_is_a_job_error(body: str) -> None:
    with pytest.raises(JobError):
        FanoutJob.from_json(body)


def test_settings_refuse_sizes_that_cannot_work() -> None:
    with pytest.raises(ValueError):
        FanoutSettings(page_size=0)
    with pytest.raises(ValueError):
        FanoutSettings(inline_limit=-1)


def test_send_message_batches_hold_at_most_ten_entries_and_256_kib() -> None:
    small = ["x" * 10] * 25
    assert [len(batch) for batch in _batches(small)] == [10, 10, 5]
    big = ["y" * 100_000] * 5
    batches = _batches(big)
    assert all(sum(len(body) for body in batch) <= MAX_JOB_BYTES for batch in batches)
    assert sum(len(batch) for batch in batches) == 5
    assert max(len(batch) for batch in _batches(small + big)) <= MAX_BATCH_ENTRIES


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_token_bucket_spends_its_burst_then_paces_at_its_rate() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, burst=5, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        assert bucket.acquire()
    assert clock.slept == []
    for _ in range(100):
        assert bucket.acquire()
    # 100 more tokens at 100/s: one second of waiting, in all.
    assert sum(clock.slept) == pytest.approx(1.0, rel=1e-6)


def test_a_token_bucket_gives_up_at_the_deadline_without_sleeping_past_it() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1, burst=1, clock=clock, sleep=clock.sleep)
    assert bucket.acquire(deadline=clock.now + 0.5)
    assert not bucket.acquire(deadline=clock.now + 0.5)
    assert clock.slept == []


def test_a_token_bucket_refills_no_more_than_its_burst() -> None:
    clock = FakeClock()
    bucket = TokenBucket(10, burst=3, clock=clock, sleep=clock.sleep)
    clock.now += 3600
    for _ in range(3):
        assert bucket.acquire()
    assert clock.slept == []
    assert bucket.acquire()
    assert clock.slept == [pytest.approx(0.1)]


def test_a_token_bucket_needs_a_positive_rate() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_backoff_grows_exponentially_up_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(base=0.05, cap=1.0)
    highest = [backoff.delay(n, rand=lambda low, high: high) for n in range(1, 8)]
    assert highest == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert all(backoff.delay(n, rand=lambda low, high: low) == 0.0 for n in range(1, 8))
