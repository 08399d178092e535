"""Grants in manifests: both readers, every rule located (file:line:column, field path, what to
write), the cache, and the schema."""

from __future__ import annotations

import json
import textwrap
from datetime import date
from pathlib import Path

import pytest

from provisioner.manifest import cache as manifest_cache
from provisioner.manifest import fast_reader, located_reader
from provisioner.manifest.cache import ManifestCache
from provisioner.manifest.issues import ManifestError
from provisioner.manifest.loader import load
from provisioner.manifest.schema import manifest_schema

ACME_ID = "6a0c1d7e-3b2f-4c1a-9e8d-7f6a5b4c3d21"
ACCOUNT_ID = "5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716"
OTHER_ACCOUNT_ID = "0f1e2d3c-4b5a-4697-8877-665544332211"

# The issue's manifest, word for word (the comments aside).
ISSUE_EXAMPLE = f"""\
clients:
  acme:
    id: {ACME_ID}
    grants:
      quarterly:
        every: quarter
        from: 2026-01-01
        until: 2027-12-31
        timeZone: Europe/Berlin
        startingBalance: 5000
        name: "Acme {{period}}"
        expiresAfter: 12 months
        creditAccountId: {ACCOUNT_ID}
        catchUp: true
"""


@pytest.fixture(autouse=True)
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> Path:
    path = Path(name)
    path.write_text(textwrap.dedent(text))
    return path


def grant_text(fields: str, batches: str = "") -> str:
    """acme with one grant, acme/quarterly (line 6), holding ``fields`` from line 7 (without batches)."""
    head = f"clients:\n  acme:\n    id: {ACME_ID}\n    creditAccountId: {ACCOUNT_ID}\n"
    if batches:
        head += "    batches:\n" + textwrap.indent(textwrap.dedent(batches), " " * 6)
    return head + "    grants:\n      quarterly:\n" + textwrap.indent(textwrap.dedent(fields), " " * 8)


def problems(text: str) -> list[str]:
    write("m.yaml", text)
    with pytest.raises(ManifestError) as caught:
        load(["m.yaml"])
    return str(caught.value).splitlines()


def grant_problems(fields: str) -> list[str]:
    return problems(grant_text(fields))


REQUIRED = "every: quarter\nfrom: 2026-01-01\nstartingBalance: 5000\n"


# --------------------------------------------------------------------------- reading


def test_the_issue_example_reads_the_same_both_ways():
    data = ISSUE_EXAMPLE.encode()
    fast = fast_reader.read(data)
    assert fast is not None, "the fast reader vouches for the issue's plain example"
    assert fast == located_reader.read_one("m.yaml", data)
    write("m.yaml", ISSUE_EXAMPLE)
    desired = load(["m.yaml"])
    assert desired == located_reader.load(["m.yaml"])
    [grant] = desired.grants.values()
    assert grant.address == "acme/quarterly"
    assert (grant.every.text, grant.every.months, grant.every.period_id) == ("quarter", 3, "quarter")
    assert (grant.from_date, grant.until, grant.time_zone) == (date(2026, 1, 1), date(2027, 12, 31), "Europe/Berlin")
    assert (grant.starting_balance, grant.name, grant.expires_after.text) == (5000, "Acme {period}", "12 months")
    assert (grant.credit_account_id, grant.catch_up, grant.source) == (ACCOUNT_ID, True, "m.yaml:5:7")
    assert desired.batches == {}  # periods are batches only once expanded for a moment (--at)


def test_defaults_and_the_client_account():
    write("m.yaml", grant_text(REQUIRED))
    grant = load(["m.yaml"]).grants["acme/quarterly"]
    assert (grant.time_zone, grant.name, grant.expires_after, grant.until, grant.catch_up) == (
        "UTC",
        "{grant} {period}",
        None,
        None,
        True,
    )
    assert grant.credit_account_id == ACCOUNT_ID
    write("m.yaml", grant_text(REQUIRED + f"creditAccountId: {OTHER_ACCOUNT_ID}\ncatchUp: false\n"))
    grant = load(["m.yaml"]).grants["acme/quarterly"]
    assert (grant.credit_account_id, grant.catch_up) == (OTHER_ACCOUNT_ID, False)


