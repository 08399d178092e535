"""ISO 8601 timestamps as the API writes them: UTC, milliseconds, "Z"."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone


def from_iso(text: str) -> datetime:
    """``datetime.fromisoformat`` that also reads a final "Z" (Python 3.10's does not); ValueError if unreadable."""
    return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text)


def parse_timestamp(text: str) -> datetime:
    """An aware datetime; ValueError for anything without a time zone. Every "Z" becomes "+00:00", so that
    a "z" between date and time (which ``from_iso`` takes for the separator) is refused."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value


def format_timestamp(value: datetime) -> str:
    """UTC with milliseconds (finer digits dropped, not rounded) and a "Z"; the year always in four digits.
    OverflowError when the UTC moment is past the years 1 to 9999."""
    return value.astimezone(timezone.utc).replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"


def last_usable_day(expires_on: datetime) -> date:
    """The last day (UTC) on which credits that expire at ``expires_on`` can still be used.

    They can be used before that instant, not at it: an expiry at 00:00:00 UTC is gone at the end
    of the day before, and the date of the instant itself would read a day late. Every place that
    shows an expiry as a date (the report's text, CSV and HTML, the per-month figures, days left)
    takes it from here."""
    return (expires_on.astimezone(timezone.utc) - timedelta(microseconds=1)).date()


def usable_all_day(expires_on: datetime) -> bool:
    """Whether the credits can be used the whole of their last usable day (UTC): the expiry falls at
    midnight UTC or in the last second of a day. Otherwise a date alone would overstate it, and the
    time must be shown with it (an expiry at another time zone's midnight, say)."""
    moment = expires_on.astimezone(timezone.utc).time()
    return moment == time(0) or moment >= time(23, 59, 59)


def utc_now_text() -> str:
    return format_timestamp(datetime.now(timezone.utc))


# The one word for "this batch has no expiry", wherever an expiry is shown (plan, show, report).
NO_EXPIRY = "never"
