"""The audit trail: each change of recorded state with its event, in one durable step, hash-chained.

Real processes and a real sandbox throughout: applies killed with SIGKILL at random instants on
the file and PostgreSQL backends must leave no change without its event and no event without its
change; a byte altered in a stored event is found by `log --verify`; the log's filters and
formats; state pull/push carry the history and push refuses one that does not extend it.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import signal
import threading
import time
from collections import Counter

import psycopg
import pytest
from conftest import GLOBEX_ID, TEST_KEY, call_api, run_subprocess, two_client_manifest
from faultproxy import FaultProxy, Forward
from pg_applies import (
    declared,
    finish,
    start_apply,
    wait_until,
    write_manifest,
)

from provisioner.backends import open_backend
from provisioner.core.audit_trail import (
    GENESIS,
    Head,
    Note,
    digest_of,
    extends,
    issuers,
    seal,
    select,
    verify,
)
from provisioner.operations.run_context import gather_run_context
from provisioner.sandbox import Faults, Sandbox

CI = {
    "GITHUB_ACTOR": "octo-auditor",
    "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
    "GITHUB_SERVER_URL": "https://github.example",
    "GITHUB_REPOSITORY": "finance/credits",
    "GITHUB_RUN_ID": "4242",
    "GITHUB_REF": "refs/pull/17/merge",
}
RUN_URL = "https://github.example/finance/credits/actions/runs/4242"
KILL_TRIALS = int(os.environ.get("AUDIT_KILL_TRIALS", "4"))


def replayed(events: list[dict]) -> dict[str, str]:
    """address -> batch id, as the events tell it."""
    recorded: dict[str, str] = {}
    for event in events:
        action = event["action"]
        if action in ("create", "recover", "adopt", "update", "import", "generate", "refresh"):
            recorded[event["address"]] = event["batch_id"]
        elif action == "state-rm":
            del recorded[event["address"]]
        elif action == "state-mv":
            recorded[event["address"]] = recorded.pop(event["from_address"])
    return recorded


def events_and_state(location: str, workspace: str = "default") -> tuple[list[dict], dict[str, str]]:
    with open_backend(location, workspace) as backend:
        state = backend.read()
        events = backend.read_history()
    return events, {address: resource.batch_id for address, resource in state.resources.items()}


def assert_events_are_the_changes(location: str, workspace: str = "default") -> list[dict]:
    events, recorded = events_and_state(location, workspace)
    assert verify(events) is None, verify(events)
    told = replayed(events)
    assert told == recorded, (
        f"events without their change: {sorted(set(told.items()) - set(recorded.items()))}; "
        f"changes without their event: {sorted(set(recorded.items()) - set(told.items()))}"
    )
    return events


# --- the chain, pure ------------------------------------------------------------------------------


def chain(count: int) -> list[dict]:
    events, head = [], Head()
    for number in range(count):
        event = seal(
            Note("create", f"acme/b{number}", batch_id=f"id-{number}", credits=100),
            {"actor": "a"},
            "2026-01-02T03:04:05.000Z",
            "local",
            head,
        )
        events.append(event)
        head = Head.of(event)
    return events


def test_each_event_carries_the_digest_of_the_one_before_and_its_own():
    events = chain(3)
    assert events[0]["prev"] == GENESIS and [e["seq"] for e in events] == [1, 2, 3]
    assert events[1]["prev"] == events[0]["digest"] and events[2]["prev"] == events[1]["digest"]
    assert verify(events) is None
    assert "null" not in json.dumps(events)


def test_a_sealed_digest_is_the_digest_of_the_event_as_stored_whatever_its_text():
    run = {"actor": "zoë@büro", "reason": 'quarter "Q1" \\ café ✓', "commit": "abc1234"}
    event = seal(
        Note("state-mv", "acme/é", batch_id="1", from_address="acme/a", detail="x\ty"),
        run,
        "2026-01-02T03:04:05.000Z",
        "api",
        Head(41, "a" * 64),
    )
    stored = json.loads(json.dumps(event, ensure_ascii=False))
    assert stored["digest"] == digest_of(stored) and stored["seq"] == 42 and stored["prev"] == "a" * 64


@pytest.mark.parametrize(
    ("damage", "named"),
    [
        (lambda events: events[1].update(credits=101), "event 2 (create acme/b1): its content does not match"),
        (lambda events: events.pop(1), "event 3: expected event 2 here"),
        (lambda events: events[2].update(prev="f" * 64), "event 3 (create acme/b2): its prev does not match"),
        (lambda events: events[3].update(address="acme/other"), "event 4 (create acme/other): its content"),
    ],
)
def test_verify_names_the_first_event_that_does_not_match(damage, named):
    events = chain(5)
    damage(events)
    assert named in verify(events)


def test_a_history_extends_another_only_by_adding_to_its_end():
    events = chain(4)
    assert extends(events[:2], events) is None
    assert "fewer" in extends(events, events[:3])
    altered = [dict(event) for event in events]
    altered[1]["digest"] = "0" * 64
    assert "event 2 differs" in extends(events[:2], altered)


def test_issuers_follow_moves_and_forget_removed_batches():
    head, events = Head(), []
    for note in (
        Note("create", "acme/a", batch_id="1"),
        Note("import", "acme/b", batch_id="2"),
        Note("state-mv", "acme/c", batch_id="1", from_address="acme/a"),
        Note("state-rm", "acme/b", batch_id="2"),
    ):
        events.append(seal(note, {"actor": "x"}, "2026-01-01T00:00:00.000Z", "local", head))
        head = Head.of(events[-1])
    assert {address: event["batch_id"] for address, event in issuers(events).items()} == {"acme/c": "1"}
    assert [e["seq"] for e in select(events, addresses=["acme/a"])] == [1, 3]
    assert [e["seq"] for e in select(events, actions=["import", "state-rm"])] == [2, 4]


# --- the run context ------------------------------------------------------------------------------------


def test_the_run_context_comes_from_github_actions_and_never_carries_a_token(tmp_path):
    context = gather_run_context(
        "quarterly top-up", tmp_path, environ={**CI, "GITHUB_TOKEN": "ghs_secret", "TI_API_KEY": TEST_KEY}
    )
    assert context.fields() == {
        "version": context.version,
        "actor": "octo-auditor",
        "commit": CI["GITHUB_SHA"],
        "run_url": RUN_URL,
        "review": "17",
        "reason": "quarterly top-up",
    }
    assert "ghs_secret" not in repr(context) and TEST_KEY not in repr(context)


def test_the_run_context_from_gitlab_and_from_a_workstation(tmp_path):
    gitlab = gather_run_context(
        None,
        tmp_path,
        environ={
            "GITLAB_USER_LOGIN": "gl-user",
            "CI_COMMIT_SHA": "abcdef1234567",
            "CI_JOB_URL": "https://gitlab.example/j/9",
            "CI_MERGE_REQUEST_IID": "31",
            "PROVISIONER_REASON": "from\nthe\tenvironment",
        },
    )
    assert (gitlab.actor, gitlab.commit, gitlab.run_url, gitlab.review, gitlab.reason) == (
        "gl-user",
        "abcdef1234567",
        "https://gitlab.example/j/9",
        "31",
        "from the environment",
    )
    repository = tmp_path / "repo"
    repository.mkdir()

    def run_git(*args):
        return run_subprocess_git(repository, *args)

    run_git("init", "-q")
    run_git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "--allow-empty", "-m", "m")
    head = run_git("rev-parse", "HEAD").strip()
    local = gather_run_context(None, repository, environ={})
    assert local.commit == head and "@" in local.actor and local.run_url is None and local.reason is None


def run_subprocess_git(directory, *args: str) -> str:
    import subprocess

    return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, check=True).stdout


# --- the CLI, on a state file -----------------------------------------------------------------------------


@pytest.fixture
def ci_env(api_env, monkeypatch):
    for name, value in CI.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROVISIONER_REASON", "Q1 credits")
    return {**api_env, **CI}


def test_every_change_of_a_run_and_of_state_edits_is_in_the_log_with_who_and_why(ci_env, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", state, "--auto-approve").returncode == 0
    events = assert_events_are_the_changes(str(state))
    assert [e["action"] for e in events] == ["create"] * 3
    for event in events:
        assert (event["actor"], event["commit"], event["run_url"], event["review"], event["reason"]) == (
            "octo-auditor",
            CI["GITHUB_SHA"],
            RUN_URL,
            "17",
            "Q1 credits",
        )
        assert event["clock"] == "api" and len(event["plan_digest"]) == 64 and event["credits"] in (5000, 2500, 1200)
    assert len({e["plan_digest"] for e in events}) == 1
    address = events[0]["address"]
    moved = address.split("/")[0] + "/renamed"
    assert run_subprocess("state", "mv", address, moved, "--state", state, "--reason", "renamed key").returncode == 0
    assert run_subprocess("state", "rm", moved, "--state", state).returncode == 0
    events = assert_events_are_the_changes(str(state))
    assert [(e["action"], e["address"], e.get("from_address")) for e in events[3:]] == [
        ("state-mv", moved, address),
        ("state-rm", moved, None),
    ]
    assert events[3]["reason"] == "renamed key" and events[4]["reason"] == "Q1 credits"

    text = run_subprocess("log", "--state", state)
    assert text.returncode == 0
    assert text.stdout.index("#5") < text.stdout.index("#1")  # newest first
    assert "by octo-auditor" in text.stdout and RUN_URL in text.stdout
    about = json.loads(run_subprocess("log", address, "--format", "json", "--state", state).stdout)["events"]
    assert [e["seq"] for e in about] == [events[0]["seq"], 4]
    assert about[0] == events[0]  # every field
    rows = list(
        csv.DictReader(
            io.StringIO(run_subprocess("log", "--action", "state-rm", "--format", "csv", "--state", state).stdout)
        )
    )
    assert [(row["seq"], row["action"], row["actor"]) for row in rows] == [("5", "state-rm", "octo-auditor")]
    assert run_subprocess("log", "--since", "2999-01-01", "--state", state).stdout == "No events recorded.\n"
    client = address.split("/")[0]
    assert {
        e["address"].split("/")[0]
        for e in json.loads(run_subprocess("log", "--client", client, "--format", "json", "--state", state).stdout)[
            "events"
        ]
    } == {client}
    bad = run_subprocess("log", "--since", "yesterday", "--state", state)
    assert bad.returncode == 1 and "expected a date" in bad.stderr and "Traceback" not in bad.stderr


def test_one_byte_altered_in_a_stored_event_is_found_by_log_verify(ci_env, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", state, "--auto-approve").returncode == 0
    good = run_subprocess("log", "--verify", "--state", state)
    assert good.returncode == 0 and "3 event(s), the chain intact" in good.stdout
    history = state.with_name(state.name + ".history")
    data = bytearray(history.read_bytes())
    position = data.index(b'"credits":') + len(b'"credits":')
    data[position] = ord("9") if data[position] != ord("9") else ord("8")  # one byte: 5000 -> 9000
    history.write_bytes(bytes(data))
    found = run_subprocess("log", "--verify", "--state", state)
    assert found.returncode == 1 and "Traceback" not in found.stderr
    assert "does not verify: event 1 (create" in found.stderr and "does not match its digest" in found.stderr


def test_import_is_an_event_and_so_is_force_unlock(ci_env, sandbox, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    batch = call_api(
        sandbox, "POST", f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches", {"name": "starter", "startingBalance": 1200}
    )
    imported = run_subprocess("import", "globex/starter", batch["id"], manifest, "--state", state, "--reason", "adopt")
    assert imported.returncode == 0, imported.stderr
    lock = state.with_name(state.name + ".lock")
    lock.write_text(
        json.dumps(
            {
                "id": "dead-lock",
                "pid": 1,
                "host": "elsewhere",
                "user": "u",
                "command": "apply",
                "created": "2026-01-01T00:00:00+00:00",
                "process_start": None,
            }
        )
    )
    unlocked = run_subprocess("force-unlock", "dead-lock", "--state", state, "--reason", "runner died")
    assert unlocked.returncode == 0, unlocked.stderr
    events = assert_events_are_the_changes(str(state))
    assert [(e["action"], e.get("address"), e["reason"]) for e in events] == [
        ("import", "globex/starter", "adopt"),
        ("force-unlock", None, "runner died"),
    ]
    assert events[0]["batch_id"] == batch["id"] and "dead-lock" in events[1]["detail"]


def test_pull_carries_the_history_and_push_refuses_one_that_does_not_extend_it(ci_env, write_manifest, state, tmp_path):
    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", state, "--auto-approve").returncode == 0
    pulled = run_subprocess("state", "pull", "--state", state).stdout
    assert len(json.loads(pulled)["history"]) == 3
    # Into a fresh state: the history goes along, and the push is its next event.
    other = tmp_path / "other" / "default.json"
    assert run_subprocess("init", "--state", other).returncode == 0
    pushed = run_subprocess("state", "push", "-", "--state", other, input=pulled)
    assert pushed.returncode == 0, pushed.stderr
    events = assert_events_are_the_changes(str(other))
    assert [e["action"] for e in events] == ["create", "create", "create", "state-push"]
    assert events[:3] == json.loads(pulled)["history"]
    # A copy whose history was rewritten, or cut short, is refused; nothing changes.
    document = json.loads(pulled)
    document["history"][0]["reason"] = "rewritten"
    document["serial"] += 10
    refused = run_subprocess("state", "push", "-", "--state", other, input=json.dumps(document))
    assert refused.returncode == 1 and "does not verify" in refused.stderr
    shorter = json.loads(pulled)
    shorter["history"] = shorter["history"][:1]
    shorter["serial"] += 10
    shorter["resources"].pop("acme/q2")  # another state: the same one would be "nothing changed"
    refused = run_subprocess("state", "push", "-", "--state", other, input=json.dumps(shorter))
    assert refused.returncode == 1 and "does not extend" in refused.stderr and "Traceback" not in refused.stderr
    assert events_and_state(str(other))[0] == events
    # --force pushes the state, never its history: the recorded one stays, and the push says so.
    forced = run_subprocess("state", "push", "-", "--state", other, "--force", input=json.dumps(document))
    assert forced.returncode == 0, forced.stderr
    after = assert_events_are_the_changes(str(other))
    assert after[:4] == events and after[4]["action"] == "state-push" and "was not carried" in after[4]["detail"]


def test_show_html_names_who_issued_each_batch_and_links_the_run(ci_env, write_manifest, state):
    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", state, "--auto-approve").returncode == 0
    page = run_subprocess("show", "--format", "html", "--state", state)
    assert page.returncode == 0, page.stderr
    assert page.stdout.count(f'href="{RUN_URL}"') == 3 and "octo-auditor" in page.stdout


# --- kill -9 at random instants, both backends ---------------------------------------------------------


class CreateCounter:
    """A proxy rule counting the creates that reach the API."""

    def __init__(self):
        self.creates = 0
        self._guard = threading.Lock()

    def __call__(self, request) -> Forward:
        if request.method == "POST":
            with self._guard:
                self.creates += 1
        return Forward()


@pytest.mark.parametrize("kind", ["file", "postgres"])
def test_applies_killed_at_random_instants_leave_no_change_without_its_event(kind, request, tmp_path, monkeypatch):
    for name, value in CI.items():
        monkeypatch.setenv(name, value)
    chance = random.Random(21)
    seen: Counter = Counter()
    faults = Faults(
        latency=0.02,
        error_rate=0.05,
        error_after_commit_rate=0.05,
        drop_after_commit_rate=0.05,
        retry_after=0.05,
        seed=21,
    )
    with Sandbox(api_key=TEST_KEY, page_size=5, faults=faults) as sandbox:
        for trial in range(KILL_TRIALS):
            tag = f"audit-{kind}-{trial}"
            manifest = write_manifest(tmp_path / tag, tag)
            if kind == "postgres":
                location, workspace = request.getfixturevalue("pg_url"), tag
            else:
                location, workspace = str(tmp_path / tag / "state" / "default.json"), "default"
            with open_backend(location, workspace) as backend:
                backend.create()
            counter = CreateCounter()
            with FaultProxy(sandbox.url, counter) as proxy:
                killed = start_apply(manifest, location, workspace, proxy.url, "--parallelism", "4")
                creates_before_kill = chance.randint(1, len(declared(manifest)) - 2)
                wait_until(
                    lambda counter=counter, creates_before_kill=creates_before_kill, killed=killed: (
                        counter.creates >= creates_before_kill or killed.poll() is not None
                    ),
                    "creates reach the API",
                )
                time.sleep(chance.uniform(0, 0.05))
                killed.send_signal(signal.SIGKILL)
                finish(killed)
                assert_events_are_the_changes(location, workspace)
                for _ in range(6):
                    code, _, err = finish(start_apply(manifest, location, workspace, proxy.url))
                    assert "Traceback" not in err
                    assert_events_are_the_changes(location, workspace)
                    if code == 0:
                        break
                else:
                    raise AssertionError(f"trial {trial}: no apply succeeded: {err}")
            events = assert_events_are_the_changes(location, workspace)
            assert set(replayed(events)) == set(declared(manifest))
            assert {e["actor"] for e in events} == {"octo-auditor"}
            assert {e["action"] for e in events} <= {"create", "recover", "adopt"}
            seen.update(e["action"] for e in events)
    print(f"\n{kind}: {KILL_TRIALS} applies killed at random instants; events by action: {dict(seen)}")


# --- PostgreSQL: its own table, append-only for the apply role -------------------------------------------


def test_postgres_history_is_a_table_the_apply_role_can_only_append_to(pg_url, sandbox, ci_env, write_manifest):
    assert run_subprocess("init", "--state", pg_url).returncode == 0
    admin_url = pg_url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS provisioner_apply")
        conn.execute("CREATE ROLE provisioner_apply LOGIN")
        # The grants of docs/audit-trail.md.
        conn.execute("GRANT USAGE ON SCHEMA provisioner TO provisioner_apply")
        conn.execute("GRANT SELECT ON provisioner.meta TO provisioner_apply")
        conn.execute(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON provisioner.workspaces, provisioner.resources, "
            "provisioner.intents, provisioner.locks TO provisioner_apply"
        )
        conn.execute("GRANT SELECT, INSERT ON provisioner.history TO provisioner_apply")
        conn.execute("GRANT SELECT, INSERT ON provisioner.client_claims TO provisioner_apply")
    apply_url = admin_url.replace("postgres@", "provisioner_apply@", 1)
    try:
        manifest = write_manifest(two_client_manifest())
        applied = run_subprocess("apply", manifest, "--state", apply_url, "--auto-approve")
        assert applied.returncode == 0, applied.stderr
        events = assert_events_are_the_changes(apply_url)
        assert [e["action"] for e in events] == ["create"] * 3
        with psycopg.connect(apply_url, autocommit=True) as conn:
            for statement in (
                "UPDATE provisioner.history SET event = event",
                "DELETE FROM provisioner.history",
                "TRUNCATE provisioner.history",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        # The owner can alter a row; log --verify names it.
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE provisioner.history SET event = replace(event::text, '\"credits\":2500', "
                "'\"credits\":2501')::json WHERE event::text LIKE '%\"credits\":2500%'"
            )
        found = run_subprocess("log", "--verify", "--state", apply_url)
        assert found.returncode == 1 and "does not match its digest" in found.stderr
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute("DROP OWNED BY provisioner_apply")
            conn.execute("DROP ROLE provisioner_apply")


def test_a_schema_of_the_release_before_gets_its_history_table_on_the_first_write(pg_url, ci_env, write_manifest):
    assert run_subprocess("init", "--state", pg_url).returncode == 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP TABLE provisioner.history")  # the release before had neither table
        conn.execute("DROP TABLE provisioner.client_claims")
        conn.execute("UPDATE provisioner.meta SET value = '1' WHERE key = 'schema_version'")
    assert run_subprocess("log", "--state", pg_url).stdout == "No events recorded.\n"
    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", pg_url, "--auto-approve").returncode == 0
    assert [e["action"] for e in assert_events_are_the_changes(pg_url)] == ["create"] * 3


def test_giving_up_an_interrupted_create_is_an_event_with_its_credits(tmp_path):
    from provisioner.backends.file import FileBackend
    from provisioner.core.models import Intent

    backend = FileBackend(tmp_path / "default.json")
    backend.create()
    with backend.writing("state forget-intent", run={"actor": "alice@desk", "reason": "settled by hand"}) as writer:
        writer.record_intent(
            Intent(
                address="acme/q1",
                client_id="c",
                attributes={"startingBalance": 300},
                digest="0" * 64,
                at="2026-01-02T03:04:05.000Z",
            )
        )
        writer.clear_intent("acme/q1", "forget-intent")
    (event,) = backend.read_history()
    assert (event["action"], event["address"], event["credits"], event["actor"], event["reason"], event["clock"]) == (
        "forget-intent",
        "acme/q1",
        300,
        "alice@desk",
        "settled by hand",
        "local",
    )
    assert "batch_id" not in event and verify([event]) is None


def test_log_of_a_state_that_does_not_exist_says_so(tmp_path):
    result = run_subprocess("log", "--state", tmp_path / "nowhere.json")
    assert result.returncode == 1 and "there is no state" in result.stderr and "Traceback" not in result.stderr


PUSH_KILLED = """
import os, signal, sys
from pathlib import Path
from provisioner.backends import file as backend
from provisioner.backends.file import FileBackend, read_history
from provisioner.core.audit_trail import Note
from provisioner.operations.state_edits import push_state, read_pushed_state

