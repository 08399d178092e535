"""Adopting batches (import) and editing state by hand (state list|show|rm|mv).

Every edit runs under the state lock and keeps the previous file as `.backup`.
"""

from __future__ import annotations

import json
import os
import re
import socket

import pytest
from conftest import (
    ACME_ID,
    GLOBEX_ID,
    TEST_KEY,
    call_api,
    init_state,
    run_subprocess,
    two_client_manifest,
)

from provisioner.applying.applier import request_digest
from provisioner.backends.file import FileWriter, read_state
from provisioner.backends.filelock import StateLock
from provisioner.core.models import Intent
from provisioner.core.timestamps import utc_now_text
from provisioner.sandbox import Sandbox

FAST = ("--rate-limit", "0")  # the sandbox has no rate limit


def create_by_hand(sandbox: Sandbox, client_id: str, **body) -> dict:
    """A batch made in Thought Industries directly, not by provisioner."""
    return call_api(sandbox, "POST", f"/incoming/v2/clients/{client_id}/creditBatches", body)


def recorded(state_path) -> dict:
    return json.loads(state_path.read_text())["resources"]


def backup_of(state_path):
    return state_path.with_name(state_path.name + ".backup")


def legacy_manifest(name: str = "Globex legacy") -> str:
    """globex/legacy: the batch an admin made by hand, now declared."""
    return f"""
    clients:
      acme:
        id: {ACME_ID}
        batches:
          q1:
            startingBalance: 5000
      globex:
        id: {GLOBEX_ID}
        batches:
          legacy:
            name: {name}
            startingBalance: 800
            expiresOn: 2031-01-01T00:00:00+01:00
    """


LEGACY_BATCH = {"name": "Globex legacy", "startingBalance": 800, "expiresOn": "2030-12-31T23:00:00Z"}


# --- import ---------------------------------------------------------------------------------


def test_import_adopts_a_batch_made_by_hand(cli, api_env, sandbox, write_manifest, tmp_path):
    legacy = create_by_hand(sandbox, GLOBEX_ID, **LEGACY_BATCH)
    manifest = write_manifest(legacy_manifest())
    state = init_state(tmp_path / "state.json")
    before = cli("plan", manifest, "--state", state).stdout
    assert '+ batch "globex/legacy"' in before  # without import it would be issued a second time

    result = cli("import", "globex/legacy", legacy["id"], manifest, "--state", state, *FAST)

    assert result.exit_code == 0, result.output
    assert f"globex/legacy is batch {legacy['id']}" in result.stdout
    resource = recorded(state)["globex/legacy"]
    assert resource["batch_id"] == legacy["id"]
    assert resource["client_id"] == GLOBEX_ID
    planned = cli("plan", manifest, "--state", state, "--refresh", "--format", "json", *FAST)
    changes = {change["address"]: change["action"] for change in json.loads(planned.stdout)["changes"]}
    assert changes == {"acme/q1": "create"}  # the adopted batch matches: nothing to do for it
    assert cli("apply", manifest, "--state", state, "--auto-approve", *FAST).exit_code == 0
    assert sandbox.stats["creates"] == 2  # the hand-made one and acme/q1; no second legacy batch
    assert "No changes" in cli("plan", manifest, "--state", state, "--refresh", *FAST).stdout


def test_import_then_plan_shows_only_real_differences(cli, api_env, sandbox, write_manifest, tmp_path):
    legacy = create_by_hand(sandbox, GLOBEX_ID, **LEGACY_BATCH)
    manifest = write_manifest(legacy_manifest(name="Globex legacy (2031)"))
    state = init_state(tmp_path / "state.json")
    assert cli("import", "globex/legacy", legacy["id"], manifest, "--state", state, *FAST).exit_code == 0

    planned = cli("plan", manifest, "--state", state, *FAST)

    assert re.search(
        r'~ batch "globex/legacy" \{\n\s+~ name = "Globex legacy" -> "Globex legacy \(2031\)"\n\s+\}', planned.stdout
    ), planned.stdout
    assert "Plan: 1 to create, 1 to update, 0 blocked, 0 unchanged." in planned.stdout


