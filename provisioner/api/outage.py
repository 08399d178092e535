"""Whether the API has stopped answering, judged once for the whole run.

One watcher per client, consulted by every request. Each request tells it how it went: answered
(any HTTP status but 502/503/504), or failed in a way that says the API is away (connection refused,
a name or TLS failure, a timeout, a dropped connection, 502/503/504). Requests failing that way do
not give up one by one: they keep trying while the watcher waits. When nothing has answered for
``give_up_after`` seconds, counted from when the first failing request was sent, the watcher gives
up for everyone at once: it sets the run's stop event (the one Ctrl-C and a refused key set), so no
new request leaves and every waiting one is cancelled, unsent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

# Seconds without an answer after which a run stops: long enough for a restart or a load balancer
# switching over, short enough that an apply whose API is gone ends within a minute.
GIVE_UP_AFTER = 25.0
OUTAGE_STATUSES = frozenset({502, 503, 504})


class Outage:
    """See the module's docstring. Thread-safe."""

    def __init__(
        self,
        give_up_after: float | None,
        stop: threading.Event,
        *,
        where: str = "the API",
        on_notice: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ):
        self.give_up_after = give_up_after
        self.stop = stop
        self.where = where
        self.on_notice = on_notice or (lambda line: None)
        self._clock = clock
        self._wall = wall
        self._guard = threading.Lock()
        self._last_answer = float("-inf")
        self._since: float | None = None  # when the first request still unanswered was sent
        self._causes: Counter[str] = Counter()  # of the failures since then
        self._timer: threading.Timer | None = None
        self.gave_up_after: float | None = None  # seconds without an answer when it gave up

    @property
    def waiting(self) -> bool:
        """The API has not answered the latest requests, and the run waits for it."""
        return self._since is not None

    @property
    def gave_up(self) -> bool:
        return self.gave_up_after is not None

    def answered(self) -> None:
        """The API answered a request (any status but 502/503/504): it is there."""
        with self._guard:
            self._last_answer = self._clock()
            if self._since is None or self.gave_up:
                return
            away = self._last_answer - self._since
            self._since = None
            self._causes.clear()
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        self.on_notice(f"The API answers again (after {away:.0f} s without an answer).")

    def failed(self, cause: str, sent_at: float) -> None:
        """A request sent at ``sent_at`` (on the watcher's clock) got no answer: ``cause`` says why."""
        notice = None
        with self._guard:
            if self.gave_up:
                return
            self._causes[cause] += 1
            if self._since is None and self.give_up_after is not None:
                # An answer that came after this request left proves the API was there then.
                self._since = max(sent_at, self._last_answer)
                left = self._since + self.give_up_after - self._clock()
                if left > 0:
                    notice = (
                        f"Note: {self.where} is not answering ({cause}). Trying until "
                        f"{self._moment(self._since + self.give_up_after):%H:%M:%S} UTC; then the run "
                        f"stops (--give-up-after {self.give_up_after:g})."
                    )
                    self._timer = threading.Timer(left, self._expire, args=(self._since,))
                    self._timer.daemon = True
                    self._timer.start()
            due = (
                self._since is not None
                and self.give_up_after is not None
                and self._clock() - self._since >= self.give_up_after
            )
        if notice:
            self.on_notice(notice)
        if due:
            self._expire(None)

    def _expire(self, since: float | None) -> None:
        """The bound has passed with no answer (``since``: the outage the timer was set for)."""
        with self._guard:
            if self.gave_up or self._since is None or (since is not None and since != self._since):
                return
            self.gave_up_after = self._clock() - self._since
        self.stop.set()

    def close(self) -> None:
        with self._guard:
            timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    # --- what is said -----------------------------------------------------------------

    def started_at(self) -> datetime | None:
        """The wall-clock moment the first unanswered request left."""
        with self._guard:
            return None if self._since is None else self._moment(self._since)

    def causes(self) -> str:
        """ "connection refused (212 tries), HTTP 503 (3 tries)", the most frequent first."""
        with self._guard:
            counted = self._causes.most_common()
        return ", ".join(f"{cause} ({count} tr{'y' if count == 1 else 'ies'})" for cause, count in counted)

    def describe(self) -> str:
        """One sentence: since when, why, and that provisioner gave up."""
        since = self.started_at()
        when = f"{since:%Y-%m-%d %H:%M:%S} UTC" if since else "the start"
        return (
            f"{self.where} stopped answering at {when}: {self.causes()}. After "
            f"{self.gave_up_after or self.give_up_after:.0f} s without an answer the run stopped "
            f"sending requests (--give-up-after {self.give_up_after:g})."
        )

    def _moment(self, monotonic: float) -> datetime:
        return self._wall() - timedelta(seconds=self._clock() - monotonic)
