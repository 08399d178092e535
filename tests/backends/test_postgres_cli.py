"""Every command on a PostgreSQL state, as a user runs it: in-process (CliRunner) and as real processes.

Each test has a database of its own on the session's server (tests/pg.py) and the sandbox API.
"""

from __future__ import annotations

import json
import shlex
import textwrap
import threading
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from conftest import init_state, run_subprocess, two_client_manifest
from markdown_it import MarkdownIt
from pg import start_server

from provisioner.backends import open_backend
from provisioner.backends.file import FileWriter, journal_path, read_state
from provisioner.core.models import Intent

EXTRA_CLIENT = """
clients:
  initech:
    id: 9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
    batches:
      extra:
        startingBalance: 999
"""


def read(url: str, workspace: str = "default"):
    with open_backend(url, workspace) as backend:
        return backend.read()


def assert_refused(result, *phrases: str) -> str:
    """Exit 1 with one message and no traceback; returns the message."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.stderr.count("Error: ") == 1, result.stderr
    message = result.stderr[result.stderr.index("Error: ") :]
    for phrase in phrases:
        assert phrase in message, message
    return message


@pytest.fixture
def manifest(write_manifest):
    return write_manifest(two_client_manifest())


@pytest.fixture
def initialised(cli, pg_url):
    """The workspace 'default' of a fresh database, created by 'provisioner init'."""
    result = cli("init", "--state", pg_url)
    assert result.exit_code == 0, result.output
    return pg_url


@pytest.fixture
def applied(cli, api_env, sandbox, manifest, initialised):
    """Three batches (acme/q1, acme/q2, globex/starter) created and recorded in PostgreSQL."""
    result = cli("apply", manifest, "--state", initialised, "--auto-approve")
    assert result.exit_code == 0, result.output
    return initialised


# --- init and the first runs -------------------------------------------------------------------------


def test_init_plan_apply_then_nothing_to_do(cli, api_env, sandbox, manifest, pg_url):
    initialised = cli("init", "--state", pg_url)
    assert initialised.exit_code == 0, initialised.output
    assert "workspace default" in initialised.stdout and f"--state {shlex.quote(pg_url)}" in initialised.stdout
    lineage = read(pg_url).lineage
    assert lineage in initialised.stdout

    planned = cli("plan", manifest, "--state", pg_url)
    assert planned.exit_code == 0, planned.output
    assert "Plan: 3 to create, 0 to update" in planned.stdout

    applied = cli("apply", manifest, "--state", pg_url, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    assert "Apply complete! Batches: 3 created" in applied.stdout

    state = read(pg_url)
    assert state.lineage == lineage and state.serial == 1 and not state.pending
    assert {resource.batch_id for resource in state.resources.values()} == {b["id"] for b in sandbox.all_batches()}
    again = cli("apply", manifest, "--state", pg_url, "--auto-approve")
    assert again.exit_code == 0 and "No changes" in again.stdout
    assert len(sandbox.all_batches()) == 3 and read(pg_url).serial == 1

    refused = cli("init", "--state", pg_url)
    assert_refused(refused, "already exists", "workspace default")


def test_the_quick_start_runs_as_real_processes_on_postgres(api_env, sandbox, manifest, pg_url):
    assert run_subprocess("init", "--state", pg_url).returncode == 0
    applied = run_subprocess("apply", manifest, "--state", pg_url, "--auto-approve")
    assert applied.returncode == 0, applied.stderr
    listed = run_subprocess("state", "list", "--state", pg_url)
    assert listed.returncode == 0, listed.stderr
    assert sorted(line.split()[0] for line in listed.stdout.splitlines()) == ["acme/q1", "acme/q2", "globex/starter"]
    pulled = run_subprocess("state", "pull", "--state", pg_url)
    assert json.loads(pulled.stdout)["resources"].keys() == read(pg_url).resources.keys()


@pytest.mark.parametrize(
    "command",
    [
        ["plan", "{manifest}"],
        ["plan", "{manifest}", "--refresh"],
        ["apply", "{manifest}", "--auto-approve"],
        ["refresh", "{manifest}"],
        ["import", "acme/q1", "b-1", "{manifest}"],
        ["show"],
        ["state", "list"],
        ["state", "show", "acme/q1"],
        ["state", "rm", "acme/q1"],
        ["state", "mv", "acme/q1", "acme/q9"],
        ["state", "pull"],
        ["state", "forget-intent", "acme/q1", "--auto-approve"],
        ["force-unlock", "0000"],
    ],
    ids=lambda command: " ".join(word for word in command if not word.startswith("{")),
)
def test_every_command_refuses_a_workspace_that_does_not_exist(cli, api_env, sandbox, manifest, pg_url, command):
    args = [word.format(manifest=manifest) for word in command]

    result = cli(*args, "--state", pg_url, "--workspace", "staging")

    message = assert_refused(result, "there is no state at", "workspace staging", "provisioner init --state")
    assert "--workspace staging" in message
    assert sandbox.all_batches() == [] and not [line for line in sandbox.request_log if line[0] == "POST"]
    with open_backend(pg_url, "staging") as backend:
        assert not backend.exists()


def test_the_embedded_sandbox_keeps_its_own_state_file_and_refuses_a_database(cli, manifest, pg_url):
    result = cli("plan", manifest, "--sandbox", "--state", pg_url)

    assert_refused(result, "--sandbox keeps its own state file", "TI_BASE_URL")
    with open_backend(pg_url) as backend:
        assert not backend.exists()


# --- plans in every format, saved plans -------------------------------------------------------------


def test_plan_in_every_format_is_the_same_from_postgres_as_from_its_pulled_file(
    cli, api_env, sandbox, applied, manifest, write_manifest, tmp_path
):
    write_manifest(EXTRA_CLIENT, name="initech.yaml")
    pulled = tmp_path / "pulled.json"
    pulled.write_text(cli("state", "pull", "--state", applied).stdout)

    for output_format in ("text", "json", "markdown"):
        from_postgres = cli("plan", manifest.parent, "--state", applied, "--refresh", "--format", output_format)
        from_file = cli("plan", manifest.parent, "--state", pulled, "--refresh", "--format", output_format)
        assert from_postgres.exit_code == 0, from_postgres.output
        assert from_postgres.stdout == from_file.stdout, output_format

    text = cli("plan", manifest.parent, "--state", applied, "--no-color").stdout
    assert '+ batch "initech/extra"' in text and "Plan: 1 to create, 0 to update, 0 blocked, 3 unchanged" in text
    document = json.loads(cli("plan", manifest.parent, "--state", applied, "--format", "json").stdout)
    assert [(change["address"], change["action"]) for change in document["changes"]] == [("initech/extra", "create")]
    markdown = cli("plan", manifest.parent, "--state", applied, "--format", "markdown").stdout
    assert any(token.type == "table_open" for token in MarkdownIt("commonmark").enable("table").parse(markdown))
    assert "initech/extra" in markdown


def test_a_saved_plan_applies_once_and_repeats_the_state_options(cli, api_env, sandbox, manifest, pg_url, tmp_path):
    assert cli("init", "--state", pg_url, "--workspace", "prod").exit_code == 0
    plan_file = tmp_path / "reviewed.plan"

    planned = cli("plan", manifest, "--state", pg_url, "--workspace", "prod", "--out", plan_file)
    assert planned.exit_code == 0, planned.output
    hint = planned.stderr.split("Apply exactly this plan with: ")[1].strip()
    assert shlex.split(hint) == ["provisioner", "apply", str(plan_file), "--state", pg_url, "--workspace", "prod"]

    applied = cli(*shlex.split(hint)[1:])
    assert applied.exit_code == 0, applied.output
    assert "Apply complete! Batches: 3 created" in applied.stdout
    assert len(read(pg_url, "prod").resources) == 3

    again = cli(*shlex.split(hint)[1:])
    assert_refused(again, "already applied", "serial 1 now", "made at 0")
    assert len(sandbox.all_batches()) == 3


def test_a_stale_saved_plan_is_refused(cli, api_env, sandbox, applied, manifest, write_manifest, tmp_path):
    plan_file = tmp_path / "reviewed.plan"
    write_manifest(two_client_manifest(acme_name="Reviewed name"))
    assert cli("plan", manifest, "--state", applied, "--out", plan_file).exit_code == 0
    other = write_manifest(EXTRA_CLIENT, name="initech.yaml")
    assert cli("apply", other, "--state", applied, "--auto-approve").exit_code == 0
    before = sandbox.all_batches()

    refused = cli("apply", plan_file, "--state", applied)

    assert_refused(refused, "stale", "serial 1 then, 2 now", "plan --out")
    assert sandbox.all_batches() == before
    assert "Reviewed name" not in {batch["name"] for batch in sandbox.all_batches()}


def test_a_plan_for_another_workspace_is_refused_as_another_state(cli, api_env, sandbox, applied, manifest, tmp_path):
    assert cli("init", "--state", applied, "--workspace", "staging").exit_code == 0
    plan_file = tmp_path / "reviewed.plan"
    assert cli("plan", manifest, "--state", applied, "--workspace", "staging", "--out", plan_file).exit_code == 0

    refused = cli("apply", plan_file, "--state", applied)

    assert_refused(refused, "another state", read(applied, "staging").lineage, read(applied).lineage)
    assert len(sandbox.all_batches()) == 3


def test_a_plan_made_on_postgres_applies_to_the_file_it_was_pulled_into(
    cli, api_env, sandbox, applied, manifest, write_manifest, tmp_path
):
    # The same lineage, serial and content digest: the same state, wherever it lives.
    write_manifest(EXTRA_CLIENT, name="initech.yaml")
    plan_file = tmp_path / "reviewed.plan"
    assert cli("plan", manifest.parent, "--state", applied, "--out", plan_file).exit_code == 0
    pulled = tmp_path / "state" / "default.json"
    pulled.parent.mkdir()
    pulled.write_text(cli("state", "pull", "--state", applied).stdout)

    result = cli("apply", plan_file, "--state", pulled)

    assert result.exit_code == 0, result.output
    assert "1 created" in result.stdout and len(sandbox.all_batches()) == 4


# --- refresh, import, state edits, show ------------------------------------------------------------------


def test_refresh_import_and_every_state_edit(cli, api_env, sandbox, applied, manifest):
    q1 = read(applied).resources["acme/q1"].batch_id

    listed = cli("state", "list", "--state", applied)
    assert listed.exit_code == 0 and f"acme/q1         {q1}" in listed.stdout
    shown = cli("state", "show", "acme/q1", "--state", applied)
    assert json.loads(shown.stdout)["batch_id"] == q1

    removed = cli("state", "rm", "acme/q1", "--state", applied)
    assert removed.exit_code == 0, removed.output
    assert "acme/q1" not in read(applied).resources
    planned = cli("plan", manifest, "--state", applied, "--refresh", "--format", "json")
    blocked = [change for change in json.loads(planned.stdout)["changes"] if change["address"] == "acme/q1"]
    assert [change["action"] for change in blocked] == ["blocked"], "the duplicate guard sees the unrecorded batch"

    imported = cli("import", "acme/q1", q1, manifest, "--state", applied)
    assert imported.exit_code == 0, imported.output
    assert read(applied).resources["acme/q1"].batch_id == q1

    moved = cli("state", "mv", "acme/q2", "acme/second", "--state", applied)
    assert moved.exit_code == 0, moved.output
    assert set(read(applied).resources) == {"acme/q1", "acme/second", "globex/starter"}
    assert cli("state", "mv", "acme/second", "acme/q2", "--state", applied).exit_code == 0

    serial = read(applied).serial
    refreshed = cli("refresh", manifest, "--state", applied)
    assert refreshed.exit_code == 0 and "Refreshed 3 recorded batches." in refreshed.stdout
    assert read(applied).serial == serial, "nothing changed in the API: nothing changed in state"
    assert cli("apply", manifest, "--state", applied, "--auto-approve").stdout.count("No changes") == 1
    assert len(sandbox.all_batches()) == 3


def test_forget_intent_gives_up_an_interrupted_create(cli, api_env, sandbox, applied):
    attributes = {"clientId": "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", "name": "extra", "startingBalance": 999}
    with open_backend(applied) as backend, backend.writing("apply") as writer:
        writer.record_intent(
            Intent(
                address="initech/extra",
                client_id=attributes["clientId"],
                attributes=attributes,
                digest="d",
                at="2026-01-01T00:00:00.000Z",
            )
        )
    listed = cli("state", "list", "--state", applied)
    assert "initech/extra   (create interrupted" in listed.stdout

    forgot = cli(
        "state", "forget-intent", "initech/extra", "--state", applied, "--auto-approve", "--recovery-wait", "0"
    )

    assert forgot.exit_code == 0, forgot.output
    assert "No unclaimed batch of its client looks like it" in forgot.stdout
    assert not read(applied).pending


def test_show_reports_the_recorded_credits_and_when_they_were_written(cli, api_env, applied, tmp_path):
    shown = cli("show", "--state", applied, "--format", "json")
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    assert report["totals"]["issued"] == 5000 + 2500 + 1200
    text = cli("show", "--state", applied)
    assert "as recorded in state at" in text.stdout

    refused = cli("show", "--state", applied, "--out", tmp_path / "m.yaml")
    assert_refused(refused, "read as a manifest")


# --- workspaces, PROVISIONER_STATE ------------------------------------------------------------------------


def test_two_workspaces_in_one_database_are_two_states(cli, api_env, sandbox, manifest, write_manifest, pg_url):
    extra = write_manifest(EXTRA_CLIENT, name="initech.yaml")
    for workspace in ("staging", "production"):
        assert cli("init", "--state", pg_url, "--workspace", workspace).exit_code == 0
    assert cli("apply", manifest, "--state", pg_url, "--workspace", "production", "--auto-approve").exit_code == 0

    staging = cli("apply", extra, "--state", pg_url, "--workspace", "staging", "--auto-approve")
    assert staging.exit_code == 0, staging.output

    assert set(read(pg_url, "production").resources) == {"acme/q1", "acme/q2", "globex/starter"}
    assert set(read(pg_url, "staging").resources) == {"initech/extra"}
    assert read(pg_url, "production").lineage != read(pg_url, "staging").lineage
    with open_backend(pg_url, "production") as backend, backend.lock("apply"):
        # One workspace's lock leaves the other free.
        assert cli("state", "rm", "initech/extra", "--state", pg_url, "--workspace", "staging").exit_code == 0
        held = cli("state", "rm", "acme/q1", "--state", pg_url, "--workspace", "production")
        assert_refused(held, "locked by another run", "workspace production")


def test_provisioner_state_and_workspace_come_from_the_environment(api_env, sandbox, manifest, pg_url, tmp_path):
    env = {"PROVISIONER_STATE": pg_url, "PROVISIONER_WORKSPACE": "ci"}
    assert run_subprocess("init", env=env).returncode == 0
    plan_file = tmp_path / "reviewed.plan"
    planned = run_subprocess("plan", manifest, "--out", plan_file, env=env)
    assert planned.returncode == 0, planned.stderr
    # The location came from the environment (maybe with a password): the hint does not spell it out.
    assert planned.stderr.strip().endswith(f"provisioner apply {plan_file} --workspace ci")
    assert "--state" not in planned.stderr

    applied = run_subprocess("apply", plan_file, env=env)
    assert applied.returncode == 0, applied.stderr
    assert len(read(pg_url, "ci").resources) == 3
    with open_backend(pg_url) as default:
        assert not default.exists(), "the environment chose workspace ci"


# --- state push and pull: from a file to PostgreSQL and back ------------------------------------------------


def interrupted_file_state(cli, manifest, path):
    """A state file of three batches and a journal left by a killed run (one more result, one open intent)."""
    init_state(path)
    assert cli("apply", manifest, "--state", path, "--auto-approve").exit_code == 0
    writer = FileWriter(path)
    writer.record_intent(
        Intent(
            address="initech/extra",
            client_id="9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
            attributes={"startingBalance": 999},
            digest="d",
            at="2026-01-01T00:00:00.000Z",
        )
    )
    del writer  # killed: only the journal knows
    assert journal_path(path).exists()
    return read_state(path)


def test_a_team_moves_its_state_file_to_postgres_and_back(cli, api_env, sandbox, manifest, pg_url, tmp_path):
    file_state = tmp_path / "state" / "default.json"
    original = interrupted_file_state(cli, manifest, file_state)
    assert run_subprocess("init", "--state", pg_url).returncode == 0

    pushed = run_subprocess("state", "push", file_state, "--state", pg_url)

    assert pushed.returncode == 0, pushed.stderr
    assert "Pushed 3 batches and 1 interrupted create(s)" in pushed.stdout
    in_postgres = read(pg_url)
    assert in_postgres == original, "lineage, serial, resources and the journal's intent, as the file had them"
    assert in_postgres.serial == 1 and set(in_postgres.pending) == {"initech/extra"}

    # ... and back: what 'state pull' prints is a state file.
    pulled = run_subprocess("state", "pull", "--state", pg_url)
    back = tmp_path / "back" / "default.json"
    back.parent.mkdir()
    back.write_text(pulled.stdout)
    assert read_state(back) == original
    init_state(tmp_path / "empty.json")
    via_stdin = run_subprocess("state", "push", "-", "--state", tmp_path / "empty.json", input=pulled.stdout)
    assert via_stdin.returncode == 0, via_stdin.stderr
    assert read_state(tmp_path / "empty.json") == original


def test_push_refuses_another_lineage_and_a_newer_target_unless_forced(
    cli, api_env, sandbox, applied, manifest, tmp_path
):
    stranger = tmp_path / "stranger.json"
    init_state(stranger)
    assert (
        cli(
            "apply",
            manifest,
            "--state",
            stranger,
            "--auto-approve",
            "--allow-duplicate",
            "acme/q1",
            "--allow-duplicate",
            "acme/q2",
            "--allow-duplicate",
            "globex/starter",
        ).exit_code
        == 0
    )
    before = read(applied)

    refused = cli("state", "push", stranger, "--state", applied)
    assert_refused(refused, "another state", before.lineage, read_state(stranger).lineage, "--force")
    assert read(applied) == before

    older = tmp_path / "older.json"
    older.write_text(json.dumps({**json.loads(cli("state", "pull", "--state", applied).stdout), "serial": 0}))
    with open_backend(applied) as backend, backend.writing("apply") as writer:
        writer.forget("acme/q2")  # serial 2 now
    newer = read(applied)
    refused = cli("state", "push", older, "--state", applied)
    assert_refused(refused, "serial 2, newer than the file's 0", "--force")
    assert read(applied) == newer

    forced = cli("state", "push", stranger, "--state", applied, "--force")
    assert forced.exit_code == 0, forced.output
    assert "It replaced 2 recorded batches." in forced.stdout
    now = read(applied)
    assert now.lineage == read_state(stranger).lineage and now.resources == read_state(stranger).resources
    assert now.serial == newer.serial + 1, "a forced push still moves the serial on"


def test_a_fresh_file_pushed_into_postgres_keeps_its_serial_and_its_saved_plan(
    cli, api_env, sandbox, manifest, initialised, tmp_path
):
    file_state = init_state(tmp_path / "state" / "default.json")  # serial 0, nothing recorded
    plan_file = tmp_path / "provisioner.plan"
    assert cli("plan", manifest, "--state", file_state, "--out", plan_file).exit_code == 0

    pushed = cli("state", "push", file_state, "--state", initialised)
    assert pushed.exit_code == 0, pushed.output
    assert read(initialised).serial == 0 and read(initialised).lineage == read_state(file_state).lineage

    again = cli("state", "push", file_state, "--state", initialised)
    assert again.exit_code == 0, again.output
    assert "already records exactly this" in again.stdout and "nothing changed" in again.stdout
    assert read(initialised).serial == 0

    applied = cli("apply", plan_file, "--state", initialised)  # the plan saved against the file
    assert applied.exit_code == 0, applied.output
    assert sandbox.stats["creates"] == 3 and len(read(initialised).resources) == 3


def test_pushing_identical_content_changes_nothing_and_a_saved_plan_stays_valid(
    cli, api_env, sandbox, applied, manifest, write_manifest, tmp_path
):
    pulled = tmp_path / "pulled.json"
    pulled.write_text(cli("state", "pull", "--state", applied).stdout)
    before = read(applied)
    plan_file = tmp_path / "more.plan"
    more = write_manifest(two_client_manifest(acme_name="Acme Q1 renamed"), "more.yaml")
    assert cli("plan", more, "--state", applied, "--out", plan_file).exit_code == 0

    for target in (applied, pulled):  # the database, and a file pushed into itself
        same = cli("state", "push", pulled, "--state", target)
        assert same.exit_code == 0, same.output
        assert f"serial {before.serial}): nothing changed" in same.stdout
    assert read(applied) == before and read_state(pulled).serial == before.serial

    assert cli("apply", plan_file, "--state", applied).exit_code == 0, "the plan is still valid"


def test_push_waits_for_the_lock_like_any_edit(cli, api_env, applied, tmp_path):
    pulled = tmp_path / "pulled.json"
    pulled.write_text(cli("state", "pull", "--state", applied).stdout)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with open_backend(applied) as backend, backend.lock("apply"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        assert_refused(cli("state", "push", pulled, "--state", applied), "locked by another run", "Command: apply")
    finally:
        release.set()
        thread.join(10)
    assert cli("state", "push", pulled, "--state", applied).exit_code == 0


def documented_read_only_role_sql() -> str:
    """The SQL the manual (docs/state.md) gives for the CI's read-only role, as written there."""
    manual = (Path(__file__).resolve().parents[2] / "docs" / "state.md").read_text(encoding="utf-8")
    section = manual.split("**A read-only role**", 1)[1]
    return textwrap.dedent(section.split("```sql\n", 1)[1].split("```", 1)[0])


