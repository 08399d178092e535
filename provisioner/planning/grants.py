"""Recurring grants: a grant rule and a moment -> the period batches that have begun by then.

Pure: no I/O, the clock is passed in. The rules:

- Periods are anchored to ``from``: period k starts on ``from`` + k steps (``every``). Month steps
  clamp to the month's last day without drifting: monthly from Jan 31 starts Jan 31, Feb 28 (29),
  Mar 31, Apr 30..., as a contract dated the 31st means; they are not chained (Feb 28 + 1 month).
- A period starts at local midnight of its start day in the grant's time zone (zoneinfo, so daylight
  saving is followed; on a day whose midnight is skipped, at the first instant of that day).
- A period has begun once its start instant is at or before the moment asked about; none starts
  after ``until`` (a period starting on that day is included).
- Period ids: ``2026-01`` (every: month), ``2026-q1`` (quarter), ``2026`` (year), the start date
  ``2026-01-15`` for "N days|weeks|months". Anchored starts fall in distinct months, so the calendar
  ids stay unique even when ``from`` is not the first day of a month, quarter or year.
- A period's batch has the address ``client/grant@period``; its expiry is its start + ``expiresAfter``
  (local midnight again, the same clamping), written as every expiresOn is.
- ``catchUp: false``: only the latest period that has begun is declared.

The grammar (every, expiresAfter, timeZone, the name template) is read by provisioner.manifest.grant_rules.
"""

from __future__ import annotations

import calendar
import functools
import re
from collections.abc import Callable, Container, Iterator
from datetime import date, datetime, time, timedelta, timezone
from typing import NamedTuple
from zoneinfo import ZoneInfo

from provisioner.core.models import BatchSpec, Desired, GrantSpec, Step, Upcoming
from provisioner.core.timestamps import format_timestamp

_UTC = timezone.utc


class Period(NamedTuple):
    index: int  # type: ignore[assignment]  # 0 for the period starting on ``from`` (tuple.index is not used)
    id: str
    starts_on: date  # local date
    starts_at: datetime  # local midnight of starts_on, in UTC


# --------------------------------------------------------------------------- periods


def add_step(day: date, step: Step, times: int = 1) -> date:
    """``day`` + ``times`` steps; a month step keeps the day of the month, clamped to the month's end."""
    if step.days:
        return day + timedelta(days=step.days * times)
    index = day.year * 12 + day.month - 1 + step.months * times
    year, month = divmod(index, 12)
    month += 1
    if day.day <= 28:
        return date(year, month, day.day)
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


# Cached: contracts start on a handful of days in a handful of zones, so years of periods for
# thousands of clients come down to a few hundred distinct instants.
@functools.lru_cache(maxsize=1 << 16)
def _start_of_day(day: date, zone: ZoneInfo) -> datetime:
    # fold=0: a skipped midnight maps to the transition instant, a repeated one to its first pass;
    # either way the first instant of that local day.
    return datetime.combine(day, time(), tzinfo=zone).astimezone(_UTC)


@functools.lru_cache(maxsize=1 << 16)
def _start_of_day_text(day: date, zone: ZoneInfo) -> str:
    return format_timestamp(_start_of_day(day, zone))


def _period_id(grant: GrantSpec, day: date) -> str:
    style = grant.every.period_id
    if style == "month":
        return f"{day.year:04d}-{day.month:02d}"
    if style == "quarter":
        return f"{day.year:04d}-q{(day.month - 1) // 3 + 1}"
    if style == "year":
        return f"{day.year:04d}"
    return day.isoformat()


def _period(grant: GrantSpec, index: int, zone: ZoneInfo) -> Period:
    day = add_step(grant.from_date, grant.every, index)
    return Period(index, _period_id(grant, day), day, _start_of_day(day, zone))


def _last_index(holds: Callable[[int], bool], estimate: int) -> int:
    """The largest k with holds(k) for a predicate true up to some k and false after; -1 if none.
    ``estimate`` is within a step or two of it, so this is a couple of calls, not a scan."""
    k = max(estimate, -1)
    while _holds(holds, k + 1):
        k += 1
    while k >= 0 and not _holds(holds, k):
        k -= 1
    return k


