"""The backend contract, one suite over both backends: a state file, and a workspace in PostgreSQL.

Every test runs against each backend through the same interface (``open_backend`` as the CLI
calls it). Whatever one backend promises, the other keeps: reading, creating, recording, when
the serial moves, the content digest, pushing a whole state, the lock and force-unlock.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from provisioner.backends import LockError, LockInfo, StateError, StateMissing, open_backend
from provisioner.core.models import Intent, Resource, State

BACKENDS = ["file", "postgres"]

# Values a JSON round trip through a database could alter: floats written in exponent form, an
# integer beyond a double's precision, keys of different lengths (jsonb reorders keys), unicode,
# nulls, nesting, empty strings.
AWKWARD_REMOTE = {
    "id": "b-1",
    "currentBalance": 4999,
    "ratio": 0.1,
    "huge": 1e20,
    "tiny": 1.5e-7,
    "whole": 3.0,
    "bignum": 2**63 + 5,
    "name": 'Größe ✓ "quoted" \\ back\nslash',
    "expiresOn": None,
    "tags": ["a", "", {"nested": [1, 2.5, None]}],
    "z": "",
    "aa": 1,
    "b": True,
}


def resource(number: int, **remote) -> Resource:
    return Resource(
        batch_id=f"b-{number}",
        client_id="c-1",
        attributes={"clientId": "c-1", "name": f"Batch {number}", "startingBalance": 100 * number},
        remote={"id": f"b-{number}", "currentBalance": 100 * number, **remote},
    )


def intent(address: str) -> Intent:
    return Intent(
        address=address,
        client_id="c-1",
        attributes={"clientId": "c-1", "startingBalance": 700},
        digest="d" * 64,
        at="2030-01-02T03:04:05.000006Z",
        server_at="2030-01-02T03:04:05Z",
    )


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path) -> str:
    """Where a state would be, on each backend (nothing created yet)."""
    if request.param == "file":
        return str(tmp_path / "state" / "default.json")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def backend_at():
    """backend_at(location) -> an open backend, as one command opens it; all closed at the end."""
    opened = []

    def open_(location: str, workspace: str = "default"):
        backend = open_backend(location, workspace)
        opened.append(backend)
        return backend

    yield open_
    for backend in opened:
        backend.close()


@pytest.fixture
def backend(location, backend_at):
    """An empty state, as 'provisioner init' leaves it."""
    created = backend_at(location)
    created.create()
    return created


def record_some(backend, *numbers: int) -> None:
    with backend.writing("test") as writer:
        for number in numbers:
            writer.record(f"acme/b{number}", resource(number))


# --- reading and creating -----------------------------------------------------------------------


def test_no_state_is_an_error_naming_where_it_looked_and_the_two_fixes(location, backend_at):
    backend = backend_at(location)

    assert not backend.exists()
    with pytest.raises(StateMissing) as raised:
        backend.read()

    message = str(raised.value)
    assert backend.name in message and "--state" in message and "PROVISIONER_STATE" in message
    assert "provisioner init" in message
    with pytest.raises(StateMissing):
        with backend.writing("apply"):
            pass
    assert not backend.exists(), "a refused run must not leave a state behind"


def test_create_makes_an_empty_state_with_a_lineage_and_refuses_an_existing_one(location, backend_at):
    created = backend_at(location).create()

    again = backend_at(location)
    assert again.exists()
    state = again.read()
    assert state == created
    assert state.serial == 0 and state.is_empty() and state.instance is None and len(state.lineage) == 36
    with pytest.raises(StateError, match="already exists"):
        again.create()
    assert backend_at(location).read() == created, "a refused init changes nothing"


def in_schema(url: str, schema: str) -> str:
    return url + ("&" if "?" in url else "?") + f"schema={schema}"


def test_two_states_never_share_a_lineage(location, backend_at):
    other = location + ".other.json" if location.endswith(".json") else in_schema(location, "other")
    assert backend_at(location).create().lineage != backend_at(other).create().lineage


# --- recording ------------------------------------------------------------------------------------


def test_each_change_is_readable_by_another_command_the_moment_it_returns(backend, location, backend_at):
    reader = backend_at(location)
    with backend.writing("apply") as writer:
        writer.record_intent(intent("acme/b1"))
        assert reader.read().pending["acme/b1"] == intent("acme/b1")

        writer.record("acme/b1", resource(1))
        seen = reader.read()
        assert seen.resources["acme/b1"] == resource(1) and not seen.pending, "a result closes its intent"

        writer.record("acme/b2", resource(2))
        writer.move("acme/b2", "acme/second")
        assert set(reader.read().resources) == {"acme/b1", "acme/second"}

        writer.forget("acme/b1")
        writer.record_intent(intent("acme/b3"))
        writer.clear_intent("acme/b3")
        writer.bind_instance("acme.thoughtindustries.com")
        seen = reader.read()
        assert set(seen.resources) == {"acme/second"} and not seen.pending
        assert seen.instance == "acme.thoughtindustries.com"
        assert seen.resources["acme/second"] == resource(2)
    assert reader.read().content_digest() == writer.state.content_digest()


def test_a_recorded_resource_reads_back_exactly_with_the_same_digest(backend, location, backend_at):
    awkward = resource(1, **AWKWARD_REMOTE)
    with backend.writing("apply") as writer:
        writer.record("acme/b1", awkward)
        writer.record_intent(intent("acme/b2"))
        written = writer.state.content_digest()

    state = backend_at(location).read()
    assert state.resources["acme/b1"] == awkward
    assert state.content_digest() == written
    serial = state.serial
    with backend_at(location).writing("apply"):
        pass
    assert backend_at(location).read().serial == serial, "a run that changes nothing moves no serial"


def test_the_same_content_has_the_same_digest_on_every_backend(location, backend_at, tmp_path):
    pushed = State(
        serial=4,
        instance="acme.thoughtindustries.com",
        resources={"acme/b1": resource(1, **AWKWARD_REMOTE), "acme/b2": resource(2)},
        pending={"acme/b3": intent("acme/b3")},
    )
    target = backend_at(location)
    target.create()
    with target.writing("state push") as writer:
        writer.replace(pushed)

    read = backend_at(location).read()
    assert read.content_digest() == pushed.content_digest()
    assert read.model_dump() == pushed.model_dump()


# --- the serial -------------------------------------------------------------------------------------


def test_the_serial_moves_once_per_run_that_changed_something(backend, location, backend_at):
    def serial() -> int:
        return backend_at(location).read().serial

    with backend.writing("apply"):
        pass
    assert serial() == 0, "nothing changed"

    record_some(backend, 1, 2, 3)
    assert serial() == 1, "three changes, one run: one step"

    with backend.writing("apply") as writer:
        writer.record_intent(intent("acme/b9"))
        writer.clear_intent("acme/b9")
    assert serial() == 1, "an intent and its clearing leave the content as it was"

    with backend.writing("apply") as writer:
        writer.record("acme/b1", resource(1))  # the very same record again
    assert serial() == 1

    with backend.writing("state rm") as writer:
        writer.forget("acme/b1")
    assert serial() == 2


# A run that records COUNT batches and is then killed as `kill -9` kills an apply.
RECORD_THEN_DIE = """
import os, sys
from provisioner.backends import open_backend
from provisioner.core.models import Resource
backend = open_backend(sys.argv[1])
with backend.writing("apply") as writer:
    for number in range(int(sys.argv[2])):
        writer.record(f"acme/k{number}", Resource(batch_id=f"k-{number}", client_id="c-1", attributes={}))
    os.kill(os.getpid(), 9)