def test_the_documented_read_only_role_plans_and_shows_but_cannot_apply(
    cli, api_env, sandbox, applied, write_manifest, pg_server
):
    role = f"ci_{uuid.uuid4().hex[:8]}"
    database = urlsplit(applied).path.lstrip("/")
    statements = documented_read_only_role_sql().replace("provisioner_ci", role).replace("credits", database)
    with psycopg.connect(applied, autocommit=True) as conn:  # the owner, as the manual says
        for statement in filter(str.strip, statements.split(";")):
            conn.execute(statement)
    parts = urlsplit(applied)
    read_only = urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rpartition('@')[2]}"))
    before = read(applied)

    changed = write_manifest(two_client_manifest(acme_name="Acme Q1 renamed"), "renamed.yaml")
    planned = cli("plan", changed, "--state", read_only, "--detailed-exitcode")
    assert planned.exit_code == 2, planned.output
    assert "Plan: 0 to create, 1 to update" in planned.stdout
    assert cli("show", "--state", read_only).exit_code == 0
    assert "acme/q1" in cli("state", "list", "--state", read_only).stdout

    refused = cli("apply", changed, "--state", read_only, "--auto-approve")
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "permission denied" in refused.stderr
    assert read(applied) == before and sandbox.stats["updates"] == 0


