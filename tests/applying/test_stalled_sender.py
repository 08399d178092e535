"""A run that stalls between making a create's intent durable and sending it, and loses its lock meanwhile.

Real processes: the apply under test runs as `provisioner apply`, wrapped so that it stops itself
(SIGSTOP) the instant its first intent is durable, as a frozen VM or a long pause would stop it. While it
is stopped, its PostgreSQL session is ended (pg_terminate_backend, as force-unlock's advice says) or its
lock file removed, and a second run takes over: it waits out the intent's window, finds nothing, and
creates. When the first run wakes, it must not send its create: one batch, never two.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
from conftest import ACME_ID as CLIENT_ID
from conftest import GLOBEX_ID, TEST_KEY, call_api, init_state

from provisioner.backends import open_backend
from provisioner.backends.file import read_state

# The apply, stopped by itself right after its first intent is durable (and, with STALL_SEND set, once
# more inside the first POST, after every check, before its bytes leave). The thread that got there stops
# itself (pthread_kill): os.kill of the process lets that thread run on until another thread takes the
# stop, and under load it went on past the checks and stopped inside the send.
STALLING_APPLY = textwrap.dedent(
    """
    import os, signal, sys, threading
    import requests
    from provisioner.backends.base import StateWriter
    from provisioner.cli import main

    record_intent = StateWriter.record_intent
    intents = []

    def stop_after_the_first(self, intent):
        record_intent(self, intent)
        intents.append(intent)
        if len(intents) == 1:
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)

    StateWriter.record_intent = stop_after_the_first

    if os.environ.get("STALL_SEND"):
        send = requests.Session.send
        posts = []

        def stop_in_the_first_post(self, request, **kwargs):
            if request.method == "POST" and not posts:
                posts.append(request)
                signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
            return send(self, request, **kwargs)

        requests.Session.send = stop_in_the_first_post

    sys.argv[0] = "provisioner"
    main()
    """
)


def manifest(directory: Path) -> tuple[Path, str]:
    client = str(uuid.uuid4())
    path = directory / "m.yaml"
    path.write_text(
        f"clients:\n  c0:\n    id: {client}\n    batches:\n      q1:\n        name: Q1\n"
        "        startingBalance: 1000\n",
        encoding="utf-8",
    )
    return path, client


def environment(api_url: str, **extra: str) -> dict:
    return {**os.environ, "TI_BASE_URL": api_url, "TI_API_KEY": TEST_KEY, "TI_RATE_LIMIT": "0", **extra}


def start_stalling(args: list[str], env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", STALLING_APPLY, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def apply(args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "provisioner", *args], env=env, capture_output=True, text=True, timeout=120
    )


def wait_stopped(process: subprocess.Popen, times: int = 1, timeout: float = 60) -> None:
    """Until the process stopped itself (state T in /proc)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        stat = Path(f"/proc/{process.pid}/stat").read_text()
        if stat[stat.rfind(")") + 2] == "T":
            return
        time.sleep(0.01)
    raise AssertionError("the apply never reached its stall")


def finish(process: subprocess.Popen) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"the stalled apply did not finish:\n{err}") from None
    return process.returncode, out, err


def end_lock_session(url: str) -> None:
    """What an administrator does on force-unlock's advice: the stalled run's database session ends."""
    with psycopg.connect(url, autocommit=True) as conn:
        (session,) = conn.execute("SELECT session_pid FROM provisioner.locks WHERE workspace = 'default'").fetchone()
        conn.execute("SELECT pg_terminate_backend(%s)", (session,))


def test_a_run_stalled_after_its_intent_never_sends_once_its_postgres_session_was_ended(pg_url, sandbox, tmp_path):
    path, client = manifest(tmp_path)
    with open_backend(pg_url, "default") as backend:
        backend.create()
    state = ["--state", pg_url, "--auto-approve"]
    env = environment(sandbox.url)

    stalled = start_stalling(["apply", str(path), *state], env)
    try:
        wait_stopped(stalled)
        end_lock_session(pg_url)
        taking_over = apply(["apply", str(path), *state, "--recovery-wait", "1"], env)
        assert taking_over.returncode == 0, taking_over.stderr
        assert "never happened; creating it now" in taking_over.stderr, taking_over.stderr
    finally:
        stalled.send_signal(signal.SIGCONT)
    code, _, err = finish(stalled)

    assert len(sandbox.all_batches(client)) == 1, "the stalled run sent its create after it lost its lock"
    assert code == 1 and "Traceback" not in err
    assert "no longer holds the lock" in err, err
    with open_backend(pg_url, "default") as backend:
        recorded = backend.read()
    assert not recorded.pending
    assert [resource.batch_id for resource in recorded.resources.values()] == [
        batch["id"] for batch in sandbox.all_batches(client)
    ]


