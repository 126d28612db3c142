"""The one deliverer (``ChatService._to_room``) and the fan-out jobs it queues for big rooms,
run without sockets: the chat service over SQLite, a recording sender, and a list for a queue.
The real queues (SQS on moto_server, the gateway's own) are tested in tests/integration."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from tests.support.events import LambdaContext
from tests.unit.conftest import SAMPLE_ENDPOINT, Chat, RecordingSender

from wschat.delivery.jobs import FanoutJob, FanoutSettings, QueueUnavailable
from wschat.handlers import _runtime, deliver
from wschat.service import ChatConfig
from wschat.storage.sqlite import SqliteStore

ENDPOINT = "https://abc123.execute-api.ap-northeast-2.amazonaws.com/prod"


class ListQueue:
    """A JobQueue that keeps what it is sent; ``down`` makes it refuse, as SQS unreachable."""

    def __init__(self) -> None:
        self.jobs: list[FanoutJob] = []
        self.down = False
        self.sends = 0
        self.delays: list[int] = []

    def send(self, jobs: Sequence[FanoutJob], *, delay_seconds: int = 0) -> None:
        self.delays.append(delay_seconds)
        if self.down:
            raise QueueUnavailable("SendMessageBatch: connection refused")
        self.sends += 1
        # Through JSON and back: what a job survives on a real queue.
        self.jobs.extend(FanoutJob.from_json(job.to_json()) for job in jobs)


def big_room_chat(
    queue: ListQueue, inline_limit: int = 3, page_size: int = 2, plan_pages: int = 2
) -> Chat:
    config = ChatConfig(
        fanout=FanoutSettings(inline_limit=inline_limit, page_size=page_size, plan_pages=plan_pages)
    )
    chat = Chat(config)
    chat.service.queue = queue
    chat.service.endpoint = ENDPOINT
    return chat


@pytest.fixture
def queue() -> ListQueue:
    return ListQueue()


@pytest.fixture
def chat(queue: ListQueue) -> Iterator[Chat]:
    opened = big_room_chat(queue)
    yield opened
    opened.close()


def fill(chat: Chat, count: int, room: str = "big") -> list[str]:
    """``count`` connections in ``room`` (and lobby), with what their arrivals sent dropped."""
    ids = [f"m{n:02d}" for n in range(count)]
    for connection_id in ids:
        chat.connect(connection_id, name=f"user{connection_id}", room=room)
    assert isinstance(chat.service.queue, ListQueue)
    chat.service.queue.jobs.clear()  # `joined` in rooms grown past the limit
    chat.sender.clear()
    chat.sender.batch_calls = 0
    return ids


def drain(chat: Chat, queue: ListQueue) -> int:
    """Run every queued job, as the delivery function would; returns how many ran."""
    ran = 0
    while queue.jobs:
        job = queue.jobs.pop(0)
        outcome = chat.service.deliver(job)
        assert outcome.failed == 0
        ran += 1
    return ran


def messages_to(sender: RecordingSender, connection_id: str) -> list[str]:
    return [event["text"] for event in sender.received(connection_id, "message")]


def test_a_room_at_the_inline_limit_is_posted_to_at_once(chat: Chat, queue: ListQueue) -> None:
    members = fill(chat, 3)

    outcome = chat.do(members[0], "sendMessage", room="big", message="hi")

    assert queue.jobs == [] and outcome.queued == 0
    assert all(messages_to(chat.sender, m) == ["hi"] for m in members)
    assert chat.sender.batch_calls == 1  # the ack and the message in one sender call


def test_a_room_over_the_limit_is_queued_and_every_member_gets_it_once(
    chat: Chat, queue: ListQueue
) -> None:
    members = fill(chat, 9)

    outcome = chat.do(members[0], "sendMessage", room="big", message="hello all")

    # Stored, acknowledged, queued as one plan job; nobody has the message yet.
    assert outcome.queued == 1
    assert [job.kind for job in queue.jobs] == ["plan"]
    assert chat.sender.types(members[0]) == ["ack"]
    assert all(messages_to(chat.sender, m) == [] for m in members)
    assert queue.jobs[0].endpoint == ENDPOINT

    ran = drain(chat, queue)

    # 9 ids, 2 a page, 2 pages a plan job: plans at 0, 4 and 8, deliver jobs of 2, 2, 2, 2, 1.
    assert ran == 3 + 5
    assert all(messages_to(chat.sender, m) == ["hello all"] for m in members)


def test_plan_jobs_queue_the_rest_of_the_room_amid_its_pages(chat: Chat, queue: ListQueue) -> None:
    members = fill(chat, 9)
    chat.do(members[0], "sendMessage", room="big", message="x")
    plan = queue.jobs.pop()

    outcome = chat.service.deliver(plan)

    assert [job.kind for job in queue.jobs] == ["deliver", "plan", "deliver"]
    assert queue.jobs[1].after == members[3]
    assert [list(job.ids) for job in queue.jobs[::2]] == [members[0:2], members[2:4]]
    assert outcome.queued == 3 and outcome.delivered == 0


def test_rooms_sent_at_once_take_turns_on_the_queue(chat: Chat, queue: ListQueue) -> None:
    for room in ("a", "b"):
        for n in range(6):
            chat.connect(f"{room}{n}", name=f"user{room}{n}", room=room)
    queue.jobs.clear()
    chat.do("a0", "sendMessage", room="a", message="x")
    chat.do("b0", "sendMessage", room="b", message="y")

    order: list[str] = []
    while queue.jobs:  # first in, first out, as a queue with a backlog hands them out
        job = queue.jobs.pop(0)
        if job.kind == "deliver":
            order.append(job.room)
        chat.service.deliver(job)

    # 4 ids a plan job: a's first 4, b's first 4, then the rest of each.
    assert order == ["a", "a", "b", "b", "a", "b"]


def test_a_room_ending_on_a_full_plan_leaves_a_last_plan_that_finds_nothing(
    chat: Chat, queue: ListQueue
) -> None:
    members = fill(chat, 4)
    chat.do(members[0], "sendMessage", room="big", message="x")

    drain(chat, queue)

    assert all(messages_to(chat.sender, m) == ["x"] for m in members)


def test_with_the_queue_down_a_big_room_is_delivered_inline_page_by_page(
    chat: Chat, queue: ListQueue
) -> None:
    members = fill(chat, 7)
    queue.down = True

    outcome = chat.do(members[0], "sendMessage", room="big", message="still here")

    # Stored, so acked; delivered by this invocation instead of being refused.
    assert outcome.queued == 0 and outcome.delivered == 7
    assert chat.sender.types(members[0])[0] == "ack"
    assert all(messages_to(chat.sender, m) == ["still here"] for m in members)
    assert any("queue unavailable" in message for message, _ in chat.log.warnings)


def test_without_a_queue_a_big_room_is_delivered_inline(queue: ListQueue) -> None:
    chat = big_room_chat(queue)
    members = fill(chat, 5)
    chat.service.queue = None

    chat.do(members[0], "sendMessage", room="big", message="inline")

    assert all(messages_to(chat.sender, m) == ["inline"] for m in members)
    chat.close()


def test_presence_events_of_a_big_room_go_through_the_same_deliverer(
    chat: Chat, queue: ListQueue
) -> None:
    members = fill(chat, 5)

    chat.connect("late", name="latecomer", room="big")

    # Lobby and big both grew past the limit. The joiner is still in its $connect: the plan
    # jobs leave it out.
    assert sorted(job.room for job in queue.jobs) == ["big", "lobby"]
    assert all(job.kind == "plan" and job.exclude == {"late"} for job in queue.jobs)
    drain(chat, queue)
    for member in members:
        joined = chat.sender.received(member, "joined")
        assert sorted(e["room"] for e in joined) == ["big", "lobby"]
        assert {e["name"] for e in joined} == {"latecomer"}
    assert chat.sender.received("late", "joined") == []


def test_a_deliver_job_forgets_the_gone_and_reports_the_failed(
    chat: Chat, queue: ListQueue
) -> None:
    members = fill(chat, 4)
    chat.sender.gone.add(members[1])
    chat.sender.failing[members[2]] = "HTTP 429 LimitExceededException"
    job = FanoutJob.deliver("big", ENDPOINT, b'{"type":"message"}', members)
    chat.clock.advance(60_000)  # past $connect's time: a 410 is a departure

    outcome = chat.service.deliver(job, deadline=None)

    # 2 of the job's posts delivered, 1 gone, 1 handed on to a later job of its own; its
    # `left` in lobby and big reached the 2 others of each (not counted as the job's).
    assert (outcome.delivered, outcome.gone, outcome.failed) == (2 + 4, 1, 0)
    assert outcome.requeued == 1
    assert chat.store.get_connection(members[1]) is None
    assert chat.store.get_connection(members[2]) is not None
    [again] = queue.jobs
    assert (again.ids, again.attempt, queue.delays[-1]) == ((members[2],), 1, 2)


def test_a_recipient_failing_past_its_retries_fails_the_job(chat: Chat, queue: ListQueue) -> None:
    members = fill(chat, 2)
    chat.sender.failing[members[1]] = "HTTP 500"
    job = FanoutJob.deliver("big", ENDPOINT, b'{"type":"message","text":"t"}', members)

    attempts = 0
    while True:
        outcome = chat.service.deliver(job)
        attempts += 1
        if not queue.jobs:
            break
        job = queue.jobs.pop()
        assert job.ids == (members[1],)

    # Handed on 4 times (2, 4, 8, 16 s later), then reported failed: SQS takes over.
    assert attempts == 1 + 4 and outcome.failed == 1
    assert queue.delays == [2, 4, 8, 16]
    assert [len(messages_to(chat.sender, m)) for m in members] == [1, 0]


def test_with_the_queue_down_a_failed_recipient_fails_the_job(chat: Chat, queue: ListQueue) -> None:
    members = fill(chat, 2)
    chat.sender.failing[members[1]] = "HTTP 429"
    queue.down = True

    outcome = chat.service.deliver(FanoutJob.deliver("big", ENDPOINT, b"{}", members))

    assert (outcome.delivered, outcome.failed, outcome.requeued) == (1, 1, 0)


def test_direct_messages_stay_inline(chat: Chat, queue: ListQueue) -> None:
    members = fill(chat, 6)

    chat.do(members[0], "direct", to=f"user{members[1]}", message="psst")

    assert queue.jobs == []
    assert [e["text"] for e in chat.sender.received(members[1], "direct")] == ["psst"]


# --- the delivery function -----------------------------------------------------------------


def sqs_event(*bodies: str, receives: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": f"msg-{n}",
                "receiptHandle": f"rh-{n}",
                "body": body,
                "attributes": {"ApproximateReceiveCount": str(receives)},
                "eventSource": "aws:sqs",
            }
            for n, body in enumerate(bodies)
        ]
    }


@pytest.fixture
def handler_queue(
    store_path: Any, sender: RecordingSender, monkeypatch: pytest.MonkeyPatch
) -> ListQueue:
    """The delivery handler with the sample endpoint's recording sender and a list queue."""
    queued = ListQueue()
    monkeypatch.setattr(_runtime, "job_queue", lambda: queued)
    return queued


