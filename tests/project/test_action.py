"""The GitHub Action (action.yml, action/run.py), offline: its metadata against GitHub's action schema,
and its steps run as a runner runs them against a recorded pull_request event (tests/data), a local fake
of GitHub's comments API on a loopback port (tests/github_fake.py), the real CLI and the sandbox.

What is not tested here, because it needs GitHub itself: actions/setup-python, pip installing a release
from the package index, the runner's expression engine beyond `${{ inputs.x }}`, and GitHub's own
rendering of the comment.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import ACME_ID, GLOBEX_ID, init_state
from github_fake import ACTION, EVENT, ROOT, TOKEN, FakeGitHub, action_step, run_action
from markdown_it import MarkdownIt

import provisioner

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
MARKER_START = "<!-- provisioner-action comment: "

ACME = f"""
clients:
  acme:
    id: {ACME_ID}
    batches:
      q1:
        name: Acme Q1
        startingBalance: 5000
"""
GLOBEX = f"""
clients:
  globex:
    id: {GLOBEX_ID}
    batches:
      starter:
        startingBalance: 1200
"""


def load_run_module():
    spec = importlib.util.spec_from_file_location("action_run", ROOT / "action" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["action_run"] = module
    spec.loader.exec_module(module)
    return module


run_py = load_run_module()


@pytest.fixture
def bin_dir(tmp_path):
    """`provisioner` on PATH, as the action's install step leaves it."""
    directory = tmp_path / "bin"
    directory.mkdir()
    shim = directory / "provisioner"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m provisioner "$@"\n')
    shim.chmod(0o755)
    return directory


@pytest.fixture
def workspace(tmp_path):
    """A checkout: manifests/acme.yaml and the empty state 'provisioner init' made."""
    directory = tmp_path / "checkout"
    write(directory, "manifests/acme.yaml", ACME)
    init_state(directory / "state" / "default.json")
    return directory


@pytest.fixture
def github():
    with FakeGitHub() as fake:
        yield fake


def write(directory: Path, relative: str, text: str) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


def pushed(sha: str) -> dict:
    """The recorded event, as a later push to the same pull request sends it."""
    event = json.loads(EVENT.read_text())
    event["pull_request"]["head"]["sha"] = event["after"] = sha
    return event


def ours(github: FakeGitHub, number: int = 7) -> list[dict]:
    return [c for c in github.comments.get(number, []) if c["body"].startswith(MARKER_START)]


# ------------------------------------------------------------------ the metadata


