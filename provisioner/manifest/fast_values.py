"""What the fast reader (fastreader.py) makes of each kind of value (fields.Kind): the value as
the located reader would give it, or ``Unsure``, leaving the file to the located reader.

The counterpart of values.py, the located reader's checks: no messages here, only the values
the two readers agree on.
"""

from __future__ import annotations

import re
import uuid
from datetime import date

from provisioner.core.timestamps import format_timestamp, from_iso
from provisioner.manifest import grant_rules
from provisioner.manifest.fields import CONTROL_CHARACTER, MAX_NAME_LENGTH, MAX_WHOLE_NUMBER, Kind


class Unsure(Exception):
    """The fast path cannot vouch for this file: read it the located way."""


def _whole(value) -> int:
    if type(value) is not int or not 0 <= value <= MAX_WHOLE_NUMBER:
        raise Unsure
    return value


def _text(value) -> str:
    if type(value) is not str or not value.strip() or len(value) > MAX_NAME_LENGTH or value != value.strip():
        raise Unsure
    if not value.isprintable() and CONTROL_CHARACTER.search(value):  # isprintable: the usual case, at C speed
        raise Unsure
    return value


_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _uuid(value) -> str:
    if type(value) is not str:
        raise Unsure
    if _CANONICAL_UUID.fullmatch(value):
        return value
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Unsure from None


_TIMESTAMPS: dict[str, str] = {}
_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _timestamp(value) -> str:
    """UTC with milliseconds, as the located loader writes it; only its fromisoformat forms."""
    if type(value) is not str:
        raise Unsure
    known = _TIMESTAMPS.get(value)
    if known is not None:
        return known
    text = value.strip()
    if _DATE_ONLY.fullmatch(text):
        raise Unsure
    try:
        moment = from_iso(text)
        if moment.utcoffset() is None:
            raise Unsure
        result = format_timestamp(moment)
    except (ValueError, OverflowError):
        raise Unsure from None
    _TIMESTAMPS[value] = result
    return result


def _parsed(parse):
    """A reader of text that grant_rules.py parses: any ValueError (its message) leaves the file to the judge."""

    def read(value):
        if type(value) is not str:
            raise Unsure
        try:
            return parse(value)
        except ValueError:
            raise Unsure from None

    return read


def _template(value) -> str:
    text = _text(value)
    try:
        grant_rules.check_name_template(text)
    except ValueError:
        raise Unsure from None
    return text


def _time_zone(value) -> str:
    _parsed(grant_rules.parse_time_zone)(value)
    return value


def _date(value) -> str:
    if type(value) is not str or not _DATE_ONLY.fullmatch(value):
        raise Unsure
    try:
        date.fromisoformat(value)
    except ValueError:
        raise Unsure from None
    return value


def _boolean(value) -> bool:
    if type(value) is not bool:
        raise Unsure
    return value


def _unknown(value):
    raise Unsure


READERS = {
    Kind.WHOLE: _whole,
    Kind.TEXT: _text,
    Kind.UUID: _uuid,
    Kind.TIMESTAMP: _timestamp,
    Kind.BATCHES: None,
    Kind.GRANTS: None,
    Kind.EVERY: _parsed(grant_rules.parse_every),
    Kind.DURATION: _parsed(grant_rules.parse_expires_after),
    Kind.TIME_ZONE: _time_zone,
    Kind.TEMPLATE: _template,
    Kind.DATE: _date,
    Kind.BOOLEAN: _boolean,
}
UNKNOWN = (None, _unknown)  # a field of no rule


def readers(rules: dict) -> dict:
    """Field name -> (attribute, reader), so that the inner loops look up one dict."""
    return {name: (rule.attribute, READERS[rule.kind]) for name, rule in rules.items()}
