"""The words and numbers every format of the report shares, so that text, CSV and HTML agree."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

from provisioner.core.plurals import plural
from provisioner.core.timestamps import NO_EXPIRY, usable_all_day

if TYPE_CHECKING:  # for annotations only
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
    if report.live and report.figures_at is not None:
        return f"live from the API at {moment(report.figures_at)}"
    if report.figures_at is None:
        return "as recorded in state (the time they were recorded is unknown)"
    return f"as recorded in state at {moment(report.figures_at)}"


def last_day(line: BatchLine) -> str:
    """The last day the credits can be used (UTC), with the time they stop when that is not the end
    of the day: '2027-03-31', '2027-03-31 until 22:00', or 'never'. Never the date of the expiry
    instant itself, which reads a day late for an expiry at 00:00:00 UTC."""
    if line.expires_on is None or line.last_day is None:
        return NO_EXPIRY
    day = line.last_day.isoformat()
    if usable_all_day(line.expires_on):
        return day
    until = line.expires_on.astimezone(timezone.utc)
    return f"{day} until {until.strftime('%H:%M:%S' if until.second else '%H:%M')}"


def days_left(line: BatchLine) -> str:
    if line.days_left is None:
        return ""
    if line.days_left == 0:
        return "last day today"
    return f"{plural(line.days_left, 'day', 'days')} left"


def expiry(line: BatchLine) -> str:
    """'2027-09-30 (4 days left)', 'never', or the last day of a batch that has expired."""
    left = days_left(line)
    return f"{last_day(line)} ({left})" if left else last_day(line)


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
