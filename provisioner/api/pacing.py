"""Client-side pacing: stay under the instance's rate limit instead of meeting 429s."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

# The Standard plan's limit: where pacing starts when no limit is given and the server has not
# announced one yet.
STANDARD_RATE = 120.0
# The caller waiting for a slot looks again this often, so that a faster pace announced meanwhile
# (the first answer of a run, typically) applies to its wait too.
RECHECK_EVERY = 0.1


class Stopped(Exception):
    """The stop event was set while a request waited for its turn: it was never sent."""


class RateLimiter:
    """Evenly spaced request slots, shared by every worker thread.

    Requests are spaced by 60/rpm seconds with no burst of our own: the
    server's burst allowance then stays in reserve for clock jitter, and a long
    apply runs at the limit without a single 429.

    ``ceiling`` (requests per minute, None or 0: none of our own) is never
    exceeded. The pace starts at ``start`` (default: the ceiling) and then
    follows the limit the server announces in X-RateLimit-Limit, up as well as
    down, never above the ceiling.

    Only one caller at a time waits for the next slot; the others queue behind
    it without holding a slot of their own. So a change of pace or a pause
    applies to every waiting caller, and setting ``stop`` leaves nobody with a
    slot to send in: every waiting caller raises Stopped.
    """

    def __init__(
        self,
        ceiling: float | None,
        *,
        start: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
        stop: threading.Event | None = None,
    ):
        self.ceiling = ceiling or None
        self.rpm = self._capped(start) if start else self.ceiling
        self.stop = stop if stop is not None else threading.Event()
        self._clock = clock
        self._sleep = sleep  # injected by tests; None: wait on the stop event
        self._guard = threading.Lock()  # the figures below
        self._turn = threading.Lock()  # held by the one caller waiting for the next slot
        self._last_slot: float | None = None
        self._paused_until = 0.0

    def acquire(self) -> None:
        """Blocks until this caller may send one request; raises Stopped once ``stop`` is set."""
        with self._turn:
            waited_until: float | None = None
            while True:
                if self.stop.is_set():
                    raise Stopped()
                with self._guard:
                    now = self._clock()
                    due = max(self._next_slot(), self._paused_until)
                    # Waking up a hair early, or an injected sleep that does not move the clock,
                    # still ends the wait; only a later slot (a pause, a slower pace) extends it.
                    if due <= now or (waited_until is not None and due <= waited_until):
                        self._take(due, now)
                        return
                if self._wait(due - now):
                    waited_until = due

    def pause(self, seconds: float) -> None:
        """The server said wait (429/503 Retry-After): nobody sends before then."""
        with self._guard:
            self._paused_until = max(self._paused_until, self._clock() + seconds)

    def observe(self, headers: Mapping[str, str]) -> None:
        """Adapt to the server's X-RateLimit-* headers: the announced limit, an empty window."""
        announced = _number(headers.get("X-RateLimit-Limit"))
        if announced and announced > 0:
            with self._guard:
                self.rpm = self._capped(announced)
        remaining = _number(headers.get("X-RateLimit-Remaining"))
        reset = _number(headers.get("X-RateLimit-Reset"))
        if remaining is not None and remaining <= 0 and reset:
            self.pause(min(max(0.0, reset - time.time()), 60.0))

    # --- inside ------------------------------------------------------------

    def _capped(self, rpm: float) -> float:
        return min(rpm, self.ceiling) if self.ceiling else rpm

    def _interval(self) -> float:
        return 60.0 / self.rpm if self.rpm else 0.0

    def _next_slot(self) -> float:
        if self._last_slot is None:
            return float("-inf")
        return self._last_slot + self._interval()

    def _take(self, due: float, now: float) -> None:
        # A slot taken a little late keeps the cadence (no drift from wake-up delays); after an
        # idle spell the spacing counts from now, so idleness never turns into a burst.
        self._last_slot = due if now - due < max(self._interval(), 1e-9) else now

    def _wait(self, seconds: float) -> bool:
        """True when the whole wait was waited, False when it was cut short to look again."""
        if self._sleep is not None:
            self._sleep(seconds)
            return True
        if self.stop.wait(min(seconds, RECHECK_EVERY)):
            raise Stopped()
        return seconds <= RECHECK_EVERY


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
