"""ISO 8601 timestamps as the API writes them: UTC, milliseconds, "Z"."""

from __future__ import annotations

from datetime import datetime, timezone


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


def utc_now_text() -> str:
    return format_timestamp(datetime.now(timezone.utc))


# The one word for "this batch has no expiry", wherever an expiry is shown (plan, show, report).
NO_EXPIRY = "never"
