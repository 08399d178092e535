"""Ctrl-C means no new request: whatever had not left when the interrupt came (waiting for a
worker, for a rate-limit slot, in a Retry-After pause or a backoff) is never sent; what was in
flight finishes and is recorded.

The CLI runs as a real process and gets a real SIGINT; the sandbox is the judge (createdAt of
every batch, the requests it received).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import ACME_ID, TEST_KEY, init_state, wait_until
from conftest import start_apply as start_apply_process
from scripted_api import ScriptedServer, error_body, make_api

from provisioner.api.client import OutcomeUnknown, RequestCancelled
from provisioner.api.pacing import RateLimiter, Stopped
from provisioner.backends.file import read_state
from provisioner.core.timestamps import parse_timestamp
from provisioner.sandbox import Faults, Sandbox

CLIENTS = 4


def manifest_text(batches: int) -> str:
    lines = ["clients:"]
    for client in range(CLIENTS):
        lines += [f"  c{client}:", f"    id: 00000000-0000-4000-8000-{client:012d}", "    batches:"]
        for batch in range(client, batches, CLIENTS):
            lines += [f"      b{batch}:", f"        name: Batch {batch}", f"        startingBalance: {100 + batch}"]
    return "\n".join(lines) + "\n"


def start_apply(tmp_path: Path, sandbox: Sandbox, batches: int, *extra: str) -> tuple[subprocess.Popen, Path]:
    manifest, state = tmp_path / "m.yaml", init_state(tmp_path / "state" / "default.json")
    manifest.write_text(manifest_text(batches), encoding="utf-8")
    # TI_RATE_LIMIT left out: the default pacing.
    process = start_apply_process(
        manifest, state, sandbox.url, "--parallelism", "10", *extra, env={"TI_RATE_LIMIT": None}
    )
    return process, state


def interrupt(process: subprocess.Popen, timeout: float) -> tuple[int, str, float]:
    """SIGINT, then wait for the exit: (exit code, stderr, seconds from the signal to the exit)."""
    process.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        _, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
        raise AssertionError(f"the apply did not stop within {timeout} s of Ctrl-C:\n{err}") from None
    return process.returncode, err, time.monotonic() - sent


def test_ctrl_c_at_a_slow_rate_limit_sends_nothing_after_the_interrupt(tmp_path):
    """The issue's scenario: ten workers, each waiting for a slot of a slow limit. Before, the
    slots they already held were still used after Ctrl-C (ten more batches, seconds later)."""
    latency = 1.5  # every create is in flight this long after the sandbox made it
    with Sandbox(api_key=TEST_KEY, rate_limit=60, burst=3, faults=Faults(latency=latency)) as sandbox:
        process, state = start_apply(tmp_path, sandbox, batches=24)
        wait_until(lambda: sandbox.stats["creates"] >= 3, "three creates were made")
        interrupted_at = datetime.now(timezone.utc)
        made_before = sandbox.stats["creates"]

        code, err, took = interrupt(process, timeout=latency + 8)

        batches = sandbox.all_batches()
    late = [b["createdAt"] for b in batches if parse_timestamp(b["createdAt"]) > interrupted_at]
    assert not late, f"created after the interrupt at {interrupted_at:%H:%M:%S.%f}: {late}"
    assert len(batches) == made_before
    assert code == 1 and "Traceback" not in err
    assert "Interrupt received: no new requests" in err
    assert took < latency + 3, "the apply waited for more than the requests in flight"
    recorded = read_state(state)
    assert not recorded.pending, "a request that never left must leave no open intent"
    assert sorted(r.batch_id for r in recorded.resources.values()) == sorted(b["id"] for b in batches)
    assert f"Interrupted: {24 - len(batches)} change(s) not started" in err


def test_ctrl_c_ends_a_retry_after_pause_and_the_refused_create_is_not_started(tmp_path):
    """Every create meets a 429 asking for 30 s: Ctrl-C ends the pause, nothing is sent again,
    and the refused creates are "not started", not ambiguous."""
    # The preflight's answer is held 0.5 s: the storm starts well before the creates are sent.
    with Sandbox(api_key=TEST_KEY, faults=Faults(latency=0.5)) as sandbox:
        process, state = start_apply(tmp_path, sandbox, 8, "--rate-limit", "0")
        wait_until(lambda: sandbox.request_log, "the preflight request arrived")
        sandbox.set_faults(Faults(burst_429_rate=1.0, burst_429_length=10_000, retry_after=30, seed=1))
        # The first request refused is the duplicate guard's listing of a client, before its creates.
        wait_until(lambda: any(status == 429 for _, _, status in sandbox.request_log), "a request was refused")
        time.sleep(0.3)
        requests_before = len(sandbox.request_log)

        code, err, took = interrupt(process, timeout=10)

        assert len(sandbox.request_log) == requests_before, "a request left after Ctrl-C"
        assert sandbox.all_batches() == []
    assert code == 1 and took < 5
    assert "Interrupted: 8 change(s) not started" in err
    assert "outcome unknown" not in err and "error:" not in err
    assert not read_state(state).pending and not read_state(state).resources


# --- the client and the limiter, each wait on its own ------------------------------------------------


def set_soon(event: threading.Event, seconds: float = 0.3) -> threading.Timer:
    timer = threading.Timer(seconds, event.set)
    timer.start()
    return timer


def test_a_caller_waiting_for_a_slot_is_stopped_and_takes_no_slot():
    limiter = RateLimiter(6)  # one slot every 10 s
    limiter.acquire()
    set_soon(limiter.stop)
    started = time.monotonic()

    with pytest.raises(Stopped):
        limiter.acquire()

    assert time.monotonic() - started < 2


def test_every_caller_queued_behind_the_slot_is_stopped():
    limiter = RateLimiter(6)
    limiter.acquire()
    outcomes: list[str] = []

    def caller():
        try:
            limiter.acquire()
            outcomes.append("sent")
        except Stopped:
            outcomes.append("stopped")

    threads = [threading.Thread(target=caller) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)
    limiter.stop.set()
    for thread in threads:
        thread.join(timeout=2)

    assert outcomes == ["stopped"] * 5


def test_a_create_in_a_retry_after_pause_is_cancelled_not_ambiguous():
    with ScriptedServer((429, {"Retry-After": "30"}, {"error": "rate_limit_exceeded"})) as server:
        api = make_api(server.url, sleep=None, limiter=RateLimiter(None))
        set_soon(api.stop)
        started = time.monotonic()

        with pytest.raises(RequestCancelled) as cancelled:
            api.create_batch(ACME_ID, {"startingBalance": 1})

    assert not isinstance(cancelled.value, OutcomeUnknown)
    assert time.monotonic() - started < 2
    assert len(server.received) == 1


def test_a_read_in_a_backoff_sleep_is_cancelled():
    with ScriptedServer(error_body(502, "bad gateway")) as server:
        api = make_api(server.url, sleep=None, backoff_base=30, backoff_cap=30)
        api.answered = True  # as in the middle of a run
        api.retrying.random = random.Random(0)  # its first backoff is 25 s of the 30 s allowed
        set_soon(api.stop)
        started = time.monotonic()

        with pytest.raises(RequestCancelled):
            api.list_batches(ACME_ID)

    assert time.monotonic() - started < 2
    assert len(server.received) == 1


def test_nothing_leaves_once_stopped():
    with ScriptedServer((200, {}, {})) as server:
        api = make_api(server.url)
        api.stop.set()

        with pytest.raises(RequestCancelled):
            api.create_batch(ACME_ID, {"startingBalance": 1})

    assert server.received == []


def test_a_run_killed_during_a_retry_after_pause_leaves_no_intent_to_prove(tmp_path):
    """A 429 says the create did nothing: its intent is closed at once, so a `kill -9` during the
    pause leaves no open intent, and the next apply has nothing to wait for before creating."""
    with Sandbox(api_key=TEST_KEY, faults=Faults()) as sandbox:
        process, state = start_apply(tmp_path, sandbox, 4, "--rate-limit", "0")
        wait_until(lambda: sandbox.request_log, "the first request arrived")
        sandbox.set_faults(Faults(burst_429_rate=1.0, burst_429_length=10_000, retry_after=30, seed=1))
        wait_until(
            lambda: any(method == "POST" and status == 429 for method, _, status in sandbox.request_log),
            "a create was refused",
        )
        time.sleep(0.3)  # within the 30 s pause

        process.kill()
        process.communicate()
        sandbox.set_faults(Faults())

        assert not read_state(state).pending, "a refused create left an intent to prove"
        started = time.monotonic()
        rerun = subprocess.run(
            [
                sys.executable,
                "-m",
                "provisioner",
                "apply",
                str(tmp_path / "m.yaml"),
                "--state",
                str(state),
                "--auto-approve",
                "--rate-limit",
                "0",
            ],
            env={**os.environ, "TI_BASE_URL": sandbox.url, "TI_API_KEY": TEST_KEY},
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
        assert rerun.returncode == 0, rerun.stderr
        assert len(sandbox.all_batches()) == 4 and sandbox.stats["creates"] == 4
    assert took < 20, f"the rerun waited {took:.0f} s: it had a negative to prove"
