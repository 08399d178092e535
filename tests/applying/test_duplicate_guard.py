"""Two stories: a missing state and a lost state entry no longer issue credits twice.

The duplicate guard: before a client's first create, apply lists its batches; one already there,
claimed by no address, with the same name and balance, stops that create. `plan --refresh` shows it
as blocked. Every test runs the CLI as a user does, against a real sandbox.
"""

from __future__ import annotations

import json
import socket
import unicodedata
from collections import Counter
from urllib.parse import urlsplit

from conftest import ACME_ID, GLOBEX_ID, TEST_KEY, call_api, recorded_nothing, run_subprocess, two_client_manifest
from faultproxy import FaultProxy, Forward, ProxiedRequest

from provisioner.backends.file import read_state
from provisioner.sandbox import Quirks, Sandbox

FAST = ("--rate-limit", "0")


def lose_entry(state, address: str) -> str:
    """Removes an address from the state file by hand, as a bad merge or an edit would; returns its id."""
    document = json.loads(state.read_text())
    batch_id = document["resources"].pop(address)["batch_id"]
    state.write_text(json.dumps(document, indent=2))
    return batch_id


def test_a_mistyped_state_path_refuses_to_plan_instead_of_planning_every_create(
    cli, api_env, sandbox, applied, tmp_path
):
    manifest, _ = applied

    result = cli("plan", manifest, "--state", tmp_path / "lost-state.json", "--refresh", *FAST)

    assert result.exit_code == 1
    assert "there is no state at" in result.stderr and "lost-state.json" in result.stderr
    assert "provisioner init" in result.stderr and "PROVISIONER_STATE" in result.stderr
    assert "to create" not in result.stdout and "Traceback" not in result.output
    assert not (tmp_path / "lost-state.json").exists()
    assert len(sandbox.all_batches()) == 3


def test_apply_with_a_missing_state_creates_nothing(api_env, sandbox, applied, tmp_path):
    manifest, _ = applied

    result = run_subprocess("apply", manifest, "--state", tmp_path / "typo.json", "--auto-approve", env=api_env)

    assert result.returncode == 1 and "there is no state at" in result.stderr
    assert len(sandbox.all_batches()) == 3 and sandbox.stats["creates"] == 3


def test_a_lost_state_entry_is_blocked_in_plan_refresh_with_the_import_fix(cli, api_env, sandbox, applied):
    manifest, state = applied
    batch_id = lose_entry(state, "globex/starter")

    planned = cli("plan", manifest, "--state", state, "--refresh", "--format", "json", *FAST)

    change = next(c for c in json.loads(planned.stdout)["changes"] if c["address"] == "globex/starter")
    assert change["action"] == "blocked" and change["credits"] == 0
    reasons = " ".join(change["reasons"])
    assert batch_id in reasons
    assert f"provisioner import globex/starter {batch_id}" in reasons and "--allow-duplicate globex/starter" in reasons
    text = cli("plan", manifest, "--state", state, "--refresh", *FAST).stdout
    assert '! batch "globex/starter"' in text and batch_id in text


def test_apply_without_refresh_lists_first_and_does_not_send_the_duplicate(cli, api_env, sandbox, applied):
    manifest, state = applied
    batch_id = lose_entry(state, "globex/starter")

    result = cli("apply", manifest, "--state", state, "--auto-approve", *FAST)

    assert result.exit_code == 1
    assert "globex/starter" in result.stderr and batch_id in result.stderr
    assert f"provisioner import globex/starter {batch_id}" in result.stderr
    assert sandbox.stats["creates"] == 3, "the duplicate was never sent"
    assert "globex/starter" not in read_state(state).resources and not read_state(state).pending

    imported = cli("import", "globex/starter", batch_id, manifest, "--state", state, *FAST)
    assert imported.exit_code == 0, imported.output
    again = cli("apply", manifest, "--state", state, "--auto-approve", *FAST)
    assert again.exit_code == 0 and "No changes" in again.stdout
    assert len(sandbox.all_batches()) == 3


def test_a_batch_made_by_hand_with_the_same_name_and_balance_is_caught_whatever_the_case(
    cli, api_env, sandbox, write_manifest, state
):
    call_api(
        sandbox,
        "POST",
        f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches",
        {"clientId": GLOBEX_ID, "name": "  STARTER ", "startingBalance": 1200},
    )
    manifest = write_manifest(two_client_manifest())

    result = cli("apply", manifest, "--state", state, "--auto-approve", *FAST)

    assert result.exit_code == 1 and "globex/starter" in result.stderr and "just like it" in result.stderr
    assert sorted(batch["name"] for batch in sandbox.all_batches()) == ["  STARTER ", "Acme Q1", "q2"]


