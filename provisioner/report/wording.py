"""The words and numbers every format of the report shares, so that text, CSV and HTML agree."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from provisioner.core.timestamps import NO_EXPIRY

if TYPE_CHECKING:  # the CLI takes plural() from here at start-up, without the report's model
    from provisioner.report.model import BatchLine, CreditsReport, Number

# The columns of the per-client and per-batch tables; the four places credits go, in order.
CREDIT_COLUMNS = (
    ("issued", "issued"),
    ("used", "used"),
    ("remaining", "remaining"),
    ("expired_unused", "expired unused"),
)


def credits(value: Number | None) -> str:
    if value is None:
        return "?"
    return f"{value:,}" if isinstance(value, int) else f"{value:,.2f}"


def moment(value: datetime) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC")


def figures_source(report: CreditsReport) -> str:
    """Where the figures come from and when they were read: every format says it first."""
    if report.live:
        return f"live from the API at {moment(report.figures_at)}"
    if report.figures_at is None:
        return "as recorded in state (the time they were recorded is unknown)"
    return f"as recorded in state at {moment(report.figures_at)}"


def expiry_date(line: BatchLine) -> str:
    return line.expires_on.strftime("%Y-%m-%d") if line.expires_on else NO_EXPIRY


def days_left(line: BatchLine) -> str:
    if line.days_left is None:
        return ""
    if line.days_left == 0:
        return "expires today"
    return f"{line.days_left:,} day{'' if line.days_left == 1 else 's'} left"


def expiry(line: BatchLine) -> str:
    """'2027-09-30 (4 days left)', 'never', or the bare date of a batch that has expired."""
    left = days_left(line)
    return f"{expiry_date(line)} ({left})" if left else expiry_date(line)


def status(line: BatchLine, expiring_within: int) -> str:
    if line.status == "missing":
        return "missing from the API"
    if line.status == "expired":
        unused = line.credits.expired_unused
        return f"expired, {credits(unused)} unused" if unused else "expired"
    if line.expiring_soon:
        return f"{line.status}, expires within {expiring_within} days"
    return line.status


def used(line: BatchLine) -> str:
    if line.credits.unknown:
        return "?"
    share = line.used_share
    return credits(line.credits.used) + (f" ({share:.0%})" if share is not None else "")


def plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"
