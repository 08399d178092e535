"""The credits report as a pure function of (state, observed batches or None, now): the figures
any state backend feeds it, and the upcoming batches of recurring grants."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timezone

import pytest

from provisioner.core.models import Intent, Resource, State
from provisioner.report.formats import render
from provisioner.report.model import UpcomingGrant, build_report

NOW = datetime(2027, 1, 30, 12, 0, tzinfo=timezone.utc)
ACME = "6a0c1d7e-0000-4000-8000-000000000001"


def resource(
    batch_id: str,
    starting,
    current=None,
    expires: str | None = None,
    status: str | None = "active",
    name: str | None = None,
) -> Resource:
    attributes = {"clientId": ACME, "name": name or batch_id, "startingBalance": starting}
    if expires:
        attributes["expiresOn"] = expires
    remote = {"id": batch_id, **attributes}
    if current is not None:
        remote["currentBalance"] = current
    if status is not None:
        remote["status"] = status
    return Resource(batch_id=batch_id, client_id=ACME, attributes=attributes, remote=remote)


def state(**resources: Resource) -> State:
    return State(resources={address.replace("__", "/"): value for address, value in resources.items()})


def line(report, address: str):
    return next(batch for batch in report.batches if batch.address == address)


def test_every_credit_lands_in_exactly_one_place():
    book = state(
        acme__a=resource("a", 1000, 400, "2027-06-30T23:59:59.000Z"),
        acme__b=resource("b", 500, 100, "2026-12-31T23:59:59.000Z"),  # expired since: 100 lost
        acme__c=resource("c", 300, None),  # no balance ever recorded
    )
    report = build_report(book, None, NOW)

    a, b, c = (line(report, f"acme/{key}").credits for key in "abc")
    assert (a.used, a.remaining, a.expired_unused, a.unknown) == (600, 400, 0, 0)
    assert (b.used, b.remaining, b.expired_unused, b.unknown) == (400, 0, 100, 0)
    assert (c.used, c.remaining, c.expired_unused, c.unknown) == (0, 0, 0, 300)
    totals = report.totals
    assert totals.issued == 1800 == totals.used + totals.remaining + totals.expired_unused + totals.unknown
    assert line(report, "acme/b").status == "expired"  # by the clock, though the API last said active


def test_days_left_count_calendar_days_in_utc():
    book = state(
        acme__today=resource("t", 1, 1, "2027-01-30T23:00:00.000Z"),
        acme__tomorrow=resource("m", 1, 1, "2027-01-31T00:30:00.000Z"),
        acme__edge=resource("e", 1, 1, "2027-03-01T12:00:00.000Z"),  # exactly 30 days away
        acme__beyond=resource("x", 1, 1, "2027-03-01T12:00:01.000Z"),
        acme__offset=resource("o", 1, 1, "2027-02-01T01:00:00+02:00"),  # 2027-01-31 23:00 UTC
    )
    report = build_report(book, None, NOW)

    assert [
        (line(report, f"acme/{k}").days_left, line(report, f"acme/{k}").expiring_soon)
        for k in ("today", "tomorrow", "edge", "beyond", "offset")
    ] == [(0, True), (1, True), (30, True), (30, False), (1, True)]
    assert render(report, "text").count("last day today") == 1


EXPIRIES = {  # expiresOn -> the last usable day as shown, days left at NOW (2027-01-30 12:00 UTC)
    "2027-02-10T00:00:00.000Z": ("2027-02-09", 10),  # midnight UTC: gone at the end of the day before
    "2027-02-10T00:00:01.000Z": ("2027-02-10 until 00:00:01", 11),  # one second past: usable that second
    "2027-02-10T00:00:00+01:00": ("2027-02-09 until 23:00", 10),  # Berlin's midnight: 23:00 UTC the day before
    "2027-02-10T00:00:00-05:00": ("2027-02-10 until 05:00", 11),  # New York's midnight: 05:00 UTC that day
    "2027-02-09T23:59:59.000Z": ("2027-02-09", 10),  # the usual end of a day
}


@pytest.mark.parametrize(("expires", "expected"), EXPIRIES.items())
def test_an_expiry_is_shown_as_the_last_day_its_credits_can_be_used(expires, expected):
    from provisioner.report import wording

    report = build_report(state(acme__b=resource("b", 10, 10, expires)), None, NOW)
    batch = line(report, "acme/b")
    assert (wording.last_day(batch), batch.days_left) == expected
    shown = f"{expected[0]} ({expected[1]} days left)"
    assert shown in render(report, "text") and shown in render(report, "html")
    shown_date = expected[0][:10]
    [row] = list(csv.DictReader(io.StringIO(render(report, "csv"), newline="")))
    assert (row["last_usable_day"], row["days_left"]) == (shown_date, str(expected[1]))
    assert json.loads(render(report, "json"))["batches"][0]["last_usable_day"] == shown_date


def test_an_expiry_at_midnight_is_counted_in_the_month_of_its_last_usable_day():
    book = state(
        acme__march=resource("m", 10, 7, "2027-04-01T00:00:00.000Z"),  # usable through March 31
        acme__april=resource("a", 10, 5, "2027-04-01T00:00:01.000Z"),  # one second of April 1
        acme__berlin=resource("b", 10, 3, "2027-05-01T00:00:00+02:00"),  # April 30, 22:00 UTC
    )
    report = build_report(book, None, NOW)
    by_month = {month.month.strftime("%Y-%m"): month.credits for month in report.expiring_by_month}
    assert (by_month["2027-03"], by_month["2027-04"], by_month["2027-05"]) == (7, 5 + 3, 0)
    from provisioner.report.charts import expiry_chart

    assert "March 2027: 7; April 2027: 8; May 2027: 0" in expiry_chart(report)
    assert "2027-03-31 (60 days left)" in render(report, "text")


def test_last_usable_day_is_one_function():
    from provisioner.core.timestamps import last_usable_day

    at = datetime.fromisoformat
    assert last_usable_day(at("2027-04-01T00:00:00+00:00")) == date(2027, 3, 31)
    assert last_usable_day(at("2027-04-01T00:00:00.001+00:00")) == date(2027, 4, 1)
    assert last_usable_day(at("2027-04-01T00:00:00+02:00")) == date(2027, 3, 31)
    assert last_usable_day(at("2027-04-01T00:00:00-02:00")) == date(2027, 4, 1)


def test_live_figures_win_and_a_batch_the_api_no_longer_lists_is_missing():
    book = state(acme__a=resource("a", 1000, 1000), acme__b=resource("b", 200, 200))
    observed = {
        "a": {"id": "a", "name": "Renamed by hand", "startingBalance": 1000, "currentBalance": 250, "status": "active"}
    }
    report = build_report(book, observed, NOW, recorded_at=datetime(2020, 1, 1, tzinfo=timezone.utc))

    assert report.live and report.figures_at == NOW
    assert (line(report, "acme/a").name, line(report, "acme/a").credits.used) == ("Renamed by hand", 750)
    missing = line(report, "acme/b")
    assert (missing.status, missing.current_balance, missing.credits.unknown) == ("missing", None, 200)
    assert not missing.expiring_soon


def test_expiring_by_month_covers_twelve_months_from_this_one():
    book = state(
        acme__jan=resource("j", 100, 80, "2027-01-31T10:00:00.000Z"),
        acme__dec=resource("d", 100, 70, "2027-12-31T10:00:00.000Z"),
        acme__next_year=resource("n", 100, 60, "2028-01-01T10:00:00.000Z"),  # the 13th month: out
        acme__gone=resource("g", 100, 50, "2027-01-02T10:00:00.000Z"),  # already expired: not counted
    )
    months = build_report(book, None, NOW).expiring_by_month

    assert [m.month for m in months][:2] == [date(2027, 1, 1), date(2027, 2, 1)]
    assert months[-1].month == date(2027, 12, 1) and len(months) == 12
    assert (months[0].credits, months[0].batches) == (80, 1)
    assert (months[-1].credits, months[-1].batches) == (70, 1)
    assert sum(m.credits for m in months) == 150


def test_interrupted_creates_are_named_and_not_counted():
    intent = Intent(
        address="acme/new", client_id=ACME, attributes={"startingBalance": 5}, digest="d", at="2027-01-01T00:00:00.000Z"
    )
    report = build_report(State(pending={"acme/new": intent}), None, NOW)
    assert report.interrupted == ("acme/new",) and report.totals.issued == 0
    assert "interrupted while creating acme/new" in render(report, "text")


UPCOMING = (
    UpcomingGrant(
        client="acme",
        period="2027-03",
        on=date(2027, 3, 1),
        credits=5000,
        grant="monthly",
        address="acme/monthly@2027-03",
    ),
    UpcomingGrant(
        client="acme",
        period="2027-02",
        on=date(2027, 2, 1),
        credits=5000,
        grant="monthly",
        address="acme/monthly@2027-02",
    ),
)


@pytest.mark.parametrize("output_format", ["text", "json", "csv", "html"])
def test_upcoming_grants_have_their_place_in_every_format(output_format):
    """Recurring grants pass their next batches (show PATHS); without grants the list is empty."""
    book = state(acme__a=resource("a", 1000, 400, "2027-06-30T23:59:59.000Z"))
    without = render(build_report(book, None, NOW), output_format)
    with_grants = render(build_report(book, None, NOW, upcoming=UPCOMING), output_format)

    if output_format == "csv":  # one row per existing batch: upcoming grants are not batches yet
        assert with_grants == without
    elif output_format == "json":
        assert json.loads(without)["upcoming_grants"] == []
        assert json.loads(with_grants)["upcoming_grants"] == [
            {
                "client": "acme",
                "grant": "monthly",
                "address": "acme/monthly@2027-02",
                "period": "2027-02",
                "date": "2027-02-01",
                "credits": 5000,
            },
            {
                "client": "acme",
                "grant": "monthly",
                "address": "acme/monthly@2027-03",
                "period": "2027-03",
                "date": "2027-03-01",
                "credits": 5000,
            },
        ]
    else:
        heading = "Upcoming grants"
        assert heading not in without and heading in with_grants
        assert with_grants.index("2027-02-01") < with_grants.index("2027-03-01")
        if output_format == "html":
            assert 'data-total="upcoming">10,000<' in with_grants


def test_names_cannot_drive_the_terminal_or_the_page():
    book = state(acme__a=resource("a", 10, 10, name="evil \x1b[2J <script>alert(1)</script>"))
    report = build_report(book, None, NOW)
    assert "\x1b" not in render(report, "text")
    page = render(report, "html")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_many_clients_keep_the_chart_readable():
    book = state(**{f"c{i:02d}__b": resource(f"b{i}", 100 * (i + 1), 0) for i in range(20)})
    page = render(build_report(book, None, NOW), "html")
    assert "5 other clients" in page  # 15 drawn, the rest as one bar
