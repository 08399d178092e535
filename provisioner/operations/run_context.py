"""Who runs this command, from which commit and review, through which CI run, and why.

Gathered once per run, from the environment (GitHub Actions, GitLab CI, else this machine) and
``git``, into one frozen value that the state writer stamps on each event of the audit trail.
Only the variables named here are read: never a token, never a secret.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from provisioner import __version__

REASON_LIMIT = 500  # characters of --reason kept
GIT_TIMEOUT = 5.0
PULL_REF = re.compile(r"refs/pull/([0-9]+)/")
COMMIT = re.compile(r"[0-9a-f]{7,64}")


@dataclass(frozen=True)
class RunContext:
    """What every event of one run names (absent values are left out of the events)."""

    version: str = __version__
    actor: str | None = None
    commit: str | None = None
    run_url: str | None = None
    review: str | None = None  # the pull or merge request number
    reason: str | None = None
    plan_digest: str | None = None  # sha256 of the saved plan, or of the plan as applied

    def fields(self) -> dict[str, str]:
        return {name: value for name, value in asdict(self).items() if value}

    def with_plan_digest(self, digest: str) -> RunContext:
        return replace(self, plan_digest=digest)


def gather_run_context(
    reason: str | None = None, manifests: Path | None = None, environ: Mapping[str, str] | None = None
) -> RunContext:
    """``reason``: --reason (else PROVISIONER_REASON); ``manifests``: where ``git rev-parse HEAD``
    runs when no CI names the commit."""
    env = os.environ if environ is None else environ
    return RunContext(
        actor=_clean(env.get("GITHUB_ACTOR") or env.get("GITLAB_USER_LOGIN")) or local_actor(),
        commit=_commit(env, manifests),
        run_url=_run_url(env),
        review=_review(env),
        reason=_clean(reason if reason is not None else env.get("PROVISIONER_REASON"), REASON_LIMIT),
    )


def local_actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def _commit(env: Mapping[str, str], manifests: Path | None) -> str | None:
    for name in ("GITHUB_SHA", "CI_COMMIT_SHA"):
        value = (env.get(name) or "").strip().lower()
        if COMMIT.fullmatch(value):
            return value
    return git_head(manifests) if manifests is not None else None


def git_head(where: Path) -> str | None:
    """HEAD of the repository holding ``where``; None outside one (or without git)."""
    directory = where if where.is_dir() else where.parent
    try:
        answer = subprocess.run(
            ["git", "-C", str(directory), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    value = answer.stdout.strip()
    return value if answer.returncode == 0 and COMMIT.fullmatch(value) else None


def _run_url(env: Mapping[str, str]) -> str | None:
    server, repository, run = (env.get(name) for name in ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if server and repository and run:
        return _clean(f"{server.rstrip('/')}/{repository}/actions/runs/{run}")
    return _clean(env.get("CI_JOB_URL"))


def _review(env: Mapping[str, str]) -> str | None:
    match = PULL_REF.match(env.get("GITHUB_REF") or "")
    if match:
        return match.group(1)
    number = (env.get("CI_MERGE_REQUEST_IID") or "").strip()
    return number if number.isdigit() else None


def _clean(value: str | None, limit: int = 200) -> str | None:
    """One line of printable text, or None."""
    if value is None:
        return None
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in value).split())[:limit]
    return text or None


def digest_of_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