def required_with(line: str) -> str:
    """REQUIRED with ``line`` in place of the field it names, or added."""
    name = line.split(":", 1)[0]
    kept = [field for field in REQUIRED.splitlines() if not field.startswith(name + ":")]
    return "\n".join([*kept, line]) + "\n"


@pytest.mark.parametrize(
    ("line", "attribute", "value"),
    [
        ("every: 1 months", "every", ("1 month", 1, 0, "date")),
        ("every: '2 weeks'", "every", ("2 weeks", 0, 14, "date")),
        ("expiresAfter: 1 year", "expires_after", ("1 year", 12, 0)),
        ("from: '2026-01-31'", "from_date", date(2026, 1, 31)),
        ("catchUp: yes", "catch_up", True),  # YAML 1.1, as PyYAML reads it (the located reader's file)
        ("catchUp: off", "catch_up", False),
        ("name: Acme {period} ({grant})", "name", "Acme {period} ({grant})"),
    ],
)
def test_values_in_their_other_forms(line, attribute, value):
    write("m.yaml", grant_text(required_with(line)))
    grant = load(["m.yaml"]).grants["acme/quarterly"]
    found = getattr(grant, attribute)
    if attribute == "every":
        found = (found.text, found.months, found.days, found.period_id)
    elif attribute == "expires_after":
        found = (found.text, found.months, found.days)
    assert found == value
    assert load(["m.yaml"]) == located_reader.load(["m.yaml"])


