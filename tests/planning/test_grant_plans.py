"""Planning grants: issued periods are frozen, removed grants are noted once, lapsed periods are
not issued, guardrails count grant creates; and a property test of plan + apply over time."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from conftest import ACCOUNT_ID, ACME_ID
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from provisioner.core.models import BatchSpec, Desired, GrantSpec, Intent, Policy, Resource, State
from provisioner.manifest.grant_rules import parse_every, parse_expires_after
from provisioner.planning.grants import expand, period_index
from provisioner.planning.planner import make_plan

UTC = timezone.utc
NOW = datetime(2026, 7, 15, 12, tzinfo=UTC)


def grant(
    every: str = "quarter",
    start: date = date(2026, 1, 1),
    *,
    key: str = "quarterly",
    balance: int = 5000,
    name: str = "Acme {period}",
    expires_after: str | None = "12 months",
    catch_up: bool = True,
    until: date | None = None,
    zone: str = "Europe/Berlin",
) -> GrantSpec:
    return GrantSpec(
        client_key="acme",
        grant_key=key,
        client_id=ACME_ID,
        every=parse_every(every),
        from_date=start,
        until=until,
        time_zone=zone,
        starting_balance=balance,
        name=name,
        expires_after=parse_expires_after(expires_after) if expires_after else None,
        credit_account_id=ACCOUNT_ID,
        catch_up=catch_up,
        source="m.yaml:4:5",
    )


def declared(
    *grants: GrantSpec, batches: tuple[BatchSpec, ...] = (), at: datetime = NOW, policy: Policy | None = None
) -> Desired:
    desired = Desired(
        batches={b.address: b for b in batches}, grants={g.address: g for g in grants}, policy=policy or Policy()
    )
    return expand(desired, at)


def apply_creates(plan, state: State) -> State:
    """What a successful apply records: every create's body under a fresh id."""
    resources = dict(state.resources)
    for change in plan.changes:
        assert change.action in ("create", "update"), change
        if change.action == "create":
            batch_id = str(uuid.uuid4())
            resources[change.address] = Resource(
                batch_id=batch_id,
                client_id=change.after["clientId"],
                attributes=dict(change.after),
                remote={"id": batch_id},
            )
    return State(resources=resources, pending=dict(state.pending))


def live(resource: Resource, **changed) -> dict:
    return {
        "id": resource.batch_id,
        **resource.attributes,
        "currentBalance": 0,
        "allocatedCredits": 0,
        "status": "active",
        **changed,
    }


def issued_until(rule: GrantSpec, at: datetime = NOW) -> State:
    """The state after applying ``rule`` at ``at``."""
    return apply_creates(make_plan(declared(rule, at=at), State(), at), State())


# --------------------------------------------------------------------------- creates


def test_each_begun_period_is_a_create_with_its_credits_name_and_expiry():
    plan = make_plan(declared(grant()), State(), NOW)
    assert [(c.address, c.action, c.credits) for c in plan.changes] == [
        ("acme/quarterly@2026-q1", "create", 5000),
        ("acme/quarterly@2026-q2", "create", 5000),
        ("acme/quarterly@2026-q3", "create", 5000),
    ]
    assert plan.changes[2].after == {
        "clientId": ACME_ID,
        "name": "Acme 2026-q3",
        "startingBalance": 5000,
        "expiresOn": "2027-06-30T22:00:00.000Z",
        "creditAccountId": ACCOUNT_ID,
    }
    assert plan.total_credits == 15000
    assert plan.warnings == (  # the periods before the current one are issued at once: said so
        "grant acme/quarterly: catching up 2 periods that began before the current one (2026-q3): 2026-q1, 2026-q2. "
        "Their credits are issued now; 'catchUp: false' issues only the current period.",
    )


def test_applied_periods_are_unchanged_and_the_next_quarter_is_one_create():
    state = issued_until(grant())
    again = make_plan(declared(grant()), state, NOW)
    assert (again.changes, again.unchanged) == ((), 3)
    october = datetime(2026, 10, 1, 9, tzinfo=UTC)
    next_quarter = make_plan(declared(grant(), at=october), state, october)
    assert [(c.address, c.action) for c in next_quarter.changes] == [("acme/quarterly@2026-q4", "create")]
    assert next_quarter.unchanged == 3