def _holds(holds: Callable[[int], bool], k: int) -> bool:
    try:
        return holds(k)
    except (OverflowError, ValueError):  # past year 9999
        return False


def _steps_until(grant: GrantSpec, day: date) -> int:
    """About how many steps from ``from`` to ``day`` (exact or one too many)."""
    start = grant.from_date
    if grant.every.days:
        return (day - start).days // grant.every.days
    months = (day.year - start.year) * 12 + day.month - start.month
    return months // grant.every.months


def _last_begun_index(grant: GrantSpec, at: datetime, zone: ZoneInfo) -> int:
    """The index of the latest period begun at ``at`` (within until), -1 if none has."""
    at = at.astimezone(_UTC)
    local_day = at.astimezone(zone).date()
    last = _last_index(
        lambda k: _start_of_day(add_step(grant.from_date, grant.every, k), zone) <= at,
        _steps_until(grant, local_day),
    )
    until = grant.until
    if until is not None and last >= 0:
        last = min(
            last, _last_index(lambda k: add_step(grant.from_date, grant.every, k) <= until, _steps_until(grant, until))
        )
    return last


def begun_periods(grant: GrantSpec, at: datetime) -> Iterator[Period]:
    """Every period that has begun at ``at`` (not after until), oldest first, catchUp aside."""
    zone = ZoneInfo(grant.time_zone)
    for index in range(_last_begun_index(grant, at, zone) + 1):
        yield _period(grant, index, zone)


def due_periods(grant: GrantSpec, at: datetime) -> list[Period]:
    """The periods the grant declares at ``at``: all begun ones, or with catchUp false the latest."""
    if grant.catch_up:
        return list(begun_periods(grant, at))
    zone = ZoneInfo(grant.time_zone)
    last = _last_begun_index(grant, at, zone)
    return [] if last < 0 else [_period(grant, last, zone)]


def period_at(grant: GrantSpec, index: int) -> Period:
    """The grant's period ``index`` (0: the one starting on ``from``), until aside."""
    return _period(grant, index, ZoneInfo(grant.time_zone))


def period_batch(grant: GrantSpec, period: Period) -> BatchSpec:
    """The batch a period issues, addressed ``client/grant@period``."""
    return _period_batch(grant, period, ZoneInfo(grant.time_zone))


def _period_batch(grant: GrantSpec, period: Period, zone: ZoneInfo) -> BatchSpec:
    return _period_batches(grant, [period], zone)[0]


def _period_batches(grant: GrantSpec, periods: list[Period], zone: ZoneInfo) -> list[BatchSpec]:
    same = {
        "client_key": grant.client_key,
        "client_id": grant.client_id,
        "starting_balance": grant.starting_balance,
        "credit_account_id": grant.credit_account_id,
        "source": grant.source,
        "grant": grant.grant_key,
    }
    key, template, expires_after = grant.grant_key, grant.name, grant.expires_after
    return [
        BatchSpec(
            **same,
            batch_key=f"{key}@{period.id}",
            name=template.format(period=period.id, grant=key),
            expires_on=None
            if expires_after is None
            else _start_of_day_text(add_step(period.starts_on, expires_after), zone),
            period=period.id,
        )
        for period in periods
    ]


def expand(desired: Desired, at: datetime) -> Desired:
    """``desired`` with one batch per due period of every grant, as it stands at ``at`` (aware).

    Expanding an expanded Desired again replaces its period batches: only ``at`` decides them.
    """
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("the moment grants are expanded for needs a time zone")
    batches = desired.batches
    if desired.expanded_at is not None:
        batches = {address: spec for address, spec in batches.items() if spec.grant is None}
    if desired.grants:
        batches = dict(batches)
        for grant in desired.grants.values():
            for spec in _period_batches(grant, due_periods(grant, at), ZoneInfo(grant.time_zone)):
                batches[spec.address] = spec
        batches = {address: batches[address] for address in sorted(batches)}
    return desired.model_copy(update={"batches": batches, "expanded_at": format_timestamp(at)})


def upcoming(grant: GrantSpec, at: datetime) -> Upcoming | None:
    """The grant's next period after ``at``: when it starts and what it issues; None once it has ended."""
    return next(iter(upcoming_periods(grant, at, at)), None)