def test_import_finds_a_batch_beyond_the_first_page(cli, api_env, sandbox, write_manifest, tmp_path):
    for n in range(6):
        create_by_hand(sandbox, GLOBEX_ID, name=f"other {n}", startingBalance=1)
    legacy = create_by_hand(sandbox, GLOBEX_ID, **LEGACY_BATCH)  # seventh: on page 2 of 5
    manifest = write_manifest(legacy_manifest())
    state = init_state(tmp_path / "state.json")

    result = cli("import", "globex/legacy", legacy["id"], manifest, "--state", state, *FAST)

    assert result.exit_code == 0, result.output
    assert recorded(state)["globex/legacy"]["batch_id"] == legacy["id"]


def test_import_of_another_clients_batch_names_the_owner(cli, api_env, sandbox, write_manifest, tmp_path):
    acme_batch = create_by_hand(sandbox, ACME_ID, name="Globex legacy", startingBalance=800)
    manifest = write_manifest(legacy_manifest())
    state = init_state(tmp_path / "state.json")

    result = cli("import", "globex/legacy", acme_batch["id"], manifest, "--state", state, *FAST)

    assert result.exit_code == 1
    assert f"batch {acme_batch['id']} belongs to client acme ({ACME_ID}), not to globex" in result.stderr
    assert "Traceback" not in result.output
    assert read_state(state).serial == 0 and not read_state(state).resources  # untouched