# --------------------------------------------------------------------------- every rule, located


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            "every: 3 mnths\nfrom: 2026-01-01\nstartingBalance: 5000\n",
            "m.yaml:7:16: clients.acme.grants.quarterly.every: unknown unit 'mnths'; did you mean 'months'? "
            'expected month, quarter, year, or "N days", "N weeks", "N months" (e.g. "3 months")',
        ),
        (
            "every: monthly\nfrom: 2026-01-01\nstartingBalance: 5000\n",
            "m.yaml:7:16: clients.acme.grants.quarterly.every: 'monthly' is not understood; did you mean 'month'?",
        ),
        (
            "every: 3\nfrom: 2026-01-01\nstartingBalance: 5000\n",
            'm.yaml:7:16: clients.acme.grants.quarterly.every: expected month, quarter, year, or "N days", '
            '"N weeks", "N months", got a number (3)',
        ),
        (
            REQUIRED + "until: 2025-12-31\n",
            "m.yaml:10:16: clients.acme.grants.quarterly.until: until 2025-12-31 is before from 2026-01-01: "
            "no period would ever start; set until on or after from",
        ),
        (
            REQUIRED + "timeZone: Europe/Berln\n",
            "m.yaml:10:19: clients.acme.grants.quarterly.timeZone: unknown time zone 'Europe/Berln'; did you mean "
            "'Europe/Berlin'? use an IANA name such as Europe/Berlin, America/New_York or UTC",
        ),
        (
            REQUIRED + "name: Acme {client} {period}\n",
            "m.yaml:10:15: clients.acme.grants.quarterly.name: unknown field {client} in the name template; use "
            "{period} (the period id, e.g. 2026-q1) and {grant} (the grant key)",
        ),
        (
            REQUIRED + "name: Acme {period\n",
            "m.yaml:10:15: clients.acme.grants.quarterly.name: unmatched '{' or '}' in the name template; "
            "write {{ or }} for a literal brace",
        ),
        (
            REQUIRED + "name: " + "x" * 247 + "{grant}\n",
            "m.yaml:10:15: clients.acme.grants.quarterly.name: too long once filled in: names like "
            "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' have 256 characters, at most 255",
        ),
        (
            REQUIRED + 'name: "Acme {period} "\n',
            "m.yaml:10:15: clients.acme.grants.quarterly.name: starts or ends with spaces ('Acme {period} '); remove "
            "them, the API may store the name without them",
        ),
        (
            REQUIRED + "expiresAfter: 0 days\n",
            "m.yaml:10:23: clients.acme.grants.quarterly.expiresAfter: '0 days': the number must be at least 1: "
            'a period\'s batch must expire after its period starts; expected "N days", "N weeks", "N months" '
            'or "N years" (e.g. "12 months")',
        ),
        (
            REQUIRED + "expiresAfter: -3 months\n",
            "m.yaml:10:23: clients.acme.grants.quarterly.expiresAfter: '-3 months': the number must be at least 1: "
            'a period\'s batch must expire after its period starts; expected "N days", "N weeks", "N months" '
            'or "N years" (e.g. "12 months")',
        ),
        (
            REQUIRED + "expiresOn: 2027-01-01T00:00:00Z\n",
            "m.yaml:10:9: clients.acme.grants.quarterly.expiresOn: unknown field; a grant's batches expire a fixed "
            "time after their period starts: write e.g. 'expiresAfter: 12 months' (one fixed expiresOn would come "
            "before later periods start)",
        ),
        (
            "every: quarter\nfrom: 2026-01-01T00:00:00Z\nstartingBalance: 5000\n",
            "m.yaml:8:15: clients.acme.grants.quarterly.from: '2026-01-01T00:00:00Z' is a time, not a date: periods "
            "start at local midnight in the grant's timeZone; write the day only, e.g. 2026-01-01",
        ),
        (
            "every: quarter\nfrom: 2026-02-30\nstartingBalance: 5000\n",
            "m.yaml:8:15: clients.acme.grants.quarterly.from: '2026-02-30' is not a day of the calendar; "
            "write it as YYYY-MM-DD, e.g. 2026-01-01",
        ),
        (
            "every: quarter\nfrom: 20260101\nstartingBalance: 5000\n",
            "m.yaml:8:15: clients.acme.grants.quarterly.from: expected a date, got a number (20260101); "
            "write it as YYYY-MM-DD, e.g. 2026-01-01",
        ),
        (
            REQUIRED + "catchUp: 'true'\n",
            "m.yaml:10:18: clients.acme.grants.quarterly.catchUp: expected true or false, got text ('true'); "
            "remove the quotes",
        ),
        (
            REQUIRED + "catchUp: 1\n",
            "m.yaml:10:18: clients.acme.grants.quarterly.catchUp: expected true or false, got a number (1)",
        ),
        (
            REQUIRED + "startOn: 2026-01-01\n",
            "m.yaml:10:9: clients.acme.grants.quarterly.startOn: unknown field; expected one of: every, from, until, "
            "timeZone, startingBalance, name, expiresAfter, creditAccountId, catchUp",
        ),
        (
            "every: quarter\nstart: 2026-01-01\nstartingBalance: 5000\n",
            "m.yaml:8:9: clients.acme.grants.quarterly.start: unknown field; did you mean 'from'? (the day the "
            "first period starts)",
        ),
        (
            "every: quarter\nstartingBalance: 5000\n",
            "m.yaml:6:7: clients.acme.grants.quarterly.from: required field missing; add e.g. 'from: 2026-01-01'",
        ),
    ],
)
def test_each_rule_is_one_located_message(fields, expected):
    assert grant_problems(fields) == [expected]  # a field taken for a typo ('start') is not also missing


def test_a_grant_key_that_is_also_a_batch_key():
    text = grant_text(REQUIRED, batches="quarterly:\n  startingBalance: 10\n")
    assert problems(text) == [
        "m.yaml:9:7: clients.acme.grants.quarterly: 'quarterly' is also a batch key of client acme (line 6); give "
        "the grant another key, so that acme/quarterly names one thing"
    ]


def test_grant_keys_follow_the_batch_key_rules():
    text = grant_text(REQUIRED).replace("      quarterly:", "      Quarterly@1:")
    [message] = problems(text)
    assert message.startswith("m.yaml:6:7: clients.acme.grants.Quarterly@1: invalid grant key 'Quarterly@1'; use 1-64")
    duplicate = grant_text(REQUIRED) + "      quarterly:\n" + textwrap.indent(REQUIRED, " " * 8)
    assert problems(duplicate) == [
        "m.yaml:10:7: clients.acme.grants.quarterly: duplicate key 'quarterly' (first on line 6); remove one of "
        "them (YAML alone would silently keep the last)"
    ]