def upcoming_periods(grant: GrantSpec, at: datetime, before: datetime, most: int | None = None) -> list[Upcoming]:
    """The grant's periods not begun at ``at`` that start before ``before`` (at most ``most``), and
    always the next one: what the schedule will issue, oldest first; [] once the grant has ended."""
    zone = ZoneInfo(grant.time_zone)
    at = at.astimezone(_UTC)
    index = (
        _last_index(lambda k: _period(grant, k, zone).starts_at <= at, _steps_until(grant, at.astimezone(zone).date()))
        + 1
    )
    found: list[Upcoming] = []
    while most is None or len(found) < max(most, 1):
        try:
            period = _period(grant, index, zone)
            if (grant.until is not None and period.starts_on > grant.until) or (found and period.starts_at >= before):
                break
            found.append(_upcoming(grant, period, zone))
        except (OverflowError, ValueError):  # a start or an expiry past the year 9999
            break
        index += 1
    return found


def _upcoming(grant: GrantSpec, period: Period, zone: ZoneInfo) -> Upcoming:
    batch = _period_batch(grant, period, zone)
    return Upcoming(
        grant=grant.address,
        address=batch.address,
        period=period.id,
        starts_on=period.starts_on.isoformat(),
        starts_at=format_timestamp(period.starts_at),
        time_zone=grant.time_zone,
        credits=grant.starting_balance,
        name=batch.name,
        expires_on=batch.expires_on,
    )


def period_start(grant: GrantSpec, period_id: str) -> datetime | None:
    """The instant the grant's period ``period_id`` begins; None when its sequence has no such period."""
    index = period_index(grant, period_id)
    if index is None:
        return None
    try:
        return period_at(grant, index).starts_at
    except (OverflowError, ValueError):
        return None


def begins_after(desired: Desired, spec: BatchSpec, now: datetime) -> datetime | None:
    """When ``spec``'s period begins, if that is after ``now`` (a period issued early); else None."""
    if spec.period is None or spec.grant is None:
        return None
    grant = desired.grants.get(f"{spec.client_key}/{spec.grant}")
    starts = None if grant is None else period_start(grant, spec.period)
    return starts if starts is not None and starts > now else None


def next_unissued(grant: GrantSpec, at: datetime, issued: Container[str], recorded: int) -> Upcoming | None:
    """The grant's next period after ``at`` that is not issued yet (``issued``: the recorded addresses;
    ``recorded``: how many of them are this grant's, so that the search ends); None once it has ended."""
    for found in upcoming_periods(grant, at, datetime.max.replace(tzinfo=_UTC), most=recorded + 1):
        if found.address not in issued:
            return found
    return None


_MONTH_ID = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")
_QUARTER_ID = re.compile(r"([0-9]{4})-q([1-4])")
_YEAR_ID = re.compile(r"[0-9]{4}")
_DATE_ID = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def period_index(grant: GrantSpec, period_id: str) -> int | None:
    """Where a period id falls in the grant's sequence of periods (0 for the first), begun or not,
    until aside; None when the sequence has no such period ('every' or 'from' was different then)."""
    start = grant.from_date
    style = grant.every.period_id
    index: int | None = None
    if style == "date":
        if _DATE_ID.fullmatch(period_id):
            try:
                day = date.fromisoformat(period_id)
            except ValueError:
                return None
            estimate = _steps_until(grant, day)
            index = next(
                (
                    k
                    for k in (estimate, estimate - 1)
                    if k >= 0 and _holds(lambda k: add_step(start, grant.every, k) == day, k)
                ),
                None,
            )
    elif style == "month" and (match := _MONTH_ID.fullmatch(period_id)):
        index = (int(match[1]) - start.year) * 12 + int(match[2]) - start.month
    elif style == "quarter" and (match := _QUARTER_ID.fullmatch(period_id)):
        index = (int(match[1]) - start.year) * 4 + int(match[2]) - 1 - (start.month - 1) // 3
    elif style == "year" and _YEAR_ID.fullmatch(period_id):
        index = int(period_id) - start.year
    return None if index is None or index < 0 else index