"""


def test_a_killed_run_loses_nothing_and_the_next_run_moves_the_serial(backend, location, backend_at):
    killed = subprocess.run(
        [sys.executable, "-c", RECORD_THEN_DIE, location, "20"], capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    seen = backend_at(location).read()
    assert len(seen.resources) == 20, "every record that returned is durable"
    assert seen.serial == 0, "the killed run never reached its checkpoint"

    with backend_at(location).writing("apply", timeout=10) as writer:
        assert len(writer.state.resources) == 20
    after = backend_at(location).read()
    assert after.serial == 1 and len(after.resources) == 20, "the interrupted run's records move the serial once"


# --- push (replace) -----------------------------------------------------------------------------------


def test_replace_puts_a_whole_state_in_place(backend, location, backend_at):
    record_some(backend, 1, 2)
    pushed = State(
        lineage="3f1c2d4e-0000-4000-8000-000000000001",
        serial=9,
        instance="acme.thoughtindustries.com",
        resources={"acme/b7": resource(7)},
        pending={"acme/b8": intent("acme/b8")},
    )

    with backend.writing("state push") as writer:
        writer.replace(pushed)
        assert writer.state == pushed

    assert backend_at(location).read() == pushed
    with backend_at(location).writing("apply"):
        pass
    assert backend_at(location).read().serial == 9, "a push is its own checkpoint"


# --- the lock ------------------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_run_naming_the_holder(backend, location, backend_at):
    with backend.lock("apply") as held:
        with pytest.raises(LockError) as raised:
            with backend_at(location).lock("state rm"):
                pass

    message = str(raised.value)
    for detail in (held.id, f"pid {os.getpid()}", held.host, held.user, "apply", "--lock-timeout"):
        assert detail in message, detail
    with backend_at(location).lock("state rm"):
        pass  # released at the end of the run


def test_a_run_refused_between_the_winners_lock_and_its_holder_row_still_names_the_winner(pg_url, backend_at):
    """On PostgreSQL the winner takes the advisory lock, then writes its holder row: a run refused in
    between used to say "a session that has not named itself yet" instead of who holds the lock."""
    backend_at(pg_url).create()
    winner = backend_at(pg_url)
    assert winner.advisory._call("pg_try_advisory_lock")  # the first half of acquire, as a winner does it
    info = LockInfo(
        id="winner-lock",
        pid=4242,
        host="ci-runner",
        user="ci",
        command="apply",
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    naming = threading.Timer(0.5, winner.advisory._take_holder_row, (info, lambda message: None))
    naming.start()
    try:
        with pytest.raises(LockError) as raised:
            backend_at(pg_url).advisory.acquire("plan", 0.0, lambda message: None)
    finally:
        naming.join()
    assert "pid 4242" in str(raised.value) and "ci-runner" in str(raised.value), str(raised.value)


def test_lock_timeout_waits_for_the_holder_and_gives_up_at_its_end(backend, location, backend_at):
    holder = backend_at(location)
    release = threading.Event()
    held = threading.Event()

    def hold() -> None:
        with holder.lock("apply"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        held.wait(10)
        started = time.monotonic()
        with pytest.raises(LockError, match="locked by another run"):
            with backend_at(location).lock("plan", timeout=0.4):
                pass
        assert time.monotonic() - started >= 0.4

        threading.Timer(0.5, release.set).start()
        started = time.monotonic()
        with backend_at(location).lock("apply", timeout=10):
            waited = time.monotonic() - started
    finally:
        release.set()
        thread.join(10)
    assert 0.4 <= waited < 5


# Takes the lock, prints its id, then waits to be killed.
HOLD_LOCK = """
import sys
from provisioner.backends import open_backend
backend = open_backend(sys.argv[1])
with backend.lock("apply") as held:
    print(held.id, flush=True)
    sys.stdin.readline()
