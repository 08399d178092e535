"""The rate limit: a token bucket per API key, and the X-RateLimit-* headers it announces."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

_UNLIMITED_RATE = 1_000_000


@dataclass(frozen=True)
class RateVerdict:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the bucket is full again
    retry_after: int  # whole seconds until one request is allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }


class RateLimiter:
    """A token bucket per API key: `burst` requests at once, refilled at `per_minute`/60 a second."""

    def __init__(self, per_minute: int | None, burst: int | None) -> None:
        if per_minute is not None and per_minute < 1:
            raise ValueError("rate_limit must be at least 1 request per minute")
        self._per_minute = per_minute
        self._capacity = burst if burst is not None else max(1, (per_minute or 0) // 6)
        if self._capacity < 1:
            raise ValueError("burst must be at least 1")
        self._refill_per_second = (per_minute or 0) / 60
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time)
        self._lock = threading.Lock()

    def take(self, api_key: str) -> RateVerdict:
        if self._per_minute is None:
            return self.full_bucket()
        with self._lock:
            now = time.monotonic()
            tokens, updated = self._buckets.get(api_key, (self._capacity, now))
            tokens = min(self._capacity, tokens + (now - updated) * self._refill_per_second)
            allowed = tokens >= 1
            if allowed:
                tokens -= 1
            self._buckets[api_key] = (tokens, now)
        return self._verdict(allowed, tokens)

    def full_bucket(self) -> RateVerdict:
        """Headers for answers that touch no bucket (no usable key, or no limit)."""
        if self._per_minute is None:
            return RateVerdict(True, _UNLIMITED_RATE, _UNLIMITED_RATE, int(time.time()), 0)
        return self._verdict(True, self._capacity)

    def _verdict(self, allowed: bool, tokens: float) -> RateVerdict:
        assert self._per_minute is not None  # without a limit, no bucket is asked
        seconds_until_full = (self._capacity - tokens) / self._refill_per_second
        retry_after = 0 if allowed else max(1, math.ceil((1 - tokens) / self._refill_per_second))
        return RateVerdict(
            allowed, self._per_minute, int(tokens), math.ceil(time.time() + seconds_until_full), retry_after
        )
