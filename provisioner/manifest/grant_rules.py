"""The grammar of a recurring grant as a manifest writes it: ``every``, ``expiresAfter``, ``timeZone``,
the name template and ``until``. Pure; each parser raises a ValueError whose message says what is
wrong and what is expected, ready for the manifest readers to place at file:line:column.

What the periods of a grant are, once read, is planning's (provisioner.planning.grants).
"""

from __future__ import annotations

import difflib
import functools
import re
import string
from datetime import date
from zoneinfo import ZoneInfo, available_timezones

from provisioner.core.models import Every, Step
from provisioner.core.plurals import word_for
from provisioner.manifest.fields import shorten

MAX_COUNT = 9999
# For the JSON schema; the parsers below say more than "does not match".
EVERY_PATTERN = r"^(month|quarter|year|[1-9][0-9]{0,3} +(days?|weeks?|months?))$"
EXPIRES_AFTER_PATTERN = r"^[1-9][0-9]{0,3} +(days?|weeks?|months?|years?)$"
EVERY_EXPECTED = 'month, quarter, year, or "N days", "N weeks", "N months" (e.g. "3 months")'
EXPIRES_AFTER_EXPECTED = '"N days", "N weeks", "N months" or "N years" (e.g. "12 months")'
NAME_FIELDS = ("period", "grant")
NAME_FIELDS_HINT = "{period} (the period id, e.g. 2026-q1) and {grant} (the grant key)"

_COUNTED = re.compile(r"([0-9]+) +([a-z]+)")
_CALENDAR_UNITS = {"month": 1, "quarter": 3, "year": 12}
# Unit words in either number, to their size in months or days.
_MONTH_UNITS = {"month": 1, "months": 1, "year": 12, "years": 12}
_DAY_UNITS = {"day": 1, "days": 1, "week": 7, "weeks": 7}


# --------------------------------------------------------------------------- parsing


def parse_every(text: str) -> Every:
    """``every``: month | quarter | year | "N days" | "N weeks" | "N months"."""
    if not isinstance(text, str):
        raise ValueError(f"expected {EVERY_EXPECTED}")
    words = text.strip()
    if words in _CALENDAR_UNITS:
        return Every(text=words, months=_CALENDAR_UNITS[words], period_id=words)
    count, unit = _counted(words, EVERY_EXPECTED, ("month", "quarter", "year"))
    if unit in ("year", "years"):
        yearly = "'year' (periods named 2026, 2027...) or " if count == 1 else ""
        raise ValueError(f"'{words}' is not accepted for every; use {yearly}\"{count * 12} months\"")
    if unit not in ("day", "days", "week", "weeks", "month", "months"):
        raise ValueError(_unknown_unit(unit, ("days", "weeks", "months"), EVERY_EXPECTED))
    step = _step(f"{count} {_plural(unit, count)}", count, unit)
    return Every(text=step.text, months=step.months, days=step.days, period_id="date")


def parse_expires_after(text: str) -> Step:
    """``expiresAfter``: "N days" | "N weeks" | "N months" | "N years"."""
    if not isinstance(text, str):
        raise ValueError(f"expected {EXPIRES_AFTER_EXPECTED}")
    words = text.strip()
    if words.startswith("-") or re.fullmatch(r"0+ +[a-z]+", words.lower()):
        raise ValueError(
            f"'{shorten(words)}': the number must be at least 1: a period's batch must expire after its period "
            f"starts; expected {EXPIRES_AFTER_EXPECTED}"
        )
    count, unit = _counted(words, EXPIRES_AFTER_EXPECTED, ())
    if unit not in _MONTH_UNITS and unit not in _DAY_UNITS:
        raise ValueError(_unknown_unit(unit, ("days", "weeks", "months", "years"), EXPIRES_AFTER_EXPECTED))
    return _step(f"{count} {_plural(unit, count)}", count, unit)