def test_import_of_an_unknown_id_fails_as_a_real_process(api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(legacy_manifest())
    state = init_state(tmp_path / "state.json")
    unknown = "00000000-0000-4000-8000-000000000000"

    result = run_subprocess("import", "globex/legacy", unknown, manifest, "--state", state, *FAST, env=api_env)

    assert result.returncode == 1
    assert f"batch {unknown} is not among the batches of client globex ({GLOBEX_ID})" in result.stderr
    assert "Traceback" not in result.stderr
    assert TEST_KEY not in result.stderr
    assert read_state(state).serial == 0 and not read_state(state).resources  # untouched


def test_import_of_an_undeclared_address_is_refused(cli, api_env, sandbox, write_manifest, tmp_path):
    legacy = create_by_hand(sandbox, GLOBEX_ID, **LEGACY_BATCH)
    manifest = write_manifest(legacy_manifest())
    state = init_state(tmp_path / "state.json")

    result = cli("import", "globex/elsewhere", legacy["id"], manifest, "--state", state, *FAST)

    assert result.exit_code == 1
    assert "globex/elsewhere is not declared in the manifests given" in result.stderr
    assert sandbox.stats["requests"] == 1  # refused before asking the API anything
    assert read_state(state).serial == 0 and not read_state(state).resources  # untouched


def test_import_onto_a_recorded_address_or_of_a_recorded_batch_is_refused(applied, cli, sandbox, write_manifest):
    manifest, state = applied
    stray = create_by_hand(sandbox, ACME_ID, name="Acme Q1", startingBalance=5000)
    q1 = recorded(state)["acme/q1"]["batch_id"]
    before = state.read_text()

    taken = cli("import", "acme/q1", stray["id"], manifest, "--state", state, *FAST)
    assert taken.exit_code == 1
    assert f"acme/q1 is already recorded as batch {q1}" in taken.stderr
    assert "provisioner state rm acme/q1" in taken.stderr

    write_manifest(two_client_manifest().rstrip() + "\n          extra:\n            startingBalance: 1\n")
    twice = cli("import", "globex/extra", q1, manifest, "--state", state, *FAST)
    assert twice.exit_code == 1
    assert f"batch {q1} is already recorded as acme/q1" in twice.stderr
    assert state.read_text() == before


# --- state list / show ----------------------------------------------------------------------


def test_state_list_and_show(applied, cli):
    manifest, state = applied
    resources = recorded(state)

    listed = cli("state", "list", "--state", state)
    assert listed.exit_code == 0
    assert listed.stdout.splitlines() == [
        f"{address:<14}  {resources[address]['batch_id']}" for address in ("acme/q1", "acme/q2", "globex/starter")
    ]

    shown = cli("state", "show", "acme/q1", "--state", state)
    assert shown.exit_code == 0
    document = json.loads(shown.stdout)
    assert document["address"] == "acme/q1"
    assert document["batch_id"] == resources["acme/q1"]["batch_id"]
    assert document["attributes"]["name"] == "Acme Q1"
    assert document["remote"]["status"] == "active"

    unknown = cli("state", "show", "acme/q9", "--state", state)
    assert unknown.exit_code == 1
    assert "acme/q9 is not recorded in state" in unknown.stderr


def test_state_list_of_an_empty_state(cli, tmp_path):
    result = cli("state", "list", "--state", init_state(tmp_path / "none.json"))
    assert result.exit_code == 0
    assert result.stdout == "No batches recorded in this state file yet.\n"


# --- state rm ---------------------------------------------------------------------------------


def test_state_rm_forgets_the_batch_but_leaves_it_in_the_api(applied, cli, sandbox):
    manifest, state = applied
    q2 = recorded(state)["acme/q2"]["batch_id"]
    before = state.read_text()

    result = cli("state", "rm", "acme/q2", "--state", state)

    assert result.exit_code == 0, result.output
    assert f"Removed acme/q2 (batch {q2}) from state; the batch itself is untouched." in result.stdout
    assert "the next plan will create a new batch for it" in result.stderr
    assert f"provisioner import acme/q2 {q2} PATHS..." in result.stderr
    assert "acme/q2" not in recorded(state)
    assert q2 in {batch["id"] for batch in sandbox.all_batches()}
    assert backup_of(state).read_text() == before

    planned = cli("plan", manifest, "--state", state, *FAST)
    assert '+ batch "acme/q2"' in planned.stdout
    assert "Plan: 1 to create" in planned.stdout

    before_import = state.read_text()
    assert cli("import", "acme/q2", q2, manifest, "--state", state, *FAST).exit_code == 0
    assert backup_of(state).read_text() == before_import
    assert "No changes" in cli("plan", manifest, "--state", state, "--refresh", *FAST).stdout


def test_state_rm_of_an_unknown_address(applied, cli):
    _, state = applied
    before = state.read_text()
    result = cli("state", "rm", "acme/nope", "--state", state)
    assert result.exit_code == 1
    assert "acme/nope is not recorded in" in result.stderr
    assert state.read_text() == before


# --- state mv ---------------------------------------------------------------------------------


def test_state_mv_after_renaming_the_key_leaves_nothing_to_do(applied, cli, sandbox, write_manifest):
    manifest, state = applied
    q1 = recorded(state)["acme/q1"]["batch_id"]
    write_manifest(two_client_manifest().replace("          q1:", "          first-quarter:"), name="m.yaml")

    renamed_only = cli("plan", manifest, "--state", state, *FAST).stdout
    assert '+ batch "acme/first-quarter"' in renamed_only  # what a rename alone would do: issue again
    assert "acme/q1 (batch" in renamed_only

    before = state.read_text()
    moved = cli("state", "mv", "acme/q1", "acme/first-quarter", "--state", state)

    assert moved.exit_code == 0, moved.output
    assert "Moved acme/q1 to acme/first-quarter." in moved.stdout
    assert recorded(state)["acme/first-quarter"]["batch_id"] == q1
    assert "acme/q1" not in recorded(state)
    assert backup_of(state).read_text() == before
    planned = cli("plan", manifest, "--state", state, "--refresh", *FAST)
    assert planned.stdout.startswith("No changes.")
    assert "Warning" not in planned.stdout
    assert sandbox.stats["creates"] == 3


@pytest.mark.parametrize(
    ("source", "destination", "message"),
    [
        ("acme/q9", "acme/q10", "acme/q9 is not recorded in"),
        ("acme/q1", "acme/q2", "acme/q2 is already recorded"),
        ("acme/q1", "acme/Q 1", "'acme/Q 1' is not an address; expected CLIENT_KEY/BATCH_KEY"),
        ("acme/q1", "q1", "'q1' is not an address"),
        ("acme/q1", "acme/q1/x", "'acme/q1/x' is not an address"),
        ("acme/q1", "globex/q1", "a batch cannot move to another client"),
    ],
)
def test_state_mv_refuses_what_makes_no_sense(applied, cli, source, destination, message):
    _, state = applied
    before = state.read_text()
    result = cli("state", "mv", source, destination, "--state", state)
    assert result.exit_code == 1
    assert message in result.stderr
    assert state.read_text() == before


# --- the lock -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ("state", "rm", "acme/q1"),
        ("state", "mv", "acme/q1", "acme/q9"),
        ("import", "acme/q1", "00000000-0000-4000-8000-000000000000", "{manifest}"),
        ("refresh", "{manifest}"),
    ],
    ids=["rm", "mv", "import", "refresh"],
)
def test_every_state_edit_waits_for_the_lock(applied, cli, sandbox, command):
    manifest, state = applied
    before = state.read_text()
    requests_before = sandbox.stats["requests"]
    arguments = [str(manifest) if part == "{manifest}" else part for part in command]

    with StateLock(state, command="apply (held by the test)"):
        result = cli(*arguments, "--state", state, *(FAST if command[0] in ("import", "refresh") else ()))

    assert result.exit_code == 1
    assert "is locked by another run" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert f"@{socket.gethostname()}" in result.stderr
    assert "apply (held by the test)" in result.stderr
    assert state.read_text() == before
    assert sandbox.stats["requests"] == requests_before


