"""What a run waiting for the state's lock (--lock-timeout) says meanwhile: that it is waiting and
for whom, at once, then again every so often, so that a quiet terminal is never a mystery."""

from __future__ import annotations

import time
from collections.abc import Callable

from provisioner.backends.base import LockInfo

# Seconds between two "still waiting" lines.
NOTICE_EVERY = 10.0


class LockWait:
    def __init__(
        self, name: str, timeout: float, warn: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ):
        self.name = name
        self.timeout = timeout
        self.warn = warn
        self._clock = clock
        self.since = clock()
        self._said: float | None = None

    def blocked(self, holder: LockInfo | None) -> None:
        """The lock is held by ``holder`` (None: a holder not named yet) and the wait goes on."""
        now = self._clock()
        if self._said is None:
            self._said = now
            self.warn(
                f"Acquiring state lock on {self.name}... it is held by {holder_in_a_line(holder)}; "
                f"waiting up to {self.timeout:g} s (--lock-timeout)."
            )
        elif now - self._said >= NOTICE_EVERY:
            self._said = now
            self.warn(
                f"Still waiting for the state lock ({now - self.since:.0f} s of {self.timeout:g} s): "
                f"held by {holder_in_a_line(holder)}."
            )

    def acquired(self) -> None:
        if self._said is not None:
            self.warn(f"Acquired the state lock after {self._clock() - self.since:.0f} s.")


def holder_in_a_line(holder: LockInfo | None) -> str:
    if holder is None:
        return "a run that has not named itself yet"
    return f"{holder.user}@{holder.host} (pid {holder.pid}, {holder.command}, since {holder.created}, ID {holder.id})"