def test_allow_duplicate_issues_it_again_on_purpose_and_a_saved_plan_keeps_that(
    cli, api_env, sandbox, applied, tmp_path
):
    manifest, state = applied
    lose_entry(state, "globex/starter")
    plan_file = tmp_path / "reviewed.plan"

    planned = cli(
        "plan",
        manifest,
        "--state",
        state,
        "--refresh",
        "--allow-duplicate",
        "globex/starter",
        "--out",
        plan_file,
        *FAST,
    )
    assert planned.exit_code == 0, planned.output
    assert '+ batch "globex/starter"' in planned.stdout

    applied_plan = cli("apply", plan_file, "--state", state, *FAST)

    assert applied_plan.exit_code == 0, applied_plan.output
    assert sorted(batch["name"] for batch in sandbox.all_batches()) == ["Acme Q1", "q2", "starter", "starter"]
    assert json.loads(plan_file.read_text())["allow_duplicates"] == ["globex/starter"]


def test_no_duplicate_check_skips_the_listing_and_says_what_it_risks(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(two_client_manifest())

    result = cli("apply", manifest, "--state", state, "--auto-approve", "--no-duplicate-check", *FAST)

    assert result.exit_code == 0, result.output
    listings = [path for method, path, _ in sandbox.request_log if method == "GET"]
    assert len(listings) == 1, "only the preflight: no listing per client"
    assert "issued again" in cli("apply", "--help").stdout


def test_the_guard_costs_one_listing_per_client_not_per_batch(cli, api_env, sandbox, write_manifest, state):
    manifest = write_manifest(two_client_manifest())

    assert cli("apply", manifest, "--state", state, "--auto-approve", *FAST).exit_code == 0

    gets = [path for method, path, _ in sandbox.request_log if method == "GET"]
    assert len(gets) == 2, "one listing for each of the 2 clients (the first is also the preflight)"
    assert sandbox.stats["creates"] == 3


def test_a_refused_create_moves_no_serial(cli, api_env, sandbox, write_manifest, state):
    """An apply that records nothing leaves the state, and so saved plans, as they were."""
    manifest = write_manifest(two_client_manifest())
    sandbox.stop()
    # Nothing listens any more, and the port stays held: another test's server cannot take it meanwhile.
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", urlsplit(sandbox.url).port))
        result = cli("apply", manifest, "--state", state, "--auto-approve", *FAST)

    assert result.exit_code == 1
    assert recorded_nothing(state)


def test_forget_intent_refuses_while_the_create_may_still_be_in_progress(cli, api_env, sandbox, write_manifest, state):
    """Review: a create killed while the server was still making it; giving it up at once said "loses
    nothing", and the next apply created the batch a second time."""
    from datetime import datetime, timezone

    from provisioner.applying.applier import request_digest
    from provisioner.backends.file import FileWriter
    from provisioner.core.models import Intent
    from provisioner.core.timestamps import format_timestamp

    write_manifest(two_client_manifest())
    attributes = {"clientId": GLOBEX_ID, "name": "starter", "startingBalance": 1200}
    now = format_timestamp(datetime.now(timezone.utc))
    with FileWriter(state) as writer:
        writer.record_intent(
            Intent(
                address="globex/starter",
                client_id=GLOBEX_ID,
                attributes=attributes,
                digest=request_digest(GLOBEX_ID, attributes),
                at=now,
                server_at=now,
            )
        )

    refused = cli("state", "forget-intent", "globex/starter", "--state", state, "--auto-approve", *FAST)

    assert refused.exit_code == 1 and "may still be in progress on the server" in refused.stderr
    assert "globex/starter" in read_state(state).pending
    forced = cli("state", "forget-intent", "globex/starter", "--state", state, "--auto-approve", "--force", *FAST)
    assert forced.exit_code == 0, forced.output
    assert not read_state(state).pending


def fresh_intent(state) -> None:
    """An interrupted create of globex/starter, written just now: it may still be landing on the server."""
    from datetime import datetime, timezone

    from provisioner.applying.applier import request_digest
    from provisioner.backends.file import FileWriter
    from provisioner.core.models import Intent
    from provisioner.core.timestamps import format_timestamp

    attributes = {"clientId": GLOBEX_ID, "name": "starter", "startingBalance": 1200}
    now = format_timestamp(datetime.now(timezone.utc))
    with FileWriter(state) as writer:
        writer.record_intent(
            Intent(
                address="globex/starter",
                client_id=GLOBEX_ID,
                attributes=attributes,
                digest=request_digest(GLOBEX_ID, attributes),
                at=now,
                server_at=now,
            )
        )


def test_forget_intent_refuses_a_create_that_may_be_running_when_the_api_cannot_be_listed(
    cli, api_env, write_manifest, state, monkeypatch
):
    """Review 2: the listing failed, and the create was given up without --force, window or not."""
    import socket

    write_manifest(two_client_manifest())
    fresh_intent(state)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("TI_BASE_URL", f"http://127.0.0.1:{port}")

    refused = cli("state", "forget-intent", "globex/starter", "--state", state, "--auto-approve", *FAST)

    assert refused.exit_code == 1, refused.output
    assert "may still be in progress on the server" in refused.stderr and "Traceback" not in refused.output
    assert "cannot be listed" in refused.stderr
    assert "globex/starter" in read_state(state).pending


def test_forget_intent_refuses_to_list_another_instance_than_the_state_records(
    cli, api_env, sandbox, write_manifest, state
):
    """Review 2: listing another instance finds "nothing", and giving the create up "loses nothing"."""
    from provisioner.backends.file import FileWriter

    write_manifest(two_client_manifest())
    fresh_intent(state)
    with FileWriter(state) as writer:
        writer.bind_instance("https://other.thoughtindustries.com")

    refused = cli(
        "state", "forget-intent", "globex/starter", "--state", state, "--auto-approve", "--recovery-wait", "0", *FAST
    )

    assert refused.exit_code == 1, refused.output
    assert "records the batches of https://other.thoughtindustries.com" in refused.stderr
    assert "globex/starter" in read_state(state).pending


def test_apply_refresh_lists_each_client_once(cli, api_env, sandbox, write_manifest, state):
    """The refresh's listings serve the preflight and the duplicate guard: no client is listed twice."""
    manifest = write_manifest(two_client_manifest())  # acme and globex, each creating

    result = cli("apply", manifest, "--state", state, "--refresh", "--auto-approve", *FAST)

    assert result.exit_code == 0, result.output
    assert sandbox.stats["creates"] == 3
    listed = Counter(path for method, path, _ in sandbox.request_log if method == "GET")
    assert listed == {
        f"/incoming/v2/clients/{ACME_ID}/creditBatches": 1,
        f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches": 1,
    }


def test_a_duplicate_that_slipped_through_is_shown_by_plan_refresh_and_refresh(cli, api_env, sandbox, applied):
    """Two runs at once (or a run that lost its lock) made a second batch just like a recorded one: it is
    claimed by no address. Every later plan used to say nothing of it."""
    manifest, state = applied
    resource = read_state(state).resources["globex/starter"]
    recorded = resource.batch_id
    slipped = call_api(sandbox, "POST", f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches", resource.attributes)["id"]

    planned = cli("plan", manifest, "--state", state, "--refresh", *FAST)
    refreshed = cli("refresh", manifest, "--state", state, *FAST)

    assert planned.exit_code == 0, planned.output
    for output in (planned.stdout, refreshed.stderr):
        assert f"globex/starter (batch {recorded})" in output and slipped in output, output
        assert "no address claims" in output and "acme/" not in output.split("no address claims")[0][-200:]
    assert refreshed.exit_code == 0


# --- names as a server may normalise them ---------------------------------------------------------------------


def respaced_manifest(write_manifest, name: str):
    return write_manifest(
        f'clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1:\n        name: "{name}"\n'
        "        startingBalance: 5000\n"
    )


def test_a_name_the_server_respaced_is_still_caught_once_its_state_entry_is_lost(write_manifest, state):
    """A server that collapses inner runs of spaces (the sandbox's trim-names) stores "Acme  Q1" as "Acme Q1".
    With acme/q1's state entry lost, the next apply used to compare the names trimmed and case-folded only,
    see another name, and issue q1 a second time (exit 0). The guard must stop it and name the batch."""
    with Sandbox(api_key=TEST_KEY, quirks=Quirks(trim_names=True)) as sandbox:
        env = {"TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}
        manifest = respaced_manifest(write_manifest, "Acme  Q1")
        first = run_subprocess("apply", manifest, "--state", state, "--auto-approve", env=env)
        batch_id = lose_entry(state, "acme/q1")

        second = run_subprocess("apply", manifest, "--state", state, "--auto-approve", env=env)

        assert first.returncode == 0, first.stderr
        assert [batch["name"] for batch in sandbox.all_batches(ACME_ID)] == ["Acme Q1"], "issued twice"
        assert second.returncode == 1, second.stderr
        assert batch_id in second.stderr and f"provisioner import acme/q1 {batch_id}" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert not read_state(state).resources and not read_state(state).pending


def test_a_name_the_server_stores_in_unicode_normal_form_is_still_caught(write_manifest, state):
    """A server that stores names in Unicode normal form NFKC (full-width letters made ASCII, a ligature
    split, a no-break space made a space) lists "Ｑ１ ﬁnal\u00a0run" as "Q1 final run": the same name to a
    person, and to the guard."""
    with Sandbox(api_key=TEST_KEY) as sandbox:

        def stored_in_nfkc(request: ProxiedRequest) -> Forward:
            def normalise(answer: dict) -> dict:
                for batch in answer["data"]["APICreditBatchesByClientAndCreditAccount"]["creditBatches"]:
                    batch["name"] = unicodedata.normalize("NFKC", batch["name"])
                return answer

            return Forward(rewrite=normalise if request.method == "GET" else None)

        with FaultProxy(sandbox.url, stored_in_nfkc) as proxy:
            env = {"TI_BASE_URL": proxy.url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}
            manifest = respaced_manifest(write_manifest, "Ｑ１ ﬁnal\u00a0run")
            first = run_subprocess("apply", manifest, "--state", state, "--auto-approve", env=env)
            lose_entry(state, "acme/q1")
            second = run_subprocess("apply", manifest, "--state", state, "--auto-approve", env=env)

        assert first.returncode == 0, first.stderr
        assert len(sandbox.all_batches(ACME_ID)) == 1, f"issued twice:\n{second.stderr}"
        assert second.returncode == 1 and "just like it" in second.stderr, second.stderr