# --- passwords -----------------------------------------------------------------------------------------------

SECRET = "Hunter2-s3cret"


@pytest.fixture(scope="module")
def password_server():
    """A server of its own where the role 'team' must give its password (SCRAM), as on a real host."""
    server = start_server()
    with server.admin() as conn:
        conn.execute(f"CREATE ROLE team LOGIN PASSWORD '{SECRET}'")
        conn.execute("CREATE DATABASE shared OWNER team")
    server.set_hba("local all postgres trust\nlocal all team scram-sha-256\n")
    yield server
    server.close()


@pytest.fixture
def team_url(password_server, monkeypatch):
    """(URL without the password, a fresh workspace) on the password server. This process (the
    test's own checks) has the password in PGPASSWORD; each CLI run is given its own."""
    monkeypatch.setenv("PGPASSWORD", SECRET)
    return password_server.url("shared").replace("postgres@", "team@"), f"w-{uuid.uuid4().hex[:12]}"


def no_secret_in(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text
        assert SECRET.replace("-", "%2D") not in text


@pytest.mark.parametrize("where", ["user", "query"])
@pytest.mark.parametrize("command", [["init"], ["plan", "{manifest}"], ["state", "pull"]])
def test_a_password_in_a_state_url_on_the_command_line_is_refused_without_echoing_it(
    api_env, manifest, team_url, command, where
):
    url, workspace = team_url
    with_password = url.replace("team@", f"team:{SECRET}@") if where == "user" else url + f"&password={SECRET}"
    args = [word.format(manifest=manifest) for word in command]

    result = run_subprocess(*args, "--state", with_password, "--workspace", workspace, env={"PGPASSWORD": ""})

    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "carries a database password" in result.stderr
    for place in ("PGPASSWORD", "~/.pgpass", "PGSERVICE", "PROVISIONER_STATE"):
        assert place in result.stderr
    no_secret_in(result.stdout, result.stderr)
    with open_backend(url, workspace) as backend:
        assert not backend.exists(), "refused before anything was done"


def test_a_missing_or_wrong_password_is_one_clear_error(api_env, manifest, team_url):
    url, workspace = team_url

    missing = run_subprocess("init", "--state", url, "--workspace", workspace, env={"PGPASSWORD": ""})
    wrong = run_subprocess("init", "--state", url, "--workspace", workspace, env={"PGPASSWORD": "not-" + SECRET})

    for result in (missing, wrong):
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.count("Error: ") == 1
        assert "cannot reach the state database" in result.stderr and "PGPASSWORD" in result.stderr
        no_secret_in(result.stdout, result.stderr)
    assert "password authentication failed" in wrong.stderr


def test_no_password_reaches_output_errors_pulled_state_or_plan_files(api_env, sandbox, manifest, team_url, tmp_path):
    url, workspace = team_url
    from_env = {
        "PROVISIONER_STATE": url.replace("team@", f"team:{SECRET}@"),
        "PROVISIONER_WORKSPACE": workspace,
        "PGPASSWORD": "",
    }
    plan_file = tmp_path / "reviewed.plan"
    outputs = []

    def run(*args: str, env: dict, expect: int = 0):
        result = run_subprocess(*args, env=env)
        assert result.returncode == expect, result.stderr
        outputs.extend([result.stdout, result.stderr])
        return result

    run("init", env=from_env)
    run("plan", manifest, "--out", plan_file, env=from_env)
    run("apply", plan_file, env=from_env)
    run("state", "pull", env=from_env)
    run("show", "--format", "json", env=from_env)
    run("state", "list", "--workspace", "nothing-here", env=from_env, expect=1)  # names the location
    # The password from PGPASSWORD instead, the URL on the command line:
    with_pgpassword = {"PGPASSWORD": SECRET}
    run("plan", manifest, "--state", url, "--workspace", workspace, "--out", plan_file, env=with_pgpassword)
    run("apply", manifest, "--state", url, "--workspace", workspace, "--auto-approve", env=with_pgpassword)
    with open_backend(from_env["PROVISIONER_STATE"], workspace) as backend, backend.lock("apply"):
        run("state", "rm", "acme/q1", env=from_env, expect=1)  # names the holder and the location
    down = {**from_env, "PROVISIONER_STATE": from_env["PROVISIONER_STATE"].replace("host=/", "host=/nowhere/")}
    run("state", "list", env=down, expect=1)

    no_secret_in(*outputs, plan_file.read_text())
    assert "locked by another run" in "".join(outputs) and "cannot reach the state database" in "".join(outputs)
    assert len(sandbox.all_batches()) == 3
