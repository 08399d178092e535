"""Recurring grants through the CLI, against the sandbox, on a fixed clock (--at): the manual's example
applied at several moments, daylight saving and month ends, saved plans across a period's start, and
period addresses in import, state commands, recovery, the duplicate guard and drift."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from conftest import ACCOUNT_ID, ACME_ID, call_api, recorded_nothing, run_subprocess

from provisioner.applying.applier import request_digest
from provisioner.backends.file import FileWriter, read_state
from provisioner.core.models import Intent
from provisioner.core.timestamps import utc_now_text

MANUAL_PAGE = Path(__file__).resolve().parents[2] / "docs" / "manifests.md"
FAST = ("--rate-limit", "0")


def readme_grant_example() -> str:
    """The first YAML block of the manual's "Recurring grants" section, as written there."""
    section = MANUAL_PAGE.read_text(encoding="utf-8").split("## Recurring grants", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def example(write_manifest):
    return write_manifest(readme_grant_example())


def plan_json(cli, manifest, state, at: str, *options) -> dict:
    result = cli("plan", manifest, "--state", state, "--at", at, "--format", "json", *options)
    document = json.loads(result.stdout)
    blocked = any(change["action"] in ("blocked", "missing") for change in document["changes"])
    assert result.exit_code == (1 if blocked or document["violations"] else 0), result.output  # 1: cannot be applied
    return document


def creates(document: dict) -> dict[str, dict]:
    return {c["address"]: c["after"] for c in document["changes"] if c["action"] == "create"}


def apply_at(cli, manifest, state, at: str, *options):
    """Apply as if it were ``at``: these stories run ahead of the real clock, so periods that have not
    really begun are issued on purpose (--issue-early)."""
    result = cli("apply", manifest, "--state", state, "--at", at, "--auto-approve", "--issue-early", *FAST, *options)
    assert "Traceback" not in result.output
    return result


def period(name: str, expires_on: str) -> dict:
    return {
        "clientId": ACME_ID,
        "creditAccountId": ACCOUNT_ID,
        "name": name,
        "startingBalance": 5000,
        "expiresOn": expires_on,
    }


# --------------------------------------------------------------------------- the manual's example


def test_the_manual_example_applied_over_two_years(cli, api_env, sandbox, example, state):
    # February 2026: the first quarter has begun; the plan shows it and the next one.
    first = plan_json(cli, example, state, "2026-02-10T09:00:00Z")
    assert creates(first) == {"acme/quarterly@2026-q1": period("Acme 2026-q1", "2026-12-31T23:00:00.000Z")}
    assert first["upcoming"] == [
        {
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
    ]
    applied = apply_at(cli, example, state, "2026-02-10T09:00:00Z")
    assert applied.exit_code == 0, applied.output
    assert "Credits issued: 5,000." in applied.stdout
    assert "Note: planning for 2026-02-10T09:00:00.000Z (--at), not for now" in applied.stderr

    # Again the same day, and a second before April begins in Berlin: nothing to do.
    for at in ("2026-02-10T09:00:00Z", "2026-03-31T21:59:59Z"):
        again = apply_at(cli, example, state, at)
        assert again.exit_code == 0 and again.stdout.startswith("No changes."), again.output
        assert "acme/quarterly: 2026-q2 starts 2026-04-01 (Europe/Berlin), 5,000 credits" in again.stdout

    # Midnight of April 1 in Berlin (summer time): exactly one create.
    april = apply_at(cli, example, state, "2026-04-01T00:00:00+02:00")
    assert april.exit_code == 0, april.output
    assert "Plan: 1 to create, 0 to update, 0 blocked, 1 unchanged." in april.stdout

    # Nothing ran for nine months: the missed quarters are issued, each once.
    catch_up = apply_at(cli, example, state, "2027-01-20T08:00:00Z")
    assert catch_up.exit_code == 0, catch_up.output
    assert "Apply complete! Batches: 3 created" in catch_up.stdout

    # After until: the last periods, one of them lapsed (said once), and then nothing more.
    last = apply_at(cli, example, state, "2028-06-01T00:00:00Z")
    assert last.exit_code == 0, last.output
    assert "Apply complete! Batches: 2 created" in last.stdout
    assert (
        "grant acme/quarterly: 1 period began but is not issued (2027-q2): its batch would be created "
        "already expired (expiresAfter: 12 months)"
    ) in last.stdout
    assert "Next period of each grant" not in last.stdout  # the grant has ended

    expected = {
        "acme/quarterly@2026-q1": period("Acme 2026-q1", "2026-12-31T23:00:00.000Z"),
        "acme/quarterly@2026-q2": period("Acme 2026-q2", "2027-03-31T22:00:00.000Z"),
        "acme/quarterly@2026-q3": period("Acme 2026-q3", "2027-06-30T22:00:00.000Z"),
        "acme/quarterly@2026-q4": period("Acme 2026-q4", "2027-09-30T22:00:00.000Z"),
        "acme/quarterly@2027-q1": period("Acme 2027-q1", "2027-12-31T23:00:00.000Z"),
        "acme/quarterly@2027-q3": period("Acme 2027-q3", "2028-06-30T22:00:00.000Z"),
        "acme/quarterly@2027-q4": period("Acme 2027-q4", "2028-09-30T22:00:00.000Z"),
    }
    resources = read_state(state).resources
    assert {address: resource.attributes for address, resource in resources.items()} == expected
    live = {batch["id"]: batch for batch in sandbox.all_batches(ACME_ID)}
    assert len(live) == 7  # exactly once each, nothing else
    for address, resource in resources.items():
        batch = live[resource.batch_id]
        assert (batch["name"], batch["startingBalance"], batch["creditAccountId"]) == (
            expected[address]["name"],
            5000,
            ACCOUNT_ID,
        )
        assert batch["expiresOn"] == expected[address]["expiresOn"]

    # A refresh agrees: nothing drifted, nothing to do.
    final = cli("plan", example, "--state", state, "--at", "2028-06-01T00:00:00Z", "--refresh", *FAST)
    assert final.exit_code == 0 and final.stdout.startswith("No changes."), final.output


def test_a_grant_that_catches_up_says_so_in_the_plan(cli, api_env, sandbox, example, state):
    at = "2026-10-15T09:00:00Z"  # q1..q3 began while nothing ran; q4 is the current quarter
    planned = cli("plan", example, "--state", state, "--at", at)
    assert planned.exit_code == 0, planned.output
    assert (
        "Warning: grant acme/quarterly: catching up 3 periods that began before the current one (2026-q4): "
        "2026-q1..2026-q3. Their credits are issued now;"
    ) in planned.stdout
    markdown = cli("plan", example, "--state", state, "--at", at, "--format", "markdown").stdout
    assert "catching up 3 periods" in markdown
    assert apply_at(cli, example, state, at).exit_code == 0
    later = cli("plan", example, "--state", state, "--at", "2027-01-05T09:00:00Z")  # one new quarter: no catching up
    assert later.exit_code == 0 and "catching up" not in later.stdout and "1 to create" in later.stdout


def test_a_scheduled_run_is_a_real_process_with_the_moment_from_the_environment(api_env, example, state):
    """What the daily CI job runs: apply at the moment $PROVISIONER_AT names (now, in CI)."""
    env = {**api_env, "PROVISIONER_AT": "2026-07-01T06:00:00Z"}
    done = run_subprocess("apply", example, "--state", state, "--auto-approve", env=env)
    assert done.returncode == 0, done.stderr
    assert "Batches: 3 created" in done.stdout
    again = run_subprocess("plan", example, "--state", state, "--detailed-exitcode", env=env)
    assert again.returncode == 0 and again.stdout.startswith("No changes."), again.stdout + again.stderr


# --------------------------------------------------------------------------- clocks and calendars


def grant_manifest(write_manifest, **fields: str):
    lines = "\n".join(f"        {name}: {value}" for name, value in fields.items())
    return write_manifest(f"clients:\n  acme:\n    id: {ACME_ID}\n    grants:\n      g:\n{lines}\n")


def test_periods_follow_daylight_saving_through_the_cli(cli, write_manifest, state):
    # New York: the period of March 8 (the day clocks go forward) starts at 05:00 UTC, April's at 04:00 UTC.
    manifest = grant_manifest(
        write_manifest,
        every="month",
        **{"from": "2026-03-08"},
        timeZone="America/New_York",
        startingBalance="100",
        expiresAfter="1 month",
    )
    before = plan_json(cli, manifest, state, "2026-04-08T03:59:59Z")
    assert list(creates(before)) == ["acme/g@2026-03"]
    assert creates(before)["acme/g@2026-03"]["expiresOn"] == "2026-04-08T04:00:00.000Z"
    assert before["upcoming"][0]["starts_at"] == "2026-04-08T04:00:00.000Z"
    april = plan_json(cli, manifest, state, "2026-04-08T04:00:00Z")
    assert list(creates(april)) == ["acme/g@2026-04"]  # and March's batch would expire that very instant:
    assert april["warnings"] == [  # not created, said once
        "grant acme/g: 1 period began but is not issued (2026-03): its batch would be created already expired "
        "(expiresAfter: 1 month). To stop this note, move 'from' past it or set 'catchUp: false'."
    ]
    # Santiago skips the midnight of 2026-09-06: that day's period starts at the clock change.
    daily = grant_manifest(
        write_manifest, every="1 days", **{"from": "2026-09-05"}, timeZone="America/Santiago", startingBalance="1"
    )
    assert list(creates(plan_json(cli, daily, state, "2026-09-06T03:59:59Z"))) == ["acme/g@2026-09-05"]
    assert list(creates(plan_json(cli, daily, state, "2026-09-06T04:00:00Z"))) == [
        "acme/g@2026-09-05",
        "acme/g@2026-09-06",
    ]


def test_month_ends_and_leap_years_through_the_cli(cli, write_manifest, state):
    manifest = grant_manifest(
        write_manifest,
        every="1 months",
        **{"from": "2028-01-31"},
        startingBalance="10",
        name='"Monthly {period}"',
        expiresAfter="1 year",
    )
    document = plan_json(cli, manifest, state, "2028-05-31T00:00:00Z")
    assert {address: after["expiresOn"] for address, after in creates(document).items()} == {
        "acme/g@2028-01-31": "2029-01-31T00:00:00.000Z",
        "acme/g@2028-02-29": "2029-02-28T00:00:00.000Z",  # a year after Feb 29, clamped in turn
        "acme/g@2028-03-31": "2029-03-31T00:00:00.000Z",
        "acme/g@2028-04-30": "2029-04-30T00:00:00.000Z",
        "acme/g@2028-05-31": "2029-05-31T00:00:00.000Z",
    }
    assert creates(document)["acme/g@2028-02-29"]["name"] == "Monthly 2028-02-29"


def test_catch_up_false_and_guardrails_through_the_cli(cli, api_env, write_manifest, state):
    monthly = grant_manifest(write_manifest, every="month", **{"from": "2025-01-01"}, startingBalance="1000")
    refused = apply_at(cli, monthly, state, "2026-07-15T00:00:00Z", "--max-creates", "12")
    assert refused.exit_code == 1
    assert "this plan creates 19 batches, more than one apply may create (12, policy maxCreates)." in refused.stdout
    assert recorded_nothing(state)
    latest_only = grant_manifest(
        write_manifest, every="month", **{"from": "2025-01-01"}, startingBalance="1000", catchUp="false"
    )
    assert list(creates(plan_json(cli, latest_only, state, "2026-07-15T00:00:00Z"))) == ["acme/g@2026-07"]


def test_a_grant_from_before_the_year_1000_plans_its_latest_period(cli, write_manifest, state):
    # Its periods' start instants were once written "500-01-01T...", which the planner could not read back.
    manifest = grant_manifest(
        write_manifest, every="year", **{"from": "0500-01-01"}, startingBalance="5", expiresAfter="12 months"
    )
    document = plan_json(cli, manifest, state, "2026-07-15T00:00:00Z")
    assert list(creates(document)) == ["acme/g@2026"]


@pytest.mark.parametrize(
    ("at", "message"),
    [
        ("2026-04-01", "'2026-04-01' is a date without a time and time zone; write e.g. 2026-04-01T00:00:00Z"),
        ("2026-04-01T00:00:00", "'2026-04-01T00:00:00' has no time zone; write e.g. 2026-04-01T00:00:00Z"),
        (
            "next tuesday",
            "'next tuesday' is not an ISO 8601 timestamp; write it with a time zone, e.g. 2026-04-01T00:00:00Z",
        ),
        ("0001-01-01T00:00:00Z", "out of range; give a moment between the years 1970 and 9000"),
    ],
)
def test_a_bad_at_is_one_clear_error(cli, example, state, at, message):
    for command in (("plan", example), ("apply", example, "--auto-approve"), ("show",)):
        result = cli(*command, "--state", state, "--at", at)
        assert result.exit_code == 1, result.output
        assert "Invalid value for '--at'" in result.output and message in result.output
        assert "Traceback" not in result.output
    assert recorded_nothing(state)


def test_a_bad_moment_in_the_environment_says_where_it_came_from(api_env, example, state):
    done = run_subprocess("plan", example, "--state", state, env={**api_env, "PROVISIONER_AT": "tomorrow"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        "Error: Invalid value for '--at': 'tomorrow' is not an ISO 8601 timestamp; write it with a time zone, "
        "e.g. 2026-04-01T00:00:00Z (from $PROVISIONER_AT)" in done.stderr
    )


# --------------------------------------------------------------------------- saved plans


def test_a_saved_plan_is_refused_once_a_new_period_has_begun(cli, api_env, sandbox, example, state, tmp_path):
    saved = tmp_path / "reviewed.plan"
    made = cli("plan", example, "--state", state, "--at", "2026-03-31T21:00:00Z", "--out", saved)
    assert made.exit_code == 0, made.output
    document = json.loads(saved.read_text())
    assert document["at"] == "2026-03-31T21:00:00.000Z" == document["desired"]["expanded_at"]
    assert list(document["desired"]["batches"]) == ["acme/quarterly@2026-q1"]
    assert "acme/quarterly" in document["desired"]["grants"]

    # Applied after April began in Berlin, it would issue a period nobody reviewed: refused.
    late = cli("apply", saved, "--state", state, "--at", "2026-03-31T22:00:01Z", *FAST)
    assert late.exit_code == 1
    assert "would differ from what was reviewed (a batch expired, a grant's new period began" in late.stderr
    assert recorded_nothing(state) and sandbox.all_batches() == []

    # Applied while that is still the latest period, it is applied as reviewed.
    in_time = cli("apply", saved, "--state", state, "--at", "2026-03-31T21:59:00Z", *FAST)
    assert in_time.exit_code == 0, in_time.output
    assert set(read_state(state).resources) == {"acme/quarterly@2026-q1"}


def test_a_saved_plan_made_for_a_moment_to_come_is_applied_for_that_moment(cli, api_env, example, state, tmp_path):
    """--at in the future issues early, on purpose: what was reviewed is what is applied, now."""
    saved = tmp_path / "early.plan"
    assert cli("plan", example, "--state", state, "--at", "2026-10-01T00:00:00+02:00", "--out", saved).exit_code == 0
    early = cli("apply", saved, "--state", state, "--at", "2026-09-15T00:00:00Z", *FAST)
    assert early.exit_code == 0, early.output
    assert f"Note: {saved} was made for 2026-09-30T22:00:00.000Z (--at), later than now" in early.stderr
    assert sorted(read_state(state).resources) == [f"acme/quarterly@2026-q{n}" for n in (1, 2, 3, 4)]


# --------------------------------------------------------------------------- period addresses


def create_by_hand(sandbox, **body) -> dict:
    return call_api(sandbox, "POST", f"/incoming/v2/clients/{ACME_ID}/creditBatches", {"clientId": ACME_ID, **body})


def test_import_adopts_a_hand_made_period_batch(cli, api_env, sandbox, example, state):
    made = create_by_hand(
        sandbox,
        name="Acme Q1 (by hand)",
        startingBalance=5000,
        creditAccountId=ACCOUNT_ID,
        expiresOn="2026-12-31T23:00:00.000Z",
    )
    imported = cli("import", "acme/quarterly@2026-q1", made["id"], example, "--state", state, *FAST)
    assert imported.exit_code == 0, imported.output
    plan = plan_json(cli, example, state, "2026-02-10T00:00:00Z")
    assert plan["changes"] == [] and plan["summary"]["unchanged"] == 1  # frozen: its name is what it is

    # A period not begun yet can be adopted too: it is not created when it begins.
    early = create_by_hand(sandbox, name="Acme 2026-q2", startingBalance=5000, creditAccountId=ACCOUNT_ID)
    assert cli("import", "acme/quarterly@2026-q2", early["id"], example, "--state", state, *FAST).exit_code == 0
    assert plan_json(cli, example, state, "2026-05-01T00:00:00Z")["changes"] == []


@pytest.mark.parametrize(
    ("address", "message"),
    [
        (
            "acme/quarterly@2026-05",
            "acme/quarterly@2026-05: grant acme/quarterly (every quarter from 2026-01-01 until "
            "2027-12-31) has no period '2026-05'; its periods are named like 2026-q1",
        ),
        ("acme/quarterly@2028-q1", "has no period '2028-q1'"),  # after until
        (
            "acme/yearly@2026",
            "acme/yearly@2026 is not declared in the manifests given: declare the grant acme/yearly first",
        ),
    ],
)
def test_import_of_a_period_the_schedule_does_not_have(cli, api_env, sandbox, example, state, address, message):
    made = create_by_hand(sandbox, name="Acme", startingBalance=5000)
    result = cli("import", address, made["id"], example, "--state", state, *FAST)
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert recorded_nothing(state)


def test_state_mv_moves_hand_declared_batches_onto_a_grant(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(
        textwrap.dedent(f"""\
        clients:
          acme:
            id: {ACME_ID}
            batches:
              2026-q1:
                name: Acme 2026-q1
                startingBalance: 5000
        """)
    )
    assert apply_at(cli, manifest, state, "2026-02-01T00:00:00Z").exit_code == 0
    moved = cli("state", "mv", "acme/2026-q1", "acme/quarterly@2026-q1", "--state", state)
    assert moved.exit_code == 0, moved.output
    write_manifest(
        f"clients:\n  acme:\n    id: {ACME_ID}\n    grants:\n      quarterly:\n"
        "        every: quarter\n        from: 2026-01-01\n        name: Acme {period}\n"
        "        startingBalance: 5000\n"
    )
    plan = plan_json(cli, manifest, state, "2026-02-01T00:00:00Z", "--refresh", *FAST)
    assert plan["changes"] == [] and plan["warnings"] == []
    refused = cli("state", "mv", "acme/quarterly@2026-q1", "acme/quarterly@q1", "--state", state)
    assert refused.exit_code == 1
    assert (
        "'acme/quarterly@q1' is not an address; expected CLIENT_KEY/BATCH_KEY or CLIENT_KEY/GRANT_KEY@PERIOD "
        "(e.g. acme/quarterly@2026-q1)"
    ) in refused.stderr


def test_state_rm_of_a_removed_grants_period(cli, api_env, example, write_manifest, state):
    assert apply_at(cli, example, state, "2026-05-01T00:00:00Z").exit_code == 0
    write_manifest(f"clients:\n  acme:\n    id: {ACME_ID}\n")  # the grant is removed
    plan = cli("plan", example, "--state", state, "--at", "2026-05-01T00:00:00Z")
    assert plan.stdout.count("Warning:") == 1
    assert (
        "grant acme/quarterly is no longer declared: no further periods are issued. Its 2 issued period "
        "batches (2026-q1, 2026-q2) stay recorded" in plan.stdout
    )
    removed = cli("state", "rm", "acme/quarterly@2026-q1", "--state", state)
    assert removed.exit_code == 0, removed.output
    assert set(read_state(state).resources) == {"acme/quarterly@2026-q2"}


def open_intent(state: Path, address: str, attributes: dict) -> None:
    """What an apply killed after writing its intent leaves behind."""
    with FileWriter(state) as writer:
        writer.record_intent(
            Intent(
                address=address,
                client_id=ACME_ID,
                attributes=attributes,
                digest=request_digest(ACME_ID, attributes),
                at=utc_now_text(),
            )
        )


def test_an_interrupted_period_create_is_recovered_not_repeated(cli, api_env, sandbox, example, state):
    attributes = period("Acme 2026-q1", "2026-12-31T23:00:00.000Z")
    open_intent(state, "acme/quarterly@2026-q1", attributes)
    made = create_by_hand(
        sandbox, **{k: v for k, v in attributes.items() if k != "clientId"}
    )  # the create went through

    plan = cli("plan", example, "--state", state, "--at", "2026-02-10T00:00:00Z")
    assert "acme/quarterly@2026-q1 was interrupted while being created" in plan.stdout
    resumed = apply_at(cli, example, state, "2026-02-10T00:00:00Z")
    assert resumed.exit_code == 0, resumed.output
    assert "Batches: 0 created, 0 updated, 1 recovered" in resumed.stdout
    assert read_state(state).resources["acme/quarterly@2026-q1"].batch_id == made["id"]
    assert len(sandbox.all_batches()) == 1


def test_forget_intent_takes_a_period_address(cli, api_env, sandbox, example, state):
    open_intent(state, "acme/quarterly@2026-q1", period("Acme 2026-q1", "2026-12-31T23:00:00.000Z"))
    result = cli(
        "state",
        "forget-intent",
        "acme/quarterly@2026-q1",
        "--state",
        state,
        "--auto-approve",
        "--recovery-wait",
        "0",
        *FAST,
    )
    assert result.exit_code == 0, result.output
    assert "Gave up the interrupted create of acme/quarterly@2026-q1" in result.stdout
    assert read_state(state).pending == {}


def test_the_duplicate_guard_stops_a_period_made_by_hand(cli, api_env, sandbox, example, state):
    made = create_by_hand(
        sandbox,
        name="Acme 2026-q1",
        startingBalance=5000,
        creditAccountId=ACCOUNT_ID,
        expiresOn="2026-12-31T23:00:00.000Z",
    )
    plan = plan_json(cli, example, state, "2026-02-10T00:00:00Z", "--refresh", *FAST)
    [blocked] = plan["changes"]
    assert (blocked["address"], blocked["action"]) == ("acme/quarterly@2026-q1", "blocked")
    assert f"'provisioner import acme/quarterly@2026-q1 {made['id']} PATHS...'" in blocked["reasons"][1]
    refused = apply_at(cli, example, state, "2026-02-10T00:00:00Z")
    assert refused.exit_code == 1
    assert "not created: client acme already has a batch just like it" in refused.stderr
    assert len(sandbox.all_batches()) == 1 and read_state(state).resources == {}


def test_drift_on_an_issued_period_is_put_back_as_it_was_issued(cli, api_env, sandbox, example, write_manifest, state):
    assert apply_at(cli, example, state, "2026-02-10T00:00:00Z").exit_code == 0
    batch_id = read_state(state).resources["acme/quarterly@2026-q1"].batch_id
    call_api(sandbox, "PUT", f"/incoming/v2/clients/creditBatches/{batch_id}", {"name": "Renamed by hand"})
    # The grant's name rule changed since: the issued period goes back to what was issued, not to the new rule.
    write_manifest(readme_grant_example().replace('"Acme {period}"', '"Acme credits {period}"'))
    plan = cli("plan", example, "--state", state, "--at", "2026-02-10T00:00:00Z", "--refresh", *FAST)
    assert plan.exit_code == 0, plan.output
    assert re.search(r'~ name += "Renamed by hand" -> "Acme 2026-q1"', plan.stdout), plan.stdout
    fixed = apply_at(cli, example, state, "2026-02-10T00:00:00Z", "--refresh")
    assert fixed.exit_code == 0, fixed.output
    assert {b["name"] for b in sandbox.all_batches()} == {"Acme 2026-q1"}


# --------------------------------------------------------------------------- show


def test_show_lists_the_upcoming_periods_in_every_format(cli, api_env, example, state, tmp_path):
    assert apply_at(cli, example, state, "2026-02-10T00:00:00Z").exit_code == 0
    text = cli("show", example, "--state", state, "--at", "2026-02-10T00:00:00Z")
    assert text.exit_code == 0, text.output
    upcoming = text.stdout.split("Upcoming grants:", 1)[1]
    assert re.search(r"acme\s+quarterly\s+2026-q2\s+2026-04-01\s+5,000", upcoming)
    assert "2027-q1" in upcoming and "2027-q2" not in upcoming  # the next 12 months
    document = json.loads(
        cli("show", example, "--state", state, "--at", "2026-02-10T00:00:00Z", "--format", "json").stdout
    )
    assert [(g["address"], g["date"]) for g in document["upcoming_grants"]] == [
        ("acme/quarterly@2026-q2", "2026-04-01"),
        ("acme/quarterly@2026-q3", "2026-07-01"),
        ("acme/quarterly@2026-q4", "2026-10-01"),
        ("acme/quarterly@2027-q1", "2027-01-01"),
    ]
    page = tmp_path / "credits.html"
    assert (
        cli(
            "show", example, "--state", state, "--at", "2026-02-10T00:00:00Z", "--format", "html", "--out", page
        ).exit_code
        == 0
    )
    assert 'data-total="upcoming">20,000<' in page.read_text()
    # Without manifests there is nothing to look ahead at.
    assert "Upcoming grants" not in cli("show", "--state", state).stdout


# --- periods that have not begun, and --at in the past -------------------------------------------------


MONTHLY = """
clients:
  acme:
    id: 6a0c1d7e-3b2f-4c1a-9e8d-7f6a5b4c3d21
    grants:
      monthly:
        every: month
        from: 2026-01-01
        startingBalance: 5000
"""


def test_apply_at_a_later_moment_refuses_periods_that_have_not_begun_without_issue_early(
    cli, api_env, sandbox, write_manifest, state
):
    """PROVISIONER_AT=2031-01-01 used to create 61 monthly periods, 305,000 credits, with
    --auto-approve and only a note on stderr: five years of periods that had not begun."""
    manifest = write_manifest(MONTHLY)

    planned = cli("plan", manifest, "--state", state, "--at", "2031-01-01T00:00:00Z", "--format", "json")
    refused = cli("apply", manifest, "--state", state, "--at", "2031-01-01T00:00:00Z", "--auto-approve", *FAST)

    early = [c for c in json.loads(planned.stdout)["changes"] if any(r.startswith("Early: ") for r in c["reasons"])]
    assert early and all(c["address"] > "acme/monthly@2026-12" for c in early), "later periods are marked early"
    assert "acme/monthly@2027-01" in {c["address"] for c in early}
    assert refused.exit_code == 1 and "--issue-early" in refused.stderr and "have not begun" in refused.stderr
    assert sandbox.all_batches() == [] and recorded_nothing(state)

    issued = cli(
        "apply", manifest, "--state", state, "--at", "2031-01-01T00:00:00Z", "--auto-approve", "--issue-early", *FAST
    )
    assert issued.exit_code == 0, issued.output
    assert len(sandbox.all_batches()) == 61


def test_plan_at_a_past_moment_does_not_call_an_issued_period_next(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(MONTHLY)
    assert apply_at(cli, manifest, state, "2026-03-15T00:00:00Z").exit_code == 0  # January to March issued

    earlier = cli("plan", manifest, "--state", state, "--at", "2026-01-20T00:00:00Z", "--format", "json")

    upcoming = json.loads(earlier.stdout)["upcoming"]
    assert [entry["address"] for entry in upcoming] == ["acme/monthly@2026-04"], upcoming


def test_plan_refresh_without_at_marks_no_period_early_as_apply_issues_it_without_issue_early(sandbox, tmp_path, state):
    """Without --at, the moment planned for is now: apply issues the current period without --issue-early.
    plan --refresh must not mark it early either (and tell the reviewer apply needs --issue-early) when the
    API's clock is behind this machine's across the period's start."""
    from datetime import datetime, timezone

    from conftest import TEST_KEY
    from faultproxy import FaultProxy

    now = datetime.now(timezone.utc)
    month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    manifest = tmp_path / "monthly.yaml"
    manifest.write_text(MONTHLY.replace("2026-01-01", month.date().isoformat()), encoding="utf-8")
    with FaultProxy(sandbox.url) as proxy:
        proxy.date_shift = -((now - month).total_seconds() + 3600)  # the API's clock: before this month began
        env = {"TI_BASE_URL": proxy.url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}
        planned = run_subprocess("plan", manifest, "--state", state, "--refresh", "--format", "json", env=env)
        applied = run_subprocess("apply", manifest, "--state", state, "--auto-approve", env=env)

    assert applied.returncode == 0 and len(sandbox.all_batches()) == 1, applied.stderr
    assert planned.returncode == 0, planned.stderr
    (change,) = json.loads(planned.stdout)["changes"]
    assert not [reason for reason in change["reasons"] if reason.startswith("Early: ")], change["reasons"]
