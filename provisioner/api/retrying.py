"""How a request is tried again: when to give up, how long to wait, and saying so.

Whether a request may be sent again at all (a create whose fate is unknown may not) is the
client's call; this is the arithmetic and the waiting once it may.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from provisioner.api.pacing import Stopped

# A server that has not answered once in this run and refuses connections (or whose name does not
# resolve) is most likely the wrong address or not running: say so within seconds.
UNREACHABLE_PATIENCE = 3.0


class Retrying:
    """Bounded exponential backoff with full jitter; waits that the stop event ends at once
    (raising Stopped); one sentence to ``on_retry`` per retry."""

    def __init__(
        self,
        *,
        max_attempts: int,
        backoff_base: float,
        backoff_cap: float,
        stop: threading.Event,
        sleep: Callable[[float], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ):
        self.max_attempts = max_attempts
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.stop = stop
        self.on_retry = on_retry or (lambda message: None)
        self.random = random.Random()
        self._sleep = sleep  # injected by tests; None: wait on the stop event

    def delay(self, attempt: int) -> float:
        # Full jitter: spreads retries of parallel workers apart.
        return self.random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** min(attempt - 1, 40)))

    def back_off(self, attempt: int, what: str, why: str, paused: float | None = None) -> None:
        """Says so, then waits a backoff; ``paused``: the limiter already holds every worker that long."""
        delay = self.delay(attempt)
        self.notice(what, why, attempt, max(delay, paused or 0.0))
        self.wait(delay)

    def wait(self, seconds: float) -> None:
        if self._sleep is not None:
            self._sleep(seconds)
        elif self.stop.wait(seconds):
            raise Stopped()
        if self.stop.is_set():
            raise Stopped()

    def notice(self, what: str, why: str, attempt: int, delay: float) -> None:
        of = f" of {self.max_attempts}" if attempt < self.max_attempts else ""  # an outage waits longer
        self.on_retry(f"retrying {what}: {why} (attempt {attempt}{of}); next try in {delay:.1f} s")

    @staticmethod
    def gives_up_reaching(first_try: float, delay: float, answered: bool) -> bool:
        """Before the server has ever answered, a refused connection is a wrong address or a server
        that is not running: a few seconds of trying, not the patience a running apply deserves."""
        return not answered and time.monotonic() - first_try + delay > UNREACHABLE_PATIENCE
