"""pre-commit: the hooks this repository publishes (.pre-commit-hooks.yaml at its root), the example
configuration that uses them, and the repository's own configuration, checked against pre-commit's
schemas (SchemaStore's, carried in tests/schemas); each published hook's command run as pre-commit runs
it (its entry and args, in the root of a repository of manifests) by the real CLI.

Not run here: pre-commit itself (it is not a dependency), which would install this repository from its
tag into an environment of its own; .ci/wheel-smoke proves that the package installs and runs that way.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import ACME_ID, init_state

import provisioner

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
HOOKS = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
EXAMPLE = yaml.safe_load((ROOT / "examples" / "ci" / "pre-commit-config.yaml").read_text())
OWN = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())

ACME = f"""
clients:
  acme:
    id: {ACME_ID}
    batches:
      q1:
        name: Acme Q1
        startingBalance: 5000
"""


def hook(hook_id: str) -> dict:
    [found] = [h for h in HOOKS if h["id"] == hook_id]
    return found


def schema(name: str) -> dict:
    loaded = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft7Validator.check_schema(loaded)
    return loaded


@pytest.fixture
def repository(tmp_path):
    """The root of a repository of manifests, with the state 'provisioner init' made committed beside them."""
    root = tmp_path / "credits"
    (root / "manifests").mkdir(parents=True)
    (root / "manifests" / "acme.yaml").write_text(textwrap.dedent(ACME).lstrip())
    init_state(root / "state" / "default.json")
    return root


def run_hook(hook_id: str, root: Path) -> subprocess.CompletedProcess:
    """The hook's command as pre-commit runs it: entry, then args, no file names, in the repository's root."""
    spec = hook(hook_id)
    assert spec["pass_filenames"] is False  # every manifest is read together
    command = [*shlex.split(spec["entry"]), *spec.get("args", [])]
    assert command[0] == "provisioner"
    env = {k: v for k, v in os.environ.items() if k not in ("PROVISIONER_STATE", "TI_BASE_URL", "TI_API_KEY")}
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *command[1:]],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# ------------------------------------------------------------------ the files, against pre-commit's schemas


def test_published_hooks_are_valid_and_installable_by_pre_commit():
    jsonschema.validate(HOOKS, schema("pre-commit-hooks.json"))
    assert [h["id"] for h in HOOKS] == ["provisioner-validate", "provisioner-plan"]
    for spec in HOOKS:
        assert spec["language"] == "python"  # pre-commit pip-installs this repository at the tag
        assert spec["entry"].split()[0] == "provisioner"


def test_the_schema_catches_a_broken_hook():
    broken = [{k: v for k, v in HOOKS[0].items() if k != "entry"}]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema("pre-commit-hooks.json"))


def test_the_example_config_points_at_this_repository_and_release():
    jsonschema.validate(EXAMPLE, schema("pre-commit-config.json"))
    [repo] = EXAMPLE["repos"]
    assert repo["repo"].startswith("https://github.com/") and repo["repo"].endswith("/provisioner")
    assert repo["rev"] == f"v{provisioner.__version__}"
    assert {h["id"] for h in repo["hooks"]} <= {h["id"] for h in HOOKS}


def test_the_repositorys_own_config_runs_ruff_and_mypy():
    jsonschema.validate(OWN, schema("pre-commit-config.json"))
    ids = {h["id"] for repo in OWN["repos"] for h in repo["hooks"]}
    assert {"ruff", "ruff-format", "mypy"} <= ids


def test_hooks_run_when_manifests_or_the_state_change():
    assert re.search(hook("provisioner-validate")["files"], "manifests/acme.yaml")
    assert re.search(hook("provisioner-validate")["files"], "manifests/clients/acme.yml")
    assert not re.search(hook("provisioner-validate")["files"], "README.md")
    assert re.search(hook("provisioner-plan")["files"], "state/default.json")
    assert not re.search(hook("provisioner-plan")["files"], "state/default.json.lock")


# ------------------------------------------------------------------ the hooks' commands, run


def test_validate_hook_passes_good_manifests_and_stops_a_client_declared_twice(repository):
    good = run_hook("provisioner-validate", repository)
    assert good.returncode == 0, good.stderr
    assert good.stdout.startswith("Success!")

    (repository / "manifests" / "acme-copy.yaml").write_text(textwrap.dedent(ACME).lstrip())
    broken = run_hook("provisioner-validate", repository)
    assert broken.returncode == 1
    assert "declare each client in one file only" in broken.stderr
    assert "Traceback" not in broken.stderr


def test_plan_hook_prints_the_plan_against_the_committed_state(repository):
    shown = run_hook("provisioner-plan", repository)
    assert shown.returncode == 0, shown.stderr
    assert "acme/q1" in shown.stdout and "5,000" in shown.stdout
    assert "\x1b[" not in shown.stdout  # no colours in a hook's log


def test_plan_hook_fails_on_a_manifest_error_and_without_a_state(repository):
    (repository / "manifests" / "acme.yaml").write_text(
        textwrap.dedent(ACME).lstrip().replace("startingBalance", "startingBalence")
    )
    broken = run_hook("provisioner-plan", repository)
    assert broken.returncode == 1 and "did you mean 'startingBalance'?" in broken.stderr

    (repository / "manifests" / "acme.yaml").write_text(textwrap.dedent(ACME).lstrip())
    (repository / "state" / "default.json").unlink()
    missing = run_hook("provisioner-plan", repository)
    assert missing.returncode == 1 and "provisioner init" in missing.stderr