def test_guardrails_count_a_large_catch_up_like_any_creates():
    monthly = grant("month", date(2025, 8, 1), key="monthly", balance=1000, expires_after=None)
    plan = make_plan(declared(monthly, policy=Policy(max_creates=6, max_apply_credits=10_000)), State(), NOW)
    assert plan.count("create") == 12
    assert tuple(violation.message for violation in plan.violations) == (
        "this plan issues 12,000 credits in total, more than one apply may issue (10,000, policy maxApplyCredits).",
        "this plan creates 12 batches, more than one apply may create (6, policy maxCreates).",
    )
    big = make_plan(declared(grant(balance=2_000_000), policy=Policy()), State(), NOW)
    assert "acme/quarterly@2026-q1 issues 2,000,000 credits" in big.violations[0].message


def test_planning_unexpanded_grants_is_a_programming_error():
    with pytest.raises(ValueError, match="expanded"):
        make_plan(Desired(grants={"acme/quarterly": grant()}), State(), NOW)


# --------------------------------------------------------------------------- frozen periods


@pytest.mark.parametrize(
    "edited",
    [
        grant(balance=8000),
        grant(name="Acme credits {period}"),
        grant(expires_after="6 months"),
        grant(expires_after=None),
        grant(until=date(2026, 9, 30)),
        grant(zone="UTC"),
    ],
    ids=["amount", "name", "expiry", "no-expiry", "until", "zone"],
)
def test_editing_a_grant_never_shows_issued_periods_as_changed_or_blocked(edited):
    state = issued_until(grant())
    plan = make_plan(declared(edited), state, NOW)
    issued = {"acme/quarterly@2026-q1", "acme/quarterly@2026-q2", "acme/quarterly@2026-q3"}
    assert not [c for c in plan.changes if c.address in issued]
    assert plan.warnings == ()
    assert all(c.action == "create" for c in plan.changes)
    # With a refresh, a batch that is still as recorded is no change either.
    observed = {r.batch_id: live(r) for r in state.resources.values()}
    refreshed = make_plan(declared(edited), state, NOW, observed=observed)
    assert not [c for c in refreshed.changes if c.address in issued]


def test_a_schedule_edited_after_issuing_keeps_the_issued_periods_and_says_so_once():
    state = issued_until(grant())
    plan = make_plan(declared(grant("month")), state, NOW)
    assert [c.action for c in plan.changes] == ["create"] * 7  # 2026-01 .. 2026-07: other addresses
    assert not [c for c in plan.changes if "q" in c.address.split("@")[1]]
    assert plan.unchanged == 3
    assert plan.warnings == (
        "grant acme/quarterly: 3 issued periods (2026-q1, 2026-q2, 2026-q3) are not in its schedule any more "
        "('every' or 'from' changed since?). They stay recorded as issued, and the schedule's own periods are "
        "issued besides: check the creates of this grant. If they repeat credits already given, move each "
        "recorded period onto its new address with 'provisioner state mv' before applying.",
        "grant acme/quarterly: catching up 6 periods that began before the current one (2026-07): 2026-01..2026-06. "
        "Their credits are issued now; 'catchUp: false' issues only the current period.",
    )
    moved = grant("3 months", date(2026, 1, 15), expires_after=None)
    plan = make_plan(declared(moved), issued_until(grant("3 months", date(2026, 1, 14))), NOW)
    assert "3 issued periods (2026-01-14, 2026-04-14, 2026-07-14) are not in its schedule" in plan.warnings[0]


def test_periods_issued_before_until_was_moved_earlier_are_frozen_quietly():
    state = issued_until(grant())
    plan = make_plan(declared(grant(until=date(2026, 3, 31))), state, NOW)
    assert (plan.changes, plan.unchanged, plan.warnings) == ((), 3, ())


def test_periods_issued_early_on_purpose_are_frozen_quietly():
    late = datetime(2026, 12, 1, tzinfo=UTC)
    state = issued_until(grant(), at=late)  # --at in the future: q4 issued early
    plan = make_plan(declared(grant()), state, NOW)
    assert (plan.changes, plan.unchanged, plan.warnings) == ((), 4, ())


