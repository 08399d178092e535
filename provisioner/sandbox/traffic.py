"""What the sandbox has seen: each request's outcome, and a count of the events it caused."""

from __future__ import annotations

import threading
from collections import Counter

from provisioner.sandbox.messages import Request, Response


class Traffic:
    def __init__(self) -> None:
        self.request_log: list[tuple[str, str, int]] = []
        self._stats: Counter = Counter()
        self._lock = threading.Lock()

    def stats(self) -> Counter:
        with self._lock:
            return Counter(self._stats)

    def count(self, event: str) -> None:
        with self._lock:
            self._stats[event] += 1

    def record(self, request: Request, response: Response) -> None:
        # A dropped connection has no status: it is logged as 0.
        status = 0 if response.drop_connection else response.status
        with self._lock:
            self.request_log.append((request.method, request.path, status))
            self._stats["requests"] += 1
            if status:
                self._stats[str(status)] += 1
