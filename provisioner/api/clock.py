"""The API server's clock as seen from here, read off the Date header of every answer.

createdAt is written on the server's clock; intents are dated on ours. Recovery
compares the two only through these readings, and trusts them only while they agree.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

# Date has a 1 s resolution and arrives after a network round trip: readings this far apart
# still agree. Further apart, the server's clock (or a proxy's Date) cannot be trusted.
AGREEMENT = 10.0
KEPT_READINGS = 50


class ServerClock:
    def __init__(self, now=lambda: datetime.now(timezone.utc)):
        self._now = now
        self._offsets: list[float] = []  # server minus local, in seconds
        self._guard = threading.Lock()

    def observe(self, headers: Mapping[str, str]) -> None:
        try:
            server_now = parsedate_to_datetime(headers.get("Date", ""))
        except (TypeError, ValueError, IndexError):
            return
        if server_now is None or server_now.tzinfo is None:
            return
        # The header is truncated to the second: the server's time was up to a second later.
        offset = (server_now - self._now()).total_seconds() + 0.5
        with self._guard:
            self._offsets.append(offset)
            del self._offsets[:-KEPT_READINGS]

    @property
    def offset(self) -> float | None:
        """Seconds the server's clock is ahead of ours; None when it cannot be told."""
        with self._guard:
            if not self._offsets or max(self._offsets) - min(self._offsets) > AGREEMENT:
                return None
            return self._offsets[-1]

    def now(self) -> datetime | None:
        """The server's time now, or None when its clock cannot be told."""
        offset = self.offset
        return None if offset is None else self._now() + timedelta(seconds=offset)

    def describe(self) -> str:
        with self._guard:
            if not self._offsets:
                return "the API sent no Date header, so its clock cannot be read"
            return (
                f"the API's Date headers disagree by {max(self._offsets) - min(self._offsets):.0f} s "
                "(a proxy rewriting Date, or a server clock that jumps)"
            )
