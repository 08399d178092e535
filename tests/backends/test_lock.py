"""The state lock across real processes: exclusion, waiting, dead holders, force-unlock."""

from __future__ import annotations

import getpass
import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from conftest import init_state, run_subprocess, two_client_manifest, wait_until

from provisioner.backends.file import FileWriter, read_state
from provisioner.backends.filelock import (
    LockError,
    LockInfo,
    StateLock,
    lock_path,
    process_start_time,
)
from provisioner.core.models import Resource


def read_lock_info(state_path: Path) -> LockInfo | None:
    """What the lock file beside the state says of its holder, as the lock writes it (JSON)."""
    path = lock_path(state_path)
    text = path.read_text() if path.exists() else ""
    return LockInfo(**json.loads(text)) if text.strip() else None


# Takes the lock, prints its id, then dies the way `kill -9` kills an apply.
LOCK_THEN_DIE = """
import os, sys
from provisioner.backends.filelock import StateLock
lock = StateLock(sys.argv[1], command="apply")
lock.acquire()
print(lock.info.id, flush=True)
if sys.argv[2] == "wait":
    sys.stdin.readline()
os.kill(os.getpid(), 9)
"""

# One contender of a race: waits at the start line, tries once; a winner holds the lock
# for at least a second, and until the race is over (every other contender has tried).
CONTENDER = """
import os, sys, time
from pathlib import Path
from provisioner.backends.filelock import LockError, StateLock
state, race = sys.argv[1], Path(sys.argv[2])
(race / f"ready-{os.getpid()}").touch()
while not (race / "go").exists():
    time.sleep(0.002)
lock = StateLock(state, command="apply", timeout=0)
try:
    lock.acquire()
except LockError as exc:
    print(exc)
    sys.exit(1)
(race / f"won-{os.getpid()}").touch()
time.sleep(1.0)
while not (race / "over").exists():
    time.sleep(0.01)
lock.release()
"""


@pytest.fixture
def state(tmp_path) -> Path:
    """A state file that records acme/q1."""
    path = init_state(tmp_path / "state" / "default.json")
    with FileWriter(path) as writer:
        writer.record("acme/q1", Resource(batch_id="b-1", client_id="c", attributes={}))
    return path


def foreign_lock(state: Path, **changes) -> LockInfo:
    """Writes a lock file as another run would leave it (no process holds its flock)."""
    info = LockInfo(
        id="2b7c9d4e-0000-4000-8000-00000000abcd",
        pid=os.getpid(),
        host=socket.gethostname(),
        user="alice",
        command="apply",
        created="2030-01-01T00:00:00+00:00",
        process_start=process_start_time(os.getpid()),
    )
    info = replace(info, **changes)
    lock_path(state).write_text(json.dumps(asdict(info), indent=2))
    return info


def process_state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat[stat.rfind(")") + 2]


def test_the_lock_file_records_who_holds_it(state):
    with StateLock(state, command="apply") as lock:
        recorded = read_lock_info(state)
        assert recorded == lock.info
        assert (recorded.pid, recorded.host, recorded.user, recorded.command) == (
            os.getpid(),
            socket.gethostname(),
            getpass.getuser(),
            "apply",
        )
        assert recorded.process_start == process_start_time(os.getpid())
    assert not lock_path(state).exists(), "released: the file goes away"


def test_a_second_lock_fails_at_once_naming_the_holder(state):
    with StateLock(state, command="apply") as holder:
        with pytest.raises(LockError) as raised:
            StateLock(state, command="state rm").acquire()
    message = str(raised.value)
    info = holder.info
    for detail in (info.id, f"pid {info.pid}", info.host, info.user, "Command: apply", "still going", str(state)):
        assert detail in message, detail
    assert "force-unlock" not in message, "a live holder must not be forced out"