def test_a_held_lock_stops_state_rm_in_a_real_process(applied, api_env):
    _, state = applied
    with StateLock(state, command="apply (held by the test)") as lock:
        result = run_subprocess("state", "rm", "acme/q1", "--state", state, env=api_env)
    assert result.returncode == 1
    assert f"ID: {lock.info.id}" in result.stderr
    assert "Command: apply (held by the test)" in result.stderr
    assert "Traceback" not in result.stderr
    assert "acme/q1" in recorded(state)


def open_intent(state, attributes: dict) -> None:
    """What a crashed apply leaves behind for globex/legacy."""
    with FileWriter(state) as writer:
        writer.record_intent(
            Intent(
                address="globex/legacy",
                client_id=GLOBEX_ID,
                attributes=attributes,
                digest=request_digest(GLOBEX_ID, attributes),
                at=utc_now_text(),
            )
        )


def test_import_refuses_a_batch_an_interrupted_create_cannot_have_made(cli, api_env, sandbox, write_manifest, tmp_path):
    """A crashed apply left an open intent: importing another batch over it could lose the one it made."""
    legacy = create_by_hand(sandbox, GLOBEX_ID, **LEGACY_BATCH)
    manifest = write_manifest(legacy_manifest())
    state = init_state(tmp_path / "state.json")
    open_intent(state, {"clientId": GLOBEX_ID, "name": "Globex legacy", "startingBalance": 900})

    result = cli("import", "globex/legacy", legacy["id"], manifest, "--state", state, *FAST)

    assert result.exit_code == 1
    assert "an interrupted apply was creating globex/legacy" in result.stderr
    assert "Run 'provisioner apply' first" in result.stderr
    assert "globex/legacy" in read_state(state).pending
    assert read_state(state).resources == {}


def test_import_of_a_batch_the_interrupted_create_may_have_made_settles_it(
    cli, api_env, sandbox, write_manifest, tmp_path
):
    """How an ambiguous recovery is settled: the user picks one of the candidates."""
    manifest = write_manifest(legacy_manifest())
    state = init_state(tmp_path / "state.json")
    open_intent(state, {"clientId": GLOBEX_ID, "name": "Globex legacy", "startingBalance": 800})
    candidate = create_by_hand(sandbox, GLOBEX_ID, **LEGACY_BATCH)

    result = cli("import", "globex/legacy", candidate["id"], manifest, "--state", state, *FAST)

    assert result.exit_code == 0, result.output
    assert read_state(state).pending == {}
    assert read_state(state).resources["globex/legacy"].batch_id == candidate["id"]


# --- review 20: messages that name what the user actually gave ----------------------------------------------


@pytest.mark.parametrize("command", [["state", "list"], ["plan", "{manifest}"]])
def test_a_saved_plan_given_as_the_state_is_named_a_saved_plan(cli, write_manifest, state, tmp_path, command):
    manifest = write_manifest(two_client_manifest())
    plan_file = tmp_path / "reviewed.plan"
    assert cli("plan", manifest, "--state", state, "--out", plan_file).exit_code == 0
    before = plan_file.read_bytes()

    result = cli(*[word.format(manifest=manifest) for word in command], "--state", plan_file)

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"{plan_file}: this is a saved plan" in result.stderr and "format version None" not in result.stderr
    assert f"provisioner apply {plan_file}" in result.stderr
    assert plan_file.read_bytes() == before


def test_a_bad_workspace_from_the_environment_is_named_as_such(tmp_path):
    result = run_subprocess("state", "list", env={"PROVISIONER_WORKSPACE": "Prod"}, cwd=tmp_path)

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "PROVISIONER_WORKSPACE='Prod'" in result.stderr and "--workspace" not in result.stderr
