"""The tally of an apply: what it did to each address, counted as it happens (from every worker
thread) and told to the progress reporter as it is counted."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from provisioner.render.progress import Progress


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    interrupted: bool = False
    # Set when the run stopped because the API stopped answering: what happened, in one sentence.
    outage: str | None = None
    # Creates sent whose outcome is still unknown: their intents stay for the next apply.
    unresolved: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted and not self.outage


class Tally:
    def __init__(self, reporter: Progress):
        # Progress hooks: start, done, failed, notable, warn, finish (see provisioner/render/progress.py).
        self.reporter = reporter
        self.result = ApplyResult()
        self._guard = threading.Lock()

    def done(self, address: str, kind: str | None, outcome: str) -> None:
        """``kind``: the result's list it counts in (created, updated, adopted); None: told only."""
        with self._guard:
            if kind is not None:
                getattr(self.result, kind).append(address)
        self.reporter.done(f"{address}: {outcome}")

    def failed(self, address: str, message: str, *, in_summary_only: bool = False) -> None:
        """``in_summary_only``: no line now; the final summary groups it with the others of its cause."""
        with self._guard:
            self.result.failed.append((address, message))
        self.reporter.failed(None if in_summary_only else f"{address}: error: {message}")

    def not_started(self, address: str, why: str) -> None:
        self.skipped()
        self.note(address, f"not started: {why}")

    def skipped(self) -> None:
        with self._guard:
            self.result.skipped += 1

    def interrupted(self, *, skipped: bool) -> None:
        """The stop event was set; ``skipped``: the change at hand was never sent."""
        with self._guard:
            self.result.interrupted = True
            self.result.skipped += skipped

    def note(self, address: str, message: str) -> None:
        self.reporter.notable(f"{address}: {message}")

    def warn(self, message: str) -> None:
        self.reporter.warn(message)