def test_a_grant_field_in_a_batch_points_at_grants():
    text = f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1:\n        startingBalance: 5\n        every: month\n"
    assert problems(text) == [
        "m.yaml:7:9: clients.acme.batches.q1.every: unknown field; 'every' belongs to a recurring grant: declare it "
        "under the client's 'grants:', not 'batches:'"
    ]


def test_every_problem_of_every_grant_at_once():
    text = grant_text("every: fortnightly\nfrom: 2026-13-01\nstartingBalance: -5\ntimeZone: Mars/Olympus\n")
    text += "      monthly:\n        every: month\n        startingBalance: 1\n"
    found = problems(text)
    assert [line.split(": ", 2)[:2] for line in found] == [
        ["m.yaml:7:16", "clients.acme.grants.quarterly.every"],
        ["m.yaml:8:15", "clients.acme.grants.quarterly.from"],
        ["m.yaml:9:26", "clients.acme.grants.quarterly.startingBalance"],
        ["m.yaml:10:19", "clients.acme.grants.quarterly.timeZone"],
        ["m.yaml:11:7", "clients.acme.grants.monthly.from"],
    ]


def test_grants_must_be_a_mapping_of_grants():
    text = f"clients:\n  acme:\n    id: {ACME_ID}\n    grants: [quarterly]\n"
    assert problems(text) == [
        "m.yaml:4:13: clients.acme.grants: expected a mapping of grant keys to grants, got a list"
    ]
    text = f"clients:\n  acme:\n    id: {ACME_ID}\n    grants:\n      quarterly: 5000\n"
    assert problems(text) == [
        "m.yaml:5:18: clients.acme.grants.quarterly: expected a mapping with 'every', 'from' and 'startingBalance' "
        "(and optionally 'until', 'timeZone', 'name', 'expiresAfter', 'creditAccountId', 'catchUp'), got a number (5000)"
    ]


def test_validate_counts_grants(cli):
    write("m.yaml", ISSUE_EXAMPLE)
    result = cli("validate", "m.yaml")
    assert result.exit_code == 0
    assert result.output == "Success! 0 batches and 1 grant of 1 client are valid.\n"
    write("m.yaml", grant_text("every: quarterly\nfrom: 2026-01-01\nstartingBalance: 1\n"))
    result = cli("validate", "m.yaml")
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert (
        "m.yaml:7:16: clients.acme.grants.quarterly.every: 'quarterly' is not understood; did you mean 'quarter'?"
        in result.output
    )


# --------------------------------------------------------------------------- cache and schema


def test_the_cache_keeps_grants_and_its_identity_covers_their_code(tmp_path):
    write("m.yaml", ISSUE_EXAMPLE)
    cache = ManifestCache(tmp_path / "cache")
    cold = load(["m.yaml"], cache=cache)
    warm = load(["m.yaml"], cache=ManifestCache(tmp_path / "cache"))
    assert warm == cold and warm.grants
    assert "manifest/grant_rules.py" in manifest_cache.READER_MODULES


def test_the_schema_describes_grants_as_the_loader_reads_them():
    grant = manifest_schema()["$defs"]["GrantModel"]
    assert grant["required"] == ["every", "from", "startingBalance"]
    assert grant["additionalProperties"] is False
    assert grant["properties"]["catchUp"]["type"] == "boolean"
    assert grant["properties"]["from"]["format"] == "date"
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(json.loads(json.dumps(manifest_schema())))
    good = {
        "clients": {
            "acme": {
                "id": ACME_ID,
                "grants": {
                    "quarterly": {
                        "every": "quarter",
                        "from": "2026-01-01",
                        "startingBalance": 5000,
                        "expiresAfter": "12 months",
                    }
                },
            }
        }
    }
    assert list(validator.iter_errors(good)) == []
    for wrong in (
        {"every": "monthly"},
        {"expiresAfter": "12 moths"},
        {"expiresOn": "2027-01-01T00:00:00Z"},
        {"catchUp": "yes"},
    ):
        bad = json.loads(json.dumps(good))
        bad["clients"]["acme"]["grants"]["quarterly"].update(wrong)
        assert list(validator.iter_errors(bad)), wrong