def test_an_edited_grant_applies_to_the_periods_still_to_come():
    state = issued_until(grant())
    october = datetime(2026, 10, 1, 9, tzinfo=UTC)
    plan = make_plan(declared(grant(balance=8000, name="Acme credits {period}"), at=october), state, october)
    change = plan.changes[0]
    assert (change.address, change.credits, change.after["name"]) == (
        "acme/quarterly@2026-q4",
        8000,
        "Acme credits 2026-q4",
    )


def test_a_hand_edit_of_an_issued_period_is_compared_with_what_was_recorded():
    state = issued_until(grant())
    q1 = state.resources["acme/quarterly@2026-q1"]
    observed = {r.batch_id: live(r) for r in state.resources.values()}
    observed[q1.batch_id] = live(q1, name="Renamed by hand")
    # The grant's name rule changed too: the batch goes back to its recorded name, not the new rule's.
    plan = make_plan(declared(grant(name="New {period}")), state, NOW, observed=observed)
    change = next(c for c in plan.changes if c.address == "acme/quarterly@2026-q1")
    assert change.action == "update"
    assert (change.before["name"], change.after["name"]) == ("Renamed by hand", "Acme 2026-q1")
    assert change.after == q1.attributes
    assert "as it was recorded" in change.reasons[0]
    assert plan.count("update") == 1 and plan.count("blocked") == 0


def test_an_issued_period_whose_fixed_field_differs_live_is_blocked_with_a_fix():
    state = issued_until(grant())
    q2 = state.resources["acme/quarterly@2026-q2"]
    observed = {r.batch_id: live(r) for r in state.resources.values()}
    observed[q2.batch_id] = live(q2, startingBalance=1)
    change = next(c for c in make_plan(declared(grant()), state, NOW, observed=observed).changes)
    assert (change.address, change.action) == ("acme/quarterly@2026-q2", "blocked")
    assert change.reasons[0].startswith(f"startingBalance of batch {q2.batch_id} differs from what was recorded")
    assert "provisioner import acme/quarterly@2026-q2 BATCH_ID" in change.reasons[1]


def test_an_issued_period_missing_from_the_api_is_missing_not_recreated():
    state = issued_until(grant())
    observed = {r.batch_id: live(r) for a, r in state.resources.items() if a != "acme/quarterly@2026-q1"}
    plan = make_plan(declared(grant()), state, NOW, observed=observed)
    change = plan.changes[0]
    assert (change.address, change.action, change.credits) == ("acme/quarterly@2026-q1", "missing", 0)
    assert "--replace acme/quarterly@2026-q1" in change.reasons[1]


def test_replace_recreates_a_period_as_the_grant_now_says():
    state = issued_until(grant())
    plan = make_plan(declared(grant(balance=7000)), state, NOW, replace=["acme/quarterly@2026-q1"])
    change = plan.changes[0]
    assert (change.address, change.action, change.credits) == ("acme/quarterly@2026-q1", "replace", 7000)
    assert change.before["startingBalance"] == 5000


def test_replacing_a_period_whose_expiry_has_passed_is_blocked_with_a_grant_fix():
    monthly = grant("month", key="monthly", expires_after="1 months")
    january = datetime(2026, 1, 2, tzinfo=UTC)
    state = issued_until(monthly, at=january)
    plan = make_plan(declared(monthly), state, NOW, replace=["acme/monthly@2026-01"])
    change = next(c for c in plan.changes if c.address == "acme/monthly@2026-01")
    assert change.action == "blocked"
    assert change.reasons[1] == "Fix: a longer expiresAfter gives this period a future expiry; or do not recreate it."


def test_an_interrupted_create_of_a_period_is_recovered():
    rule = grant()
    spec = declared(rule).batches["acme/quarterly@2026-q3"]
    intent = Intent(
        address=spec.address,
        client_id=ACME_ID,
        attributes=spec.attributes(),
        digest="d" * 64,
        at="2026-07-01T00:00:00.000Z",
    )
    plan = make_plan(declared(rule), State(pending={spec.address: intent}), NOW)
    assert [(c.address, c.action) for c in plan.changes] == [
        ("acme/quarterly@2026-q1", "create"),
        ("acme/quarterly@2026-q2", "create"),
        ("acme/quarterly@2026-q3", "recover"),
    ]


