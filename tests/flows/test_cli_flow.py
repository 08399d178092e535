"""The main job end to end, as a user runs it: plan, apply, apply again, against a real sandbox."""

from __future__ import annotations

import json

from conftest import ACME_ID, TEST_KEY, init_state, run_subprocess, two_client_manifest


def test_plan_apply_and_second_apply_changes_nothing(cli, api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    state = tmp_path / "state" / "default.json"

    refused = cli("plan", manifest, "--state", state)
    assert refused.exit_code == 1 and "provisioner init --state" in refused.stderr and not state.exists()
    initialised = cli("init", "--state", state)
    assert initialised.exit_code == 0, initialised.output

    planned = cli("plan", manifest, "--state", state)
    assert planned.exit_code == 0
    assert "Plan: 3 to create" in planned.output
    assert "Credits to issue: 8,700" in planned.output
    assert json.loads(state.read_text())["resources"] == {}

    applied = cli("apply", manifest, "--state", state, "--auto-approve")
    assert applied.exit_code == 0, applied.output
    recorded = json.loads(state.read_text())["resources"]
    assert set(recorded) == {"acme/q1", "acme/q2", "globex/starter"}
    listed = {batch["id"] for batch in sandbox.all_batches()}
    assert {resource["batch_id"] for resource in recorded.values()} == listed

    again = cli("apply", manifest, "--state", state, "--auto-approve")
    assert again.exit_code == 0
    assert "No changes" in again.output
    assert len(sandbox.all_batches()) == 3


def test_apply_without_terminal_or_auto_approve_refuses(api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    result = run_subprocess("apply", manifest, "--state", init_state(tmp_path / "s.json"), env=api_env)
    assert result.returncode == 1
    assert "--auto-approve" in result.stderr
    assert "Traceback" not in result.stderr
    assert sandbox.all_batches() == []


def test_key_never_printed(api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    result = run_subprocess(
        "apply", manifest, "--state", init_state(tmp_path / "s.json"), "--auto-approve", env=api_env
    )
    assert result.returncode == 0, result.stderr
    assert TEST_KEY not in result.stdout + result.stderr
    assert TEST_KEY not in (tmp_path / "s.json").read_text()
    assert ACME_ID in (tmp_path / "s.json").read_text()


def run_on_terminal(args, env, answer: str, timeout: float = 30) -> tuple[int, str]:
    """Runs the CLI on a real pseudo-terminal, typing ``answer`` at the prompt."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import time

    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "provisioner", *map(str, args)],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env={**os.environ, **env},
        close_fds=True,
    )
    os.close(terminal)
    output, answered, deadline = b"", False, time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([controller], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the terminal closed: the process is done
                break
            output += chunk
            if not answered and b"Enter a value" in output:
                os.write(controller, answer.encode() + b"\n")
                answered = True
        elif process.poll() is not None:
            break
    code = process.wait(timeout=timeout)
    os.close(controller)
    return code, output.decode(errors="replace")


def test_apply_on_a_terminal_asks_and_only_yes_approves(api_env, sandbox, write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    state = init_state(tmp_path / "s.json")

    code, output = run_on_terminal(["apply", manifest, "--state", state], api_env, answer="y")
    assert "Only 'yes' will be accepted" in output
    assert code == 1 and "cancelled" in output
    assert sandbox.all_batches() == [] and not json.loads(state.read_text())["resources"]

    code, output = run_on_terminal(["apply", manifest, "--state", state], api_env, answer="yes")
    assert code == 0, output
    assert "Apply complete!" in output
    assert len(sandbox.all_batches()) == 3


def test_a_state_file_refuses_the_ids_of_another_instance(cli, api_env, sandbox, write_manifest, tmp_path):
    """Sandbox ids recorded in a state must not make a real instance look up to date."""
    manifest = write_manifest(two_client_manifest())
    state = tmp_path / "shared.json"
    assert cli("apply", manifest, "--state", state, "--sandbox", "--auto-approve").exit_code == 0
    before = state.read_bytes()

    for command in (["apply", "--auto-approve"], ["plan", "--refresh"], ["refresh"]):
        result = cli(command[0], manifest, "--state", state, *command[1:])
        assert result.exit_code == 1, (command, result.output)
        assert "records the batches of the embedded sandbox" in result.output
    assert state.read_bytes() == before
    assert sandbox.all_batches() == []


def test_help_texts_are_whole_and_name_every_form(cli, write_manifest):
    state_help = cli("state", "--help").stdout
    summaries = state_help[state_help.index("Commands:") :].splitlines()[1:]
    assert len(summaries) == 8 and not any(line.rstrip().endswith("...") for line in summaries), state_help
    top = cli("--help").stdout
    assert not any(line.rstrip().endswith("...") for line in top[top.index("Commands:") :].splitlines())
    assert "apply [OPTIONS] PATHS... | PLAN_FILE" in cli("apply", "--help").stdout
    assert "--quiet" in cli("show", "--help").stdout

    one = write_manifest(f"clients:\n  acme:\n    id: {ACME_ID}\n    batches:\n      q1:\n        startingBalance: 5\n")
    assert cli("validate", one).stdout == "Success! 1 batch of 1 client is valid.\n"
    assert cli("validate", write_manifest(two_client_manifest())).stdout == (
        "Success! 3 batches of 2 clients are valid.\n"
    )


def test_init_names_the_gitignore_lines_and_writes_them_with_a_flag(tmp_path):
    import subprocess
    from pathlib import Path

    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / ".gitignore").write_text("*.pyc")  # the user's own, without a final newline
    offered = run_subprocess("init", cwd=tmp_path)
    assert offered.returncode == 0, offered.stderr
    assert "Your repository's .gitignore needs these lines" in offered.stdout
    assert "  state/*.lock\n" in offered.stdout and "  .provisioner/\n" in offered.stdout
    assert (tmp_path / ".gitignore").read_text() == "*.pyc"  # only offered

    written = run_subprocess("init", "--gitignore", cwd=tmp_path)  # the state exists: left as it is
    assert written.returncode == 0, written.stderr
    assert "exists already; it was left as it is" in written.stdout and "Added 5 lines" in written.stdout
    assert (tmp_path / ".gitignore").read_text().startswith("*.pyc\n\n# provisioner: ")
    again = run_subprocess("init", "--gitignore", cwd=tmp_path)
    assert "Added" not in again.stdout and "needs these lines" not in again.stdout

    examples = Path(__file__).resolve().parents[2] / "examples" / "manifests"
    assert run_subprocess("apply", examples, "--sandbox", "--auto-approve", cwd=tmp_path).returncode == 0
    for local in ("default.json.lock", "default.json.backup", ".default.json.4242.tmp"):
        (tmp_path / "state" / local).write_text("")
    (tmp_path / "state" / "default.json.journal").write_text("")  # an interrupted run's ids: committed
    (tmp_path / ".provisioner").mkdir(exist_ok=True)
    (tmp_path / ".provisioner" / "plan-memo").write_text("")  # the cache directory ($XDG_CACHE_HOME aside)
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert sorted(line[3:] for line in status.splitlines()) == [
        ".gitignore",
        "state/default.json",
        "state/default.json.journal",
    ], status
    assert (tmp_path / "state" / "sandbox.sqlite").exists() and (tmp_path / "state" / "sandbox.json").exists()


def test_usage_errors_exit_1_so_that_2_only_means_changes(write_manifest, tmp_path):
    manifest = write_manifest(two_client_manifest())
    result = run_subprocess("plan", manifest, "--detailed-exitcode", "--bogus-flag")
    assert result.returncode == 1
    assert "No such option" in result.stderr
