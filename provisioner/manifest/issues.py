"""What is wrong with the manifests: one issue in one place, and the error that lists them all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class ManifestIssue(NamedTuple):
    """One problem in one place. ``line`` and ``column`` are 1-based; 0 means "the whole file"."""

    file: str
    line: int
    column: int
    field: str  # dotted path, e.g. "clients.acme.batches.2026-q1.startingBalance"
    message: str

    def __str__(self) -> str:
        place = self.file
        if self.line:
            place = f"{place}:{self.line}:{self.column}"
        parts = [part for part in (place, self.field, self.message) if part]
        return ": ".join(parts)


class ManifestError(Exception):
    """The manifests cannot be used; ``issues`` lists every problem found, sorted by place."""

    def __init__(self, issues: Sequence[ManifestIssue]):
        self.issues: list[ManifestIssue] = sorted(set(issues))
        super().__init__("\n".join(str(issue) for issue in self.issues))
