#!/usr/bin/env python3
"""What the GitHub Action (action.yml at the repository's root) does, as one script with no dependency
beyond the standard library, so that it runs on any runner's Python and is tested offline.

    python action/run.py install   pip-installs the provisioner the action asks for
    python action/run.py run       plan (and, for command=apply, apply the saved plan); outputs; the comment

Inputs come as INPUT_* environment variables (action.yml passes each one), the rest from what GitHub
sets in every job: GITHUB_EVENT_NAME, GITHUB_EVENT_PATH, GITHUB_REPOSITORY, GITHUB_API_URL, GITHUB_SHA,
GITHUB_OUTPUT, GITHUB_STEP_SUMMARY.

On a pull request the Markdown plan is posted as one comment, found again on every push by a hidden
marker and edited in place: one comment per pull request (and per workspace and paths), never a pile.
A comment longer than GitHub accepts is cut at a line, with a note saying where the full plan is.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

# GitHub refuses a comment body over 65,536 characters. Bodies are measured in UTF-8 bytes, which are never
# fewer than characters however GitHub counts them (code points or UTF-16 units), so a body that fits here
# fits there.
COMMENT_LIMIT = 65536
MARKER = "<!-- provisioner-action comment: {key} -->"
FULL_PLAN = "<details><summary>Full plan</summary>"
SHORTENED_NOTE = (
    "\n\n_Shortened to fit in a pull-request comment: the full plan is in this run's log and in `{markdown}`._\n"
)
PULL_REQUEST_EVENTS = ("pull_request", "pull_request_target")
PACKAGE = "ti-provisioner"


class ActionError(Exception):
    """A bad input or setting: said once, as an ::error::, and the step fails."""


# ------------------------------------------------------------------ inputs


@dataclass
class Inputs:
    command: str = "plan"
    paths: list[str] = field(default_factory=lambda: ["manifests/"])
    state: str = ""
    workspace: str = ""
    args: list[str] = field(default_factory=list)
    plan_file: str = "provisioner.plan"
    markdown_file: str = "plan.md"
    lock_timeout: str = "60"
    comment: bool = True
    comment_key: str = ""
    fail_on_blocked: bool = True
    token: str = ""

    @classmethod
    def from_environment(cls, environ: dict[str, str]) -> Inputs:
        def get(name: str, default: str = "") -> str:
            return environ.get(f"INPUT_{name.upper().replace('-', '_')}", default).strip()

        command = get("command", "plan") or "plan"
        if command not in ("plan", "apply"):
            raise ActionError(f"input 'command' is {command!r}: expected plan or apply")
        paths = get("paths", "manifests/").split() or ["manifests/"]
        lock_timeout = get("lock-timeout", "60") or "60"
        if not lock_timeout.isdigit():
            raise ActionError(f"input 'lock-timeout' is {lock_timeout!r}: expected a whole number of seconds")
        return cls(
            command=command,
            paths=paths,
            state=get("state"),
            workspace=get("workspace"),
            args=shlex.split(get("args")),
            plan_file=get("plan-file", "provisioner.plan") or "provisioner.plan",
            markdown_file=get("markdown-file", "plan.md") or "plan.md",
            lock_timeout=lock_timeout,
            comment=flag(get("comment", "true"), "comment"),
            comment_key=get("comment-key"),
            fail_on_blocked=flag(get("fail-on-blocked", "true"), "fail-on-blocked"),
            token=get("github-token"),
        )

    def backend_options(self) -> list[str]:
        options = []
        if self.state:
            options += ["--state", self.state]
        if self.workspace:
            options += ["--workspace", self.workspace]
        return options

    def key(self) -> str:
        """Which comment is this invocation's: one per workspace and paths, unless named."""
        return self.comment_key or f"{self.workspace or 'default'} {' '.join(self.paths)}"


def flag(value: str, name: str) -> bool:
    if value.lower() in ("true", "yes", "1"):
        return True
    if value.lower() in ("false", "no", "0"):
        return False
    raise ActionError(f"input '{name}' is {value!r}: expected true or false")


# ------------------------------------------------------------------ install


def install_spec(version: str, action_path: Path) -> str:
    """What pip installs: the version asked for from the package index, or this action's own source."""
    version = version.strip()
    if version in ("", "action"):
        version = own_version(action_path)
    if version == "source":
        return f"{action_path}[postgres]"
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)*([a-z0-9.+-]*)", version):
        raise ActionError(
            f"input 'version' is {version!r}: expected a release such as 0.1.0, 'action' (the version of "
            "this action) or 'source' (this action's own source)"
        )
    return f"{PACKAGE}[postgres]=={version}"


