"""Message ids: 26 Crockford base32 characters that sort in the order messages were accepted."""

from __future__ import annotations

import itertools
import threading
import time

import pytest

from wschat import ids

CROCKFORD = set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
MAX_48_BIT_MS = 2**48 - 1  # year 10889


@pytest.fixture
def fresh_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the ids made so far, as a new process would; restored after the test."""
    monkeypatch.setattr(ids, "_last_ms", -1)
    monkeypatch.setattr(ids, "_last_random", 0)


def test_id_is_26_crockford_base32_characters() -> None:
    message_id = ids.new_id()

    assert len(message_id) == 26
    assert set(message_id) <= CROCKFORD


def test_ids_strictly_increase_within_one_millisecond() -> None:
    now = int(time.time() * 1000)

    made = [ids.new_id(now) for _ in range(10_000)]

    assert all(a < b for a, b in itertools.pairwise(made))


def test_ids_strictly_increase_on_the_real_clock() -> None:
    made = [ids.new_id() for _ in range(10_000)]

    assert all(a < b for a, b in itertools.pairwise(made))


@pytest.mark.usefixtures("fresh_generator")
def test_ids_sort_by_time() -> None:
    earlier = ids.new_id(1_732_498_512_345)
    later = ids.new_id(1_732_498_512_346)

    assert earlier < later
    assert earlier[:10] < later[:10], "the time is in the first ten characters"


@pytest.mark.usefixtures("fresh_generator")
def test_id_made_when_the_clock_steps_back_still_sorts_after() -> None:
    first = ids.new_id(1_732_498_512_345)
    after_ntp_step = ids.new_id(1_732_498_500_000)

    assert after_ntp_step > first


@pytest.mark.parametrize("ms", [0, 1, 1_732_498_512_345, MAX_48_BIT_MS])
@pytest.mark.usefixtures("fresh_generator")
def test_id_time_ms_round_trips(ms: int) -> None:
    assert ids.id_time_ms(ids.new_id(ms)) == ms


def test_id_time_ms_of_an_id_from_the_clock_is_now() -> None:
    before = int(time.time() * 1000)
    message_id = ids.new_id()
    after = int(time.time() * 1000)

    assert before <= ids.id_time_ms(message_id) <= after


def test_ids_made_on_many_threads_are_unique() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        into.extend(ids.new_id() for _ in range(2_000))

    threads = [threading.Thread(target=make, args=(into,)) for into in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    every = [message_id for into in made for message_id in into]
    assert len(set(every)) == len(every) == 8_000
    for into in made:
        assert into == sorted(into), "each thread sees increasing ids"


def test_rewound_id_is_the_first_id_of_an_earlier_moment() -> None:
    message_id = ids.new_id(1_800_000_000_000)
    earlier = ids.rewound(message_id, 10_000)
    assert ids.id_time_ms(earlier) == 1_800_000_000_000 - 10_000
    assert earlier < message_id
    assert earlier.endswith("0" * 16)  # no id of that moment sorts before it
    assert len(earlier) == len(message_id)
