"""The field comparison rules, written once (core/comparison.py): the planner's diff, the applier's
update body and the matching rules of recovery and the duplicate guard all follow them."""

from __future__ import annotations

import pytest

from provisioner.core.comparison import DIFFERENT, EQUAL, HINT, UNKNOWN, compare_field, normalized, same_value

ID = "6A0C1D7E-3B2F-4C1A-9E8D-7F6A5B4C3D21"


@pytest.mark.parametrize(
    ("field", "left", "right", "same"),
    [
        ("expiresOn", "2026-12-31T23:59:59Z", "2027-01-01T00:59:59+01:00", True),  # one instant
        ("expiresOn", "2026-12-31T23:59:59Z", "2026-12-31T23:59:59.000Z", True),
        ("expiresOn", "2026-12-31T23:59:59Z", "2026-12-31T23:59:58Z", False),
        ("expiresOn", "2026-12-31T23:59:59Z", "not a time", False),
        ("clientId", ID, ID.lower(), True),  # ids without case
        ("creditAccountId", f" {ID} ", ID.lower(), True),
        ("clientId", ID, ID.replace("6A", "7A"), False),
        ("startingBalance", 1200, 1200.0, True),  # whole balances, however written
        ("startingBalance", 1200, 1201, False),
        ("name", "Starter", "starter", False),  # names are exact
        ("name", None, None, True),
        ("name", "Starter", None, False),
    ],
)
def test_same_value(field, left, right, same):
    assert same_value(field, left, right) is same
    assert same_value(field, right, left) is same


def test_normalized_puts_api_values_in_the_manifest_form():
    assert normalized("expiresOn", "2027-01-01T00:59:59+01:00") == "2026-12-31T23:59:59.000Z"
    assert normalized("expiresOn", "never") == "never"
    assert normalized("startingBalance", 1200.0) == 1200 and type(normalized("startingBalance", 1200.0)) is int
    assert normalized("clientId", ID) == ID.lower()
    assert normalized("name", "Starter") == "Starter"


@pytest.mark.parametrize(
    ("field", "sent", "listed", "verdict"),
    [
        ("expiresOn", "2026-12-31T23:59:59Z", "2026-12-31", EQUAL),  # a server keeping the date only
        ("expiresOn", "2026-12-31T23:59:59Z", "2027-01-01", EQUAL),  # ... in its own time zone
        ("expiresOn", "2026-12-31T23:59:59Z", "2027-01-05", DIFFERENT),
        ("expiresOn", "2026-12-31T23:59:59Z", None, UNKNOWN),  # missing is unknown, never different
        ("startingBalance", 1200, "1200.0", EQUAL),
        ("startingBalance", 1200, 1300, DIFFERENT),
        ("clientId", ID.lower(), ID, EQUAL),
        ("clientId", ID, "", UNKNOWN),
        ("name", "Starter", " starter ", HINT),  # equal once trimmed and case-folded: a hint only
        ("name", "Starter", "Other", DIFFERENT),
    ],
)
def test_compare_field(field, sent, listed, verdict):
    assert compare_field(field, sent, listed) == verdict
