"""The GitOps flow of examples/ci/, run locally with real git, real processes and the sandbox.

A bare repository plays the git host; clones play developers and CI runners. The shell of the
GitHub Actions example's steps is executed as written, and its pull-request job runs the repository's
own action (action.yml) with the example's inputs against a local fake of GitHub's comments API, so the
example and the tested flow cannot drift apart. The other CI examples are checked for the same
commands and safety settings.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ACCOUNT_ID, ACME_ID, GLOBEX_ID, TEST_KEY
from github_fake import FakeGitHub, run_action
from markdown_it import MarkdownIt

from provisioner.backends.file import FileBackend, FileWriter, read_state
from provisioner.core.models import Intent
from provisioner.sandbox import Sandbox

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"
INITECH_ID = "9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
UNKNOWN_CLIENT_ID = "11111111-2222-4333-8444-555555555555"

# The commands every CI example runs; the examples must use them verbatim.
VALIDATE = "provisioner validate manifests/"
PR_PLAN = "provisioner plan manifests/ --format markdown --out provisioner.plan --detailed-exitcode"
MAIN_PLAN = "provisioner plan manifests/ --out provisioner.plan --detailed-exitcode"
APPLY_SAVED = "provisioner apply provisioner.plan --lock-timeout 60"
STAGE_STATE = "git add --all -- state/ ':(exclude)state/*.lock' ':(exclude)state/*.backup'"

ACME = f"""
clients:
  acme:
    id: {ACME_ID}
    creditAccountId: {ACCOUNT_ID}
    batches:
      q1:
        name: Acme Q1
        startingBalance: 5000
"""
ACME_WITH_Q2 = ACME + "      q2:\n        startingBalance: 2500\n"
GLOBEX = f"""
clients:
  globex:
    id: {GLOBEX_ID}
    batches:
      starter:
        startingBalance: 1200
"""
INITECH = f"""
clients:
  initech:
    id: {INITECH_ID}
    batches:
      pilot:
        startingBalance: 800
"""


def load_yaml(path: Path):
    # GitHub's `on:` key is a boolean to YAML 1.1; BaseLoader keeps every key and value as text.
    return yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)


GITHUB = load_yaml(CI / "github-actions.yml")
GRANTS_CRON = "23 10 * * *"  # the daily run that applies recurring grants
GITLAB_GRANTS_RULE = (
    '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE == "schedule" && $PROVISIONER_JOB == "grants"'
)
MONTHLY = f"""
clients:
  acme:
    id: {ACME_ID}
    creditAccountId: {ACCOUNT_ID}
    grants:
      monthly:
        every: month
        from: 2026-01-01
        timeZone: Europe/Berlin
        name: "Acme {{period}}"
        startingBalance: 1000