def connect_members(store: SqliteStore, count: int, room: str = "big") -> list[str]:
    from wschat.storage.base import Connection

    ids = [f"k{n:02d}" for n in range(count)]
    for connection_id in ids:
        store.put_connection(
            Connection.opened(connection_id, 0, name=connection_id, rooms=frozenset({room}))
        )
    return ids


def test_the_handler_runs_jobs_and_names_only_the_unfinished_records(
    handler_queue: ListQueue,
    store: SqliteStore,
    sender: RecordingSender,
    context: LambdaContext,
) -> None:
    members = connect_members(store, 4)
    sender.failing[members[3]] = "HTTP 503"
    good = FanoutJob.deliver("big", SAMPLE_ENDPOINT, b'{"type":"message"}', members[:3])
    failing = FanoutJob.deliver("big", SAMPLE_ENDPOINT, b'{"type":"message"}', members[3:])

    reply = deliver.lambda_handler(
        sqs_event(good.to_json(), "not a job", failing.to_json()), context
    )

    # The failing recipient went back on the queue as a job of its own: that record is done.
    assert reply == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert sender.recipients() == set(members[:3])
    assert [job.ids for job in handler_queue.jobs] == [(members[3],)]

    handler_queue.down = True
    reply = deliver.lambda_handler(sqs_event(failing.to_json()), context)
    assert reply == {"batchItemFailures": [{"itemIdentifier": "msg-0"}]}