def _counted(words: str, expected: str, single_words: tuple[str, ...]) -> tuple[int, str]:
    match = _COUNTED.fullmatch(words.lower())
    if match is None:
        close = difflib.get_close_matches(words.lower(), single_words, n=1, cutoff=0.6)
        if close:
            raise ValueError(f"'{shorten(words)}' is not understood; did you mean '{close[0]}'?")
        raise ValueError(f"'{shorten(words)}' is not understood; expected {expected}")
    count, unit = int(match.group(1)), match.group(2)
    if count < 1:
        raise ValueError(f"'{words}': the number must be at least 1; expected {expected}")
    if count > MAX_COUNT:
        raise ValueError(f"'{shorten(words)}': the number must be at most {MAX_COUNT}; expected {expected}")
    if words != words.lower() and unit in (*_MONTH_UNITS, *_DAY_UNITS):
        raise ValueError(f"'{words}': write the unit in lower case ('{count} {unit}')")
    return count, unit


def _unknown_unit(unit: str, units: tuple[str, ...], expected: str) -> str:
    close = difflib.get_close_matches(unit, units, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'? " if close else ""
    return f"unknown unit '{shorten(unit)}'; {hint}expected {expected}"


def _step(text: str, count: int, unit: str) -> Step:
    if unit in _MONTH_UNITS:
        return Step(text=text, months=count * _MONTH_UNITS[unit])
    return Step(text=text, days=count * _DAY_UNITS[unit])


def _plural(unit: str, count: int) -> str:
    singular = unit.rstrip("s")
    return word_for(count, singular, singular + "s")


def parse_time_zone(name: str) -> ZoneInfo:
    """An IANA time zone by its exact name (``Europe/Berlin``, ``UTC``)."""
    if isinstance(name, str) and name in _zone_names():
        return ZoneInfo(name)
    text = str(name)
    by_lower = {zone.lower(): zone for zone in _zone_names()}
    suggestion = by_lower.get(text.lower()) or next(
        iter(difflib.get_close_matches(text, sorted(_zone_names()), n=1, cutoff=0.7)), None
    )
    hint = f"did you mean '{suggestion}'? " if suggestion else ""
    raise ValueError(
        f"unknown time zone '{shorten(text)}'; {hint}use an IANA name such as Europe/Berlin, America/New_York or UTC"
    )


@functools.cache
def _zone_names() -> frozenset[str]:
    # The exact set, not whatever ZoneInfo() happens to open: on a case-insensitive file system
    # "europe/berlin" would load there and fail elsewhere.
    return frozenset(available_timezones())


def check_name_template(template: str) -> None:
    """A batch name template may use {period} and {grant} only; {{ and }} are literal braces."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        raise ValueError("unmatched '{' or '}' in the name template; write {{ or }} for a literal brace") from None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in NAME_FIELDS:
            shown = "{" + shorten(field) + "}" if field else "{}"
            raise ValueError(f"unknown field {shown} in the name template; use {NAME_FIELDS_HINT}")
        if spec or conversion:
            raise ValueError(
                f"write {{{field}}} without a format or conversion in the name template; use {NAME_FIELDS_HINT}"
            )


# The longest period id of each style: a template is checked with it, so that no period's
# name turns out too long later.
_LONGEST_PERIOD_ID = {"month": "2026-01", "quarter": "2026-q1", "year": "2026", "date": "2026-01-15"}


def check_name_length(template: str, grant_key: str, every: Every, limit: int) -> None:
    """A checked template's names stay within ``limit`` characters for every period."""
    longest = period_name(template, grant_key, _LONGEST_PERIOD_ID[every.period_id])
    if len(longest) > limit:
        raise ValueError(
            f"too long once filled in: names like '{shorten(longest)}' have {len(longest)} characters, at most {limit}"
        )


def period_name(template: str, grant_key: str, period_id: str) -> str:
    return template.format(period=period_id, grant=grant_key)


def check_until(from_date: date, until: date | None) -> None:
    if until is not None and until < from_date:
        raise ValueError(
            f"until {until.isoformat()} is before from {from_date.isoformat()}: no period would ever start; "
            "set until on or after from"
        )