@pytest.mark.parametrize("command", ["apply", "state rm"])
def test_the_cli_fails_at_once_when_the_state_is_locked(state, api_env, sandbox, write_manifest, command):
    manifest = write_manifest(two_client_manifest())
    arguments = {"apply": ["apply", manifest, "--auto-approve"], "state rm": ["state", "rm", "acme/q1"]}[command]
    before = state.read_bytes()
    with StateLock(state, command="apply") as holder:
        result = run_subprocess(*arguments, "--state", state, env=api_env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.count("Error:") == 1
    assert holder.info.id in result.stderr and "still going" in result.stderr
    assert state.read_bytes() == before
    assert sandbox.all_batches() == []


def test_lock_timeout_waits_for_the_holder_to_release(state):
    holder = StateLock(state, command="apply")
    holder.acquire()
    waiter = subprocess.Popen(
        [sys.executable, "-m", "provisioner", "state", "rm", "acme/q1", "--state", str(state), "--lock-timeout", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        said = waiter.stderr.readline()  # the waiter says it found the lock taken and waits
        assert said.startswith("Acquiring state lock on") and "waiting up to 60 s" in said, said
        assert f"pid {os.getpid()}" in said and waiter.poll() is None
    finally:
        holder.release()
    stdout, stderr = waiter.communicate(timeout=60)
    assert waiter.returncode == 0, stderr
    assert "Removed acme/q1" in stdout
    assert read_state(state).resources == {}


def test_lock_timeout_that_runs_out_fails_naming_the_holder(state):
    with StateLock(state, command="apply") as holder:
        result = run_subprocess("state", "rm", "acme/q1", "--state", state, "--lock-timeout", "0.5")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert holder.info.id in result.stderr
    assert "acme/q1" in read_state(state).resources


def test_a_sigkilled_holder_is_taken_over_with_a_warning(state):
    died = subprocess.run([sys.executable, "-c", LOCK_THEN_DIE, str(state), "die"], capture_output=True, text=True)
    assert died.returncode == -signal.SIGKILL
    left = read_lock_info(state)
    assert left is not None and left.id == died.stdout.strip()

    warnings = []
    with StateLock(state, command="apply", warn=warnings.append) as lock:
        assert lock.info.id != left.id
        assert read_lock_info(state) == lock.info
    assert len(warnings) == 1 and f"pid {left.pid}" in warnings[0] and "no longer alive" in warnings[0]


def test_the_cli_takes_over_the_lock_of_a_killed_run(state):
    died = subprocess.run([sys.executable, "-c", LOCK_THEN_DIE, str(state), "die"], capture_output=True, text=True)
    assert died.returncode == -signal.SIGKILL
    result = run_subprocess("state", "rm", "acme/q1", "--state", state)
    assert result.returncode == 0, result.stderr
    assert "Warning: taking over the lock" in result.stderr
    assert not lock_path(state).exists()


def test_a_killed_holder_not_yet_reaped_by_its_parent_is_taken_over(state):
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_THEN_DIE, str(state), "wait"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        holder.stdout.readline()
        holder.stdin.write("go\n")
        holder.stdin.flush()
        wait_until(lambda: process_state(holder.pid) == "Z", "the holder to be a zombie")
        warnings = []
        with StateLock(state, command="apply", warn=warnings.append):
            pass
        assert len(warnings) == 1 and f"pid {holder.pid}" in warnings[0]
    finally:
        holder.kill()
        holder.communicate()


def test_a_live_pid_with_another_start_time_is_a_reused_pid_and_is_taken_over(state):
    foreign_lock(state, process_start="1")  # this test's own pid, alive, but not the process that locked
    warnings = []
    with StateLock(state, command="apply", warn=warnings.append):
        pass
    assert len(warnings) == 1 and f"pid {os.getpid()}" in warnings[0]


def test_a_live_pid_with_its_own_start_time_is_not_taken_over(state):
    recorded = foreign_lock(state)
    before = lock_path(state).read_bytes()
    with pytest.raises(LockError, match=recorded.id):
        StateLock(state, command="apply").acquire()
    assert lock_path(state).read_bytes() == before


def test_a_lock_recorded_by_another_host_is_not_taken_over(state):
    recorded = foreign_lock(state, host="ci-runner-7", pid=2_000_000_000, process_start="123")
    before = lock_path(state).read_bytes()
    with pytest.raises(LockError) as raised:
        StateLock(state, command="apply").acquire()
    assert "alice@ci-runner-7" in str(raised.value)
    assert f"provisioner force-unlock {recorded.id}" in str(raised.value)
    assert lock_path(state).read_bytes() == before


def test_force_unlock_from_the_cli_removes_only_the_lock_it_names(state):
    recorded = foreign_lock(state, host="ci-runner-7")
    before = lock_path(state).read_bytes()

    wrong = run_subprocess("force-unlock", "00000000-0000-4000-8000-000000000000", "--state", state)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert wrong.stderr.count("Error:") == 1 and recorded.id in wrong.stderr
    assert lock_path(state).read_bytes() == before

    right = run_subprocess("force-unlock", recorded.id, "--state", state)
    assert right.returncode == 0, right.stderr
    assert recorded.id in right.stdout
    assert not lock_path(state).exists()
    warnings = []
    with StateLock(state, command="apply", warn=warnings.append):
        assert warnings == []

    again = run_subprocess("force-unlock", recorded.id, "--state", state)
    assert again.returncode == 1 and "not locked" in again.stderr


def test_a_forced_out_holder_releasing_late_does_not_free_the_next_holders_lock(state):
    first = StateLock(state, command="apply")
    first.acquire()
    lock_path(state).unlink()  # what force-unlock run from another machine does
    with StateLock(state, command="apply") as second:
        first.release()  # the forced-out run finishes after all
        assert read_lock_info(state) == second.info
        with pytest.raises(LockError, match=second.info.id):
            StateLock(state, command="apply").acquire()


def race(state: Path, race_dir: Path, contenders: int) -> tuple[list[int], list[tuple[str, str]]]:
    """(pids of the winners, (stdout, stderr) of each loser)."""
    race_dir.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(state), str(race_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(contenders)
    ]
    wait_until(lambda: len(list(race_dir.glob("ready-*"))) == contenders, "every contender at the start line")
    (race_dir / "go").touch()

    def winners() -> list[int]:
        return sorted(int(path.name.split("-")[1]) for path in race_dir.glob("won-*"))

    wait_until(
        lambda: len(winners()) + sum(p.poll() is not None for p in processes) == contenders,
        "every contender to win or give up",
    )
    (race_dir / "over").touch()
    results = [(process, *process.communicate(timeout=60)) for process in processes]
    assert winners() == sorted(process.pid for process, _, _ in results if process.returncode == 0)
    return winners(), [(stdout, stderr) for process, stdout, stderr in results if process.returncode != 0]


@pytest.mark.parametrize("round_number", range(3))
def test_of_processes_racing_for_the_lock_exactly_one_wins(state, tmp_path, round_number):
    winners, losers = race(state, tmp_path / "race", contenders=5)
    assert len(winners) == 1, winners
    assert len(losers) == 4
    for stdout, stderr in losers:
        assert stderr == "" and "is locked by another run" in stdout, stdout + stderr
    assert not lock_path(state).exists()


def test_force_unlock_refuses_while_the_holder_is_alive_on_this_machine(state):
    with StateLock(state, command="apply") as holder:
        before = lock_path(state).read_bytes()
        result = run_subprocess("force-unlock", holder.info.id, "--state", state)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "still alive" in result.stderr
        assert lock_path(state).read_bytes() == before


def test_the_cli_waiting_for_the_lock_says_who_holds_it(state):
    with StateLock(state, command="apply") as holder:
        result = run_subprocess("state", "rm", "acme/q1", "--state", state, "--lock-timeout", "1")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    waiting = result.stderr.splitlines()[0]
    assert waiting.startswith(f"Acquiring state lock on {state}... it is held by "), result.stderr
    assert f"pid {os.getpid()}, apply" in waiting and holder.info.id in waiting
    assert "waiting up to 1 s (--lock-timeout)" in waiting
