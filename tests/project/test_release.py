"""What a release is made of: one version, a changelog entry for it, the name on the package index,
shell completion, and a README that stays short and points at the manual. (.ci/wheel-smoke installs the
built wheel and runs it; this file checks the sources it is built from.)"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import provisioner

tomllib = pytest.importorskip("tomllib")  # Python 3.11 and later
ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_version_has_one_source():
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "provisioner.__version__"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", provisioner.__version__)
    done = subprocess.run([sys.executable, "-m", "provisioner", "--version"], capture_output=True, text=True)
    assert done.stdout.strip() == f"provisioner, version {provisioner.__version__}"


def test_the_changelog_starts_with_the_version_released():
    changelog = (ROOT / "CHANGELOG.md").read_text()
    releases = re.findall(r"^## \[([^\]]+)\](?: - (\d{4}-\d{2}-\d{2}))?$", changelog, re.MULTILINE)
    assert releases[0] == ("Unreleased", "")
    version, date = releases[1]
    assert version == provisioner.__version__ and date
    assert f"[{version}]: " in changelog  # the link Keep a Changelog puts at the bottom


def test_the_distribution_has_its_own_name_and_the_command_keeps_provisioner():
    assert PYPROJECT["project"]["name"] == "ti-provisioner"
    assert PYPROJECT["project"]["scripts"] == {"provisioner": "provisioner.cli:main"}
    readme = (ROOT / "README.md").read_text()
    assert "pipx install ti-provisioner" in readme and "pip install 'ti-provisioner[postgres]'" in readme
    for example in (ROOT / "examples" / "ci").glob("*.yml"):
        assert "pip install provisioner" not in example.read_text()
        assert "provisioner @ git+" not in example.read_text()


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_shell_completion_as_the_readme_says(shell):
    readme = (ROOT / "README.md").read_text()
    assert f"_PROVISIONER_COMPLETE={shell}_source provisioner" in readme
    script = subprocess.run(
        [sys.executable, "-c", "from provisioner.cli import main; main(prog_name='provisioner')"],
        env={**os.environ, "_PROVISIONER_COMPLETE": f"{shell}_source"},
        capture_output=True,
        text=True,
    )
    assert script.returncode == 0 and "_PROVISIONER_COMPLETE" in script.stdout


def test_completion_completes_commands():
    done = subprocess.run(
        [sys.executable, "-c", "from provisioner.cli import main; main(prog_name='provisioner')"],
        env={
            **os.environ,
            "_PROVISIONER_COMPLETE": "bash_complete",
            "COMP_WORDS": "provisioner sta",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
    )
    assert done.stdout.split() == ["plain,state"]


def test_the_readme_is_short_and_keeps_the_test_command():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text()
    [test_command] = [line for line in ci.splitlines() if line.startswith(".venv/bin/python -m pytest")]
    assert test_command in readme
    for page in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / page).is_file(), page


def test_no_issue_numbers_or_review_labels_in_what_users_and_contributors_read():
    paths = [
        ROOT / "README.md",
        ROOT / "CHANGELOG.md",
        ROOT / "pyproject.toml",
        ROOT / "mkdocs.yml",
        ROOT / "action.yml",
        ROOT / "bench" / "README.md",
        *ROOT.glob("docs/*.md"),
        *ROOT.glob("provisioner/**/*.py"),
        *ROOT.glob("examples/ci/*"),
        *ROOT.glob("action/*.py"),
        *(path for path in ROOT.glob("tests/**/*.py") if path.name != "test_release.py"),
    ]
    # "Issue 13:", "issues 9 and 10", "PR #12"; not "acme/q1 issues 5,000 credits", nor a colour (#333).
    pattern = re.compile(r"\b(?:issues?|PR|pull request)\s+#?\d+(?![\d,]*\s+credit)\b", re.IGNORECASE)
    found = [
        f"{path.relative_to(ROOT)}: {match.group(0)}" for path in paths for match in pattern.finditer(path.read_text())
    ]
    assert found == []