def test_catch_up_false_keeps_earlier_issued_periods_quietly():
    monthly = grant("month", key="monthly", catch_up=False, expires_after=None)
    state = State()
    for month in (1, 2, 3):
        at = datetime(2026, month, 2, tzinfo=UTC)
        state = apply_creates(make_plan(declared(monthly, at=at), state, at), state)
    at = datetime(2026, 3, 20, tzinfo=UTC)
    plan = make_plan(declared(monthly, at=at), state, at)
    assert (plan.changes, plan.unchanged, plan.warnings) == ((), 3, ())
    # A refresh checks them all: the January batch is gone, and can only be forgotten.
    observed = {r.batch_id: live(r) for a, r in state.resources.items() if a != "acme/monthly@2026-01"}
    change = make_plan(declared(monthly, at=at), state, at, observed=observed).changes[0]
    assert (change.address, change.action) == ("acme/monthly@2026-01", "missing")
    assert "'provisioner state rm acme/monthly@2026-01'" in change.reasons[1]
    assert "--replace" in change.reasons[1] and "cannot" in change.reasons[1]


# --------------------------------------------------------------------------- removed grants


def test_a_removed_grant_is_noted_once_and_its_batches_stay_recorded():
    state = issued_until(grant())
    plain = BatchSpec(client_key="acme", batch_key="welcome", client_id=ACME_ID, name="Welcome", starting_balance=10)
    state.resources["acme/welcome"] = Resource(batch_id="w", client_id=ACME_ID, attributes=plain.attributes())
    plan = make_plan(declared(), state, NOW)
    assert plan.changes == ()
    assert plan.warnings == (
        "acme/welcome (batch w) is recorded in state but no longer declared: left as is; the API cannot delete "
        "batches. Use 'provisioner state rm acme/welcome' to stop tracking it.",
        "grant acme/quarterly is no longer declared: no further periods are issued. Its 3 issued period batches "
        "(2026-q1, 2026-q2, 2026-q3) stay recorded as they are; the API cannot delete batches. Use "
        "'provisioner state rm acme/quarterly@PERIOD' to stop tracking one.",
    )
    assert plan.upcoming == ()


def test_a_removed_grant_with_years_of_periods_is_still_one_line():
    daily = grant("1 days", key="daily", expires_after=None)
    state = issued_until(daily)
    assert len(state.resources) == 196
    plan = make_plan(declared(grant()), state, NOW)
    removed = [w for w in plan.warnings if "acme/daily" in w]
    assert removed == [
        "grant acme/daily is no longer declared: no further periods are issued. Its 196 issued period batches "
        "(2026-01-01, 2026-01-02, 2026-01-03, ... 2026-07-15) stay recorded as they are; the API cannot delete "
        "batches. Use 'provisioner state rm acme/daily@PERIOD' to stop tracking one."
    ]
    assert len(plan.warnings) == 2 and "acme/quarterly: catching up 2 periods" in plan.warnings[1]


# --------------------------------------------------------------------------- lapsed periods


def test_periods_whose_batch_would_be_created_expired_are_noted_not_blocked():
    monthly = grant("month", date(2026, 1, 1), key="monthly", expires_after="3 months")
    plan = make_plan(declared(monthly), State(), NOW)
    # Jan..Apr would have expired by July 15 (Apr 1 + 3 months = Jul 1); May, June, July are issued.
    assert [c.address for c in plan.changes] == ["acme/monthly@2026-05", "acme/monthly@2026-06", "acme/monthly@2026-07"]
    assert plan.blocked == ()
    assert plan.warnings == (
        "grant acme/monthly: 4 periods began but are not issued (2026-01, 2026-02, 2026-03, 2026-04): their "
        "batches would be created already expired (expiresAfter: 3 months). To stop this note, move 'from' past "
        "them or set 'catchUp: false'.",
        "grant acme/monthly: catching up 2 periods that began before the current one (2026-07): 2026-05, 2026-06. "
        "Their credits are issued now; 'catchUp: false' issues only the current period.",
    )


def test_recorded_periods_that_have_expired_since_are_simply_unchanged():
    monthly = grant("month", date(2026, 1, 1), key="monthly", expires_after="1 months")
    state = State()
    for month in range(1, 8):
        at = datetime(2026, month, 1, 6, tzinfo=UTC)
        state = apply_creates(make_plan(declared(monthly, at=at), state, at), state)
    plan = make_plan(declared(monthly), state, NOW)
    assert (plan.changes, plan.unchanged, plan.warnings) == ((), 7, ())


