"""Exactly once on a PostgreSQL state, under faults, with real processes and a real server.

- `provisioner apply` killed with SIGKILL at random instants, then applied again;
- the PostgreSQL server crashing (restarted) while an apply runs, or gone for longer than the
  retries last;
- two applies from two checkouts of the same manifests against one workspace at once;
- the lock of a killed run, and force-unlock of a run that is frozen, not gone.

The judge is the API's list endpoint: each declared batch exists exactly once, and its id is
recorded under its address. A witness proxy in front of the sandbox checks, for every create that
reaches it, that the create's intent was already committed in the database.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from conftest import TEST_KEY, run_subprocess
from faultproxy import FaultProxy, Forward
from pg import start_server
from pg_applies import RECOVERY_WAIT, declared, finish, start_apply, wait_until, write_manifest

from provisioner.backends import open_backend
from provisioner.sandbox import Faults, Sandbox

MAX_APPLY_RUNS = 6


# --- scenery ----------------------------------------------------------------------------------------


def apply_command(manifest: Path, url: str, workspace: str, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "provisioner",
        "apply",
        str(manifest),
        "--state",
        url,
        "--workspace",
        workspace,
        "--auto-approve",
        "--rate-limit",
        "0",
        "--recovery-wait",
        RECOVERY_WAIT,
        *extra,
    ]


def apply_until_done(manifest: Path, url: str, workspace: str, api_url: str) -> list[str]:
    """Applies again until one exits 0; returns each run's stderr."""
    logs = []
    for _ in range(MAX_APPLY_RUNS):
        code, _, err = finish(start_apply(manifest, url, workspace, api_url))
        logs.append(err)
        if code == 0:
            return logs
    raise AssertionError(f"no apply succeeded in {MAX_APPLY_RUNS} runs; the last said:\n{logs[-1]}")


def assert_each_batch_once(sandbox: Sandbox, manifest: Path, url: str, workspace: str) -> None:
    """The judge: one live batch per declared address, its id recorded there, no intent left open."""
    wanted = declared(manifest)
    clients = {client for client, _, _ in wanted.values()}
    live = [batch for client in sorted(clients) for batch in sandbox.all_batches(client)]
    with open_backend(url, workspace) as backend:
        state = backend.read()
    assert not state.pending, f"open intents left: {sorted(state.pending)}"
    made = Counter((batch["clientId"], batch["name"], batch["startingBalance"]) for batch in live)
    assert made == Counter(wanted.values()), (
        f"duplicated or missing: {made - Counter(wanted.values())} / {Counter(wanted.values()) - made}"
    )
    live_by_id = {batch["id"]: batch for batch in live}
    assert sorted(resource.batch_id for resource in state.resources.values()) == sorted(live_by_id), "an id was lost"
    for address, resource in state.resources.items():
        batch = live_by_id[resource.batch_id]
        assert (batch["clientId"], batch["name"], batch["startingBalance"]) == wanted[address], address


class IntentWitness:
    """A proxy rule: every create reaching the API must find its intent committed in the database
    (read on a connection of its own, waiting out a server restart)."""

    def __init__(self, url: str, workspace: str):
        self.url, self.workspace = url, workspace
        self.creates = 0
        self.torn = 0
        self.unwitnessed: list[str] = []
        self._guard = threading.Lock()

    def __call__(self, request) -> Forward:
        if request.method == "POST" and request.body is None:
            # Cut off mid-body by the SIGKILL: not JSON, so the API refuses it and makes nothing
            # (the judge counts the batches in the end).
            with self._guard:
                self.torn += 1
        elif request.method == "POST":
            client = request.path.split("/clients/")[1].split("/")[0]
            found = self._intent_committed(client, request.body)
            with self._guard:
                self.creates += 1
                if not found:
                    self.unwitnessed.append(json.dumps(request.body, sort_keys=True))
        return Forward()

    def _intent_committed(self, client: str, body: dict) -> bool:
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(self.url, connect_timeout=2) as conn:
                    intents = conn.execute(
                        "SELECT intent::text FROM provisioner.intents WHERE workspace = %s", (self.workspace,)
                    ).fetchall()
                break
            except psycopg.OperationalError:
                assert time.monotonic() < deadline, "the database never came back"
                time.sleep(0.05)
        return any(
            json.loads(text)["client_id"] == client and json.loads(text)["attributes"] == body for (text,) in intents
        )