path, pulled, where = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]

def killed(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

if where == "before the snapshot":
    backend.write_snapshot = killed
else:
    backend.append_history = killed
state, history = read_pushed_state(pulled)
with FileBackend(path).writing("state push", run={"actor": "pusher"}) as writer:
    push_state(writer, state, history=history, recorded_history=read_history(path))
"""


@pytest.mark.parametrize("where", ["before the snapshot", "after the snapshot, before filing"])
def test_a_push_killed_leaves_the_state_and_its_event_together(ci_env, write_manifest, state, tmp_path, where):
    import subprocess
    import sys

    from provisioner.backends.file import FileWriter, history_path

    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", state, "--auto-approve").returncode == 0
    document = json.loads(run_subprocess("state", "pull", "--state", state).stdout)
    del document["resources"]["acme/q1"]  # what the push changes
    document["serial"] += 1
    pulled = tmp_path / "pulled.json"
    pulled.write_text(json.dumps(document))
    killed = subprocess.run(
        [sys.executable, "-c", PUSH_KILLED, str(state), str(pulled), where], capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -9, killed.stderr

    events, recorded = events_and_state(str(state))
    pushed = where != "before the snapshot"
    assert ("acme/q1" not in recorded) == pushed
    assert [e["action"] for e in events] == ["create"] * 3 + (["state-push"] if pushed else [])
    assert verify(events) is None
    FileWriter(state).close()  # the next writer files what the snapshot carried
    assert events_and_state(str(state))[0] == events
    filed = [json.loads(line) for line in history_path(state).read_text().splitlines()]
    assert filed == events and run_subprocess("log", "--verify", "--state", state).returncode == 0


def test_a_state_file_whose_snapshot_still_carries_its_last_events_is_pushed_with_its_whole_history(
    ci_env, write_manifest, state, tmp_path
):
    """A push into a state file (and a generated import) writes a snapshot that carries its own events
    until the next write: only those, the history file holds the rest. Moving that file to another state
    (the documented move to PostgreSQL) must take its whole history, not the snapshot's tail."""
    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", state, "--auto-approve").returncode == 0
    document = json.loads(run_subprocess("state", "pull", "--state", state).stdout)
    del document["resources"]["acme/q1"]
    document["serial"] += 1
    pushed = run_subprocess("state", "push", "-", "--state", state, input=json.dumps(document))
    assert pushed.returncode == 0, pushed.stderr
    assert len(json.loads(state.read_text())["history"]) == 1  # the push's event, carried by its snapshot
    events = events_and_state(str(state))[0]
    assert verify(events) is None and [e["action"] for e in events] == ["create"] * 3 + ["state-push"]

    other = tmp_path / "other" / "default.json"
    assert run_subprocess("init", "--state", other).returncode == 0
    moved = run_subprocess("state", "push", state, "--state", other)

    assert moved.returncode == 0, moved.stderr
    carried = events_and_state(str(other))[0]
    assert verify(carried) is None and carried[:4] == events and [e["action"] for e in carried[4:]] == ["state-push"]


def test_a_push_of_the_same_batches_with_events_the_target_lacks_is_not_called_another_state(
    ci_env, write_manifest, state, tmp_path
):
    """A copy taken before a lock was removed (an event, and no change to the batches) is brought up to
    date by pushing the state again: the same batches at the same serial, and a history that extends the
    copy's. The push carries the event; it must not be refused as two states that "record different things"."""
    manifest = write_manifest(two_client_manifest())
    assert run_subprocess("apply", manifest, "--state", state, "--auto-approve").returncode == 0
    copy = tmp_path / "copy.json"
    copy.write_text(run_subprocess("state", "pull", "--state", state).stdout)
    state.with_name(state.name + ".lock").write_text(
        json.dumps(
            {
                "id": "dead-lock",
                "pid": 1,
                "host": "elsewhere",
                "user": "u",
                "command": "apply",
                "created": "2026-01-01T00:00:00+00:00",
                "process_start": None,
            }
        )
    )
    assert run_subprocess("force-unlock", "dead-lock", "--state", state).returncode == 0
    events = events_and_state(str(state))[0]
    assert [e["action"] for e in events] == ["create"] * 3 + ["force-unlock"]
    assert json.loads(copy.read_text())["serial"] == json.loads(state.read_text())["serial"]

    pushed = run_subprocess("state", "push", state, "--state", copy)

    assert pushed.returncode == 0, pushed.stderr
    carried = events_and_state(str(copy))[0]
    assert verify(carried) is None and carried[:4] == events and carried[4]["action"] == "state-push"
    assert json.loads(copy.read_text())["serial"] == json.loads(state.read_text())["serial"]  # the batches as they were
