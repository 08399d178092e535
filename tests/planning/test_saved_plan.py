"""Saved plans: `plan --out FILE` then `apply FILE` applies exactly what was reviewed, or refuses.

Every refusal must leave the API untouched: the sandbox is counted after each one.
"""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest
from conftest import ACME_ID, GLOBEX_ID, TEST_KEY, init_state, run_subprocess, two_client_manifest

from provisioner import __version__
from provisioner.api.client import CreditsApi
from provisioner.backends.file import FileWriter, journal_path, read_state
from provisioner.core.models import Intent
from provisioner.planning.saved_plan import _seal

EXTRA_BATCH = """
clients:
  initech:
    id: 9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
    batches:
      extra:
        startingBalance: 999
"""


@pytest.fixture
def plan_file(tmp_path):
    return tmp_path / "reviewed.plan"


def batch_names(sandbox) -> list[str]:
    return sorted(batch["name"] for batch in sandbox.all_batches())


def reseal(path, edit) -> None:
    """Edits a saved plan and seals it again, as a tool that knows the format would."""
    document = json.loads(path.read_text())
    document.pop("seal")
    edit(document)
    path.write_text(json.dumps({"seal": _seal(document), **document}, indent=2, sort_keys=True))


def assert_refused(result, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.count("Error: ") == 1, result.stderr
    message = result.stderr[result.stderr.index("Error: ") :]
    for phrase in phrases:
        assert phrase in message, message


# ------------------------------------------------------------------ applying exactly what was planned


def test_apply_saved_plan_creates_exactly_the_planned_batches_without_manifests_or_prompt(
    cli, api_env, sandbox, write_manifest, state, plan_file
):
    manifest = write_manifest(two_client_manifest())
    planned = cli("plan", manifest, "--state", state, "--out", plan_file)
    assert planned.exit_code == 0, planned.output
    assert f"provisioner apply {plan_file}" in planned.stderr
    # After review the manifests change and then disappear: the saved plan alone decides.
    write_manifest(two_client_manifest(acme_balance=7777, acme_name="Changed after review"))
    manifest.unlink()

    applied = cli("apply", plan_file, "--state", state)  # no --auto-approve, no terminal: no prompt needed

    assert applied.exit_code == 0, applied.output
    assert "Apply complete! Batches: 3 created" in applied.stdout
    assert "Credits issued: 8,700" in applied.stdout
    assert batch_names(sandbox) == ["Acme Q1", "q2", "starter"]
    assert {batch["startingBalance"] for batch in sandbox.all_batches()} == {5000, 2500, 1200}
    recorded = read_state(state).resources
    assert set(recorded) == {"acme/q1", "acme/q2", "globex/starter"}
    assert {r.batch_id for r in recorded.values()} == {b["id"] for b in sandbox.all_batches()}


@pytest.mark.parametrize(
    "options, repeated",
    [
        (("--state", "{state}"), "--state {state}"),
        (("--sandbox",), "--sandbox"),
        (("--sandbox", "--state", "{state}"), "--sandbox --state {state}"),
        (("--state", "{state}", "--base-url", "http://127.0.0.1:9"), "--state {state} --base-url http://127.0.0.1:9"),
    ],
)
def test_the_saved_plan_hint_repeats_every_option_apply_needs(
    cli, api_env, sandbox, write_manifest, state, tmp_path, monkeypatch, options, repeated
):
    """Once, 'provisioner apply pr.plan' alone failed when the plan was made with --state."""
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(two_client_manifest())
    options = [option.format(state=state) for option in options]
    planned = cli("plan", manifest, *options, "--out", "pr plan")

    assert planned.exit_code == 0, planned.output
    command = planned.stderr.split("Apply exactly this plan with: ")[1].strip()
    assert command == f"provisioner apply 'pr plan' {repeated.format(state=state)}"
    if "--base-url" not in command:  # the hint works as printed
        applied = cli("apply", *shlex.split(command)[2:])
        assert applied.exit_code == 0, applied.output
        assert "Apply complete! Batches: 3 created" in applied.stdout


def test_saved_plan_is_recognised_by_content_whatever_its_name(cli, api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    disguised = tmp_path / "reviewed.txt"
    state = init_state(tmp_path / "s.json")
    assert cli("plan", manifest, "--state", state, "--out", disguised).exit_code == 0
    applied = cli("apply", disguised, "--state", state)
    assert applied.exit_code == 0, applied.output
    assert len(sandbox.all_batches()) == 3


def test_a_plan_is_never_saved_under_a_manifest_name(cli, api_env, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    before = manifest.read_bytes()
    result = cli("plan", manifest, "--state", tmp_path / "s.json", "--out", manifest)
    assert result.exit_code == 1
    assert "read as a manifest" in result.output
    assert manifest.read_bytes() == before


def test_saved_plan_with_no_changes_applies_nothing(cli, api_env, sandbox, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    applied = cli("apply", plan_file, "--state", state)
    assert applied.exit_code == 0, applied.output
    assert "No changes." in applied.stdout
    assert len(sandbox.all_batches()) == 3
    assert read_state(state).serial == 1


def test_saved_plan_updates_in_place(cli, api_env, sandbox, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(two_client_manifest(acme_name="Acme Q1 renamed"))
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    applied = cli("apply", plan_file, "--state", state)
    assert applied.exit_code == 0, applied.output
    assert "1 updated" in applied.stdout
    assert batch_names(sandbox) == ["Acme Q1 renamed", "q2", "starter"]


def test_saved_plan_resolves_an_interrupted_create_recorded_in_the_journal(
    cli, api_env, sandbox, write_manifest, state, plan_file
):
    # A crashed apply left an open intent in the journal (CI commits it back with the state).
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(EXTRA_BATCH, name="initech.yaml")
    writer = FileWriter(state)
    attributes = {"clientId": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "name": "extra", "startingBalance": 999}
    writer.record_intent(
        Intent(
            address="initech/extra",
            client_id=attributes["clientId"],
            attributes=attributes,
            digest="d",
            at="2026-01-01T00:00:00.000Z",
        )
    )
    del writer  # the process "died" here: no checkpoint, only the journal knows
    assert journal_path(state).exists()

    planned = cli("plan", manifest.parent, "--state", state, "--out", plan_file)
    assert "initech/extra was interrupted" in planned.stdout
    # Nothing lists the interrupted create: proving it never happened takes the window, kept short here.
    applied = cli("apply", plan_file, "--state", state, "--recovery-wait", "1")

    assert applied.exit_code == 0, applied.output
    assert len(sandbox.all_batches()) == 4
    assert "initech/extra" in read_state(state).resources
    assert not journal_path(state).exists()


# ------------------------------------------------------------------ refusals


def test_stale_plan_is_refused_when_state_moved_on(cli, api_env, sandbox, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(two_client_manifest(acme_name="Reviewed name"))
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    # Something else is applied in between (another merged pull request).
    other = write_manifest(EXTRA_BATCH, name="initech.yaml")
    assert cli("apply", other, "--state", state, "--auto-approve").exit_code == 0
    before = sandbox.all_batches()

    refused = cli("apply", plan_file, "--state", state)

    assert_refused(refused, "stale", "serial 1 then, 2 now", "plan --out")
    assert sandbox.all_batches() == before
    assert "Reviewed name" not in batch_names(sandbox)


def test_a_plan_whose_changes_another_apply_made_is_refused_as_applied(
    cli, api_env, sandbox, write_manifest, state, plan_file
):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0

    refused = cli("apply", plan_file, "--state", state)

    assert_refused(refused, "already applied", "serial 1 now", "made at 0")
    assert len(sandbox.all_batches()) == 3  # not 6: the same batches were not issued twice


def test_the_same_saved_plan_cannot_be_applied_twice(cli, api_env, sandbox, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    assert cli("apply", plan_file, "--state", state).exit_code == 0
    assert_refused(cli("apply", plan_file, "--state", state), "this plan was already applied", "serial 1")
    assert len(sandbox.all_batches()) == 3


def altered_balance(text: str) -> str:
    return text.replace('"startingBalance": 5000', '"startingBalance": 50000', 1)


def altered_one_byte(text: str) -> str:
    position = text.index('"Acme Q1"') + 2
    return text[:position] + "B" + text[position + 1 :]


def truncated(text: str) -> str:
    return text[: len(text) // 2]


@pytest.mark.parametrize(
    ("alter", "phrase"),
    [
        (altered_balance, "altered after it was made"),
        (altered_one_byte, "altered after it was made"),
        (truncated, "cannot read the saved plan"),
    ],
)
def test_altered_plan_is_refused(cli, api_env, sandbox, write_manifest, state, plan_file, alter, phrase):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    text = plan_file.read_text()
    plan_file.write_text(alter(text))
    assert plan_file.read_text() != text
    before = state.read_bytes()

    assert_refused(cli("apply", plan_file, "--state", state), phrase)
    assert sandbox.all_batches() == []
    assert state.read_bytes() == before


def test_plan_for_another_state_lineage_is_refused(cli, api_env, sandbox, write_manifest, tmp_path, plan_file):
    manifest = write_manifest(two_client_manifest())
    production, staging = init_state(tmp_path / "production.json"), init_state(tmp_path / "staging.json")
    assert cli("apply", manifest, "--state", production, "--auto-approve").exit_code == 0
    staging_manifest = write_manifest(EXTRA_BATCH, name="staging.yaml")
    assert cli("apply", staging_manifest, "--state", staging, "--auto-approve").exit_code == 0
    staging_manifest.unlink()
    write_manifest(two_client_manifest(acme_name="For production"))
    assert cli("plan", manifest, "--state", production, "--out", plan_file).exit_code == 0
    before = sandbox.all_batches()

    refused = cli("apply", plan_file, "--state", staging)

    assert_refused(refused, "another state", read_state(production).lineage, read_state(staging).lineage)
    assert sandbox.all_batches() == before


def test_plan_for_an_existing_state_is_refused_against_a_missing_one(
    cli, api_env, sandbox, write_manifest, state, plan_file, tmp_path
):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(EXTRA_BATCH, name="initech.yaml")
    assert cli("plan", manifest.parent, "--state", state, "--out", plan_file).exit_code == 0

    refused = cli("apply", plan_file, "--state", tmp_path / "nowhere.json")

    assert_refused(refused, "there is no state at", "nowhere.json", "provisioner init")
    assert len(sandbox.all_batches()) == 3
    assert not (tmp_path / "nowhere.json").exists()


def test_plan_from_another_tool_version_is_refused(cli, api_env, sandbox, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    reseal(plan_file, lambda document: document.update(tool_version="0.0.1"))

    assert_refused(cli("apply", plan_file, "--state", state), "made by provisioner 0.0.1", f"this is {__version__}")
    assert sandbox.all_batches() == []


def test_plan_that_would_apply_differently_now_is_refused(cli, api_env, sandbox, write_manifest, state, plan_file):
    # A plan made with --refresh is applied with a refresh too; someone renamed a batch by hand since.
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    write_manifest(two_client_manifest(acme_name="Reviewed name"))
    assert cli("plan", manifest, "--state", state, "--refresh", "--out", plan_file).exit_code == 0
    batch_id = read_state(state).resources["acme/q2"].batch_id
    api = CreditsApi(sandbox.url, TEST_KEY)
    try:
        api.update_batch(batch_id, {"name": "Renamed by hand"})
    finally:
        api.close()

    refused = cli("apply", plan_file, "--state", state)

    assert_refused(refused, "would differ from what was reviewed")
    assert batch_names(sandbox) == ["Acme Q1", "Renamed by hand", "starter"]


@pytest.mark.parametrize(
    "options",
    [["--replace", "acme/q1"], ["--refresh"], ["--max-batch-credits", "0"], ["--max-creates", "5"]],
)
def test_options_that_shape_a_plan_cannot_be_given_with_a_saved_plan(
    cli, api_env, sandbox, write_manifest, state, plan_file, options
):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    assert_refused(cli("apply", plan_file, "--state", state, *options), options[0], "cannot be combined")
    assert sandbox.all_batches() == []


def test_saved_plan_cannot_be_mixed_with_manifests(cli, api_env, sandbox, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    assert_refused(cli("apply", plan_file, manifest, "--state", state), "on its own")
    assert sandbox.all_batches() == []


def test_plan_given_a_saved_plan_points_to_apply(cli, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    assert_refused(cli("plan", plan_file, "--state", state), "is a saved plan, not a manifest", "provisioner apply")


def test_json_that_is_not_a_saved_plan_is_read_as_a_manifest(cli, write_manifest, tmp_path):
    # A manifest may be written in JSON (it is YAML); only the marker makes a saved plan.
    manifest = write_manifest(json.dumps({"clients": {"acme": {"id": ACME_ID}}}), name="m.json.yaml")
    result = cli("validate", manifest)
    assert result.exit_code == 0, result.output


# ------------------------------------------------------------------ contents


def test_saved_plan_holds_no_secrets_and_records_what_apply_checks(api_env, sandbox, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    result = run_subprocess("plan", manifest, "--state", state, "--refresh", "--out", plan_file, env=api_env)
    assert result.returncode == 0, result.stderr

    text = plan_file.read_text()
    port = sandbox.url.rsplit(":", 1)[1]
    for secret in (TEST_KEY, sandbox.url, sandbox.url.split("//")[1], "ti_test_"):
        assert secret not in text
    assert not re.search(rf"\b{port}\b", text)
    document = json.loads(text)
    assert document["tool_version"] == __version__
    assert document["lineage"] == read_state(state).lineage and document["serial"] == 0  # as init left it
    assert re.fullmatch(r"[0-9a-f]{64}", document["manifest_digest"])
    assert re.fullmatch(r"[0-9a-f]{64}", document["seal"])
    assert document["refresh"] is True
    assert [c["address"] for c in document["plan"]["changes"]] == ["acme/q1", "acme/q2", "globex/starter"]
    assert GLOBEX_ID in text


def test_saved_plan_records_lineage_and_serial_of_an_existing_state(
    cli, api_env, sandbox, write_manifest, state, plan_file
):
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--state", state, "--auto-approve").exit_code == 0
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    document = json.loads(plan_file.read_text())
    recorded = read_state(state)
    assert (document["lineage"], document["serial"]) == (recorded.lineage, recorded.serial)


def test_plan_out_writes_no_partial_file_beside_it(cli, write_manifest, state, plan_file):
    manifest = write_manifest(two_client_manifest())
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    assert sorted(os.listdir(plan_file.parent)) == sorted(["manifests", "state", plan_file.name])


@pytest.mark.parametrize("suffix", ["", ".journal", ".backup", ".lock"])
def test_a_plan_is_never_saved_over_a_file_the_state_lives_in(cli, api_env, sandbox, applied, tmp_path, suffix):
    manifest, state = applied
    own = state.with_name(state.name + suffix)
    before = {path: path.read_bytes() for path in state.parent.iterdir()}
    result = cli("plan", manifest, "--state", state, "--out", own)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert f"--out {own}: a file the state lives in" in result.output
    assert {path: path.read_bytes() for path in state.parent.iterdir()} == before
    assert len(read_state(state).resources) == 3


@pytest.mark.parametrize("command", ["plan", "show"])
@pytest.mark.parametrize("name", ["sandbox.json", "sandbox.sqlite", "sandbox.sqlite-wal"])
def test_no_output_replaces_the_sandbox_state_or_its_data(cli, write_manifest, tmp_path, monkeypatch, command, name):
    monkeypatch.chdir(tmp_path)
    manifest = write_manifest(two_client_manifest())
    assert cli("apply", manifest, "--sandbox", "--auto-approve").exit_code == 0
    before = {path: path.read_bytes() for path in (tmp_path / "state").iterdir()}
    args = [manifest] if command == "plan" else []
    result = cli(command, *args, "--sandbox", "--out", f"state/{name}")
    assert result.exit_code == 1, result.output
    assert "a file the state lives in" in result.output
    assert {path: path.read_bytes() for path in (tmp_path / "state").iterdir()} == before