def test_the_handler_runs_a_plan_job_into_deliver_jobs(
    handler_queue: ListQueue,
    store: SqliteStore,
    sender: RecordingSender,
    configure: Any,
    context: LambdaContext,
) -> None:
    configure(WSCHAT_FANOUT_PAGE_SIZE="2")
    members = connect_members(store, 5)
    plan = FanoutJob.plan("big", SAMPLE_ENDPOINT, b'{"type":"message"}')

    assert deliver.lambda_handler(sqs_event(plan.to_json()), context) == {"batchItemFailures": []}
    assert [list(job.ids) for job in handler_queue.jobs] == [
        members[0:2],
        members[2:4],
        members[4:],
    ]
    bodies = [job.to_json() for job in handler_queue.jobs]
    assert deliver.lambda_handler(sqs_event(*bodies, receives=2), context) == {
        "batchItemFailures": []
    }
    assert sorted(cid for cid, _ in sender.posts) == members


def test_worker_rate_is_its_share_of_the_budget() -> None:
    assert deliver.worker_rate({}) is None
    assert deliver.worker_rate({"WSCHAT_POST_BUDGET": "9000"}) == 9000
    env = {"WSCHAT_POST_BUDGET": "9000", "WSCHAT_DELIVERY_CONCURRENCY": "10"}
    assert deliver.worker_rate(env) == 900


