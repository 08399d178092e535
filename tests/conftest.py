"""Shared fixtures: a real sandbox on a free loopback port, manifests on disk, the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from provisioner.backends.file import FileBackend
from provisioner.cli import main
from provisioner.sandbox import Sandbox

TEST_KEY = "ti_test_" + "k" * 24
ACME_ID = "6a0c1d7e-3b2f-4c1a-9e8d-7f6a5b4c3d21"
GLOBEX_ID = "0f1e2d3c-4b5a-4697-8877-665544332211"
ACCOUNT_ID = "5e4d3c2b-1a09-4f8e-8d7c-6b5a49382716"

# Fixtures kept in their own modules, available to every test: the PostgreSQL server and its
# databases (pg.py), the finance book of the report tests (finance_book.py).
pytest_plugins = ["pg", "finance_book"]


@pytest.fixture
def sandbox():
    with Sandbox(api_key=TEST_KEY, page_size=5) as server:
        yield server


@pytest.fixture
def api_env(sandbox, monkeypatch):
    """TI_BASE_URL/TI_API_KEY pointing at the sandbox, for CliRunner and subprocesses."""
    # The sandbox has no rate limit to respect; pacing is tested on its own.
    env = {"TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def init_state(path: Path) -> Path:
    """The state file at ``path``, created empty as 'provisioner init' does if it is not there yet."""
    if not Path(path).exists():
        FileBackend(path).create()
    return path


def recorded_nothing(path: Path) -> bool:
    """The state is as init left it: nothing recorded, and its serial did not move."""
    import json

    data = json.loads(path.read_text())
    return data["serial"] == 0 and not data["resources"] and not data["pending"]


@pytest.fixture
def state(tmp_path):
    """The state file of a test, created empty as 'provisioner init' does."""
    return init_state(tmp_path / "state" / "default.json")


@pytest.fixture
def no_state(tmp_path):
    """Where a state file would be, with none there (init not run)."""
    return tmp_path / "state" / "default.json"


@pytest.fixture
def write_manifest(tmp_path):
    """write_manifest(text, name="m.yaml") -> Path of a manifest under tmp_path/manifests."""
    directory = tmp_path / "manifests"
    directory.mkdir(exist_ok=True)

    def write(text: str, name: str = "m.yaml") -> Path:
        path = directory / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


def two_client_manifest(acme_balance: int = 5000, acme_name: str = "Acme Q1") -> str:
    return f"""
    clients:
      acme:
        id: {ACME_ID}
        creditAccountId: {ACCOUNT_ID}
        batches:
          q1:
            name: {acme_name}
            startingBalance: {acme_balance}
            expiresOn: 2030-03-31T23:59:59Z
          q2:
            startingBalance: 2500
      globex:
        id: {GLOBEX_ID}
        batches:
          starter:
            startingBalance: 1200
    """


@pytest.fixture
def applied(cli, api_env, sandbox, write_manifest, state):
    """Three batches (acme/q1, acme/q2, globex/starter) created and recorded; returns (manifest, state)."""
    manifest = write_manifest(two_client_manifest())
    result = cli("apply", manifest, "--state", state, "--auto-approve")
    assert result.exit_code == 0, result.output
    return manifest, state


def call_api(sandbox, method: str, path: str, body: dict | None = None) -> dict:
    """An admin at work in Thought Industries, outside provisioner: one request, its payload."""
    response = requests.request(
        method, sandbox.url + path, json=body, headers={"Authorization": f"Bearer {TEST_KEY}"}, timeout=10
    )
    assert response.status_code in (200, 201), response.text
    return next(iter(response.json()["data"].values()))


@pytest.fixture
def cli(tmp_path):
    """cli(*args) runs the CLI in-process with CliRunner; returns the click Result."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None):
        return runner.invoke(main, [str(arg) for arg in args], input=input, catch_exceptions=False)

    return run


def run_subprocess(
    *args: str, env: dict | None = None, cwd: Path | None = None, timeout: float = 60, input: str | None = None
) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a real process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *map(str, args)],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def start_apply(
    manifest: Path,
    state: Path | str,
    api_url: str,
    *options: str,
    env: dict | None = None,
    cwd: Path | None = None,
    log: Path | None = None,
) -> subprocess.Popen:
    """``provisioner apply MANIFEST --state STATE --auto-approve OPTIONS`` as a real process, against the API at
    ``api_url``. ``env``: variables over the test's environment (None as a value: left out). ``log``: a file
    that gets stdout and stderr together; without it, both are pipes (text)."""
    full_env = {**os.environ, "TI_BASE_URL": api_url, "TI_API_KEY": TEST_KEY, **(env or {})}
    command = [
        sys.executable,
        "-m",
        "provisioner",
        "apply",
        str(manifest),
        "--state",
        str(state),
        "--auto-approve",
        *options,
    ]
    full_env = {name: value for name, value in full_env.items() if value is not None}
    if log is None:
        return subprocess.Popen(
            command, env=full_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
    with open(log, "w") as output:
        return subprocess.Popen(command, env=full_env, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)


def wait_until(condition, what: str, timeout: float = 20.0) -> None:
    """Polls ``condition`` until it holds; fails naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.005)


@pytest.fixture(autouse=True)
def manifest_cache_home(tmp_path_factory, monkeypatch):
    """Each test its own manifest cache ($XDG_CACHE_HOME), never one under the working directory."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
