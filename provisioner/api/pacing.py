"""Client-side pacing: stay under the instance's rate limit instead of meeting 429s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping


class RateLimiter:
    """Evenly spaced request slots, shared by every worker thread.

    Requests are spaced by 60/rpm seconds with no burst of our own: the
    server's burst allowance then stays in reserve for clock jitter, and a long
    apply runs at the limit without a single 429. ``rpm`` None or 0: no pacing.
    """

    def __init__(self, rpm: float | None, clock: Callable[[], float] = time.monotonic, sleep=time.sleep):
        self.rpm = rpm or None
        self._clock = clock
        self._sleep = sleep
        self._guard = threading.Lock()
        self._next_slot = 0.0
        self._paused_until = 0.0

    def acquire(self) -> None:
        """Blocks until this caller may send one request."""
        with self._guard:
            now = self._clock()
            slot = max(now, self._next_slot, self._paused_until)
            if self.rpm:
                self._next_slot = slot + 60.0 / self.rpm
        delay = slot - now
        if delay > 0:
            self._sleep(delay)

    def pause(self, seconds: float) -> None:
        """The server said wait (429/503 Retry-After): nobody sends before then."""
        with self._guard:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adapt to the server's X-RateLimit-* headers: a lower limit, an empty window."""
        announced = _number(headers.get("X-RateLimit-Limit"))
        if announced and announced > 0 and (self.rpm is None or announced < self.rpm):
            with self._guard:
                self.rpm = announced
        remaining = _number(headers.get("X-RateLimit-Remaining"))
        reset = _number(headers.get("X-RateLimit-Reset"))
        if remaining is not None and remaining <= 0 and reset:
            self.pause(min(max(0.0, reset - time.time()), 60.0))


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
