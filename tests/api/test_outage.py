"""An API that goes away mid-run stops the whole run within a bound (--give-up-after), with one
summary and exit 1; when it comes back, apply again converges with every batch made exactly once.

Real processes: the sandbox is `provisioner sandbox` in a subprocess, killed (SIGKILL: connections
refused from then on) and started again on the same port and data; apply and refresh are CLI
subprocesses. The bound is short here (the option); the default's figures are in bench/README.md.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import ACME_ID, TEST_KEY, init_state
from scripted_api import free_port, make_api

from provisioner.api.client import ApiUnavailable
from provisioner.api.outage import Outage
from provisioner.backends.file import read_state
from provisioner.sandbox import Sandbox

CLIENTS = 5
BATCHES = 300
BOUND = 3.0


def manifest_text(batches: int) -> str:
    lines = ["clients:"]
    for client in range(CLIENTS):
        lines += [f"  c{client}:", f"    id: 00000000-0000-4000-8000-{client:012d}", "    batches:"]
        for batch in range(client, batches, CLIENTS):
            lines += [f"      b{batch:03d}:", f"        name: Batch {batch}", f"        startingBalance: {100 + batch}"]
    return "\n".join(lines) + "\n"


class SandboxProcess:
    """`provisioner sandbox` on a fixed port and data file, killed and started again at will."""

    def __init__(self, data: Path):
        self.data, self.port = data, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "provisioner",
                "sandbox",
                "--port",
                str(self.port),
                "--data",
                str(self.data),
                "--api-key",
                TEST_KEY,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for line in self.process.stderr:  # "Sandbox listening on ..." once it serves
            if "listening" in line:
                return
        raise AssertionError(f"the sandbox did not start (exit {self.process.wait()})")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.kill()


@pytest.fixture
def api_process(tmp_path):
    sandbox = SandboxProcess(tmp_path / "sandbox.sqlite")
    sandbox.start()
    yield sandbox
    sandbox.stop()


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "provisioner", *args]


def environment(url: str) -> dict:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("TI_", "PROVISIONER_"))}
    return {**env, "TI_BASE_URL": url, "TI_API_KEY": TEST_KEY}


class Output:
    """A process's stderr, read line by line as it comes (for waiting on progress)."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line)

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "".join(self.lines)

    def count(self, marker: str) -> int:
        return sum(marker in line for line in list(self.lines))


