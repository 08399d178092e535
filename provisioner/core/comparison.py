"""How two values of a batch's field compare: the rules every stage follows, written once.

- ``same_value``: the state's and the manifest's values mean the same (the planner's diff, the
  applier's update body);
- ``normalized``: a value the API lists, in the form the manifest loader produces;
- ``compare_field``: how a listed value compares with the value a create sent, the way a server may
  have stored it (the matching rules of applying/matching.py).
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from provisioner.core.timestamps import format_timestamp, parse_timestamp

BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
ID_FIELDS = ("clientId", "creditAccountId")

EQUAL, UNKNOWN, HINT, DIFFERENT = "equal", "unknown", "hint", "different"


# --------------------------------------------------------------------------- the rules, once


def instant(value) -> datetime | None:
    """An expiry as an instant (any offset, any fraction of a second); None: not a timestamp."""
    try:
        return parse_timestamp(str(value))
    except ValueError:
        return None


def identifier(value) -> str:
    """An id (a UUID) without case or surrounding spaces."""
    return str(value).strip().lower()


def whole(value) -> Decimal | None:
    """A balance as a number, however written (1200, 1200.0, "1200"); None: no finite number (true, an
    object, "n/a", NaN)."""
    if not isinstance(value, int | float | str) or isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def normal_name(name: str) -> str:
    """A name as a server may store it: Unicode normal form NFKC, trimmed, each run of whitespace
    inside made one space, case-folded (NFKC again after folding, which can undo it)."""
    folded = " ".join(unicodedata.normalize("NFKC", name).split()).casefold()
    return " ".join(unicodedata.normalize("NFKC", folded).split())


# --------------------------------------------------------------------------- their uses


def normalized(field: str, value):
    """An API value in the form the manifest loader produces, so equal values print alike."""
    if field == "expiresOn":
        at = instant(value)
        return value if at is None else format_timestamp(at)
    if field == "startingBalance" and isinstance(value, float) and value.is_integer():
        return int(value)
    if field in ID_FIELDS:
        return identifier(value)
    return value


def same_value(field: str, left, right) -> bool:
    """The recorded and the declared value of a field mean the same; None only equals None."""
    if left == right:
        return True
    if left is None or right is None:
        return False
    if field == "expiresOn":
        left_at, right_at = instant(left), instant(right)
        return left_at is not None and left_at == right_at
    if field in ID_FIELDS:
        return identifier(left) == identifier(right)
    if field == "startingBalance":
        left_number = whole(left)
        return left_number is not None and left_number == whole(right)
    return False


def compare_field(name: str, sent, listed) -> str:
    """How a listed value compares with the value that was sent, the way a server may have stored it:
    missing, null or no value of its kind at all is unknown, never different; a name equal only as a
    server may normalise it (normal_name) is a hint, not a match."""
    if listed is None or listed == "":
        return UNKNOWN
    if name == "expiresOn":
        return _compare_instants(sent, listed) if isinstance(listed, str) else UNKNOWN
    if name == "startingBalance":
        # A value that is no number at all (true, an object, "n/a") says nothing about the balance.
        listed_number = whole(listed)
        if listed_number is None:
            return UNKNOWN
        return EQUAL if whole(sent) == listed_number else DIFFERENT
    if name in ID_FIELDS:
        # Only another UUID is another client or account; anything else is unreadable, so unknown.
        if not isinstance(listed, str) or not UUID_TEXT.fullmatch(listed.strip()):
            return UNKNOWN
        return EQUAL if identifier(sent) == identifier(listed) else DIFFERENT
    if name == "name":
        if sent == listed:
            return EQUAL
        if not isinstance(sent, str) or not isinstance(listed, str):
            return DIFFERENT
        return HINT if normal_name(sent) == normal_name(listed) else DIFFERENT
    return EQUAL if sent == listed else DIFFERENT


def _compare_instants(sent, listed: str) -> str:
    sent_at = instant(sent)
    if sent_at is None:
        return EQUAL if str(sent) == listed else DIFFERENT
    if BARE_DATE.fullmatch(listed.strip()):
        # A server that keeps only the date: the sent instant's date in UTC, or the day beside it
        # (a server storing it in its own time zone).
        days = {(sent_at + timedelta(days=shift)).date().isoformat() for shift in (-1, 0, 1)}
        return EQUAL if listed.strip() in days else DIFFERENT
    listed_at = instant(listed)
    if listed_at is None:
        return UNKNOWN  # no instant at all: unreadable, not another expiry
    return EQUAL if listed_at == sent_at else DIFFERENT