def test_the_fanout_settings_come_from_the_environment() -> None:
    config = ChatConfig.from_env(
        {
            "WSCHAT_FANOUT_INLINE_LIMIT": "50",
            "WSCHAT_FANOUT_PAGE_SIZE": "100",
            "WSCHAT_FANOUT_PLAN_PAGES": "7",
            "WSCHAT_FANOUT_RETRIES": "0",
        }
    )
    assert config.fanout == FanoutSettings(inline_limit=50, page_size=100, plan_pages=7, retries=0)
    assert json.loads(FanoutJob.plan("r", ENDPOINT, b"{}").to_json())["kind"] == "plan"


def test_the_handler_runs_a_batchs_plan_jobs_before_its_deliver_jobs(
    handler_queue: ListQueue,
    store: SqliteStore,
    sender: RecordingSender,
    context: LambdaContext,
) -> None:
    members = connect_members(store, 3)
    queued_at_first_post: list[int] = []
    sender.on_post = lambda *_: queued_at_first_post.append(len(handler_queue.jobs))
    deliver_job = FanoutJob.deliver("big", SAMPLE_ENDPOINT, b'{"type":"message"}', members)
    plan_job = FanoutJob.plan("big", SAMPLE_ENDPOINT, b'{"type":"message"}')

    deliver.lambda_handler(sqs_event(deliver_job.to_json(), plan_job.to_json()), context)

    assert queued_at_first_post[0] == 1  # the plan job's page was queued before any post


def test_auto_leaves_the_inline_limit_to_the_sender(queue: ListQueue) -> None:
    chat = Chat(ChatConfig(fanout=FanoutSettings(page_size=2, plan_pages=2)))
    chat.service.queue, chat.service.endpoint = queue, ENDPOINT
    chat.sender.inline_limit = 3  # as API Gateway's 500, smaller
    members = fill(chat, 5)

    chat.do(members[0], "sendMessage", room="big", message="queued")
    assert [job.kind for job in queue.jobs] == ["plan"]
    queue.jobs.clear()

    chat.sender.inline_limit = None  # the local gateway's channel: a room in one call
    chat.do(members[0], "sendMessage", room="big", message="inline")
    assert queue.jobs == []
    assert all(messages_to(chat.sender, m) == ["inline"] for m in members)
    assert ChatConfig.from_env({"WSCHAT_FANOUT_INLINE_LIMIT": "auto"}).fanout.inline_limit is None
    chat.close()
