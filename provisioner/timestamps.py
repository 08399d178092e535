"""ISO 8601 timestamps as the API writes them: UTC, milliseconds, "Z"."""

from __future__ import annotations

from datetime import datetime, timezone


def parse_timestamp(text: str) -> datetime:
    """An aware datetime; ValueError for anything without a time zone."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return value


def format_timestamp(value: datetime) -> str:
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def utc_now_text() -> str:
    return format_timestamp(datetime.now(timezone.utc))


# The one word for "this batch has no expiry", wherever an expiry is shown (plan, show, report).
NO_EXPIRY = "never"