# --------------------------------------------------------------------------- upcoming


def test_the_plan_shows_each_grants_next_period():
    monthly = grant(
        "month",
        date(2026, 1, 20),
        key="monthly",
        balance=100,
        name="{grant} {period}",
        zone="America/New_York",
        expires_after=None,
    )
    ended = grant("quarter", date(2025, 1, 1), key="old", until=date(2025, 12, 31))
    plan = make_plan(declared(grant(), monthly, ended), issued_until(grant()), NOW)
    assert [(u.grant, u.period, u.starts_on, u.starts_at, u.credits, u.name) for u in plan.upcoming] == [
        ("acme/monthly", "2026-07", "2026-07-20", "2026-07-20T04:00:00.000Z", 100, "monthly 2026-07"),
        ("acme/quarterly", "2026-q4", "2026-10-01", "2026-09-30T22:00:00.000Z", 5000, "Acme 2026-q4"),
    ]


def test_upcoming_follows_the_expansion_moment_not_the_clock():
    early = datetime(2026, 3, 1, tzinfo=UTC)
    plan = make_plan(declared(grant(), at=early), State(), NOW)
    assert [c.address for c in plan.changes] == ["acme/quarterly@2026-q1"]
    assert plan.upcoming[0].period == "2026-q2"


# --------------------------------------------------------------------------- property: plan + apply over time

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "America/Havana",
    "America/Santiago",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
    "Pacific/Auckland",
]


@st.composite
def month_ends(draw):
    """The days where month arithmetic goes wrong: the 28th to the 31st, leap days included."""
    year, month = draw(st.integers(2023, 2030)), draw(st.integers(1, 12))
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, draw(st.integers(28, last)))


@st.composite
def grants_and_times(draw):
    every = draw(
        st.one_of(
            st.sampled_from(["month", "quarter", "year"]),
            st.integers(1, 45).map(lambda n: f"{n} days"),
            st.integers(1, 6).map(lambda n: f"{n} weeks"),
            st.sampled_from([1, 1, 2, 3, 5, 12, 14]).map(lambda n: f"{n} months"),
        )
    )
    start = draw(st.one_of(st.dates(date(2023, 1, 1), date(2030, 12, 31)), month_ends()))
    until = draw(st.one_of(st.none(), st.integers(0, 900).map(lambda days: start + timedelta(days=days))))
    expires_after = draw(
        st.one_of(
            st.none(),
            st.integers(1, 60).map(lambda n: f"{n} days"),
            st.integers(1, 24).map(lambda n: f"{n} months"),
        )
    )
    rule = grant(
        every,
        start,
        key="g",
        until=until,
        zone=draw(st.sampled_from(ZONES)),
        expires_after=expires_after,
        catch_up=draw(st.booleans()),
        balance=draw(st.integers(1, 10_000)),
        name="{grant}-{period}",
    )
    # Apply times: from a little before `from` on, in steps of seconds to months, so that some
    # land right at period boundaries and some skip many periods.
    first = datetime.combine(start, datetime.min.time(), tzinfo=UTC) + timedelta(
        hours=draw(st.integers(-24 * 40, 24 * 40))
    )
    steps = draw(
        st.lists(
            st.one_of(
                st.integers(1, 120).map(lambda s: timedelta(seconds=s)),
                st.integers(1, 48).map(lambda h: timedelta(hours=h)),
                st.integers(1, 400).map(lambda d: timedelta(days=d)),
            ),
            min_size=0,
            max_size=7,
        )
    )
    times = [first]
    for step in steps:
        times.append(times[-1] + step)
    edits = draw(st.lists(st.integers(1, 10_000), min_size=len(times), max_size=len(times)))
    return rule, times, edits


def first_instant_of(day: date, zone: ZoneInfo) -> datetime:
    """The oracle's local midnight: the earliest instant whose local date is ``day`` (bisection
    over instants, independent of zoneinfo's fold rules)."""
    low = datetime.combine(day, datetime.min.time(), tzinfo=UTC) - timedelta(days=2)
    high = low + timedelta(days=4)
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(zone).date() >= day:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0)


