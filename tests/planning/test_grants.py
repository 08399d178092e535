"""The grant engine (grants.py) on a fixed clock: parsing, period ids, month ends, leap years,
time zones with daylight saving, until, catchUp, expiry, expansion and the next period."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from itertools import islice
from zoneinfo import ZoneInfo

import pytest
from conftest import ACCOUNT_ID, ACME_ID

from provisioner.core.addresses import grant_address
from provisioner.core.models import BatchSpec, Desired, GrantSpec
from provisioner.manifest.grant_rules import (
    check_name_template,
    check_until,
    parse_every,
    parse_expires_after,
    parse_time_zone,
    period_name,
)
from provisioner.planning.grants import (
    add_step,
    begun_periods,
    due_periods,
    expand,
    period_index,
    upcoming,
)

UTC = timezone.utc


def grant(
    every: str = "quarter",
    start: date = date(2026, 1, 1),
    *,
    until: date | None = None,
    zone: str = "UTC",
    balance: int = 5000,
    name: str = "{grant} {period}",
    expires_after: str | None = None,
    catch_up: bool = True,
    account: str | None = None,
    key: str = "quarterly",
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
        credit_account_id=account,
        catch_up=catch_up,
        source="m.yaml:4:5",
    )


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def ids(rule: GrantSpec, at: datetime) -> list[str]:
    return [period.id for period in due_periods(rule, at)]


def starts(rule: GrantSpec, at: datetime) -> list[date]:
    return [period.starts_on for period in due_periods(rule, at)]


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "months", "days", "style", "shown"),
    [
        ("month", 1, 0, "month", "month"),
        ("quarter", 3, 0, "quarter", "quarter"),
        ("year", 12, 0, "year", "year"),
        ("10 days", 0, 10, "date", "10 days"),
        ("1 day", 0, 1, "date", "1 day"),
        ("2 weeks", 0, 14, "date", "2 weeks"),
        ("1 months", 1, 0, "date", "1 month"),
        ("18 months", 18, 0, "date", "18 months"),
        (" 3  months ", 3, 0, "date", "3 months"),
    ],
)
def test_every_units(text, months, days, style, shown):
    every = parse_every(text)
    assert (every.months, every.days, every.period_id, every.text) == (months, days, style, shown)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("monthly", "'monthly' is not understood; did you mean 'month'?"),
        ("Quarter", "did you mean 'quarter'?"),
        ("3 fortnights", "unknown unit 'fortnights'; expected month, quarter, year, or \"N days\""),
        ("3 mnths", "unknown unit 'mnths'; did you mean 'months'?"),
        ("0 days", "the number must be at least 1"),
        ("10000 days", "the number must be at most 9999"),
        ("2 years", "'2 years' is not accepted for every; use \"24 months\""),
        ("1 year", "use 'year' (periods named 2026, 2027...) or \"12 months\""),
        ("3 Months", "write the unit in lower case ('3 months')"),
        ("", "expected month, quarter, year"),
        ("-1 days", "expected month, quarter, year"),
    ],
)
def test_every_errors_say_what_is_expected(text, message):
    with pytest.raises(ValueError) as error:
        parse_every(text)
    assert message in str(error.value)


def test_every_that_is_not_text_is_an_error():
    with pytest.raises(ValueError, match="expected month, quarter, year"):
        parse_every(3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "months", "days"),
    [
        ("30 days", 0, 30),
        ("1 week", 0, 7),
        ("6 weeks", 0, 42),
        ("12 months", 12, 0),
        ("1 year", 12, 0),
        ("2 years", 24, 0),
    ],
)
def test_expires_after_units(text, months, days):
    step = parse_expires_after(text)
    assert (step.months, step.days) == (months, days)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12 moths", "unknown unit 'moths'; did you mean 'months'? expected \"N days\", \"N weeks\""),
        ("a year", 'expected "N days", "N weeks", "N months" or "N years"'),
        ("0 months", "the number must be at least 1"),
        ("quarter", 'expected "N days"'),
    ],
)
def test_expires_after_errors(text, message):
    with pytest.raises(ValueError) as error:
        parse_expires_after(text)
    assert message in str(error.value)


def test_time_zones_by_exact_iana_name_with_a_suggestion_for_typos():
    assert parse_time_zone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert parse_time_zone("UTC") == ZoneInfo("UTC")
    with pytest.raises(ValueError, match=r"unknown time zone 'Europe/Berln'; did you mean 'Europe/Berlin'\?"):
        parse_time_zone("Europe/Berln")
    with pytest.raises(ValueError, match=r"unknown time zone 'america/new_york'; did you mean 'America/New_York'\?"):
        parse_time_zone("america/new_york")
    with pytest.raises(ValueError, match="unknown time zone 'Moon/Base'; use an IANA name such as Europe/Berlin"):
        parse_time_zone("Moon/Base")
    with pytest.raises(ValueError, match="unknown time zone"):
        parse_time_zone("../../etc/passwd")


def test_name_template_knows_period_and_grant_only():
    check_name_template("Acme {period} ({grant}) {{literal}}")
    assert period_name("Acme {period} ({grant}) {{x}}", "quarterly", "2026-q1") == "Acme 2026-q1 (quarterly) {x}"
    with pytest.raises(ValueError, match=r"unknown field \{client\} in the name template; use \{period\}"):
        check_name_template("{client} {period}")
    with pytest.raises(ValueError, match=r"unknown field \{\}"):
        check_name_template("Acme {}")
    with pytest.raises(ValueError, match=r"unknown field \{period.year\}"):
        check_name_template("{period.year}")
    with pytest.raises(ValueError, match=r"write \{period\} without a format or conversion"):
        check_name_template("{period:>10}")
    with pytest.raises(ValueError, match="unmatched '{' or '}'"):
        check_name_template("Acme {period")
    with pytest.raises(ValueError, match="unmatched '{' or '}'"):
        check_name_template("Acme }")


def test_until_before_from_is_an_error():
    check_until(date(2026, 1, 1), None)
    check_until(date(2026, 1, 1), date(2026, 1, 1))
    with pytest.raises(ValueError, match="until 2025-12-31 is before from 2026-01-01: no period would ever start"):
        check_until(date(2026, 1, 1), date(2025, 12, 31))


# --------------------------------------------------------------------------- period ids and starts


def test_period_ids_per_unit():
    at = utc(2026, 12, 31, 12)
    assert ids(grant("month"), at) == [f"2026-{month:02d}" for month in range(1, 13)]
    assert ids(grant("quarter"), at) == ["2026-q1", "2026-q2", "2026-q3", "2026-q4"]
    assert ids(grant("year", date(2024, 1, 1)), at) == ["2024", "2025", "2026"]
    assert ids(grant("10 days", date(2026, 12, 1)), at) == ["2026-12-01", "2026-12-11", "2026-12-21", "2026-12-31"]
    assert ids(grant("2 weeks", date(2026, 11, 15)), at) == ["2026-11-15", "2026-11-29", "2026-12-13", "2026-12-27"]
    assert ids(grant("3 months", date(2026, 1, 15)), at) == ["2026-01-15", "2026-04-15", "2026-07-15", "2026-10-15"]


def test_periods_align_to_from_and_calendar_ids_name_the_start():
    assert starts(grant("month", date(2026, 1, 15)), utc(2026, 3, 20)) == [
        date(2026, 1, 15),
        date(2026, 2, 15),
        date(2026, 3, 15),
    ]
    # A contract quarter starting in February: named by the calendar quarter it starts in.
    assert ids(grant("quarter", date(2026, 2, 1)), utc(2027, 2, 1)) == [
        "2026-q1",
        "2026-q2",
        "2026-q3",
        "2026-q4",
        "2027-q1",
    ]


def test_monthly_from_the_31st_is_anchored_not_chained():
    rule = grant("1 months", date(2026, 1, 31))
    assert starts(rule, utc(2026, 8, 1)) == [
        date(2026, 1, 31),
        date(2026, 2, 28),
        date(2026, 3, 31),
        date(2026, 4, 30),
        date(2026, 5, 31),
        date(2026, 6, 30),
        date(2026, 7, 31),
    ]
    assert ids(rule, utc(2026, 3, 31)) == ["2026-01-31", "2026-02-28", "2026-03-31"]
    # The 30th: February clamps, March is the 30th again.
    assert starts(grant("month", date(2026, 1, 30)), utc(2026, 3, 30)) == [
        date(2026, 1, 30),
        date(2026, 2, 28),
        date(2026, 3, 30),
    ]


def test_leap_years():
    assert starts(grant("1 months", date(2024, 1, 31)), utc(2024, 3, 31)) == [
        date(2024, 1, 31),
        date(2024, 2, 29),
        date(2024, 3, 31),
    ]
    assert starts(grant("year", date(2024, 2, 29)), utc(2029, 1, 1)) == [
        date(2024, 2, 29),
        date(2025, 2, 28),
        date(2026, 2, 28),
        date(2027, 2, 28),
        date(2028, 2, 29),
    ]
    assert add_step(date(2024, 2, 29), parse_expires_after("1 year")) == date(2025, 2, 28)
    assert add_step(date(2023, 2, 28), parse_expires_after("1 year")) == date(2024, 2, 28)
    # Day steps count real days across February 29.
    assert starts(grant("7 days", date(2024, 2, 22)), utc(2024, 3, 8)) == [
        date(2024, 2, 22),
        date(2024, 2, 29),
        date(2024, 3, 7),
    ]


def test_a_period_has_begun_at_its_first_instant_not_a_millisecond_before():
    rule = grant("month", date(2026, 1, 1), zone="Europe/Berlin")
    first = utc(2025, 12, 31, 23)  # midnight in Berlin (UTC+1)
    assert ids(rule, first - timedelta(milliseconds=1)) == []
    assert ids(rule, first) == ["2026-01"]
    assert ids(rule, utc(2026, 1, 31, 22, 59, 59)) == ["2026-01"]
    assert ids(rule, utc(2026, 1, 31, 23)) == ["2026-01", "2026-02"]


def test_before_from_nothing_has_begun():
    assert ids(grant("month", date(2027, 1, 1)), utc(2026, 6, 1)) == []
    assert ids(grant("month", date(2027, 1, 1), catch_up=False), utc(2026, 6, 1)) == []


def test_at_may_carry_any_offset():
    rule = grant("month", date(2026, 1, 1), zone="Europe/Berlin")
    tokyo = ZoneInfo("Asia/Tokyo")
    assert ids(rule, datetime(2026, 2, 1, 7, 59, tzinfo=tokyo)) == ["2026-01"]  # 23:59 in Berlin
    assert ids(rule, datetime(2026, 2, 1, 8, 0, tzinfo=tokyo)) == ["2026-01", "2026-02"]
    # Same zone as the grant: compared as instants, not as wall times.
    berlin = ZoneInfo("Europe/Berlin")
    assert ids(rule, datetime(2026, 1, 31, 23, 59, 59, tzinfo=berlin)) == ["2026-01"]


# --------------------------------------------------------------------------- time zones and daylight saving


def test_berlin_days_start_at_local_midnight_across_both_changes():
    rule = grant("1 days", date(2026, 3, 28), zone="Europe/Berlin")
    assert [period.starts_at for period in due_periods(rule, utc(2026, 3, 31))] == [
        utc(2026, 3, 27, 23),
        utc(2026, 3, 28, 23),  # winter time, UTC+1 (the change is at 02:00 on the 29th)
        utc(2026, 3, 29, 22),
        utc(2026, 3, 30, 22),
    ]  # summer time, UTC+2
    autumn = grant("1 days", date(2026, 10, 24), zone="Europe/Berlin")
    assert [period.starts_at for period in due_periods(autumn, utc(2026, 10, 27))] == [
        utc(2026, 10, 23, 22),
        utc(2026, 10, 24, 22),
        utc(2026, 10, 25, 23),
        utc(2026, 10, 26, 23),
    ]


def test_new_york_months_and_weeks_follow_daylight_saving():
    monthly = grant("month", date(2026, 2, 1), zone="America/New_York")
    assert [period.starts_at for period in due_periods(monthly, utc(2026, 12, 1, 5))] == [
        utc(2026, 2, 1, 5),
        utc(2026, 3, 1, 5),
        utc(2026, 4, 1, 4),
        utc(2026, 5, 1, 4),
        utc(2026, 6, 1, 4),
        utc(2026, 7, 1, 4),
        utc(2026, 8, 1, 4),
        utc(2026, 9, 1, 4),
        utc(2026, 10, 1, 4),
        utc(2026, 11, 1, 4),
        utc(2026, 12, 1, 5),
    ]
    weekly = grant("1 weeks", date(2026, 3, 1), zone="America/New_York")
    assert [period.starts_at for period in due_periods(weekly, utc(2026, 3, 15, 12))] == [
        utc(2026, 3, 1, 5),
        utc(2026, 3, 8, 5),
        utc(2026, 3, 15, 4),
    ]
    # The Sunday the clocks change: 00:00 still exists (the change is at 02:00), in winter time.
    assert ids(weekly, utc(2026, 3, 8, 4, 59)) == ["2026-03-01"]


def test_a_skipped_midnight_starts_the_period_at_the_first_instant_of_the_day():
    # Havana moves its clocks from 00:00 to 01:00: 2026-03-08 begins at 05:00 UTC.
    rule = grant("1 days", date(2026, 3, 7), zone="America/Havana")
    periods = due_periods(rule, utc(2026, 3, 9, 12))
    assert [period.starts_at for period in periods] == [utc(2026, 3, 7, 5), utc(2026, 3, 8, 5), utc(2026, 3, 9, 4)]
    havana = ZoneInfo("America/Havana")
    skipped = periods[1].starts_at
    assert skipped.astimezone(havana).date() == date(2026, 3, 8)
    assert (skipped - timedelta(seconds=1)).astimezone(havana).date() == date(2026, 3, 7)
    # Its midnight twice (00:00-01:00 repeats on 2026-11-01): the first one.
    autumn = grant("1 days", date(2026, 11, 1), zone="America/Havana")
    assert due_periods(autumn, utc(2026, 11, 1, 12))[0].starts_at == utc(2026, 11, 1, 4)


def test_expiry_is_local_midnight_after_the_step_written_as_every_expiresOn():
    rule = grant("month", date(2026, 3, 1), zone="Europe/Berlin", expires_after="1 months")
    batches = [batch_of(rule, period) for period in due_periods(rule, utc(2026, 4, 15))]
    # March starts in winter time and expires in summer time.
    assert [batch.expires_on for batch in batches] == ["2026-03-31T22:00:00.000Z", "2026-04-30T22:00:00.000Z"]
    yearly = grant("quarter", date(2026, 1, 1), zone="Europe/Berlin", expires_after="12 months")
    assert batch_of(yearly, due_periods(yearly, utc(2026, 1, 1))[0]).expires_on == "2026-12-31T23:00:00.000Z"
    days = grant("1 months", date(2026, 1, 31), expires_after="30 days")
    assert [batch_of(days, p).expires_on for p in due_periods(days, utc(2026, 3, 1))] == [
        "2026-03-02T00:00:00.000Z",
        "2026-03-30T00:00:00.000Z",
    ]
    clamped = grant("1 months", date(2026, 1, 31), expires_after="1 months")
    assert batch_of(clamped, due_periods(clamped, utc(2026, 1, 31))[0]).expires_on == "2026-02-28T00:00:00.000Z"


def batch_of(rule: GrantSpec, period) -> BatchSpec:
    expanded = expand(Desired(grants={rule.address: rule}), period.starts_at)
    return expanded.batches[f"{rule.address}@{period.id}"]


# --------------------------------------------------------------------------- until and catchUp


def test_until_includes_a_period_starting_that_day_and_nothing_after():
    rule = grant("quarter", date(2026, 1, 1), until=date(2026, 7, 1))
    assert ids(rule, utc(2030, 1, 1)) == ["2026-q1", "2026-q2", "2026-q3"]
    assert ids(grant("quarter", date(2026, 1, 1), until=date(2026, 6, 30)), utc(2030, 1, 1)) == ["2026-q1", "2026-q2"]
    assert ids(grant("quarter", date(2026, 1, 1), until=date(2026, 1, 1)), utc(2030, 1, 1)) == ["2026-q1"]
    assert ids(grant("quarter", date(2026, 1, 1), until=date(2026, 7, 1), catch_up=False), utc(2030, 1, 1)) == [
        "2026-q3"
    ]


def test_until_is_a_local_date_even_when_the_instant_is_the_evening_before_in_utc():
    rule = grant("1 days", date(2026, 1, 1), until=date(2026, 1, 3), zone="Pacific/Auckland")
    assert ids(rule, utc(2026, 1, 2, 11, 0)) == ["2026-01-01", "2026-01-02", "2026-01-03"]  # Jan 3, 00:00 NZDT
    assert ids(rule, utc(2026, 1, 2, 10, 59)) == ["2026-01-01", "2026-01-02"]


def test_catch_up_false_declares_only_the_latest_begun_period():
    rule = grant("month", date(2026, 1, 1), catch_up=False)
    assert ids(rule, utc(2026, 5, 20)) == ["2026-05"]
    assert ids(rule, utc(2026, 6, 1)) == ["2026-06"]
    assert [period.id for period in begun_periods(rule, utc(2026, 3, 1))] == ["2026-01", "2026-02", "2026-03"]


def test_long_schedules_are_computed_directly():
    # Thirty years of days: the latest one is found without walking through them all.
    rule = grant("1 days", date(2000, 1, 1), catch_up=False, zone="Europe/Berlin")
    assert ids(rule, utc(2030, 6, 15, 12)) == ["2030-06-15"]
    assert len(due_periods(grant("1 days", date(2000, 1, 1)), utc(2030, 6, 15, 12))) == 11124


# --------------------------------------------------------------------------- expansion


def test_expand_adds_one_addressed_batch_per_begun_period():
    rule = grant(
        "quarter",
        date(2026, 1, 1),
        zone="Europe/Berlin",
        name="Acme {period}",
        expires_after="12 months",
        account=ACCOUNT_ID,
    )
    plain = BatchSpec(client_key="acme", batch_key="welcome", client_id=ACME_ID, name="Welcome", starting_balance=10)
    desired = Desired(batches={plain.address: plain}, grants={rule.address: rule})
    expanded = expand(desired, utc(2026, 4, 1))
    assert list(expanded.batches) == ["acme/quarterly@2026-q1", "acme/quarterly@2026-q2", "acme/welcome"]
    assert expanded.expanded_at == "2026-04-01T00:00:00.000Z"
    q2 = expanded.batches["acme/quarterly@2026-q2"]
    assert (q2.client_key, q2.batch_key, q2.grant, q2.period, q2.source) == (
        "acme",
        "quarterly@2026-q2",
        "quarterly",
        "2026-q2",
        "m.yaml:4:5",
    )
    # What is sent is exactly a batch's create body: no grant or period field.
    assert q2.attributes() == {
        "clientId": ACME_ID,
        "name": "Acme 2026-q2",
        "startingBalance": 5000,
        "expiresOn": "2027-03-31T22:00:00.000Z",
        "creditAccountId": ACCOUNT_ID,
    }
    assert expanded.batches["acme/welcome"] is plain
    assert desired.batches == {"acme/welcome": plain}  # the input is left as it was


def test_expand_default_name_and_no_expiry():
    expanded = expand(Desired(grants={"acme/monthly": grant("month", key="monthly")}), utc(2026, 1, 1))
    batch = expanded.batches["acme/monthly@2026-01"]
    assert batch.name == "monthly 2026-01"
    assert "expiresOn" not in batch.attributes()


def test_expanding_again_replaces_the_periods():
    desired = Desired(grants={"acme/quarterly": grant()})
    later = expand(expand(desired, utc(2026, 12, 1)), utc(2026, 2, 1))
    assert list(later.batches) == ["acme/quarterly@2026-q1"]
    assert later.expanded_at == "2026-02-01T00:00:00.000Z"


def test_expand_needs_an_aware_moment():
    with pytest.raises(ValueError, match="needs a time zone"):
        expand(Desired(grants={"acme/quarterly": grant()}), datetime(2026, 1, 1))


def test_expanded_desired_survives_a_saved_plan_round_trip():
    rule = grant(
        "1 months", date(2026, 1, 31), until=date(2027, 1, 31), zone="America/New_York", expires_after="2 weeks"
    )
    expanded = expand(Desired(grants={rule.address: rule}), utc(2026, 5, 1))
    assert Desired.model_validate(expanded.model_dump(mode="json")) == expanded


def test_grant_address_of_a_period_batch():
    assert grant_address("acme/quarterly@2026-q1") == "acme/quarterly"
    assert grant_address("acme/q1") is None


# --------------------------------------------------------------------------- the next period


def test_upcoming_is_the_next_period_with_its_date_and_credits():
    rule = grant(
        "quarter", date(2026, 1, 1), zone="Europe/Berlin", name="Acme {period}", expires_after="1 year", balance=5000
    )
    following = upcoming(rule, utc(2026, 2, 10))
    assert following.model_dump() == {
        "grant": "acme/quarterly",
        "address": "acme/quarterly@2026-q2",
        "period": "2026-q2",
        "starts_on": "2026-04-01",
        "starts_at": "2026-03-31T22:00:00.000Z",
        "time_zone": "Europe/Berlin",
        "credits": 5000,
        "name": "Acme 2026-q2",
        "expires_on": "2027-03-31T22:00:00.000Z",
    }
    assert upcoming(rule, utc(2025, 6, 1)).period == "2026-q1"  # before from: the first one
    assert upcoming(rule, utc(2026, 3, 31, 22)).period == "2026-q3"  # q2 has just begun
    assert upcoming(grant(catch_up=False), utc(2026, 2, 10)).period == "2026-q2"


def test_no_upcoming_period_after_until_or_past_the_calendar():
    rule = grant("quarter", date(2026, 1, 1), until=date(2026, 9, 30))
    assert upcoming(rule, utc(2026, 5, 1)).period == "2026-q3"
    assert upcoming(rule, utc(2026, 7, 1)) is None
    assert upcoming(grant("year", date(9999, 1, 1)), utc(9999, 6, 1)) is None


# --------------------------------------------------------------------------- schedule membership


@pytest.mark.parametrize(
    ("rule", "period", "index"),
    [
        (grant("month", date(2026, 1, 31)), "2026-01", 0),
        (grant("month", date(2026, 1, 31)), "2027-02", 13),
        (grant("month", date(2026, 1, 31)), "2025-12", None),
        (grant("month", date(2026, 1, 31)), "2026-13", None),
        (grant("month", date(2026, 1, 31)), "2026-q1", None),
        (grant("quarter", date(2026, 2, 1)), "2026-q1", 0),
        (grant("quarter", date(2026, 2, 1)), "2027-q1", 4),
        (grant("quarter", date(2026, 2, 1)), "2026-q5", None),
        (grant("year", date(2024, 2, 29)), "2030", 6),
        (grant("year", date(2024, 2, 29)), "2023", None),
        (grant("1 months", date(2026, 1, 31)), "2026-02-28", 1),
        (grant("1 months", date(2026, 1, 31)), "2026-03-31", 2),
        (grant("1 months", date(2026, 1, 31)), "2026-03-28", None),
        (grant("2 weeks", date(2026, 1, 1)), "2026-01-15", 1),
        (grant("2 weeks", date(2026, 1, 1)), "2026-01-08", None),
        (grant("2 weeks", date(2026, 1, 1)), "2026-02-30", None),
        (grant("2 weeks", date(2026, 1, 1)), "2026-01", None),
        (grant("quarter", date(2026, 1, 1), until=date(2026, 7, 1)), "2026-q3", 2),
        (grant("quarter", date(2026, 1, 1), until=date(2026, 7, 1)), "2026-q4", 3),  # until aside
    ],
)
def test_period_index_places_an_id_in_the_schedule(rule, period, index):
    assert period_index(rule, period) == index
    if index is not None:
        unbounded = rule.model_copy(update={"until": None})
        assert next(islice(begun_periods(unbounded, utc(9000, 1, 1)), index, None)).id == period
