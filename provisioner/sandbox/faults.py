"""Fault injection: the failures a sandbox is asked for, and the fate each request draws from them."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass

_INJECTED_ERROR_STATUSES = (500, 502, 503)


@dataclass
class Faults:
    """Failures the sandbox injects; every rate is a probability in [0, 1]."""

    latency: float = 0.0  # seconds added before every response (for creates: after the commit)
    error_rate: float = 0.0  # answer 500/502/503 without doing anything
    error_after_commit_rate: float = 0.0  # create commits, then answers 500
    drop_after_commit_rate: float = 0.0  # create commits, then closes the socket unanswered
    burst_429_rate: float = 0.0  # chance that a request starts a storm of 429s
    burst_429_length: int = 5  # 429s per storm, the triggering request included
    retry_after: float = 1.0  # seconds sent in Retry-After for injected 429/503
    seed: int | None = None  # makes the fault sequence repeatable
    # Seconds a create is held before it is committed, as a busy server still working on it; the
    # work goes on when the client hangs up meanwhile, and the answer follows the commit.
    commit_delay: float = 0.0


@dataclass(frozen=True)
class FaultPlan:
    """The fate of one request, decided before it is handled."""

    faults: Faults
    in_429_storm: bool
    error_status: int | None
    drop_after_commit: bool
    error_after_commit: bool


class FaultInjector:
    def __init__(self, faults: Faults) -> None:
        self._lock = threading.Lock()
        self.replace(faults)

    def replace(self, faults: Faults) -> None:
        with self._lock:
            self._faults = faults
            self._random = random.Random(faults.seed)
            self._storm_requests_left = 0

    @property
    def current(self) -> Faults:
        return self._faults

    def plan(self) -> FaultPlan:
        with self._lock:
            faults = self._faults
            # The same five draws for every request, whatever its kind or fate: with a
            # seed, the n-th request meets the same faults as in any other run.
            storm, error, status, drop, after = (self._random.random() for _ in range(5))
            return FaultPlan(
                faults=faults,
                in_429_storm=self._advance_storm(storm < faults.burst_429_rate, faults),
                error_status=(
                    _INJECTED_ERROR_STATUSES[int(status * len(_INJECTED_ERROR_STATUSES))]
                    if error < faults.error_rate
                    else None
                ),
                drop_after_commit=drop < faults.drop_after_commit_rate,
                error_after_commit=after < faults.error_after_commit_rate,
            )

    def _advance_storm(self, starts_storm: bool, faults: Faults) -> bool:
        if self._storm_requests_left > 0:
            self._storm_requests_left -= 1
            return True
        if starts_storm:
            self._storm_requests_left = max(1, faults.burst_429_length) - 1
            return True
        return False