def test_action_yml_is_valid_against_githubs_action_schema():
    schema = json.loads((SCHEMAS / "github-action.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.validate(ACTION, schema)
    assert ACTION["runs"]["using"] == "composite"
    assert all("shell" in step for step in ACTION["runs"]["steps"] if "run" in step)  # composite requires it


def test_the_schema_catches_a_broken_action():
    """The schema is not a formality: the mistakes it must catch are caught."""
    schema = json.loads((SCHEMAS / "github-action.json").read_text())
    without_shell = json.loads(json.dumps(ACTION))
    del without_shell["runs"]["steps"][1]["shell"]
    for broken in (
        {k: v for k, v in ACTION.items() if k != "runs"},
        without_shell,
        {**ACTION, "runs": {**ACTION["runs"], "using": "bash"}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)


def test_every_input_reaches_the_script_and_every_output_is_written():
    inputs = set(ACTION["inputs"])
    run_env = action_step("provisioner")["env"]
    install_env = action_step("Install")["env"]
    passed = {m for value in [*run_env.values(), *install_env.values()] for m in re.findall(r"inputs\.([\w-]+)", value)}
    used_elsewhere = {"python-version", "working-directory"}  # read by the runner itself, not the script
    assert passed | used_elsewhere == inputs
    source = (ROOT / "action" / "run.py").read_text()
    for name in inputs - used_elsewhere:
        assert f'"{name}"' in source or name == "version", f"run.py never reads input {name}"
    for name, spec in ACTION["outputs"].items():
        assert spec["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
        assert f'"{name}"' in source, f"run.py never writes output {name}"


def test_the_example_workflow_uses_the_action_at_this_release():
    workflow = yaml.load((ROOT / "examples" / "ci" / "github-actions.yml").read_text(), Loader=yaml.BaseLoader)
    [step] = [s for s in workflow["jobs"]["plan"]["steps"] if "/provisioner@" in s.get("uses", "")]
    assert step["uses"].endswith(f"@v{provisioner.__version__}")
    assert step["with"]["command"] == "plan"
    assert set(step["with"]) <= set(ACTION["inputs"])
    assert workflow["jobs"]["plan"]["permissions"]["pull-requests"] == "write"
    for name in ("github-actions.yml", "github-actions-postgres.yml"):  # one release everywhere
        text = (ROOT / "examples" / "ci" / name).read_text()
        assert set(re.findall(r"/provisioner@v([\w.]+)", text)) == {provisioner.__version__}
        assert set(re.findall(r"ti-provisioner(?:\[postgres\])?==([\w.]+)", text)) == {provisioner.__version__}


def test_every_input_is_documented_in_the_manual():
    manual = (ROOT / "docs" / "reviewing.md").read_text()
    for name in ACTION["inputs"]:
        assert f"`{name}`" in manual, name
    for name in ACTION["outputs"]:
        assert f"`{name}`" in manual, name


# ------------------------------------------------------------------ install


def test_install_asks_pip_for_the_release_the_action_is_by_default():
    assert run_py.install_spec("", ROOT) == f"ti-provisioner[postgres]=={provisioner.__version__}"
    assert run_py.install_spec("action", ROOT) == f"ti-provisioner[postgres]=={provisioner.__version__}"
    assert run_py.install_spec("0.3.1", ROOT) == "ti-provisioner[postgres]==0.3.1"
    assert run_py.install_spec("source", ROOT) == f"{ROOT}[postgres]"
    with pytest.raises(run_py.ActionError, match="expected a release such as 0.1.0"):
        run_py.install_spec("latest; rm -rf /", ROOT)


# ------------------------------------------------------------------ one comment, updated on every push


def test_a_pull_request_gets_one_plan_comment_updated_on_each_push(workspace, bin_dir, github):
    github.add_comment(7, "Looks right to me, but check the Globex contract.")
    for i in range(120):  # the plan's comment will be on the second page of the listing
        github.add_comment(7, f"chatter {i}")

    done, outputs = run_action(workspace, bin_dir, {"command": "plan"}, github=github)

    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs["exitcode"] == "2" and outputs["has-changes"] == "true" and outputs["blocked"] == "false"
    [comment] = ours(github)
    assert comment["user"]["type"] == "Bot"
    lines = comment["body"].splitlines()
    assert lines[1] == "### provisioner plan for 0123456"
    assert lines[3] == "**Plan: 1 to create — 5,000 credits to issue**"
    assert outputs["comment-url"] == comment["html_url"]
    assert (workspace / "plan.md").read_text().rstrip() in comment["body"]
    assert json.loads((workspace / "provisioner.plan").read_text())["plan"]["summary"]["credits"] == 5000

    # A second push to the pull request: the same comment is edited, nothing new is posted.
    write(workspace, "manifests/globex.yaml", GLOBEX)
    done, outputs = run_action(workspace, bin_dir, {"command": "plan"}, github=github, event=pushed("89abcdef" * 5))

    assert done.returncode == 0, done.stdout + done.stderr
    [edited] = ours(github)
    assert edited["id"] == comment["id"]
    assert "### provisioner plan for 89abcde" in edited["body"] and "globex" in edited["body"]
    assert "Plan: 2 to create" in edited["body"]
    assert len(github.comments[7]) == 122  # the reviewer's comment and the chatter are untouched
    assert github.comments[7][0]["body"] == "Looks right to me, but check the Globex contract."
    assert [method for method, _ in github.writes()] == ["POST", "PATCH"]


def test_comments_are_kept_apart_by_workspace(workspace, bin_dir, github):
    for workspace_name in ("default", "staging", "default"):
        done, _ = run_action(workspace, bin_dir, {"command": "plan", "comment-key": workspace_name}, github=github)
        assert done.returncode == 0, done.stderr
    assert len(ours(github)) == 2
    assert [method for method, _ in github.writes()] == ["POST", "POST", "PATCH"]


def test_no_changes_is_said_in_the_comment_and_is_not_a_failure(workspace, bin_dir, github):
    (workspace / "manifests" / "acme.yaml").write_text("clients: {}\n")
    done, outputs = run_action(workspace, bin_dir, {}, github=github)
    assert done.returncode == 0, done.stderr
    assert outputs["exitcode"] == "0" and outputs["has-changes"] == "false"
    [comment] = ours(github)
    assert "No changes" in comment["body"]


def test_a_broken_manifest_posts_the_error_and_fails_the_step(workspace, bin_dir, github):
    write(workspace, "manifests/acme.yaml", ACME.replace("startingBalance", "startingBalence"))
    (workspace / "provisioner.plan").write_text("a saved plan from an earlier step")

    done, outputs = run_action(workspace, bin_dir, {}, github=github)

    assert done.returncode == 1
    assert outputs["exitcode"] == "1" and outputs["plan-file"] == ""
    assert not (workspace / "provisioner.plan").exists()  # never passed off as this run's plan
    [comment] = ours(github)
    assert "**The plan failed:**" in comment["body"] and "did you mean 'startingBalance'?" in comment["body"]
    assert "::error::provisioner plan failed" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_a_plan_that_cannot_be_applied_fails_after_commenting(workspace, bin_dir, github):
    write(workspace, "manifests/policy.yaml", "policy:\n  maxBatchCredits: 1000\n")
    done, outputs = run_action(workspace, bin_dir, {}, github=github)
    assert done.returncode == 1
    assert outputs["exitcode"] == "1" and outputs["blocked"] == "true" and outputs["has-changes"] == "true"
    assert "::error::The plan cannot be applied: acme/q1 issues 5,000 credits" in done.stdout
    [comment] = ours(github)  # the reason, then the whole plan
    assert (
        "this plan cannot be applied: it breaks 1 guardrail" in comment["body"]
        and "Plan: 1 to create" in comment["body"]
    )

    done, outputs = run_action(workspace, bin_dir, {"fail-on-blocked": "false"}, github=github)
    assert done.returncode == 0 and outputs["blocked"] == "true"


def test_a_plan_too_long_for_a_comment_is_cut_with_a_note(workspace, bin_dir, github):
    many = ACME + "".join(f"      extra-{i}:\n        startingBalance: {i + 1}\n" for i in range(400))
    write(workspace, "manifests/acme.yaml", many)

    done, _outputs = run_action(workspace, bin_dir, {}, github=github)

    assert done.returncode == 0, done.stderr
    assert len((workspace / "plan.md").read_bytes()) > 65536  # the file keeps it all
    [comment] = ours(github)  # the fake refuses bodies over 65,536 characters, as GitHub does
    body = comment["body"]
    assert len(body.encode()) <= 65536
    assert body.splitlines()[3] == "**Plan: 401 to create — 85,200 credits to issue**"
    assert body.rstrip().endswith("the full plan is in this run's log and in `plan.md`._")
    # The folded full plan goes first; the tables a reviewer reads stay whole: 401 batches and the headers.
    assert "<details><summary>Full plan" not in body
    tokens = MarkdownIt("commonmark").enable("table").parse(body)
    assert len([t for t in tokens if t.type == "tr_open"]) == 401 + 3


@pytest.mark.parametrize("fenced", [False, True])
def test_the_cut_keeps_whole_lines_and_closes_a_code_block(fenced):
    line = "x" * 99 + "\n"
    markdown = "**Plan**\n\n" + ("```\n" if fenced else "") + line * 2000
    body = run_py.comment_body("k", "### provisioner plan for abc1234", markdown, "plan.md")
    assert len(body.encode()) <= run_py.COMMENT_LIMIT
    kept = body.split("\n\n_Shortened")[0]
    assert all(
        row in ("x" * 99, "```", "**Plan**", "", "### provisioner plan for abc1234") or row.startswith("<!--")
        for row in kept.splitlines()
    )
    assert kept.count("```") % 2 == 0
    assert body.startswith("<!-- provisioner-action comment: k -->\n")
    # Multi-byte characters count by their bytes: a body of emoji fits as well.
    emoji = run_py.comment_body("k", "### h", "⛔ ok\n" * 20000, "plan.md")
    assert len(emoji.encode()) <= run_py.COMMENT_LIMIT


def test_a_token_that_may_not_comment_is_a_warning_not_a_failure(workspace, bin_dir, github):
    github.refuse_writes = True  # a pull request from a fork: the token is read-only
    done, outputs = run_action(workspace, bin_dir, {}, github=github)
    assert done.returncode == 0, done.stderr
    assert outputs["exitcode"] == "2" and outputs["comment-url"] == ""
    assert "::warning::The plan comment was not posted: GitHub answered 403" in done.stdout
    assert TOKEN not in done.stdout + done.stderr


def test_a_wrong_token_is_refused_by_the_api_and_said(workspace, bin_dir, github):
    github.token = "ghs_other"
    done, _ = run_action(workspace, bin_dir, {}, github=github)
    assert done.returncode == 0
    assert "GitHub answered 401" in done.stdout
    assert TOKEN not in done.stdout + done.stderr  # the token is never printed


def test_outside_a_pull_request_nothing_is_posted(workspace, bin_dir, github):
    done, outputs = run_action(
        workspace, bin_dir, {}, github=github, event_name="push", event={"ref": "refs/heads/main"}
    )
    assert done.returncode == 0, done.stderr
    assert outputs["has-changes"] == "true" and github.requests == []


def test_a_bad_input_is_one_error(workspace, bin_dir, github):
    done, _ = run_action(workspace, bin_dir, {"command": "destroy"}, github=github)
    assert done.returncode == 1
    assert done.stdout.strip() == "::error::input 'command' is 'destroy': expected plan or apply"


# ------------------------------------------------------------------ apply


def test_apply_applies_the_saved_plan_once_then_has_nothing_to_do(workspace, bin_dir, api_env, sandbox):
    done, outputs = run_action(workspace, bin_dir, {"command": "apply"}, event_name="push", event={})
    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs == {**outputs, "exitcode": "0", "has-changes": "true"}
    assert "Apply complete! Batches: 1 created" in done.stdout
    assert [b["name"] for b in sandbox.all_batches()] == ["Acme Q1"]

    done, outputs = run_action(workspace, bin_dir, {"command": "apply"}, event_name="push", event={})
    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs["exitcode"] == "0" and outputs["has-changes"] == "false"
    assert len(sandbox.all_batches()) == 1


def test_apply_refuses_a_plan_that_cannot_be_applied(workspace, bin_dir, api_env, sandbox):
    write(workspace, "manifests/policy.yaml", "policy:\n  maxBatchCredits: 1000\n")
    done, outputs = run_action(workspace, bin_dir, {"command": "apply"}, event_name="push", event={})
    assert done.returncode == 1 and outputs["exitcode"] == "1"
    assert sandbox.all_batches() == []


def test_state_and_workspace_inputs_reach_the_cli(tmp_path, bin_dir, github):
    checkout = tmp_path / "checkout"
    write(checkout, "manifests/acme.yaml", ACME)
    init_state(checkout / "elsewhere" / "production.json")
    done, _outputs = run_action(checkout, bin_dir, {"state": "elsewhere/production.json"}, github=github)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "--state elsewhere/production.json" in done.stdout
    missing, _ = run_action(checkout, bin_dir, {"state": "elsewhere/nope.json"}, github=github)
    assert missing.returncode == 1 and "provisioner init" in missing.stderr


def test_without_provisioner_on_path_the_step_says_so(workspace, tmp_path, github):
    empty = tmp_path / "nothing-installed"
    empty.mkdir()
    done, _ = run_action(workspace, empty, {}, github=github, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "::error::provisioner is not on PATH" in done.stdout and "Traceback" not in done.stderr
