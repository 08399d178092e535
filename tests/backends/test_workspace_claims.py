"""Two workspaces of one PostgreSQL database pointed at one instance: a client's batches belong to one.

Real processes against a real sandbox and a real PostgreSQL. Each workspace's duplicate guard lists a
client only before its first create, so two workspaces applying the same manifests at once each saw
nothing of the other and issued everything twice. The first workspace to create for a client now claims
it (instance, client) -> workspace; the other is refused that client's creates.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from conftest import TEST_KEY, run_subprocess

from provisioner.backends import open_backend
from provisioner.sandbox import Faults


def manifest(directory: Path) -> tuple[Path, str]:
    client = str(uuid.uuid4())
    lines = ["clients:", "  c0:", f"    id: {client}", "    batches:"]
    for number in range(4):
        lines += [f"      b{number}:", f"        name: Batch {number}", f"        startingBalance: {100 + number}"]
    path = directory / "m.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, client


def env_for(sandbox) -> dict:
    return {"TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0"}


def test_two_workspaces_applying_one_client_at_once_issue_its_batches_once(pg_url, sandbox, tmp_path):
    path, client = manifest(tmp_path)
    for workspace in ("team-a", "team-b"):
        with open_backend(pg_url, workspace) as backend:
            backend.create()
    sandbox.set_faults(Faults(latency=0.3))  # each guard's listing overlaps the other run's
    runs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provisioner",
                "apply",
                str(path),
                "--state",
                pg_url,
                "--workspace",
                workspace,
                "--auto-approve",
                "--parallelism",
                "2",
            ],
            env={**os.environ, **env_for(sandbox)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for workspace in ("team-a", "team-b")
    ]
    results = [run.communicate(timeout=120) + (run.returncode,) for run in runs]

    assert len(sandbox.all_batches(client)) == 4, "two workspaces issued the client's batches twice"
    assert sorted(code for _, _, code in results) == [0, 1], results
    _, refused, _ = next(result for result in results if result[2] == 1)
    assert "belongs to workspace" in refused and "release-client" in refused and "Traceback" not in refused


def test_a_claimed_client_is_refused_to_another_workspace_until_released(pg_url, sandbox, tmp_path):
    path, client = manifest(tmp_path)
    env = env_for(sandbox)
    for workspace in ("team-a", "team-b"):
        run_subprocess("init", "--state", pg_url, "--workspace", workspace, env=env)
    first = run_subprocess("apply", path, "--state", pg_url, "--workspace", "team-a", "--auto-approve", env=env)
    assert first.returncode == 0, first.stderr

    second = run_subprocess(
        "apply",
        path,
        "--state",
        pg_url,
        "--workspace",
        "team-b",
        "--auto-approve",
        "--allow-duplicate",
        "c0/b0",
        env=env,
    )
    assert second.returncode == 1
    assert f"client {client}" in second.stderr and "belongs to workspace 'team-a'" in second.stderr
    assert "--workspace team-a" in second.stderr
    assert len(sandbox.all_batches(client)) == 4

    kept = run_subprocess("state", "release-client", client, "--state", pg_url, "--workspace", "team-a", env=env)
    assert kept.returncode == 1 and "still records 4" in kept.stderr and "Traceback" not in kept.stderr
    none = run_subprocess("state", "release-client", client, "--state", pg_url, "--workspace", "team-b", env=env)
    assert none.returncode == 0 and "had no claim" in none.stdout


def test_a_schema_set_up_by_the_previous_release_is_upgraded_by_the_first_run_that_writes(pg_url, sandbox, tmp_path):
    import psycopg

    path, client = manifest(tmp_path)
    env = env_for(sandbox)
    run_subprocess("init", "--state", pg_url, env=env)
    with psycopg.connect(pg_url, autocommit=True) as conn:  # as version 1 left it: no claims
        conn.execute("DROP TABLE provisioner.client_claims")  # the release before had neither table
        conn.execute("DROP TABLE provisioner.history")
        conn.execute("UPDATE provisioner.meta SET value = '1' WHERE key = 'schema_version'")

    applied = run_subprocess("apply", path, "--state", pg_url, "--auto-approve", env=env)

    assert applied.returncode == 0, applied.stderr
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT value FROM provisioner.meta WHERE key = 'schema_version'").fetchone() == ("2",)
        assert conn.execute(
            "SELECT workspace FROM provisioner.client_claims WHERE client_id = %s", (client,)
        ).fetchall() == [("default",)]