def nth_start(rule: GrantSpec, k: int) -> date:
    """The oracle's schedule: the anchor's day of the month, clamped; or whole days."""
    if rule.every.days:
        return rule.from_date + timedelta(days=k * rule.every.days)
    months = rule.from_date.month - 1 + k * rule.every.months
    year, month = rule.from_date.year + months // 12, months % 12 + 1
    day = rule.from_date.day
    while True:
        try:
            return date(year, month, day)
        except ValueError:
            day -= 1


def plus(day: date, step) -> date:
    if step.days:
        return day + timedelta(days=step.days)
    months = day.month - 1 + step.months
    year, month = day.year + months // 12, months % 12 + 1
    last = day.day
    while True:
        try:
            return date(year, month, last)
        except ValueError:
            last -= 1


def oracle_periods(rule: GrantSpec, at: datetime) -> list[tuple[int, datetime, datetime | None]]:
    """(index, start instant, expiry instant) of every period begun at ``at``."""
    zone = ZoneInfo(rule.time_zone)
    found, k = [], 0
    while True:
        day = nth_start(rule, k)
        begins = first_instant_of(day, zone)
        if begins > at or (rule.until is not None and day > rule.until):
            return found
        expiry = first_instant_of(plus(day, rule.expires_after), zone) if rule.expires_after else None
        found.append((k, begins, expiry))
        k += 1


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(grants_and_times())
# Month ends: anchored (Mar 31), not chained (Mar 28); an apply on Mar 29 must not issue March.
@example(
    (
        grant("1 months", date(2026, 1, 31), key="g", expires_after=None, zone="UTC"),
        [datetime(2026, 1, 31, tzinfo=UTC), datetime(2026, 3, 29, tzinfo=UTC), datetime(2026, 6, 1, tzinfo=UTC)],
        [10, 20, 30],
    )
)
# catchUp false, applies exactly at period starts (local midnight in New York) and a millisecond before.
@example(
    (
        grant("quarter", date(2026, 1, 1), key="g", catch_up=False, expires_after="1 months", zone="America/New_York"),
        [
            datetime(2026, 1, 1, 5, tzinfo=UTC),
            datetime(2026, 4, 1, 3, 59, 59, 999000, tzinfo=UTC),
            datetime(2026, 4, 1, 4, tzinfo=UTC),
            datetime(2027, 1, 1, 5, tzinfo=UTC),
        ],
        [1, 2, 3, 4],
    )
)
def test_every_begun_period_is_issued_exactly_once_never_early(case):
    rule, times, balances = case
    state = State()
    issued: set[str] = set()
    for at, balance in zip(times, balances, strict=False):
        edited = rule.model_copy(update={"starting_balance": balance})  # the grant may be edited between runs
        plan = make_plan(declared(edited, at=at), state, at)
        begun = oracle_periods(rule, at)
        index_by_id = {oracle_id(rule, nth_start(rule, k)): k for k, _, _ in begun}
        worth_issuing = {k for k, _, expiry in begun if expiry is None or expiry > at}
        assert all(change.action == "create" for change in plan.changes), plan.changes
        created = set()
        for change in plan.changes:
            period = change.address.split("@", 1)[1]
            assert period in index_by_id, f"{change.address} issued at {at}, before its period began"
            assert change.address not in issued, f"{change.address} issued twice"
            assert change.credits == balance
            assert period_index(rule, period) == index_by_id[period]
            created.add(index_by_id[period])
        issued |= {change.address for change in plan.changes}
        state = apply_creates(plan, state)
        issued_indexes = {index_by_id[address.split("@", 1)[1]] for address in issued}
        assert created <= worth_issuing, "a batch created already expired"
        if rule.catch_up:
            assert worth_issuing <= issued_indexes, "a begun period was left out"
        else:
            latest = max(index_by_id.values(), default=None)
            assert created <= {latest}, "catchUp: false issued an older period"
            if latest in worth_issuing:
                assert latest in issued_indexes, "catchUp: false left out the latest period"
    assert set(state.resources) == issued


def oracle_id(rule: GrantSpec, day: date) -> str:
    style = rule.every.period_id
    if style == "month":
        return f"{day.year}-{day.month:02d}"
    if style == "quarter":
        return f"{day.year}-q{(day.month + 2) // 3}"
    if style == "year":
        return str(day.year)
    return day.isoformat()
