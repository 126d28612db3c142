"""The local queue store's SQS semantics, with a clock the test moves by hand: visibility
timeouts, receive counts, redrive to the dead-letter queue, batch limits, receipt handles,
in-flight messages released at start, and the state surviving a reopen."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wschat.gateway.queues import (
    QueueError,
    QueueStore,
    SendEntry,
    md5_of_message_attributes,
    queue_arn,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> QueueStore:
    store = QueueStore(":memory:", clock=clock)
    store.create_queue("jobs", {"VisibilityTimeout": "30"})
    return store


def send(store: QueueStore, *bodies: str, queue: str = "jobs") -> list[str]:
    return [store.send(queue, SendEntry(body)).message_id for body in bodies]


def with_dlq(store: QueueStore, max_receive_count: int = 2) -> None:
    store.create_queue("jobs-dlq")
    policy = {
        "deadLetterTargetArn": queue_arn("jobs-dlq", store.region),
        "maxReceiveCount": max_receive_count,
    }
    store.set_attributes("jobs", {"RedrivePolicy": json.dumps(policy)})


# --- visibility ---------------------------------------------------------------------------------


def test_a_received_message_is_hidden_for_the_visibility_timeout(
    store: QueueStore, clock: Clock
) -> None:
    (message_id,) = send(store, "a")
    (first,) = store.receive("jobs")
    assert first.message_id == message_id
    assert first.body == "a"
    assert store.receive("jobs") == []
    clock.advance(29.9)
    assert store.receive("jobs") == []
    clock.advance(0.2)
    (again,) = store.receive("jobs")
    assert again.message_id == message_id
    assert again.receipt_handle != first.receipt_handle


def test_receive_counts_and_timestamps(store: QueueStore, clock: Clock) -> None:
    send(store, "a")
    sent_ms = int(clock.now * 1000)
    clock.advance(1)
    (first,) = store.receive("jobs", visibility_timeout=0)
    clock.advance(1)
    (second,) = store.receive("jobs")
    assert first.attributes["ApproximateReceiveCount"] == "1"
    assert second.attributes["ApproximateReceiveCount"] == "2"
    assert second.attributes["SentTimestamp"] == str(sent_ms)
    assert second.attributes["ApproximateFirstReceiveTimestamp"] == str(sent_ms + 1000)
    assert second.md5_of_body == "0cc175b9c0f1b6a831c399e269772661"  # md5("a")


def test_change_visibility_to_zero_makes_a_message_visible_at_once(store: QueueStore) -> None:
    send(store, "a")
    (message,) = store.receive("jobs")
    store.change_visibility("jobs", message.receipt_handle, 0)
    assert [m.body for m in store.receive("jobs")] == ["a"]


def test_change_visibility_extends_from_now(store: QueueStore, clock: Clock) -> None:
    send(store, "a")
    (message,) = store.receive("jobs")
    clock.advance(20)
    store.change_visibility("jobs", message.receipt_handle, 60)
    clock.advance(59)
    assert store.receive("jobs") == []
    clock.advance(2)
    assert len(store.receive("jobs")) == 1


def test_change_visibility_of_a_visible_message_is_not_in_flight(
    store: QueueStore, clock: Clock
) -> None:
    send(store, "a")
    (message,) = store.receive("jobs")
    clock.advance(31)
    with pytest.raises(QueueError) as raised:
        store.change_visibility("jobs", message.receipt_handle, 10)
    assert raised.value.kind == "MessageNotInflight"


def test_counts_visible_in_flight_and_delayed(store: QueueStore) -> None:
    send(store, "a", "b", "c")
    store.send("jobs", SendEntry("later", delay_seconds=60))
    store.receive("jobs")
    counts = store.counts("jobs")
    assert (counts.visible, counts.not_visible, counts.delayed) == (2, 1, 1)
    attributes = store.attributes("jobs", ["ApproximateNumberOfMessages"])
    assert attributes == {"ApproximateNumberOfMessages": "2"}


def test_delay_seconds_hide_a_new_message(store: QueueStore, clock: Clock) -> None:
    store.set_attributes("jobs", {"DelaySeconds": "5"})
    send(store, "a")
    assert store.receive("jobs") == []
    clock.advance(5)
    assert len(store.receive("jobs")) == 1


def test_retention_drops_old_messages(store: QueueStore, clock: Clock) -> None:
    store.set_attributes("jobs", {"MessageRetentionPeriod": "60"})
    send(store, "a")
    clock.advance(61)
    assert store.receive("jobs") == []
    assert store.counts("jobs").visible == 0


# --- deleting -----------------------------------------------------------------------------------


def test_delete_with_the_receipt_handle_removes_the_message(
    store: QueueStore, clock: Clock
) -> None:
    send(store, "a")
    (message,) = store.receive("jobs")
    store.delete("jobs", message.receipt_handle)
    clock.advance(31)
    assert store.receive("jobs") == []
    store.delete("jobs", message.receipt_handle)  # already deleted: SQS accepts it


def test_a_stale_receipt_handle_deletes_nothing(store: QueueStore, clock: Clock) -> None:
    send(store, "a")
    (first,) = store.receive("jobs")
    clock.advance(31)
    (second,) = store.receive("jobs")
    store.delete("jobs", first.receipt_handle)  # succeeds, as SQS documents, but...
    store.change_visibility("jobs", second.receipt_handle, 0)
    assert [m.message_id for m in store.receive("jobs")] == [first.message_id]


@pytest.mark.parametrize("handle", ["garbage", "", "YWJj"])
def test_a_malformed_receipt_handle_is_invalid(store: QueueStore, handle: str) -> None:
    with pytest.raises(QueueError) as raised:
        store.delete("jobs", handle)
    assert raised.value.kind == "ReceiptHandleIsInvalid"


def test_another_queues_receipt_handle_is_invalid(store: QueueStore) -> None:
    store.create_queue("other")
    send(store, "a", queue="other")
    (message,) = store.receive("other")
    with pytest.raises(QueueError) as raised:
        store.delete("jobs", message.receipt_handle)
    assert raised.value.kind == "ReceiptHandleIsInvalid"


def test_purge_empties_the_queue(store: QueueStore) -> None:
    send(store, "a", "b")
    store.purge("jobs")
    assert store.counts("jobs").visible == 0


# --- redrive ------------------------------------------------------------------------------------


def test_past_max_receive_count_a_message_moves_to_the_dlq(store: QueueStore, clock: Clock) -> None:
    with_dlq(store, max_receive_count=2)
    (message_id,) = send(store, "poison")
    for _ in range(2):
        assert [m.message_id for m in store.receive("jobs")] == [message_id]
        clock.advance(31)
    assert store.receive("jobs") == []  # the third receive moves it instead of returning it
    (dead,) = store.receive("jobs-dlq")
    assert dead.message_id == message_id
    assert dead.body == "poison"
    assert dead.attributes["DeadLetterQueueSourceArn"] == queue_arn("jobs", store.region)


def test_redrive_notifies_the_dlq(clock: Clock) -> None:
    notified: list[str] = []
    store = QueueStore(clock=clock, listener=notified.append)
    store.create_queue("jobs")
    with_dlq(store, max_receive_count=1)
    send(store, "x")
    store.receive("jobs", visibility_timeout=0)
    notified.clear()
    store.receive("jobs")
    assert notified == ["jobs-dlq"]


def test_redrive_policy_needs_an_existing_dlq(store: QueueStore) -> None:
    policy = json.dumps(
        {"deadLetterTargetArn": queue_arn("nope", "us-east-1"), "maxReceiveCount": 3}
    )
    with pytest.raises(QueueError) as raised:
        store.set_attributes("jobs", {"RedrivePolicy": policy})
    assert raised.value.kind == "InvalidAttributeValue"


# --- batches ------------------------------------------------------------------------------------


def test_send_batch_reports_each_entry(store: QueueStore) -> None:
    sent, failed = store.send_batch(
        "jobs",
        [
            SendEntry("ok", entry_id="a"),
            SendEntry("bad\x00", entry_id="b"),
            SendEntry("x", entry_id="c"),
        ],
    )
    assert [s.entry_id for s in sent] == ["a", "c"]
    assert [(f.entry_id, f.code) for f in failed] == [("b", "InvalidMessageContents")]
    assert store.counts("jobs").visible == 2


@pytest.mark.parametrize(
    ("entries", "kind"),
    [
        ([], "EmptyBatchRequest"),
        ([SendEntry("x", entry_id=f"e{i}") for i in range(11)], "TooManyEntriesInBatchRequest"),
        ([SendEntry("x", entry_id="a"), SendEntry("y", entry_id="a")], "BatchEntryIdsNotDistinct"),
        ([SendEntry("x", entry_id="bad id!")], "InvalidBatchEntryId"),
        (
            [SendEntry("x" * 200_000, entry_id="a"), SendEntry("y" * 100_000, entry_id="b")],
            "BatchRequestTooLong",
        ),
    ],
)
def test_batch_shape_errors_refuse_the_whole_batch(
    store: QueueStore, entries: list[SendEntry], kind: str
) -> None:
    with pytest.raises(QueueError) as raised:
        store.send_batch("jobs", entries)
    assert raised.value.kind == kind
    assert store.counts("jobs").visible == 0


def test_receive_takes_at_most_ten(store: QueueStore) -> None:
    send(store, *[str(i) for i in range(15)])
    assert len(store.receive("jobs", max_messages=10)) == 10
    with pytest.raises(QueueError):
        store.receive("jobs", max_messages=11)


def test_a_message_over_the_maximum_size_is_refused(store: QueueStore) -> None:
    store.set_attributes("jobs", {"MaximumMessageSize": "1024"})
    with pytest.raises(QueueError) as raised:
        store.send("jobs", SendEntry("x" * 1025))
    assert raised.value.kind == "InvalidParameterValue"


def test_message_attributes_round_trip_with_their_md5(store: QueueStore) -> None:
    attributes = {"kind": {"DataType": "String", "StringValue": "plan"}}
    sent = store.send("jobs", SendEntry("a", attributes=attributes))
    (message,) = store.receive("jobs")
    assert message.message_attributes == attributes
    assert (
        message.md5_of_attributes == sent.md5_of_attributes == md5_of_message_attributes(attributes)
    )


# --- queues -------------------------------------------------------------------------------------


def test_unknown_queue_does_not_exist(store: QueueStore) -> None:
    with pytest.raises(QueueError) as raised:
        store.send("nope", SendEntry("a"))
    assert raised.value.kind == "QueueDoesNotExist"
    assert raised.value.code == "AWS.SimpleQueueService.NonExistentQueue"


def test_create_queue_is_idempotent_but_refuses_other_attributes(store: QueueStore) -> None:
    store.create_queue("jobs", {"VisibilityTimeout": "30"})
    with pytest.raises(QueueError) as raised:
        store.create_queue("jobs", {"VisibilityTimeout": "5"})
    assert raised.value.kind == "QueueNameExists"


def test_fifo_queues_are_refused(store: QueueStore) -> None:
    with pytest.raises(QueueError, match="FIFO"):
        store.create_queue("jobs.fifo", {"FifoQueue": "true"})


def test_ensure_queue_replaces_attributes_and_keeps_messages(store: QueueStore) -> None:
    send(store, "a")
    store.ensure_queue("jobs", {"VisibilityTimeout": "5"})
    assert store.visibility_timeout("jobs") == 5
    assert store.counts("jobs").visible == 1


@pytest.mark.parametrize(
    "attributes",
    [{"VisibilityTimeout": "-1"}, {"VisibilityTimeout": "abc"}, {"DelaySeconds": "901"}],
)
def test_bad_attribute_values_are_refused(store: QueueStore, attributes: dict[str, str]) -> None:
    with pytest.raises(QueueError) as raised:
        store.set_attributes("jobs", attributes)
    assert raised.value.kind == "InvalidAttributeValue"


def test_unknown_attribute_names_are_refused(store: QueueStore) -> None:
    with pytest.raises(QueueError) as raised:
        store.set_attributes("jobs", {"Colour": "blue"})
    assert raised.value.kind == "InvalidAttributeName"


# --- restarts -----------------------------------------------------------------------------------


def test_release_all_in_flight_makes_received_messages_visible(
    store: QueueStore,
) -> None:
    send(store, "a", "b")
    store.receive("jobs", max_messages=2)
    assert store.release_all_in_flight() == 2
    assert len(store.receive("jobs", max_messages=10)) == 2


def test_queues_and_messages_survive_a_reopen(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "queues.sqlite3"
    first = QueueStore(path, clock=clock)
    first.create_queue("jobs", {"VisibilityTimeout": "7"})
    send(first, "kept", "in flight")
    first.receive("jobs")
    first.close()

    second = QueueStore(path, clock=clock)
    assert second.visibility_timeout("jobs") == 7
    assert second.release_all_in_flight() == 1
    assert sorted(m.body for m in second.receive("jobs", max_messages=10)) == [
        "in flight",
        "kept",
    ]
