"""The credits report: where each client's credits went, and what expires when.

Pure: built from a state value, the batches the API lists (or None: trust what state
recorded) and the clock, so that any state backend can feed it.

Every credit issued lands in exactly one of four places, so that for a batch, a client
and the total alike: issued = used + remaining + expired_unused + unknown.

- used:           starting balance minus current balance;
- remaining:      the current balance of a batch that has not expired;
- expired_unused: the current balance of a batch that has expired (credits lost to expiry);
- unknown:        the credits of a batch whose balance nobody knows (the API no longer lists
                  it, or state never recorded a balance).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from provisioner.core.addresses import split_address
from provisioner.core.models import GrantSpec, Resource, State, Step, batch_key
from provisioner.core.timestamps import last_usable_day, parse_timestamp
from provisioner.planning.grants import add_step, upcoming_periods
from provisioner.report import DEFAULT_EXPIRING_WITHIN

MONTHS_AHEAD = 12

Number = int | float


@dataclass(frozen=True)
class Credits:
    issued: Number = 0
    used: Number = 0
    remaining: Number = 0
    expired_unused: Number = 0
    unknown: Number = 0

    def __add__(self, other: Credits) -> Credits:
        return Credits(
            self.issued + other.issued,
            self.used + other.used,
            self.remaining + other.remaining,
            self.expired_unused + other.expired_unused,
            self.unknown + other.unknown,
        )


@dataclass(frozen=True)
class BatchLine:
    address: str
    client: str
    batch: str
    batch_id: str
    name: str
    credits: Credits
    current_balance: Number | None  # None: unknown
    expires_on: datetime | None  # None: the batch never expires
    last_day: (
        date | None
    )  # the last day (UTC) its credits can be used (timestamps.last_usable_day); None: never expires
    days_left: int | None  # calendar days (UTC) from today to the last usable day; None when expired or never
    status: str  # "active", "expired", "missing" (from the API), another status the API reports, or "unknown"
    expiring_soon: bool

    @property
    def used_share(self) -> float | None:
        """The share of the starting balance used, when that means something."""
        if self.credits.unknown or not self.credits.issued:
            return None
        return self.credits.used / self.credits.issued


@dataclass(frozen=True)
class ClientLine:
    client: str
    credits: Credits
    batches: tuple[BatchLine, ...]


@dataclass(frozen=True)
class MonthExpiry:
    month: date  # the first day of the month
    credits: Number  # credits still unused in batches whose last usable day is in that month
    batches: int


@dataclass(frozen=True)
class UpcomingGrant:
    """A batch a recurring grant will create later (see upcoming_grants); every format shows them."""

    client: str
    period: str  # the grant period, e.g. "2027-03"
    on: date  # the day its period starts (in the grant's time zone): the batch is created from then on
    credits: Number
    grant: str = ""  # the grant key
    address: str = ""  # the period batch's address, "acme/quarterly@2027-q2"


@dataclass(frozen=True)
class CreditsReport:
    generated_at: datetime
    live: bool  # figures read from the API now, or as state recorded them
    figures_at: datetime | None  # when the figures were read: now when live, else when state was written (if known)
    expiring_within: int  # days
    clients: tuple[ClientLine, ...]
    totals: Credits
    expiring_by_month: tuple[MonthExpiry, ...]  # MONTHS_AHEAD months, from the current one
    interrupted: tuple[str, ...] = ()  # addresses whose create an apply left open: not counted yet
    upcoming: tuple[UpcomingGrant, ...] = field(default=())
    # address -> the audit event that brought its batch under management (history.issuers); the
    # page names who issued each batch and links the run. Empty: not asked for, or no history.
    issuers: Mapping[str, Mapping] = field(default_factory=dict)

    @property
    def batches(self) -> tuple[BatchLine, ...]:
        return tuple(line for client in self.clients for line in client.batches)

    @property
    def expiring_soon(self) -> tuple[BatchLine, ...]:
        return tuple(line for line in self.batches if line.expiring_soon)

    @property
    def is_empty(self) -> bool:
        return not self.clients and not self.interrupted and not self.upcoming


def build_report(
    state: State,
    observed: Mapping[str, Mapping] | None,
    now: datetime,
    *,
    recorded_at: datetime | None = None,
    expiring_within: int = DEFAULT_EXPIRING_WITHIN,
    upcoming: Iterable[UpcomingGrant] = (),
) -> CreditsReport:
    """The report of every batch recorded in ``state``.

    ``observed`` maps batch ids to the batches the API lists now (a refresh); None means the
    figures are those the API last returned, as state recorded them at ``recorded_at``.
    """
    now = now.astimezone(timezone.utc)
    by_client: dict[str, list[BatchLine]] = {}
    for address, resource in sorted(state.resources.items()):
        line = _batch_line(address, resource, observed, now, expiring_within)
        by_client.setdefault(line.client, []).append(line)
    clients = tuple(
        ClientLine(client, _sum(line.credits for line in lines), tuple(lines)) for client, lines in by_client.items()
    )
    return CreditsReport(
        generated_at=now,
        live=observed is not None,
        figures_at=now if observed is not None else recorded_at,
        expiring_within=expiring_within,
        clients=clients,
        totals=_sum(client.credits for client in clients),
        expiring_by_month=_expiring_by_month([line for c in clients for line in c.batches], now),
        interrupted=tuple(sorted(state.pending)),
        upcoming=tuple(sorted(upcoming, key=lambda grant: (grant.on, grant.client, grant.grant, grant.period))),
    )


def upcoming_grants(
    grants: Iterable[GrantSpec], now: datetime, months: int = MONTHS_AHEAD, per_grant: int = MONTHS_AHEAD
) -> list[UpcomingGrant]:
    """The periods the grants will issue after ``now``: those starting within ``months`` months (at
    most ``per_grant`` of each grant), and each grant's next one however far off."""
    horizon = datetime.combine(add_step(now.date(), Step(text=f"{months} months", months=months)), now.timetz())
    return [
        UpcomingGrant(
            client=grant.client_key,
            period=period.period,
            on=date.fromisoformat(period.starts_on),
            credits=period.credits,
            grant=grant.grant_key,
            address=period.address,
        )
        for grant in grants
        for period in upcoming_periods(grant, now, horizon, most=per_grant)
    ]