def wait_until(condition, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def test_an_api_killed_mid_apply_stops_it_within_the_bound_and_apply_again_converges(tmp_path, api_process):
    manifest, state = tmp_path / "m.yaml", init_state(tmp_path / "state" / "default.json")
    manifest.write_text(manifest_text(BATCHES), encoding="utf-8")
    env = environment(api_process.url)
    apply = subprocess.Popen(
        cli(
            "apply",
            str(manifest),
            "--state",
            str(state),
            "--auto-approve",
            "--rate-limit",
            "600",
            "--give-up-after",
            str(BOUND),
        ),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    output = Output(apply.stderr)
    wait_until(lambda: output.count(": created [id=") >= 30, "30 batches were created")

    api_process.kill()
    killed = time.monotonic()
    try:
        apply.wait(timeout=60)
    except subprocess.TimeoutExpired:
        apply.kill()
        raise AssertionError(f"the apply did not stop within 60 s of the API going away:\n{output.text()}") from None
    took = time.monotonic() - killed
    err = output.text()

    assert apply.returncode == 1, err
    assert took < BOUND + 8, f"{took:.1f} s from the API going away to the exit (bound {BOUND} s)"
    assert "Traceback" not in err
    assert err.count("stopped answering at") == 1, err  # one summary, not one line per batch
    assert "connection refused" in err and "--give-up-after 3" in err
    assert "Nothing was sent twice" in err
    assert "When the API answers again, run the same command again: provisioner apply" in err
    assert "cannot reach the API" not in err, "a batch gave up on its own"
    assert ": error: " not in err, "a failure printed once per batch instead of in the summary"
    recorded = read_state(state)
    created = len(recorded.resources)
    not_started = int(err.split("Not started: ")[1].split(".")[0])
    assert f"Done and recorded: {created} ({created} created" in err
    assert created + not_started + len(recorded.pending) == BATCHES, err
    assert not_started > BATCHES // 2, "the queue was worked through instead of given up"

    # The API is back: apply again makes every batch exactly once.
    api_process.start()
    again = subprocess.run(
        cli(
            "apply", str(manifest), "--state", str(state), "--auto-approve", "--rate-limit", "0", "--recovery-wait", "1"
        ),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    api_process.stop()
    with Sandbox(data_path=api_process.data, api_key=TEST_KEY) as judge:
        batches = judge.all_batches()
    names = sorted(batch["name"] for batch in batches)
    assert names == sorted(f"Batch {n}" for n in range(BATCHES)), "a batch is missing or made twice"
    recorded = read_state(state)
    assert not recorded.pending
    assert sorted(r.batch_id for r in recorded.resources.values()) == sorted(b["id"] for b in batches)


@pytest.mark.parametrize("command", [["refresh"], ["plan", "--refresh"]])
def test_refresh_stops_within_the_bound_with_one_message(tmp_path, api_process, command):
    """The sandbox answers the first listing, then is gone: the other listings give up together."""
    manifest, state = tmp_path / "m.yaml", init_state(tmp_path / "state" / "default.json")
    manifest.write_text(manifest_text(40), encoding="utf-8")
    env = environment(api_process.url)
    process = subprocess.Popen(
        cli(
            command[0],
            str(manifest),
            "--state",
            str(state),
            *command[1:],
            "--rate-limit",
            "60",
            "--give-up-after",
            str(BOUND),
        ),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    output = Output(process.stderr)
    wait_until(lambda: output.count("Refreshing") >= 1, "the refresh began")  # after the first listing
    api_process.kill()
    killed = time.monotonic()
    process.wait(timeout=60)
    took = time.monotonic() - killed
    err = output.text()

    assert process.returncode == 1, err
    assert took < BOUND + 8
    assert err.count("stopped answering at") == 1, err
    assert "Traceback" not in err and "Run the command again once the API answers" in err


# --- the watcher on its own -------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_watcher_gives_up_once_the_bound_passes_without_an_answer():
    clock, stop = Clock(), threading.Event()
    outage = Outage(10, stop, clock=clock, wall=lambda: datetime(2026, 1, 1, 12, 0, 30, tzinfo=timezone.utc))
    outage.failed("connection refused", sent_at=99.0)
    clock.now = 105.0
    outage.failed("connection refused", sent_at=104.0)
    assert not stop.is_set()
    clock.now = 108.5
    outage.failed("HTTP 503", sent_at=108.0)
    assert not outage.gave_up

    clock.now = 110.0
    outage.failed("connection refused", sent_at=109.9)

    assert stop.is_set() and outage.gave_up
    text = outage.describe()
    assert "connection refused (3 tries), HTTP 503 (1 try)" in text
    assert "stopped answering at 2026-01-01 12:00:19 UTC" in text  # when the first unanswered request left
    outage.close()


def test_an_answer_resets_the_watcher():
    clock, stop = Clock(), threading.Event()
    notices: list[str] = []
    outage = Outage(10, stop, clock=clock, on_notice=notices.append)
    outage.failed("timed out", sent_at=95.0)
    clock.now = 104.0
    outage.answered()
    clock.now = 112.0
    outage.failed("timed out", sent_at=103.0)  # sent before the answer came: counted from the answer

    assert not stop.is_set()
    assert any("answers again" in notice for notice in notices)
    outage.close()


def test_the_timer_gives_up_while_every_request_waits():
    """Nobody need fail again for the bound to end the run: the workers are all in backoffs."""
    stop = threading.Event()
    outage = Outage(0.2, stop)
    outage.failed("connection refused", sent_at=time.monotonic())

    assert stop.wait(2)
    assert outage.gave_up


def test_without_a_bound_the_watcher_never_stops_the_run():
    stop = threading.Event()
    outage = Outage(None, stop)
    outage.failed("connection refused", sent_at=time.monotonic() - timedelta(hours=1).total_seconds())
    assert not stop.is_set()


def test_a_request_the_api_stops_answering_waits_for_the_verdict_not_its_own_attempts():
    """Mid-run, nobody gives up alone: the request keeps trying past its attempts until the run's
    bound, then ends, unsent, with the run's one sentence."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    tries: list[str] = []
    api = make_api(url, sleep=None, max_attempts=2, give_up_after=1.0, on_retry=tries.append)
    api.answered = True  # as in the middle of a run
    started = time.monotonic()

    with pytest.raises(ApiUnavailable) as gave_up:
        api.list_batches(ACME_ID)

    assert 1.0 <= time.monotonic() - started < 3
    assert api.stop.is_set(), "every other request of the run stops too"
    assert "stopped answering at" in str(gave_up.value) and "connection refused" in str(gave_up.value)
    attempts = int(str(gave_up.value).split("connection refused (")[1].split(" ")[0])
    assert attempts > 2
    api.close()


def test_the_help_says_the_default_bound():
    from provisioner.api.outage import GIVE_UP_AFTER
    from provisioner.cli.options import GIVE_UP_AFTER_HELP

    assert GIVE_UP_AFTER_HELP == GIVE_UP_AFTER
