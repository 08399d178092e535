"""Damaged input, from the server or on disk, gets one clear message naming where it came from, exit 1,
no traceback, and changes nothing. Its shape is checked once, where it is read: a listing where the
client parses the server's answer, a state where it is parsed, a journal line where it is read.

Each story runs the CLI as a real process: against the sandbox behind a proxy that damages its listings
(tests/faultproxy.py), or on a state and journal written as a crash, a bad merge or a hand edit leaves them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import ACME_ID, TEST_KEY, run_subprocess
from faultproxy import DropThenCommit, FaultProxy, Forward, ProxiedRequest

from provisioner.backends.file import journal_path, read_state
from provisioner.sandbox import Sandbox

MANIFEST = f"""
clients:
  acme:
    id: {ACME_ID}
    batches:
      q1:
        name: Q1
        startingBalance: 100
"""
UNREACHABLE = {"TI_BASE_URL": "http://127.0.0.1:9", "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}


@pytest.fixture
def sandbox():
    with Sandbox(api_key=TEST_KEY, page_size=5) as server:
        yield server


def env_for(url: str) -> dict[str, str]:
    return {"TI_BASE_URL": url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}


def files_of(state: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(state.parent.iterdir()) if path.is_file()}


def assert_one_clear_error(result, *words: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


# --- listings whose items are not batch objects -----------------------------------------------------------------

DAMAGES = {
    "strings": lambda listing: {**listing, "creditBatches": ["Q1", "Q2"]},
    "an-object": lambda listing: {**listing, "creditBatches": {"Q1": {"startingBalance": 100}}},
    "a-list": lambda listing: [listing],
}
COMMANDS = {
    "apply": lambda manifest, state: ("apply", manifest, "--state", state, "--auto-approve"),
    "plan-refresh": lambda manifest, state: ("plan", manifest, "--state", state, "--refresh"),
    "show-refresh": lambda manifest, state: ("show", manifest, "--state", state, "--refresh"),
    "refresh": lambda manifest, state: ("refresh", manifest, "--state", state),
    "import": lambda manifest, state: (
        "import",
        "acme/q2",
        "0f1e2d3c-4b5a-4697-8877-000000000000",
        manifest,
        "--state",
        state,
    ),
}


# Every command with one damage, and every damage with apply.
CASES = [(command, "strings") for command in sorted(COMMANDS)] + [("apply", "an-object"), ("apply", "a-list")]


@pytest.mark.parametrize(("command", "damage"), CASES, ids=[f"{command}-{damage}" for command, damage in CASES])
def test_a_listing_whose_items_are_not_batches_is_one_error_naming_the_api(
    sandbox, write_manifest, state, damage, command
):
    manifest = write_manifest(MANIFEST + "      q2:\n        name: Q2\n        startingBalance: 200\n")
    applied = run_subprocess(
        "apply",
        write_manifest(MANIFEST, name="first.yaml"),
        "--state",
        state,
        "--auto-approve",
        env=env_for(sandbox.url),
    )
    assert applied.returncode == 0, applied.stderr
    before = files_of(state)

    def damaged(request: ProxiedRequest):
        def rewrite(answer: dict) -> dict:
            data = answer["data"]
            data["APICreditBatchesByClientAndCreditAccount"] = DAMAGES[damage](
                data["APICreditBatchesByClientAndCreditAccount"]
            )
            return answer

        return Forward(rewrite=rewrite if request.method == "GET" else None)

    with FaultProxy(sandbox.url, damaged) as proxy:
        result = run_subprocess(*COMMANDS[command](manifest, state), env=env_for(proxy.url))
        sent = proxy.posts()

    assert_one_clear_error(
        result, f"the API at {proxy.url} listed the batches of client {ACME_ID}", "Nothing was decided on it"
    )
    assert sent == 0
    assert files_of(state) == before, "the state changed"


# --- states and journals damaged on disk --------------------------------------------------------------------------


def write_state(state: Path, **parts) -> None:
    document = json.loads(state.read_text())
    document.update(parts)
    state.write_text(json.dumps(document))


RESOURCE = {"batch_id": "b-1", "client_id": ACME_ID, "attributes": {"name": "Q1", "startingBalance": 100}, "remote": {}}
INTENT = {
    "address": "acme/q9",
    "client_id": ACME_ID,
    "attributes": {"name": "Q1", "startingBalance": 100},
    "digest": "d",
    "at": "2026-01-01T00:00:00Z",
}


def test_an_address_without_a_slash_is_named_by_show(write_manifest, state):
    write_state(state, resources={"q1": RESOURCE})
    before = files_of(state)

    result = run_subprocess("show", "--state", state, env=UNREACHABLE)

    assert_one_clear_error(result, str(state), "'q1' is not an address (expected client/batch)")
    assert files_of(state) == before


def test_a_state_nested_a_hundred_thousand_deep_is_not_a_state(write_manifest, state):
    state.write_text("[" * 100_000)

    for args in (("show",), ("plan", write_manifest(MANIFEST)), ("apply", write_manifest(MANIFEST), "--auto-approve")):
        result = run_subprocess(*args, "--state", state, env=UNREACHABLE)
        assert_one_clear_error(result, str(state), "nests lists or objects far deeper than any state does")
    assert state.read_text() == "[" * 100_000


def test_an_open_intent_filed_under_another_address_is_refused_by_apply(write_manifest, state):
    write_state(state, pending={"acme/q1": INTENT})
    before = files_of(state)

    result = run_subprocess("apply", write_manifest(MANIFEST), "--state", state, "--auto-approve", env=UNREACHABLE)

    assert_one_clear_error(result, str(state), "the open intent filed under 'acme/q1' is the create of 'acme/q9'")
    assert files_of(state) == before


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ({"op": "record"}, "this 'record' entry has no 'address' (a string)"),
        ({"op": "intent", "intent": "x"}, "this 'intent' entry has 'intent' as str, not an object"),
        ({"op": "clear", "address": ["x"]}, "this 'clear' entry has 'address' as list, not a string"),
        ({"op": "record", "address": "q1", "resource": RESOURCE}, "names 'q1', which is not an address"),
        ({"op": "move", "from": "acme/q1"}, "this 'move' entry has no 'to' (a string)"),
        ({"op": "record_all"}, "this 'record_all' entry has no 'resources' (an object)"),
        ({"op": "record_all", "resources": {"q1": RESOURCE}}, "names 'q1', which is not an address"),
        ({"op": "forget", "address": "acme/q1", "events": "x"}, "has 'events' as str, not a list of events"),
    ],
    ids=[
        "record-bare",
        "intent-text",
        "clear-list",
        "record-no-slash",
        "move-half",
        "record-all-bare",
        "record-all-no-slash",
        "events-text",
    ],
)
def test_a_journal_line_of_the_wrong_shape_is_named_by_apply(write_manifest, state, line, said):
    lineage = json.loads(state.read_text())["lineage"]
    journal = journal_path(state)
    entries = [{"op": "begin", "lineage": lineage, "serial": 0}, line, {"op": "clear", "address": "acme/q1"}]
    journal.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    before = files_of(state)

    result = run_subprocess("apply", write_manifest(MANIFEST), "--state", state, "--auto-approve", env=UNREACHABLE)

    assert_one_clear_error(result, f"{journal}:2", said, "keep it")
    assert files_of(state) == before


def test_a_postgres_state_with_an_address_without_a_slash_is_named_by_show(pg_url):
    """The same check where PostgreSQL's rows become a state: a row edited by hand in the database."""
    import psycopg

    assert run_subprocess("init", "--state", pg_url).returncode == 0
    with psycopg.connect(pg_url) as connection:
        connection.execute(
            "INSERT INTO provisioner.resources (workspace, address, resource) VALUES (%s, %s, %s)",
            ("default", "q1", json.dumps(RESOURCE)),
        )

    result = run_subprocess("show", "--state", pg_url, env=UNREACHABLE)

    assert_one_clear_error(result, "'q1' is not an address (expected client/batch)", "Nothing was changed")