def test_a_run_stalled_after_its_intent_never_sends_once_its_lock_file_was_taken(sandbox, tmp_path):
    path, client = manifest(tmp_path)
    state_path = init_state(tmp_path / "state" / "default.json")
    state = ["--state", str(state_path), "--auto-approve"]
    env = environment(sandbox.url)

    stalled = start_stalling(["apply", str(path), *state], env)
    try:
        wait_stopped(stalled)
        # Someone sure the run was gone (it looked hung) removed its lock file by hand.
        (state_path.parent / "default.json.lock").unlink()
        taking_over = apply(["apply", str(path), *state, "--recovery-wait", "1"], env)
        assert taking_over.returncode == 0, taking_over.stderr
    finally:
        stalled.send_signal(signal.SIGCONT)
    code, _, err = finish(stalled)

    assert len(sandbox.all_batches(client)) == 1, "the stalled run sent its create after it lost its lock"
    assert code == 1 and "no longer holds the lock" in err and "Traceback" not in err, err
    recorded = read_state(state_path)
    assert [resource.batch_id for resource in recorded.resources.values()] == [
        batch["id"] for batch in sandbox.all_batches(client)
    ], "the woken run wrote over the state"
    assert not recorded.pending


def test_a_run_stalled_past_the_sending_part_of_its_window_writes_its_intent_again_before_sending(
    pg_url, sandbox, tmp_path
):
    """It still held its lock when it woke, so it passed that check; but a second stall, once the request
    was on its way, let a run take over that saw an intent older than its whole window: it listed once,
    found nothing, and created. An intent written again just before sending makes that run wait."""
    path, client = manifest(tmp_path)
    with open_backend(pg_url, "default") as backend:
        backend.create()
    state = ["--state", pg_url, "--auto-approve"]
    env = environment(sandbox.url, STALL_SEND="1")

    stalled = start_stalling(["apply", str(path), *state, "--recovery-wait", "2"], env)
    try:
        wait_stopped(stalled)
        time.sleep(3.5)  # longer than the whole window of the run that takes over
        stalled.send_signal(signal.SIGCONT)
        wait_stopped(stalled)  # in its first POST now, every check behind it
        end_lock_session(pg_url)
        taking_over = subprocess.Popen(
            [sys.executable, "-m", "provisioner", "apply", str(path), *state, "--recovery-wait", "8"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:  # an intent older than its window: it lists, finds nothing, creates and is done in a moment
            taking_over.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass  # a young intent: it waits until 8 s after it was written (and the stalled run, woken,
            # finds at the socket that its lock check is stale, checks again, and sends nothing)
    finally:
        stalled.send_signal(signal.SIGCONT)
    _, err = taking_over.communicate(timeout=120)
    finish(stalled)

    assert len(sandbox.all_batches(client)) == 1, f"two batches: the stale intent was settled at once\n{err}"
    with open_backend(pg_url, "default") as backend:
        recorded = backend.read()
    assert not recorded.pending
    assert [resource.batch_id for resource in recorded.resources.values()] == [
        batch["id"] for batch in sandbox.all_batches(client)
    ]


def test_a_create_withheld_at_the_socket_leaves_nothing_and_is_made_ready_again(sandbox):
    """The caller's gate runs on the open connection, just before the request is written: refused, not a
    byte of the request leaves; the next attempt makes the caller ready again (a new intent, new checks)."""
    from faultproxy import FaultProxy

    from provisioner.api.client import CreditsApi
    from provisioner.api.send_gate import SendWithheld

    readied, gated = [], []

    def gate() -> None:
        gated.append(len(readied))
        if len(gated) == 1:
            raise SendWithheld()

    with FaultProxy(sandbox.url) as proxy:
        api = CreditsApi(proxy.url, TEST_KEY, backoff_base=0.01)
        batch = api.create_batch(
            CLIENT_ID,
            {"clientId": CLIENT_ID, "name": "Q1", "startingBalance": 5},
            before_send=lambda: readied.append(1),
            at_socket=gate,
        )
        api.list_batches(CLIENT_ID)  # a request without a gate: untouched

    assert gated == [1, 2] and len(readied) == 2
    assert proxy.posts() == 1 and [b["id"] for b in sandbox.all_batches(CLIENT_ID)] == [batch["id"]]


def test_a_batch_created_but_not_recorded_is_printed_with_its_id_and_found_by_the_next_apply(sandbox, tmp_path):
    """The lock was taken while the create was on its way: its answer cannot be recorded. The id is said
    at once, and the intent stays open, so the next apply finds the batch by listing and records it."""
    from datetime import datetime, timezone

    from faultproxy import FaultProxy, Forward

    from provisioner.api.client import CreditsApi
    from provisioner.applying.applier import Applier
    from provisioner.backends.file import FileWriter
    from provisioner.backends.filelock import StateLock
    from provisioner.manifest.loader import load
    from provisioner.planning.planner import make_plan

    path, client = manifest(tmp_path)
    state_path = init_state(tmp_path / "state" / "default.json")
    lock_file = state_path.parent / "default.json.lock"

    def rule(request):
        return (
            Forward(after_upstream=lambda: lock_file.unlink(missing_ok=True)) if request.method == "POST" else Forward()
        )

    said: list[str] = []
    desired = load([path])
    with FaultProxy(sandbox.url, rule) as proxy:
        api = CreditsApi(proxy.url, TEST_KEY, backoff_base=0.01)
        with StateLock(state_path, command="apply"), FileWriter(state_path) as writer:
            plan = make_plan(desired, writer.state, datetime.now(timezone.utc))
            try:
                result = Applier(api, writer, progress=said.append, settle_seconds=0.05, recovery_wait=0.5).apply(
                    plan, desired
                )
            finally:
                writer._under_lock = False  # the test's own lock is gone: let the writer close

    (made,) = sandbox.all_batches(client)
    assert not result.ok and made["id"] in result.failed[0][1] and "could not be recorded" in result.failed[0][1]
    assert any(made["id"] in line for line in said), said
    assert "c0/q1" in read_state(state_path).pending

    again = apply(
        ["apply", str(path), "--state", str(state_path), "--auto-approve", "--recovery-wait", "0.5"],
        environment(sandbox.url),
    )
    assert again.returncode == 0, again.stderr
    assert read_state(state_path).resources["c0/q1"].batch_id == made["id"]
    assert len(sandbox.all_batches(client)) == 1


# An import --generate-config-out, stopped by itself just before it records every batch it found (the
# listing of a thousand clients takes long enough for a lock to be judged stale and taken).
STALLING_IMPORT = textwrap.dedent(
    """
    import os, signal, sys, threading
    from provisioner.backends.file import FileWriter
    from provisioner.cli import main

    record_all = FileWriter.record_all

    def stop_first(self, *args, **kwargs):
        signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        return record_all(self, *args, **kwargs)

    FileWriter.record_all = stop_first
    sys.argv[0] = "provisioner"
    main()
    """
)


def test_an_import_stalled_before_its_one_snapshot_never_writes_over_the_run_that_took_its_lock(sandbox, tmp_path):
    """record_all on a state file writes a whole new snapshot, from the state the import read: written after
    another run took the lock and recorded a batch, it would drop that batch's id (the next apply issues it
    again). The import must check its lock before that rename, as every journaled write does."""
    call_api(  # a batch made by hand, for the import to find
        sandbox,
        "POST",
        f"/incoming/v2/clients/{GLOBEX_ID}/creditBatches",
        {"clientId": GLOBEX_ID, "name": "Starter", "startingBalance": 1200},
    )
    path, client = manifest(tmp_path)
    state_path = init_state(tmp_path / "state" / "default.json")
    env = environment(sandbox.url)

    stalled = subprocess.Popen(
        [
            sys.executable,
            "-c",
            STALLING_IMPORT,
            "import",
            "--generate-config-out",
            str(tmp_path / "out"),
            "--client",
            f"globex={GLOBEX_ID}",
            "--state",
            str(state_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_stopped(stalled)
        (state_path.parent / "default.json.lock").unlink()  # judged hung, its lock removed by hand
        taking_over = apply(["apply", str(path), "--state", str(state_path), "--auto-approve"], env)
        assert taking_over.returncode == 0, taking_over.stderr
    finally:
        stalled.send_signal(signal.SIGCONT)
    code, _, err = finish(stalled)

    (issued,) = sandbox.all_batches(client)
    assert code == 1 and "no longer holds the lock" in err and "Traceback" not in err, err
    recorded = read_state(state_path)
    assert recorded.resources["c0/q1"].batch_id == issued["id"], "the stalled import wrote over the state"
