"""The API's timestamp form: UTC, milliseconds, "Z", the year in four digits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from provisioner.core.timestamps import format_timestamp, from_iso, parse_timestamp


@pytest.mark.parametrize("year", [1000, 1970, 2026, 9000, 9999])
def test_the_form_of_the_years_the_tool_takes(year):
    moment = datetime(year, 2, 3, 4, 5, 6, 789_999, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == f"{year:04d}-02-03T02:05:06.789Z"  # finer digits dropped, not rounded


def test_a_year_before_1000_keeps_four_digits_so_that_it_reads_back():
    moment = datetime(500, 1, 1, tzinfo=timezone.utc)
    assert format_timestamp(moment) == "0500-01-01T00:00:00.000Z"
    assert parse_timestamp(format_timestamp(moment)) == moment


def test_a_moment_past_the_year_9999_in_utc_is_an_overflow():
    with pytest.raises(OverflowError):
        format_timestamp(datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-2))))


def test_a_final_z_is_utc():
    assert (
        from_iso("2026-01-01T00:00:00Z")
        == from_iso("2026-01-01T00:00:00z")
        == datetime(2026, 1, 1, tzinfo=timezone.utc)
    )
    assert from_iso("2026-01-01T00:00:00").tzinfo is None
