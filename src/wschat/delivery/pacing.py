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

    ``acquire`` blocks until a token is there (or ``deadline``, a ``clock()`` value, passes:
    then it returns False without taking one). Sleeping happens outside the lock, so a waiting
    thread never holds up one that only takes a saved token.
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
        self._tokens = self.burst
        self._at = clock()
        self._lock = threading.Lock()

    def _take(self) -> float:
        """Take a token if there is one (0.0), else the seconds until there will be."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            # A hair under 1 counts: the refill after a computed sleep can come out as
            # 0.9999999 in floating point, and waiting "1e-17 s" more would spin.
            if self._tokens >= 1 - 1e-9:
                self._tokens = max(0.0, self._tokens - 1)
                return 0.0
            return (1 - self._tokens) / self.rate

    def acquire(self, deadline: float | None = None) -> bool:
        while True:
            wait = self._take()
            if wait == 0.0:
                return True
            if deadline is not None and self._clock() + wait > deadline:
                return False
            self._sleep(wait)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with full jitter: attempt n (from 1) waits uniform(0, min(cap,
    base * 2**(n-1))) seconds."""

    base: float = 0.05
    cap: float = 2.0

    def delay(self, attempt: int, rand: Callable[[float, float], float] = random.uniform) -> float:
        return rand(0.0, min(self.cap, self.base * 2 ** max(0, attempt - 1)))