"""


# ------------------------------------------------------------------ the git host, developers, runners


class Git:
    def __init__(self, root: Path):
        self.root = root
        self.env = {
            **os.environ,
            "GIT_CONFIG_GLOBAL": str(root / "gitconfig"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_AUTHOR_NAME": "Dev",
            "GIT_AUTHOR_EMAIL": "dev@example.com",
            "GIT_COMMITTER_NAME": "Dev",
            "GIT_COMMITTER_EMAIL": "dev@example.com",
        }
        (root / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n[advice]\n\tdetachedHead = false\n")
        self.origin = root / "origin.git"
        self("init", "--bare", "-q", str(self.origin), cwd=root)

    def __call__(self, *args: str, cwd: Path) -> str:
        done = subprocess.run(["git", *args], cwd=cwd, env=self.env, capture_output=True, text=True)
        assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
        return done.stdout

    def clone(self, name: str, branch: str = "main") -> Path:
        directory = self.root / name
        self("clone", "-q", "--branch", branch, str(self.origin), str(directory), cwd=self.root)
        return directory

    def commit_all(self, directory: Path, message: str) -> None:
        self("add", "--all", cwd=directory)
        self("commit", "-q", "-m", message, cwd=directory)

    def files_on_main(self, under: str) -> list[str]:
        return self("ls-tree", "-r", "--name-only", "main", "--", under, cwd=self.origin).split()

    def show_on_main(self, path: str) -> str:
        return self("show", f"main:{path}", cwd=self.origin)


def write(directory: Path, relative: str, text: str) -> None:
    path = directory / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")


@pytest.fixture
def git(tmp_path):
    """A git host whose main branch holds manifests/acme.yaml and the empty state 'provisioner init' made."""
    git = Git(tmp_path)
    seed = tmp_path / "seed"
    git("init", "-q", str(seed), cwd=tmp_path)
    write(seed, "manifests/acme.yaml", ACME)
    write(seed, "state/.gitkeep", "")
    FileBackend(seed / "state" / "default.json").create()
    git.commit_all(seed, "Declare Acme's credits")
    git("push", "-q", str(git.origin), "main", cwd=seed)
    return git


@pytest.fixture
def bin_dir(tmp_path):
    """`provisioner` as CI installs it."""
    directory = tmp_path / "bin"
    directory.mkdir()
    shim(directory / "provisioner", f'exec "{sys.executable}" -m provisioner "$@"')
    return directory


def shim(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body).lstrip("\n"))
    path.chmod(0o755)


class Runner:
    """Runs one job's steps of the GitHub Actions example, as the runner would."""

    def __init__(self, job: str, workspace: Path, bin_dir: Path, env: dict[str, str]):
        self.job = job
        self.workspace = workspace
        self.outputs_file = workspace.parent / f"{workspace.name}.outputs"
        self.outputs_file.touch()
        self.env = {
            **os.environ,
            **env,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "GITHUB_OUTPUT": str(self.outputs_file),
            "GITHUB_SHA": "0123456789abcdef0123456789abcdef01234567",
        }

    def step(self, name: str, **env: str) -> subprocess.CompletedProcess:
        script = workflow_step(self.job, name)["run"]
        assert "${{" not in script, "expressions belong in the step's env, not in its shell"
        return subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
            cwd=self.workspace,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
        )

    @property
    def outputs(self) -> dict[str, str]:
        lines = self.outputs_file.read_text().splitlines()
        return dict(line.split("=", 1) for line in lines)


def workflow_step(job: str, name: str) -> dict:
    return next(step for step in GITHUB["jobs"][job]["steps"] if step.get("name") == name)