def init_workspace(url: str, workspace: str) -> None:
    with open_backend(url, workspace) as backend:
        backend.create()


# --- SIGKILL at random instants ------------------------------------------------------------------------


# A handful in the suite; PG_KILL_TRIALS=200 for a campaign (about 2 s a trial), summed up on stdout (-s).
KILL_TRIALS = int(os.environ.get("PG_KILL_TRIALS", "5"))


def test_applies_killed_at_random_instants_leave_each_batch_once(pg_url, tmp_path):
    chance = random.Random(8)
    creates = left_open = adopted = reruns = 0
    faults = Faults(
        latency=0.03,
        error_rate=0.05,
        error_after_commit_rate=0.05,
        drop_after_commit_rate=0.05,
        retry_after=0.05,
        seed=8,
    )
    with Sandbox(api_key=TEST_KEY, page_size=5, faults=faults) as sandbox:
        for trial in range(KILL_TRIALS):
            workspace = f"trial-{trial}"
            manifest = write_manifest(tmp_path / workspace, workspace)
            init_workspace(pg_url, workspace)
            witness = IntentWitness(pg_url, workspace)
            with FaultProxy(sandbox.url, witness) as proxy:
                # Killed after a random number of creates reached the API, a random moment later.
                creates_before_kill = chance.randint(1, len(declared(manifest)) - 2)
                killed = start_apply(manifest, pg_url, workspace, proxy.url, "--parallelism", "4")
                wait_until(
                    lambda: witness.creates >= creates_before_kill or killed.poll() is not None,  # noqa: B023
                    "creates reach the API",
                )
                time.sleep(chance.uniform(0, 0.05))
                killed.send_signal(signal.SIGKILL)
                finish(killed)
                with open_backend(pg_url, workspace) as backend:
                    left_open += len(backend.read().pending)

                logs = apply_until_done(manifest, pg_url, workspace, proxy.url)
                reruns += len(logs)
                adopted += "".join(logs).count("found and recorded")

            assert witness.unwitnessed == [], f"trial {trial}: creates sent without a committed intent"
            assert "Traceback" not in "".join(logs)
            assert_each_batch_once(sandbox, manifest, pg_url, workspace)
            creates += witness.creates
    print(
        f"\nkill trials={KILL_TRIALS} duplicates=0 lost=0 create requests={creates} (each after its committed intent) open intents "
        f"left by the kills={left_open} adopted by listing={adopted} applies after the kills={reruns}"
    )


def test_the_lock_of_a_killed_apply_is_released_by_postgres_and_taken_over_with_a_warning(pg_url, sandbox, tmp_path):
    manifest = write_manifest(tmp_path, "killed-holder")
    init_workspace(pg_url, "default")
    sandbox.set_faults(Faults(latency=0.5))
    killed = start_apply(manifest, pg_url, "default", sandbox.url, "--parallelism", "2")
    wait_until(lambda: sandbox.stats["creates"] >= 2, "two creates are in flight")
    killed.send_signal(signal.SIGKILL)
    finish(killed)
    sandbox.set_faults(Faults())

    code, _, err = finish(start_apply(manifest, pg_url, "default", sandbox.url))

    assert code == 0, err
    assert "taking over the lock of a run whose database session has ended" in err
    assert f"pid {killed.pid}" in err
    assert err.count("found and recorded") == 2, err
    assert_each_batch_once(sandbox, manifest, pg_url, "default")


# --- the database server restarted mid-apply -----------------------------------------------------------


@pytest.fixture(scope="module")
def own_server():
    """A server of this module's own: these tests crash and stop it."""
    server = start_server()
    yield server
    server.close()


@pytest.fixture
def own_url(own_server):
    return own_server.url(own_server.create_database())


