"""Pacing and retries for @connections posts: a token bucket and exponential backoff.

API Gateway throttles every request of an account and Region with one bucket (10,000/s,
burst 5,000; docs/scaling.md) and answers past it with 429 ``LimitExceededException``. The
delivery workers share a configured budget below it: each paces itself with ``budget /
workers`` through a :class:`TokenBucket`, and what still meets a 429 or a 5xx is retried
after :func:`backoff_delay` (exponential with full jitter, AWS's recommended variant: it
spreads retries of many workers instead of synchronising them) until the job's deadline.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; safe to share between threads.

    ``acquire`` takes a token, waiting for it when none is saved up (or, when that wait would
    end after ``deadline``, a ``clock()`` value, returns False at once without taking one).
    A waiting caller reserves its token: the count goes below zero and the caller sleeps, once
    and outside the lock, until its token is due. So many threads waiting (a fan-out's 64)
    each sleep once per token, rather than all waking for every token and one winning it,
    which cost more CPU than the posts themselves.
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"a token bucket needs a positive rate, not {rate}")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate / 10)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.burst  # below zero: tokens reserved by waiting callers
        self._at = clock()
        self._lock = threading.Lock()

    def _reserve(self, deadline: float | None) -> float | None:
        """Take a token: the seconds until it is due (0.0: now), or None (not taken) when it
        is due after ``deadline``."""
        with self._lock:
            now = self._clock()
            tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            # A hair under 1 counts: the refill after a computed sleep can come out as
            # 0.9999999 in floating point, and waiting "1e-17 s" more would spin.
            wait = 0.0 if tokens >= 1 - 1e-9 else (1 - tokens) / self.rate
            if wait and deadline is not None and now + wait > deadline:
                self._tokens = tokens
                return None
            self._tokens = tokens - 1
            return wait

    def acquire(self, deadline: float | None = None) -> bool:
        wait = self._reserve(deadline)
        if wait is None:
            return False
        if wait:
            self._sleep(wait)
        return True


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n (from 1) waits uniform(0, min(cap,
    base * 2**(n-1))) seconds."""

    base: float = 0.05
    cap: float = 2.0

    def delay(self, attempt: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        return rand(0.0, min(self.cap, self.base * 2 ** max(0, attempt - 1)))