def succeeded(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    return result


def run(command: str, cwd: Path, env: dict[str, str], bin_dir: Path) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(shlex.split(command), cwd=cwd, env=full_env, capture_output=True, text=True, timeout=60)


class Review:
    """What the pull-request job left: its checkout, the action step's outputs and the comments posted."""

    def __init__(self, workspace: Path, outputs: dict[str, str], github: FakeGitHub):
        self.workspace, self.outputs, self.github = workspace, outputs, github

    def comments(self) -> list[str]:
        return [comment["body"] for comments in self.github.comments.values() for comment in comments]


def plan_job(git: Git, bin_dir: Path, branch: str) -> tuple[Review, subprocess.CompletedProcess]:
    """The pull-request job on a fresh checkout of the branch (no API key, no API address): the action's
    step with the example's inputs. Its result is the check's."""
    workspace = git.clone(f"pr-{branch}", branch)
    step = next(s for s in GITHUB["jobs"]["plan"]["steps"] if "/provisioner@" in s.get("uses", ""))
    given = {name: value for name, value in step["with"].items() if "${{" not in value}
    with FakeGitHub() as github:
        check, outputs = run_action(workspace, bin_dir, given, github=github)
    return Review(workspace, outputs, github), check


def apply_job(git: Git, bin_dir: Path, api_env: dict, name: str) -> tuple[Runner, subprocess.CompletedProcess]:
    """The job on main: plan, apply the saved plan if there are changes, always commit the state back."""
    runner = Runner("apply", git.clone(name), bin_dir, env=api_env)
    succeeded(runner.step("Plan"))
    applied = None
    if runner.outputs["changes"] == "true":
        applied = runner.step("Apply the saved plan")
    succeeded(runner.step("Commit the state back"))
    return runner, applied


def merge(git: Git, branch: str) -> None:
    maintainer = git.clone(f"merge-{branch}")
    git("fetch", "-q", "origin", branch, cwd=maintainer)
    git("merge", "-q", "--no-ff", "-m", f"Merge {branch}", f"origin/{branch}", cwd=maintainer)
    git("push", "-q", "origin", "main", cwd=maintainer)


def open_pull_request(git: Git, branch: str, files: dict[str, str]) -> None:
    developer = git.clone(f"dev-{branch}")
    git("checkout", "-q", "-b", branch, cwd=developer)
    for relative, text in files.items():
        write(developer, relative, text)
    git.commit_all(developer, f"Credits: {branch}")
    git("push", "-q", "origin", branch, cwd=developer)


def recorded_on_main(git: Git) -> dict:
    return json.loads(git.show_on_main("state/default.json"))["resources"]


# ------------------------------------------------------------------ the flow


def test_review_merge_apply_commit_then_no_changes(git, bin_dir, api_env, sandbox, tmp_path):
    # The first merge: CI applies Acme's batch and commits the state.
    runner, applied = apply_job(git, bin_dir, api_env, "ci-initial")
    assert succeeded(applied)
    assert set(recorded_on_main(git)) == {"acme/q1"}

    # Two pull requests are opened at the same time; each gets a plan comment and a saved plan.
    open_pull_request(git, "globex", {"manifests/globex.yaml": GLOBEX, "manifests/acme.yaml": ACME_WITH_Q2})
    open_pull_request(git, "initech", {"manifests/initech.yaml": INITECH})
    review, check = plan_job(git, bin_dir, "globex")
    assert check.returncode == 0, check.stderr
    assert review.outputs["exitcode"] == "2"
    [comment] = review.comments()
    # The per-client summary, then a table for each client.
    assert_plan_comment(comment, "**Plan: 2 to create, 1 unchanged — 3,700 credits to issue**", tables=1 + 2)
    reviewed_plan = tmp_path / "artifact-globex.plan"
    shutil.copy(review.workspace / "provisioner.plan", reviewed_plan)
    second_review, _ = plan_job(git, bin_dir, "initech")
    second_plan = tmp_path / "artifact-initech.plan"
    shutil.copy(second_review.workspace / "provisioner.plan", second_plan)

    # The first is merged; CI applies exactly the plan that was reviewed and commits the state back.
    merge(git, "globex")
    ci = git.clone("ci-globex")
    succeeded(run(f"provisioner apply {reviewed_plan} --lock-timeout 60", ci, api_env, bin_dir))
    succeeded(Runner("apply", ci, bin_dir, api_env).step("Commit the state back"))
    assert set(recorded_on_main(git)) == {"acme/q1", "acme/q2", "globex/starter"}

    # The second was reviewed against the older state: its saved plan is refused as stale...
    merge(git, "initech")
    ci = git.clone("ci-initech-stale")
    stale = run(f"provisioner apply {second_plan}", ci, api_env, bin_dir)
    assert stale.returncode == 1 and "stale" in stale.stderr
    assert len(sandbox.all_batches()) == 3
    # ...and the workflow's apply job plans afresh on main and applies that.
    runner, applied = apply_job(git, bin_dir, api_env, "ci-initech")
    assert succeeded(applied)
    assert "Apply complete! Batches: 1 created" in applied.stdout

    # Main now holds every id; planning again shows no changes, as a real process with the exit code.
    final = git.clone("final")
    recorded = read_state(final / "state" / "default.json").resources
    assert set(recorded) == {"acme/q1", "acme/q2", "globex/starter", "initech/pilot"}
    assert {r.batch_id for r in recorded.values()} == {b["id"] for b in sandbox.all_batches()}
    clean = run("provisioner plan manifests/ --detailed-exitcode", final, api_env, bin_dir)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.startswith("No changes.")
    assert git("status", "--porcelain", cwd=final) == ""
    # No lock, no backup; the audit trail is committed with the state it explains.
    assert git.files_on_main("state") == ["state/.gitkeep", "state/default.json", "state/default.json.history"]
    state_commits = git("log", "--format=%s", "main", "--", "state/default.json", cwd=git.origin).splitlines()
    # Three applies committed back, after the seed commit that holds the state 'provisioner init' made.
    assert len(state_commits) == 4 and all("[skip ci]" in subject for subject in state_commits[:3])
    history = git("log", "-p", "--all", cwd=git.origin)
    assert TEST_KEY not in history and api_env["TI_BASE_URL"] not in history


def assert_plan_comment(comment: str, summary: str, tables: int) -> None:
    marker, heading, blank, first, *_ = comment.splitlines()
    assert marker.startswith("<!-- provisioner-action comment:") and marker.endswith("-->")  # hidden
    assert heading == "### provisioner plan for 0123456"
    assert (blank, first) == ("", summary)
    tokens = MarkdownIt("commonmark").enable("table").parse(comment)
    rows_per_table, cells = [], []
    for token in tokens:
        if token.type == "table_open":
            rows_per_table.append([])
        elif token.type == "tr_open":
            cells = []
        elif token.type in ("th_open", "td_open"):
            cells.append(token)
        elif token.type == "tr_close":
            rows_per_table[-1].append(len(cells))
    assert len(rows_per_table) == tables
    assert all(set(rows) == {4} for rows in rows_per_table)
    assert "<details><summary>Full plan</summary>" in comment
    assert TEST_KEY not in comment


def test_pull_request_with_a_blocked_change_fails_its_check(git, bin_dir, api_env, sandbox):
    _, applied = apply_job(git, bin_dir, api_env, "ci-initial")
    succeeded(applied)
    open_pull_request(git, "more", {"manifests/acme.yaml": ACME.replace("5000", "6000")})

    review, check = plan_job(git, bin_dir, "more")

    assert review.outputs["exitcode"] == "1"  # a plan that cannot be applied: the exit code says it all
    [comment] = review.comments()
    assert "**The plan failed:**" in comment and "this plan cannot be applied: 1 change is blocked" in comment
    assert "⛔ **acme/q1** cannot be applied" in comment  # and the whole plan below the reason
    assert check.returncode != 0 and review.outputs["blocked"] == "true"


def test_pull_request_with_a_broken_manifest_posts_the_error(git, bin_dir, tmp_path):
    open_pull_request(git, "typo", {"manifests/acme.yaml": ACME.replace("startingBalance", "startingBalence")})
    review, check = plan_job(git, bin_dir, "typo")
    assert review.outputs["exitcode"] == "1"
    [comment] = review.comments()  # the failure is posted, then the check fails
    assert "**The plan failed:**" in comment and "did you mean 'startingBalance'?" in comment
    assert check.returncode != 0


def test_plan_too_long_for_a_comment_is_shortened_to_fit(git, bin_dir):
    many = ACME + "".join(f"      extra-{i}:\n        startingBalance: {i + 1}\n" for i in range(400))
    open_pull_request(git, "many", {"manifests/acme.yaml": many})

    review, check = plan_job(git, bin_dir, "many")

    assert check.returncode == 0, check.stderr
    assert len((review.workspace / "plan.md").read_bytes()) > 65536  # the artifact keeps it all
    [comment] = review.comments()
    assert len(comment.encode()) <= 65536  # GitHub's limit for a comment
    assert comment.splitlines()[3] == "**Plan: 401 to create — 85,200 credits to issue**"
    assert comment.rstrip().endswith("the full plan is in this run's log and in `plan.md`._")
    assert "<details><summary>Full plan" not in comment  # folded full plan dropped; the tables kept


def test_apply_that_fails_partway_still_commits_what_it_created(git, bin_dir, tmp_path):
    # The instance does not know one client: its batch fails, Acme's is created and must be recorded.
    with Sandbox(api_key=TEST_KEY, known_clients={ACME_ID, GLOBEX_ID}) as instance:
        env = {"TI_BASE_URL": instance.url, "TI_API_KEY": TEST_KEY}
        stranger = INITECH.replace(INITECH_ID, UNKNOWN_CLIENT_ID)
        open_pull_request(git, "partial", {"manifests/zz-unknown.yaml": stranger, "manifests/globex.yaml": GLOBEX})
        merge(git, "partial")

        _, applied = apply_job(git, bin_dir, env, "ci-partial")

        assert applied.returncode == 1
        assert "initech/pilot" in applied.stderr
        assert set(recorded_on_main(git)) == {"acme/q1", "globex/starter"}
        # The unknown client is removed; the next apply creates nothing twice.
        fixer = git.clone("fix")
        (fixer / "manifests" / "zz-unknown.yaml").unlink()
        git.commit_all(fixer, "Drop the unknown client")
        git("push", "-q", "origin", "main", cwd=fixer)
        runner, applied = apply_job(git, bin_dir, env, "ci-fixed")
        assert applied is None and runner.outputs["changes"] == "false"
        assert len(instance.all_batches()) == 2


def test_the_daily_schedule_applies_each_grant_period_once_and_commits_it(git, bin_dir, api_env, sandbox):
    """The apply job as the daily schedule runs it: the moment is the run's (now; here $PROVISIONER_AT)."""
    seed = git.clone("grant-seed")
    write(seed, "manifests/acme.yaml", MONTHLY)
    git.commit_all(seed, "Acme: 1,000 credits a month")
    git("push", "-q", "origin", "main", cwd=seed)

    def scheduled_run(name: str, at: str) -> tuple[Runner, subprocess.CompletedProcess | None]:
        return apply_job(git, bin_dir, {**api_env, "PROVISIONER_AT": at}, name)

    _, applied = scheduled_run("day-1", "2026-03-15T10:23:00Z")  # January to March are due
    assert "Apply complete! Batches: 3 created" in succeeded(applied).stdout
    assert sorted(recorded_on_main(git)) == ["acme/monthly@2026-01", "acme/monthly@2026-02", "acme/monthly@2026-03"]

    runner, applied = scheduled_run("day-2", "2026-03-16T10:23:00Z")  # nothing new: no apply, no commit
    assert applied is None and runner.outputs["changes"] == "false"

    _, applied = scheduled_run("april", "2026-04-01T10:23:00Z")  # April began in Berlin: one create
    assert "Apply complete! Batches: 1 created" in succeeded(applied).stdout
    recorded = recorded_on_main(git)
    assert sorted(recorded)[-1] == "acme/monthly@2026-04" and len(recorded) == 4
    assert {b["id"] for b in sandbox.all_batches()} == {r["batch_id"] for r in recorded.values()}
    assert {b["name"] for b in sandbox.all_batches()} == {f"Acme 2026-0{m}" for m in range(1, 5)}
    commits = git("log", "--format=%s", "main", "--", "state/default.json", cwd=git.origin).splitlines()
    assert len(commits) == 3  # the seed's, and one per run that created something


def test_commit_step_keeps_the_journal_of_an_interrupted_apply_and_skips_lock_and_backup(git, bin_dir):
    ci = git.clone("ci-killed")
    state = ci / "state" / "default.json"
    writer = FileWriter(state)
    attributes = {"clientId": ACME_ID, "name": "q9", "startingBalance": 9}
    writer.record_intent(
        Intent(address="acme/q9", client_id=ACME_ID, attributes=attributes, digest="d", at="2026-01-01T00:00:00.000Z")
    )
    del writer  # killed before its first checkpoint: only the journal knows
    (ci / "state" / "default.json.lock").write_text("{}")
    (ci / "state" / "default.json.backup").write_text("{}")

    succeeded(Runner("apply", ci, bin_dir, {}).step("Commit the state back"))

    assert git.files_on_main("state") == ["state/.gitkeep", "state/default.json", "state/default.json.journal"]
    assert "acme/q9" in git.show_on_main("state/default.json.journal")


# ------------------------------------------------------------------ the examples themselves


def test_github_workflow_plans_pull_requests_and_applies_main_one_at_a_time():
    triggers = GITHUB["on"]
    assert "pull_request" in triggers and triggers["push"]["branches"] == ["main"]
    plan, apply = GITHUB["jobs"]["plan"], GITHUB["jobs"]["apply"]
    assert "pull_request" in plan["if"] and "refs/heads/main" in apply["if"]
    assert "'push'" in apply["if"]
    # Two schedules: the daily one applies recurring grants, the weekday one only checks for drift.
    grants_cron, drift_cron = GRANTS_CRON, "17 6 * * 1-5"
    assert [entry["cron"] for entry in triggers["schedule"]] == [drift_cron, grants_cron]
    assert f"github.event.schedule == '{grants_cron}'" in apply["if"] and drift_cron not in apply["if"]
    assert f"github.event.schedule == '{drift_cron}'" in GITHUB["jobs"]["drift"]["if"]
    assert "--refresh --detailed-exitcode" in GITHUB["jobs"]["drift"]["steps"][-1]["run"]
    assert apply["concurrency"]["cancel-in-progress"] == "false"
    assert apply["permissions"]["contents"] == "write"
    assert plan["permissions"]["pull-requests"] == "write"
    assert workflow_step("apply", "Commit the state back")["if"] == "always()"
    assert apply["env"]["TI_API_KEY"] == "${{ secrets.TI_API_KEY }}"
    assert "env" not in plan or "TI_API_KEY" not in plan["env"]  # pull requests never see the key
    checkout = next(step for step in apply["steps"] if step.get("uses", "").startswith("actions/checkout"))
    assert checkout["with"]["ref"] == "main"  # the tip with the last committed state, not the pushed SHA
    uploads = [step for step in plan["steps"] if step.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and "provisioner.plan" in uploads[0]["with"]["path"]
    [action] = [step for step in plan["steps"] if "/provisioner@" in step.get("uses", "")]
    assert action["with"]["command"] == "plan" and action["id"] == "plan"


def test_gitlab_pipeline_does_the_same():
    pipeline = load_yaml(CI / "gitlab-ci.yml")
    plan, apply = pipeline["plan"], pipeline["apply"]
    assert any("merge_request_event" in rule["if"] for rule in plan["rules"])
    assert all("CI_DEFAULT_BRANCH" in rule["if"] for rule in apply["rules"])
    assert GITLAB_GRANTS_RULE in [rule["if"] for rule in apply["rules"]]  # the daily schedule for grants
    assert apply["resource_group"] and apply["interruptible"] == "false"
    assert "provisioner.plan" in plan["artifacts"]["paths"]
    notes = "\n".join(flatten(plan["script"]))
    assert "/merge_requests/${CI_MERGE_REQUEST_IID}/notes" in notes
    script, after = "\n".join(flatten(apply["script"])), "\n".join(flatten(apply["after_script"]))
    assert STAGE_STATE in script and STAGE_STATE in after  # committed after a failed or cancelled apply too
    assert "TI_API_KEY" not in pipeline.get("variables", {})


def test_postgres_variants_apply_grants_daily_too():
    github = load_yaml(CI / "github-actions-postgres.yml")
    assert GRANTS_CRON in [entry["cron"] for entry in github["on"]["schedule"]]
    assert f"github.event.schedule == '{GRANTS_CRON}'" in github["jobs"]["apply"]["if"]
    assert GRANTS_CRON not in github["jobs"]["drift"]["if"]
    gitlab = load_yaml(CI / "gitlab-ci-postgres.yml")
    assert GITLAB_GRANTS_RULE in [rule["if"] for rule in gitlab["apply"]["rules"]]
    assert all("grants" not in rule["if"] for rule in gitlab["drift"]["rules"])


def flatten(items):
    for item in items:
        if isinstance(item, list):
            yield from flatten(item)
        else:
            yield item


@pytest.mark.parametrize(
    ("name", "commands"),
    [
        ("github-actions.yml", (MAIN_PLAN, APPLY_SAVED, STAGE_STATE)),  # steps run above; the plan is the action's
        ("gitlab-ci.yml", (VALIDATE, PR_PLAN, MAIN_PLAN, APPLY_SAVED, STAGE_STATE)),
    ],
)
def test_ci_examples_run_the_tested_commands(name, commands):
    text = (CI / name).read_text(encoding="utf-8")
    for command in commands:
        assert command in text, f"{name} no longer runs: {command}"


def test_ci_examples_read_the_exit_code_alone_to_tell_a_plan_that_cannot_be_applied():
    for path in sorted(CI.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\bjq\b", text) and "json.load" not in text, path.name


def test_ci_examples_hold_no_secrets():
    for path in sorted(CI.iterdir()):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"ti_(live|test)_\w+", text), path.name
        assert not re.search(r"TI_API_KEY\s*[:=]\s*['\"]?[A-Za-z0-9]", text), path.name