@pytest.mark.parametrize("mode", ["immediate", "down for 2 s"])
def test_a_database_restart_mid_apply_sends_no_create_without_its_intent_and_converges(
    own_server, own_url, sandbox, tmp_path, mode
):
    manifest = write_manifest(tmp_path, f"restart-{mode}", batches=8)
    init_workspace(own_url, "default")
    sandbox.set_faults(Faults(latency=0.25))
    witness = IntentWitness(own_url, "default")
    with FaultProxy(sandbox.url, witness) as proxy:
        running = start_apply(manifest, own_url, "default", proxy.url, "--parallelism", "3")
        wait_until(lambda: witness.creates >= 4, "creates are under way")
        if mode == "down for 2 s":  # within the retries (about 8 s)
            own_server.stop()
            time.sleep(2)
            own_server.start()
        else:
            own_server.restart(mode)  # every session cut: the run's lock and connection with them
        code, out, err = finish(running)

        assert "Traceback" not in err
        if code != 0:  # it may stop, but then saying why, and the next apply converges
            assert "state database" in err, err
        logs = apply_until_done(manifest, own_url, "default", proxy.url)

    assert witness.unwitnessed == [], "a create was sent without a committed intent"
    assert "Traceback" not in "".join(logs)
    assert_each_batch_once(sandbox, manifest, own_url, "default")


def test_a_database_gone_for_good_stops_the_run_clearly_and_the_next_apply_converges(
    own_server, own_url, sandbox, tmp_path, cli, monkeypatch
):
    import provisioner.backends.postgres as postgres

    monkeypatch.setattr(postgres, "RECONNECT_ATTEMPTS", 3)  # retries last ~3 s here, not ~10 s
    monkeypatch.setattr(postgres, "RECONNECT_PAUSE", 1.0)
    retry_budget = 3 * 1.0
    monkeypatch.setenv("TI_API_KEY", TEST_KEY)
    manifest = write_manifest(tmp_path, "gone", batches=8)
    init_workspace(own_url, "default")
    sandbox.set_faults(Faults(latency=0.25))

    stopped_at = []
    stopper = threading.Thread(
        target=lambda: (
            wait_until(lambda: sandbox.stats["creates"] >= 3, "creates are under way"),
            own_server.stop(),
            stopped_at.append(time.monotonic()),
        )
    )
    stopper.start()
    try:
        result = cli(
            "apply",
            manifest,
            "--state",
            own_url,
            "--auto-approve",
            "--rate-limit",
            "0",
            "--parallelism",
            "5",
            "--base-url",
            sandbox.url,
        )
        stopped_after = time.monotonic() - stopped_at[0]
    finally:
        stopper.join(30)
        own_server.start()

    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "is unreachable" in result.stderr and "this run stopped writing" in result.stderr, result.stderr
    # Given up once for the run, not once per create in flight (five) and again at the final checkpoint.
    assert stopped_after < 3 * retry_budget, stopped_after
    sent = sandbox.stats["creates"]
    assert sent < len(declared(manifest)), "the run went on creating without a database"

    sandbox.set_faults(Faults())
    logs = apply_until_done(manifest, own_url, "default", sandbox.url)
    assert "Traceback" not in "".join(logs)
    assert_each_batch_once(sandbox, manifest, own_url, "default")


# --- two checkouts at once ------------------------------------------------------------------------------


def holder_pid(url: str, workspace: str) -> int | None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT pid FROM provisioner.locks WHERE workspace = %s", (workspace,)).fetchone()
    return row[0] if row else None


