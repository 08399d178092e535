"""How two values of a batch's field compare: the rules every stage follows, written once.

- ``same_value``: the state's and the manifest's values mean the same (the planner's diff, the
  applier's update body);
- ``normalized``: a value the API lists, in the form the manifest loader produces;
- ``compare_field``: how a listed value compares with the value a create sent, the way a server may
  have stored it (the matching rules of applying/matching.py).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from provisioner.core.timestamps import format_timestamp, parse_timestamp

BARE_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

EQUAL, UNKNOWN, HINT, DIFFERENT = "equal", "unknown", "hint", "different"


def normalized(field: str, value):
    """An API value in the form the manifest loader produces, so equal values print alike."""
    if field == "expiresOn":
        try:
            return format_timestamp(parse_timestamp(str(value)))
        except ValueError:
            return value
    if field == "startingBalance" and isinstance(value, float) and value.is_integer():
        return int(value)
    if field in ("clientId", "creditAccountId"):
        return str(value).lower()
    return value


def same_value(field: str, left, right) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if field == "expiresOn":
        try:
            return parse_timestamp(str(left)) == parse_timestamp(str(right))
        except ValueError:
            return left == right
    if field in ("clientId", "creditAccountId"):
        return str(left).lower() == str(right).lower()
    return left == right


def compare_field(name: str, sent, listed) -> str:
    """How a listed value compares with the value that was sent."""
    if listed is None or listed == "":
        return UNKNOWN
    if name == "expiresOn":
        return _compare_instants(str(sent), str(listed))
    if name == "startingBalance":
        return EQUAL if _number(sent) is not None and _number(sent) == _number(listed) else DIFFERENT
    if name in ("clientId", "creditAccountId"):
        return EQUAL if str(sent).strip().lower() == str(listed).strip().lower() else DIFFERENT
    if name == "name":
        if sent == listed:
            return EQUAL
        return HINT if str(sent).strip().casefold() == str(listed).strip().casefold() else DIFFERENT
    return EQUAL if sent == listed else DIFFERENT


def _compare_instants(sent: str, listed: str) -> str:
    try:
        sent_at = parse_timestamp(sent)
    except ValueError:
        return EQUAL if sent == listed else DIFFERENT
    if BARE_DATE.fullmatch(listed.strip()):
        # A server that keeps only the date: the sent instant's date in UTC, or the day beside it
        # (a server storing it in its own time zone).
        days = {(sent_at + timedelta(days=shift)).date().isoformat() for shift in (-1, 0, 1)}
        return EQUAL if listed.strip() in days else DIFFERENT
    try:
        return EQUAL if parse_timestamp(listed) == sent_at else DIFFERENT
    except ValueError:
        return DIFFERENT


def _number(value) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None