def _batch_line(
    address: str, resource: Resource, observed: Mapping[str, Mapping] | None, now: datetime, expiring_within: int
) -> BatchLine:
    client, batch = split_address(address)
    missing = observed is not None and batch_key(resource.batch_id) not in observed
    view: Mapping = resource.remote if observed is None else observed.get(batch_key(resource.batch_id), {})
    starting = _number(view.get("startingBalance"))
    if starting is None:
        starting = _number(resource.attributes.get("startingBalance")) or 0
    current = None if missing else _number(view.get("currentBalance"))
    expires_on = _expiry(view if "expiresOn" in view else resource.attributes)
    expired = view.get("status") == "expired" or (expires_on is not None and expires_on <= now)
    if missing:
        status = "missing"
    elif expired:
        status = "expired"
    else:
        status = str(view.get("status") or "unknown")
    credits = _split(starting, current, expired)
    last_day = None if expires_on is None else last_usable_day(expires_on)
    days_left = None if expired or last_day is None else (last_day - now.date()).days
    return BatchLine(
        address=address,
        client=client,
        batch=batch,
        batch_id=resource.batch_id,
        name=str(view.get("name") or resource.attributes.get("name") or batch),
        credits=credits,
        current_balance=current,
        expires_on=expires_on,
        last_day=last_day,
        days_left=days_left,
        status=status,
        expiring_soon=(
            not expired
            and not missing
            and expires_on is not None
            and expires_on <= now + timedelta(days=expiring_within)
        ),
    )


def _split(starting: Number, current: Number | None, expired: bool) -> Credits:
    if current is None:
        return Credits(issued=starting, unknown=starting)
    used = starting - current
    if expired:
        return Credits(issued=starting, used=used, expired_unused=current)
    return Credits(issued=starting, used=used, remaining=current)


def _expiring_by_month(lines: list[BatchLine], now: datetime) -> tuple[MonthExpiry, ...]:
    months = [_add_months(date(now.year, now.month, 1), n) for n in range(MONTHS_AHEAD)]
    credits: dict[date, Number] = dict.fromkeys(months, 0)
    batches = dict.fromkeys(months, 0)
    for line in lines:
        if line.last_day is None or line.status in ("expired", "missing"):
            continue
        month = line.last_day.replace(day=1)  # the month of the last usable day, not of the instant
        if month in credits:
            credits[month] += line.credits.remaining
            batches[month] += 1
    return tuple(MonthExpiry(month, credits[month], batches[month]) for month in months)


def _add_months(first_day: date, months: int) -> date:
    index = first_day.year * 12 + first_day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _sum(parts: Iterable[Credits]) -> Credits:
    total = Credits()
    for part in parts:
        total = total + part
    return total


def _number(value) -> Number | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _expiry(source: Mapping) -> datetime | None:
    value = source.get("expiresOn")
    if not value:
        return None
    try:
        return parse_timestamp(str(value)).astimezone(timezone.utc)
    except ValueError:
        return None