@pytest.mark.parametrize("lock_timeout", ["0", "60"])
def test_two_checkouts_applying_at_once_create_each_batch_once(pg_url, sandbox, tmp_path, lock_timeout):
    checkouts = [tmp_path / "laptop", tmp_path / "ci-runner"]
    manifests = [write_manifest(checkout, "two-checkouts") for checkout in checkouts]
    init_workspace(pg_url, "default")
    sandbox.set_faults(Faults(latency=0.3))  # the winner holds the lock a few seconds: both start within it

    runs = [
        start_apply(
            Path("manifests"),
            pg_url,
            "default",
            sandbox.url,
            "--parallelism",
            "2",
            "--lock-timeout",
            lock_timeout,
            cwd=checkout,
        )
        for checkout in checkouts
    ]
    results = [finish(run) for run in runs]

    codes = sorted(code for code, _, _ in results)
    if lock_timeout == "0":
        assert codes == [0, 1], results
        winner = next(run for run, (code, _, _) in zip(runs, results, strict=True) if code == 0)
        _, _, loser_err = next(result for result in results if result[0] == 1)
        assert "locked by another run" in loser_err and f"pid {winner.pid}" in loser_err
        assert "Command: apply" in loser_err and "Traceback" not in loser_err
    else:
        assert codes == [0, 0], results
        assert sum("No changes" in out for _, out, _ in results) == 1
    assert sandbox.stats["creates"] == len(declared(manifests[0]))
    assert_each_batch_once(sandbox, manifests[0], pg_url, "default")


# --- force-unlock ------------------------------------------------------------------------------------------


def test_force_unlock_refuses_a_frozen_run_until_its_session_ends_and_that_run_then_writes_nothing(
    pg_url, pg_server, sandbox, tmp_path
):
    manifest = write_manifest(tmp_path, "frozen")
    init_workspace(pg_url, "default")
    sandbox.set_faults(Faults(latency=0.3))
    env = {"TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY}
    frozen = start_apply(manifest, pg_url, "default", sandbox.url, "--parallelism", "2")
    wait_until(
        lambda: holder_pid(pg_url, "default") == frozen.pid and sandbox.stats["creates"] >= 2,
        "the apply holds the lock and creates",
    )
    frozen.send_signal(signal.SIGSTOP)  # a machine that hangs: its database session stays open
    try:
        with psycopg.connect(pg_url) as conn:
            lock_id, session = conn.execute("SELECT id, session_pid FROM provisioner.locks").fetchone()

        refused = run_subprocess("force-unlock", lock_id, "--state", pg_url, env=env)
        assert refused.returncode == 1, refused.stderr
        assert "still connected" in refused.stderr and f"pg_terminate_backend({session})" in refused.stderr

        with pg_server.admin() as admin:  # what the message tells an administrator to do
            admin.execute("SELECT pg_terminate_backend(%s)", (session,))
        wait_until(
            lambda: run_subprocess("force-unlock", lock_id, "--state", pg_url, env=env).returncode == 0,
            "force-unlock succeeds once the session is gone",
            timeout=10,
        )
    finally:
        frozen.send_signal(signal.SIGCONT)
    code, _, err = finish(frozen)

    assert code == 1 and "Traceback" not in err
    assert "no longer holds the lock" in err, err
    logs = apply_until_done(manifest, pg_url, "default", sandbox.url)
    assert "taking over" not in logs[0], "force-unlock removed the holder row"
    assert_each_batch_once(sandbox, manifest, pg_url, "default")
    assert sandbox.stats["creates"] == len(declared(manifest))


# --- the network cut, the server unaware ------------------------------------------------------------------


def test_a_network_cut_mid_apply_is_ridden_out_though_the_server_keeps_the_old_session(own_server, sandbox, tmp_path):
    from pg import NetworkCut

    network = NetworkCut(own_server)
    try:
        url = network.url(own_server.create_database())
        manifest = write_manifest(tmp_path, "network-cut", batches=8)
        init_workspace(url, "default")
        sandbox.set_faults(Faults(latency=0.25))
        witness = IntentWitness(url, "default")
        with FaultProxy(sandbox.url, witness) as proxy:
            running = start_apply(manifest, url, "default", proxy.url, "--parallelism", "3")
            wait_until(lambda: witness.creates >= 4, "creates are under way")
            network.cut()  # the old session lingers on the server, holding the lock
            code, out, err = finish(running)

            assert code == 0, err
            assert "Apply complete! Batches: 18 created" in out
        assert witness.unwitnessed == []
        assert_each_batch_once(sandbox, manifest, url, "default")
    finally:
        network.close()