# --- listed values that are not of their kind ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "adopted"),
    [
        ("startingBalance", "n/a", False),
        ("startingBalance", {"amount": 100}, False),
        ("clientId", 12345, True),
        ("clientId", "acme", True),
    ],
    ids=["balance-text", "balance-object", "client-number", "client-not-a-uuid"],
)
def test_a_listed_value_that_is_not_of_its_kind_is_unknown_never_another(
    sandbox, write_manifest, state, field, value, adopted
):
    """The create's answer is lost (the connection dropped once the server had it); the listing gives the
    batch's balance or client as something no balance or client id is. Taken for "another balance" or
    "another client", the batch was not the create's: after the window the create was sent again, two
    batches. Unreadable is unknown: with the balance unknown it is a look-alike (the run stops and names it),
    with the client unknown (the listing is that client's) the batch is adopted. Never a second create."""

    def rule(request: ProxiedRequest):
        if request.method == "POST":
            return DropThenCommit(after=0)

        def rewrite(answer: dict) -> dict:
            for batch in answer["data"]["APICreditBatchesByClientAndCreditAccount"]["creditBatches"]:
                batch[field] = value
            return answer

        return Forward(rewrite=rewrite)

    with FaultProxy(sandbox.url, rule) as proxy:
        result = run_subprocess(
            "apply",
            write_manifest(MANIFEST),
            "--state",
            state,
            "--auto-approve",
            "--recovery-wait",
            "1",
            env=env_for(proxy.url),
        )
        sent = proxy.posts()

    assert sent == 1 and len(sandbox.all_batches(ACME_ID)) == 1, f"the create was sent again:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    recorded = read_state(state)
    if adopted:
        assert result.returncode == 0, result.stderr
        assert recorded.resources["acme/q1"].batch_id == sandbox.all_batches(ACME_ID)[0]["id"]
    else:
        assert result.returncode == 1, result.stderr
        assert "will not create it again" in result.stderr, result.stderr
        assert set(recorded.pending) == {"acme/q1"}