def own_version(action_path: Path) -> str:
    text = (action_path / "provisioner" / "__init__.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__ = "([^"]+)"', text, re.MULTILINE)
    if not found:
        raise ActionError(f"no __version__ in {action_path / 'provisioner' / '__init__.py'}")
    return found.group(1)


# ------------------------------------------------------------------ the comment


def comment_body(key: str, heading: str, markdown: str, markdown_file: str) -> str:
    """The comment: the hidden marker, a heading, the plan; cut to GitHub's limit with a note if need be."""
    head = f"{MARKER.format(key=key)}\n{heading}\n\n"
    body = head + markdown.rstrip("\n") + "\n"
    if fits(body):
        return body
    note = SHORTENED_NOTE.format(markdown=markdown_file)
    if FULL_PLAN in markdown:  # the folded full plan goes first: the tables above it are what a reviewer reads
        markdown = markdown[: markdown.index(FULL_PLAN)]
        body = head + markdown.rstrip("\n") + "\n" + note
        if fits(body):
            return body
    room = COMMENT_LIMIT - len((head + note).encode()) - len(b"```\n")
    kept, size, fenced = [], 0, False
    for line in markdown.splitlines(keepends=True):
        size += len(line.encode())
        if size > room:
            break
        kept.append(line)
        if line.lstrip().startswith("```"):
            fenced = not fenced
    text = "".join(kept).rstrip("\n") + "\n"
    if fenced:  # never leave the rest of the comment inside a code block
        text += "```\n"
    return head + text + note


def fits(body: str) -> bool:
    return len(body.encode()) <= COMMENT_LIMIT


class GitHub:
    """The few calls of GitHub's REST API the comment needs: list, create, edit an issue comment."""

    def __init__(self, api_url: str, repository: str, token: str):
        if not token:
            raise ActionError("no token to comment with: give the action 'github-token' (its default is github.token)")
        self.api_url = api_url.rstrip("/")
        self.repository = repository
        self.token = token

    def request(self, method: str, url: str, payload: dict | None = None) -> tuple[object, dict[str, str]]:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/vnd.github+json")
        request.add_header("X-GitHub-Api-Version", "2022-11-28")
        request.add_header("User-Agent", "provisioner-action")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"null"), dict(response.headers)
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace")[:300]
            raise ActionError(f"GitHub answered {error.code} to {method} {url}: {detail}") from None
        except urllib.error.URLError as error:
            raise ActionError(f"GitHub could not be reached ({method} {url}): {error.reason}") from None

    def comments(self, number: int) -> list[dict]:
        url: str | None = f"{self.api_url}/repos/{self.repository}/issues/{number}/comments?per_page=100"
        found: list[dict] = []
        while url:
            page, headers = self.request("GET", url)
            found += page if isinstance(page, list) else []
            url = next_link(headers.get("Link", ""))
        return found

    def upsert(self, number: int, marker: str, body: str) -> tuple[str, dict]:
        """Edit the comment that carries the marker (the newest, if earlier runs left several), or post one."""
        ours = [c for c in self.comments(number) if str(c.get("body", "")).startswith(marker)]
        if ours:
            newest = max(ours, key=lambda c: (c.get("created_at", ""), c.get("id", 0)))
            url = f"{self.api_url}/repos/{self.repository}/issues/comments/{newest['id']}"
            comment, _ = self.request("PATCH", url, {"body": body})
            return "updated", comment  # type: ignore[return-value]
        url = f"{self.api_url}/repos/{self.repository}/issues/{number}/comments"
        comment, _ = self.request("POST", url, {"body": body})
        return "created", comment  # type: ignore[return-value]


def next_link(header: str) -> str | None:
    for part in header.split(","):
        match = re.match(r'\s*<([^>]+)>\s*;\s*rel="next"', part)
        if match:
            return match.group(1)
    return None


# ------------------------------------------------------------------ running provisioner


@dataclass
class Outcome:
    exitcode: int
    has_changes: bool
    blocked: list[str]


def provisioner(*args: str) -> subprocess.CompletedProcess:
    print(f"$ provisioner {shlex.join(args)}", flush=True)
    try:
        return subprocess.run(["provisioner", *args], capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ActionError("provisioner is not on PATH: did the install step of the action run?") from None


def blocked_changes(plan_file: Path) -> list[str]:
    """Why a saved plan cannot be applied: blocked and missing changes, guardrail violations."""
    plan = json.loads(plan_file.read_text(encoding="utf-8"))["plan"]
    reasons = [f"{c['address']}: {c['action']}" for c in plan["changes"] if c["action"] in ("blocked", "missing")]
    for violation in plan.get("violations", []):
        reasons.append(violation["message"] if isinstance(violation, dict) else str(violation))
    return reasons


def run(environ: dict[str, str], cwd: Path) -> int:
    inputs = Inputs.from_environment(environ)
    plan_file, markdown_file = cwd / inputs.plan_file, cwd / inputs.markdown_file
    plan_file.unlink(missing_ok=True)  # a saved plan left by an earlier step must not pass for this one's
    plan = provisioner(
        "plan",
        *inputs.paths,
        *inputs.backend_options(),
        "--format",
        "markdown",
        "--out",
        str(plan_file),
        "--detailed-exitcode",
        "--no-color",
        *inputs.args,
    )
    sys.stderr.write(plan.stderr)
    markdown_file.write_text(plan.stdout, encoding="utf-8")
    print(plan.stdout, flush=True)
    exitcode = plan.returncode if plan.returncode in (0, 1, 2) else 1
    blocked = blocked_changes(plan_file) if exitcode == 2 and plan_file.exists() else []
    outcome = Outcome(exitcode=exitcode, has_changes=exitcode == 2, blocked=blocked)

    comment_url = ""
    if environ.get("GITHUB_EVENT_NAME") in PULL_REQUEST_EVENTS and inputs.comment:
        comment_url = post_comment(environ, inputs, plan, markdown_file.name)
    summary = environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a", encoding="utf-8") as file:
            file.write(plan.stdout if exitcode != 1 else f"**The plan failed:**\n\n```\n{plan.stderr}```\n")

    if inputs.command == "apply" and outcome.exitcode == 2:
        if blocked:
            print(f"::error::The plan cannot be applied: {'; '.join(blocked)}", flush=True)
            outcome.exitcode = 1
        else:
            applied = provisioner("apply", str(plan_file), "--lock-timeout", inputs.lock_timeout, "--no-color")
            sys.stdout.write(applied.stdout)
            sys.stderr.write(applied.stderr)
            outcome.exitcode = applied.returncode

    write_outputs(
        environ,
        {
            "exitcode": str(outcome.exitcode),
            "has-changes": "true" if outcome.has_changes else "false",
            "blocked": "true" if outcome.blocked else "false",
            "plan-file": str(plan_file) if plan_file.exists() else "",
            "markdown-file": str(markdown_file),
            "comment-url": comment_url,
        },
    )
    if outcome.exitcode == 1:
        print(f"::error::provisioner {inputs.command} failed (exit code 1): see the log above", flush=True)
        return 1
    if inputs.command == "plan" and outcome.blocked and inputs.fail_on_blocked:
        print(f"::error::The plan cannot be applied: {'; '.join(outcome.blocked)}", flush=True)
        return 1
    return 0


def post_comment(environ: dict[str, str], inputs: Inputs, plan: subprocess.CompletedProcess, markdown_name: str) -> str:
    """Posts or edits the plan comment; a comment that cannot be posted is a warning, never the check's result."""
    event = json.loads(Path(environ["GITHUB_EVENT_PATH"]).read_text(encoding="utf-8"))
    pull_request = event["pull_request"]
    sha = (pull_request.get("head", {}).get("sha") or environ.get("GITHUB_SHA", ""))[:7]
    heading = f"### provisioner plan for {sha}" + (f" (workspace {inputs.workspace})" if inputs.workspace else "")
    if plan.returncode == 1:
        markdown = f"**The plan failed:**\n```\n{plan.stderr.rstrip()}\n```\n"
    else:
        markdown = plan.stdout
    body = comment_body(inputs.key(), heading, markdown, markdown_name)
    try:
        github = GitHub(
            environ.get("GITHUB_API_URL", "https://api.github.com"), environ["GITHUB_REPOSITORY"], inputs.token
        )
        what, comment = github.upsert(int(pull_request["number"]), MARKER.format(key=inputs.key()), body)
    except ActionError as error:
        # A pull request from a fork gets a read-only token: the plan still decides the check.
        print(f"::warning::The plan comment was not posted: {error}", flush=True)
        return ""
    url = str(comment.get("html_url", "")) if isinstance(comment, dict) else ""
    print(f"Plan comment {what}: {url}", flush=True)
    return url


def write_outputs(environ: dict[str, str], outputs: dict[str, str]) -> None:
    path = environ.get("GITHUB_OUTPUT")
    lines = "".join(f"{name}={value}\n" for name, value in outputs.items())
    if path:
        with open(path, "a", encoding="utf-8") as file:
            file.write(lines)
    else:
        sys.stdout.write(lines)


def main(argv: list[str]) -> int:
    action_path = Path(__file__).resolve().parent.parent
    try:
        if argv[1:] == ["install"]:
            spec = install_spec(os.environ.get("INPUT_VERSION", ""), action_path)
            print(f"$ pip install {spec}", flush=True)
            return subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", spec], check=False).returncode
        if argv[1:] == ["run"]:
            return run(dict(os.environ), Path.cwd())
        print("usage: run.py install | run", file=sys.stderr)
        return 2
    except ActionError as error:
        print(f"::error::{error}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