"""


def start_holder(location: str) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, location],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock_id = process.stdout.readline().strip()
    assert lock_id, process.stderr.read()
    return process, lock_id


def kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(10)
    process.stdout.close()
    process.stderr.close()
    process.stdin.close()


def test_the_lock_of_a_killed_run_is_taken_over_with_a_warning(backend, location, backend_at):
    process, lock_id = start_holder(location)
    kill(process)

    warnings = []
    with backend_at(location).lock("apply", timeout=10, warn=warnings.append) as held:
        assert held.id != lock_id
    assert len(warnings) == 1 and "taking over the lock" in warnings[0] and f"pid {process.pid}" in warnings[0]


def test_force_unlock_refuses_a_live_holder_and_removes_a_dead_ones(backend, location, backend_at):
    process, lock_id = start_holder(location)
    try:
        with pytest.raises(LockError, match="nothing was changed"):
            backend_at(location).force_unlock(lock_id)
        with pytest.raises(LockError, match="locked by another run"):
            with backend_at(location).lock("apply"):
                pass
    finally:
        kill(process)

    with pytest.raises(LockError, match="not "):
        backend_at(location).force_unlock("0000-not-the-id")
    deadline = time.monotonic() + 10
    while True:  # the server notices the dead session within moments
        try:
            removed = backend_at(location).force_unlock(lock_id)
            break
        except LockError:
            assert time.monotonic() < deadline, "the dead holder's lock was never released"
            time.sleep(0.05)
    assert removed.id == lock_id and removed.pid == process.pid and removed.command == "apply"

    warnings = []
    with backend_at(location).lock("apply", warn=warnings.append):
        pass
    assert warnings == [], "force-unlock removed the holder: nothing is left to take over"
    with pytest.raises(LockError, match="not locked"):
        backend_at(location).force_unlock(lock_id)


# --- when it was written ----------------------------------------------------------------------------------


def test_written_at_says_when_the_state_last_changed(location, backend_at):
    def now() -> datetime:
        return datetime.now(timezone.utc)

    slack = timedelta(seconds=2)
    assert backend_at(location).written_at() is None, "no state, no time"

    before = now()
    backend_at(location).create()
    created = backend_at(location).written_at()
    assert created.tzinfo is not None and before - slack <= created <= now() + slack

    time.sleep(0.05)
    record_some(backend_at(location), 1)
    changed = backend_at(location).written_at()
    assert changed > created and changed <= now() + slack


# --- PostgreSQL only: the schema ----------------------------------------------------------------------------


def test_tables_live_in_their_own_schema_and_a_newer_schema_is_refused(pg_url, backend_at):
    import psycopg

    custom = in_schema(pg_url, "team_state")
    backend_at(custom).create()
    with psycopg.connect(pg_url) as conn:
        schemas = {
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT table_schema FROM information_schema.tables "
                "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
            )
        }
        assert schemas == {"team_state"}
        conn.execute("UPDATE team_state.meta SET value = '9' WHERE key = 'schema_version'")

    with pytest.raises(StateError, match="newer provisioner") as raised:
        backend_at(custom).read()
    assert "schema version 9" in str(raised.value)


def test_two_first_inits_at_once_on_an_empty_database_both_succeed(pg_url, backend_at):
    barrier = threading.Barrier(4)
    results: dict[str, object] = {}

    def init(workspace: str) -> None:
        backend = open_backend(pg_url, workspace)
        try:
            barrier.wait(10)
            results[workspace] = backend.create()
        except Exception as exc:  # noqa: BLE001  (reported below)
            results[workspace] = exc
        finally:
            backend.close()

    threads = [threading.Thread(target=init, args=(f"w{number}",)) for number in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert all(isinstance(result, State) for result in results.values()), results
    assert all(backend_at(pg_url, f"w{number}").exists() for number in range(4))


@pytest.mark.parametrize(
    "url, shown, libpq, schema",
    [
        ("postgresql:///team", "postgresql:///team", "postgresql:///team", "provisioner"),
        (
            "postgres://db.internal/team?host=/var/run/postgresql&schema=ops",
            "postgres://db.internal/team?host=/var/run/postgresql&schema=ops",
            "postgres://db.internal/team?host=/var/run/postgresql",
            "ops",
        ),
        (
            "postgresql://ci:pw@[::1]:5433/team?sslmode=require&password=pw2",
            "postgresql://ci@[::1]:5433/team?sslmode=require",
            "postgresql://ci:pw@[::1]:5433/team?sslmode=require&password=pw2",
            "provisioner",
        ),
        (
            "postgresql://ci:pw@h1:5432,h2:5433/team?target_session_attrs=read-write",
            "postgresql://ci@h1:5432,h2:5433/team?target_session_attrs=read-write",
            "postgresql://ci:pw@h1:5432,h2:5433/team?target_session_attrs=read-write",
            "provisioner",
        ),
    ],
)
def test_a_state_url_is_shown_as_written_less_its_password(url, shown, libpq, schema):
    from provisioner.backends.postgres import display_url, split_schema, url_has_password

    assert display_url(url) == shown
    assert split_schema(url) == (libpq, schema)
    assert url_has_password(url) == ("pw" in url)
    assert not url_has_password("postgresql://ci:@/team") and url_has_password("postgresql:///t?pass%77ord=x")


def test_a_run_waiting_for_the_lock_says_for_whom_at_once_then_again(backend, location, backend_at, monkeypatch):
    """--lock-timeout: "Acquiring state lock..." naming the holder, then a line every so often,
    then that it got the lock (Terraform's words)."""
    from provisioner.backends import lockwait

    monkeypatch.setattr(lockwait, "NOTICE_EVERY", 0.5)
    holder = backend_at(location)
    release, held = threading.Event(), threading.Event()

    def hold() -> None:
        with holder.lock("apply") as info:
            holding.append(info)
            held.set()
            release.wait(10)

    holding: list[LockInfo] = []
    thread = threading.Thread(target=hold)
    thread.start()
    said: list[str] = []
    try:
        held.wait(10)
        threading.Timer(1.3, release.set).start()
        with backend_at(location).lock("plan", timeout=10, warn=said.append):
            pass
    finally:
        release.set()
        thread.join(10)
    first = said[0]
    assert first.startswith("Acquiring state lock on ") and "waiting up to 10 s (--lock-timeout)" in first, said
    assert f"pid {os.getpid()}" in first and "apply" in first and holding[0].id in first
    assert any(line.startswith("Still waiting for the state lock (") for line in said[1:]), said
    assert said[-1].startswith("Acquired the state lock after")


def test_a_run_that_does_not_wait_says_nothing_about_waiting(backend, location, backend_at):
    said: list[str] = []
    with backend_at(location).lock("apply"):
        with pytest.raises(LockError):
            with backend_at(location).lock("plan", timeout=0, warn=said.append):
                pass
    assert said == []
