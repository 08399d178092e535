"""The state file and its write-ahead journal, proven with real files and real processes."""

from __future__ import annotations

import difflib
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ACME_ID, run_subprocess, two_client_manifest

from provisioner.backends.file import (
    FileBackend,
    FileWriter,
    StateError,
    backup_path,
    journal_path,
    read_state,
    write_snapshot,
)
from provisioner.core.models import STATE_FORMAT_VERSION, Intent, Resource

NEVER = 1e9


def new_state(path: Path) -> Path:
    """An empty state file, as 'provisioner init' leaves it."""
    FileBackend(path).create()
    return path  # checkpoint_seconds that keeps every change in the journal until close


# A writer that records COUNT batches, then dies the way `kill -9` kills an apply.
RECORD_THEN_DIE = """
import os, sys
from provisioner.core.models import Resource
from provisioner.backends.file import FileWriter
path, count, checkpoint = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
writer = FileWriter(path, checkpoint_seconds=checkpoint)
for number in range(count):
    writer.record(f"acme/b{number:04d}", Resource(batch_id=f"id-{number}", client_id="c", attributes={}))
os.kill(os.getpid(), 9)
"""

# A writer that prints each address once record() has returned, until it is killed.
RECORD_AND_ACKNOWLEDGE = """
import sys
from provisioner.core.models import Resource
from provisioner.backends.file import FileWriter
writer = FileWriter(sys.argv[1], checkpoint_seconds=float(sys.argv[2]))
for number in range(int(sys.argv[3])):
    address = f"acme/b{number:04d}"
    writer.record(address, Resource(batch_id=f"id-{number}", client_id="c", attributes={}))
    print(address, flush=True)
writer.close()
"""

# Rewrites the snapshot with a large batch while the file size limit stops the write
# halfway: with SIGXFSZ's default action the kernel kills the process (a crash mid-write);
# with it ignored (Python's own default), write() fails with EFBIG.
WRITE_PAST_SIZE_LIMIT = """
import errno, resource, signal, sys
from pathlib import Path
from provisioner.core.models import Resource
from provisioner.backends.file import read_state, write_snapshot
path, mode = Path(sys.argv[1]), sys.argv[2]
signal.signal(signal.SIGXFSZ, signal.SIG_IGN if mode == "fail" else signal.SIG_DFL)
state = read_state(path)
state.resources["acme/big"] = Resource(batch_id="big", client_id="c", attributes={"name": "x" * 200_000})
state.serial += 1
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
try:
    write_snapshot(path, state)
except OSError as exc:
    print(errno.errorcode[exc.errno])
    sys.exit(3)
"""


def batch(number: int) -> Resource:
    return Resource(
        batch_id=f"id-{number}",
        client_id=ACME_ID,
        attributes={"clientId": ACME_ID, "name": f"Batch {number}", "startingBalance": 100 * number},
    )


def intent(address: str) -> Intent:
    return Intent(
        address=address,
        client_id=ACME_ID,
        attributes={"startingBalance": 5},
        digest="d1",
        at="2030-01-01T00:00:00.000Z",
    )


def write_state(path: Path, *addresses: str) -> None:
    with FileWriter(path) as writer:
        for number, address in enumerate(addresses, start=1):
            writer.record(address, batch(number))


def run_python(script: str, *args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", script, *map(str, args)], capture_output=True, text=True, timeout=60, **kwargs
    )


def files_in(directory: Path) -> dict[str, bytes]:
    return {entry.name: entry.read_bytes() for entry in directory.iterdir()}


def on_disk(path: Path) -> dict:
    return json.loads(path.read_text())


# --- the snapshot ------------------------------------------------------------------


def test_a_state_has_a_version_a_lineage_fixed_at_creation_and_a_serial_counting_writes(tmp_path):
    assert read_state(tmp_path / "default.json") is None
    assert not (tmp_path / "default.json").exists(), "reading must never create the file"
    path = new_state(tmp_path / "default.json")
    assert read_state(path).serial == 0

    write_state(path, "acme/q1")
    first = on_disk(path)
    assert (first["version"], first["serial"]) == (STATE_FORMAT_VERSION, 1)

    write_state(path, "acme/q2")
    write_state(path, "acme/q3")
    third = on_disk(path)
    assert third["serial"] == 3
    assert third["lineage"] == first["lineage"]
    assert set(third["resources"]) == {"acme/q1", "acme/q2", "acme/q3"}

    write_state(new_state(tmp_path / "other.json"), "acme/q1")
    assert on_disk(tmp_path / "other.json")["lineage"] != first["lineage"]


def test_checkpoint_bumps_the_serial_only_when_something_changed(tmp_path):
    path = new_state(tmp_path / "default.json")
    initialised = path.read_bytes()
    with FileWriter(path, checkpoint_seconds=NEVER) as writer:
        writer.checkpoint()
        assert path.read_bytes() == initialised, "nothing changed: nothing written"
        writer.record("acme/q1", batch(1))
        writer.record("acme/q2", batch(2))
        writer.checkpoint()
        assert on_disk(path)["serial"] == 1
        after_first = path.read_bytes()
        writer.checkpoint()
        writer.checkpoint()
    assert path.read_bytes() == after_first
    assert backup_path(path).read_bytes() == initialised

    with FileWriter(path) as writer:
        pass
    assert path.read_bytes() == after_first, "opening and closing without a change rewrites nothing"


def test_snapshot_is_sorted_indented_json_so_a_pull_request_shows_a_readable_diff(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "globex/starter", "acme/q2", "acme/q1")
    before = path.read_text()
    assert before == json.dumps(json.loads(before), indent=2, sort_keys=True) + "\n"
    assert before.index('"acme/q1"') < before.index('"acme/q2"') < before.index('"globex/starter"')

    with FileWriter(path) as writer:
        writer.record("acme/q3", batch(3))
    diff = list(difflib.unified_diff(before.splitlines(), path.read_text().splitlines(), lineterm="", n=0))
    removed = [line[1:].strip() for line in diff if line.startswith("-") and not line.startswith("---")]
    added = [line[1:].strip() for line in diff if line.startswith("+") and not line.startswith("+++")]
    assert removed == ['"serial": 1,'], diff
    assert '"serial": 2,' in added and '"acme/q3": {' in added and '"batch_id": "id-3",' in added


def test_previous_version_is_kept_as_backup(tmp_path):
    path = new_state(tmp_path / "default.json")
    initialised = path.read_bytes()
    write_state(path, "acme/q1")
    assert backup_path(path).read_bytes() == initialised
    first = path.read_bytes()
    write_state(path, "acme/q2")
    assert backup_path(path).read_bytes() == first
    second = path.read_bytes()
    write_state(path, "acme/q3")
    assert backup_path(path).read_bytes() == second
    assert backup_path(path).name == "default.json.backup"


def test_a_crash_in_the_middle_of_a_write_leaves_the_old_state_intact(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    write_state(path, "acme/q2")
    before = files_in(tmp_path)

    crashed = run_python(WRITE_PAST_SIZE_LIMIT, path, "crash")

    assert crashed.returncode == -signal.SIGXFSZ, crashed.stderr
    strays = set(files_in(tmp_path)) - set(before)
    assert len(strays) == 1 and 0 < (tmp_path / strays.pop()).stat().st_size < 200_000, "a half-written temp file"
    assert path.read_bytes() == before["default.json"]
    assert backup_path(path).read_bytes() == before["default.json.backup"]
    assert set(read_state(path).resources) == {"acme/q1", "acme/q2"}
    write_state(path, "acme/q3")
    assert set(read_state(path).resources) == {"acme/q1", "acme/q2", "acme/q3"}


def test_a_failed_write_leaves_the_old_state_intact_and_no_temporary_file(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    write_state(path, "acme/q2")
    before = files_in(tmp_path)

    failed = run_python(WRITE_PAST_SIZE_LIMIT, path, "fail")

    assert (failed.returncode, failed.stdout.strip()) == (3, "EFBIG"), failed.stderr
    assert files_in(tmp_path) == before


def test_the_write_is_a_rename_of_a_fully_written_file(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    old_inode = path.stat().st_ino
    state = read_state(path)
    state.serial += 1
    write_snapshot(path, state)
    assert path.stat().st_ino != old_inode, "replaced by rename, not rewritten in place"
    assert backup_path(path).stat().st_ino == old_inode


CORRUPTIONS = {
    "bad JSON": b'{"version": 1, "lineage": "abc", "serial": ',
    "empty file": b"",
    "not UTF-8": b"\xff\xfe\x00\x01 binary garbage",
    "not an object": b"[]\n",
    "wrong shape": json.dumps({"version": 1, "lineage": "l", "serial": 1, "resources": [], "pending": {}}).encode(),
    "resource without id": json.dumps(
        {
            "version": 1,
            "lineage": "l",
            "serial": 1,
            "pending": {},
            "resources": {"acme/q1": {"client_id": ACME_ID, "attributes": {}}},
        }
    ).encode(),
    "unknown version": json.dumps({"version": 2, "lineage": "l", "serial": 1, "resources": {}, "pending": {}}).encode(),
    "no version": json.dumps({"lineage": "l", "serial": 1, "resources": {}, "pending": {}}).encode(),
    "version true": json.dumps({"version": True, "lineage": "l", "serial": 1, "resources": {}, "pending": {}}).encode(),
}


@pytest.mark.parametrize("content", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_a_corrupt_state_file_is_a_clear_error_and_is_never_overwritten(tmp_path, content):
    path = new_state(tmp_path / "default.json")
    path.write_bytes(content)

    with pytest.raises(StateError, match="default.json") as raised:
        read_state(path)
    assert "untouched" in str(raised.value) or "not supported" in str(raised.value)
    with pytest.raises(StateError):
        FileWriter(path)

    assert files_in(tmp_path) == {"default.json": content}


def test_unknown_format_version_says_which_versions_are_involved(tmp_path):
    path = new_state(tmp_path / "default.json")
    path.write_bytes(CORRUPTIONS["unknown version"])
    with pytest.raises(StateError, match=r"version 2 is not supported .*reads version 1"):
        read_state(path)


def cli_commands(manifest: Path, state: Path) -> dict[str, list]:
    return {
        "plan": ["plan", manifest, "--state", state],
        "apply": ["apply", manifest, "--state", state, "--auto-approve"],
        "state rm": ["state", "rm", "acme/q1", "--state", state],
    }


@pytest.mark.parametrize("command", ["plan", "apply", "state rm"])
@pytest.mark.parametrize("corruption", ["bad JSON", "not UTF-8", "unknown version"])
def test_cli_refuses_a_corrupt_state_with_one_message_and_leaves_it_untouched(
    tmp_path, api_env, sandbox, write_manifest, command, corruption
):
    manifest = write_manifest(two_client_manifest())
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    path = state_dir / "default.json"
    path.write_bytes(CORRUPTIONS[corruption])

    result = run_subprocess(*cli_commands(manifest, path)[command], env=api_env)

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("Error: ") and result.stderr.count("Error:") == 1, result.stderr
    assert str(path) in result.stderr
    assert files_in(state_dir) == {"default.json": CORRUPTIONS[corruption]}, "no backup, journal or lock left"
    assert sandbox.all_batches() == []


# --- the journal -----------------------------------------------------------------------


def test_journal_entries_are_replayed_by_every_reader(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1", "acme/q2")
    snapshot = path.read_bytes()
    writer = FileWriter(path, checkpoint_seconds=NEVER)
    writer.record("acme/q3", batch(3))
    writer.record_intent(intent("acme/q4"))
    writer.forget("acme/q1")
    writer.move("acme/q2", "acme/renamed")

    assert path.read_bytes() == snapshot, "the changes so far live in the journal only"
    seen = read_state(path)
    assert set(seen.resources) == {"acme/renamed", "acme/q3"}
    assert set(seen.pending) == {"acme/q4"}
    assert seen.resources["acme/renamed"].batch_id == "id-2"

    writer.close()
    assert not journal_path(path).exists()
    assert read_state(path) == seen.model_copy(update={"serial": seen.serial + 1})


def torn_copy(line: bytes) -> bytes:
    """What a crash in the middle of writing LINE leaves: a prefix, without its newline."""
    return line[: len(line) // 2]


def test_a_torn_last_line_is_ignored(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    writer = FileWriter(path, checkpoint_seconds=NEVER)
    writer.record("acme/q2", batch(2))
    complete = journal_path(path).read_bytes()
    writer.record("acme/q3", batch(3))
    last_line = journal_path(path).read_bytes()[len(complete) :]
    journal_path(path).write_bytes(complete + torn_copy(last_line))

    assert set(read_state(path).resources) == {"acme/q1", "acme/q2"}
    FileWriter(path).close()
    assert not journal_path(path).exists()
    assert set(read_state(path).resources) == {"acme/q1", "acme/q2"}


DAMAGED_LINES = {
    "garbage": b"#!?garbage\n",
    "torn then continued": b'{"address":"acme/q9","op":"rec\n',
    "not an object": b"42\n",
    "no op": b'{"address": "acme/q9"}\n',
    "unknown op": b'{"op": "explode", "address": "acme/q9"}\n',
    "record without resource": b'{"op": "record", "address": "acme/q9"}\n',
}


@pytest.mark.parametrize("damage", DAMAGED_LINES.values(), ids=DAMAGED_LINES.keys())
def test_damage_in_the_middle_of_the_journal_is_an_error_and_nothing_is_touched(tmp_path, damage):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    writer = FileWriter(path, checkpoint_seconds=NEVER)
    writer.record("acme/q2", batch(2))
    writer.record("acme/q3", batch(3))
    lines = journal_path(path).read_bytes().splitlines(keepends=True)
    journal_path(path).write_bytes(lines[0] + lines[1] + damage + lines[2])
    before = files_in(tmp_path)

    with pytest.raises(StateError, match=r"default\.json\.journal"):
        read_state(path)
    with pytest.raises(StateError):
        FileWriter(path)
    result = run_subprocess("state", "rm", "acme/q1", "--state", path)

    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.count("Error:") == 1 and "default.json.journal" in result.stderr
    assert files_in(tmp_path) == before


def test_a_begin_line_with_a_damaged_serial_is_an_error(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    journal_path(path).write_text(
        json.dumps({"op": "begin", "lineage": on_disk(path)["lineage"], "serial": "1"}) + "\n"
    )
    with pytest.raises(StateError, match=r"default\.json\.journal"):
        read_state(path)


def test_a_journal_already_folded_into_the_snapshot_is_not_applied_twice(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1", "acme/q2")
    with FileWriter(path, checkpoint_seconds=NEVER) as writer:
        writer.move("acme/q1", "acme/renamed")
        writer.forget("acme/q2")
        writer.record("acme/q3", batch(3))
        folded = journal_path(path).read_bytes()
    # A crash between the snapshot's rename and the journal's unlink leaves both behind.
    journal_path(path).write_bytes(folded)
    snapshot, backup = path.read_bytes(), backup_path(path).read_bytes()

    assert set(read_state(path).resources) == {"acme/renamed", "acme/q3"}
    assert read_state(path).serial == 2

    FileWriter(path).close()
    assert not journal_path(path).exists()
    assert path.read_bytes() == snapshot, "nothing changed: no new serial"
    assert backup_path(path).read_bytes() == backup, "the real previous version stays the backup"


def test_changes_recorded_while_a_checkpoint_writes_the_snapshot_survive_a_crash_before_the_journal_moves_on(
    tmp_path, monkeypatch
):
    """A checkpoint writes the snapshot outside the writer's guard, from a copy, while workers go on
    recording. If the run dies once that snapshot is in place but before the journal is cut down to what
    came after it, the journal's checkpoint line says which of its entries the snapshot lacks."""
    from provisioner.backends import file as file_backend
    from provisioner.backends.journal import Journal

    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    writer = FileWriter(path, checkpoint_seconds=NEVER)
    writer.record_intent(intent("acme/a"))
    write_snapshot_now = file_backend.write_snapshot

    def a_worker_records_meanwhile(*args):
        writer.record_intent(intent("acme/b"))  # not in the copy being written
        writer.record("acme/q1", batch(7))
        write_snapshot_now(*args)

    def killed_before_the_journal_moves_on(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_backend, "write_snapshot", a_worker_records_meanwhile)
    monkeypatch.setattr(Journal, "restart", killed_before_the_journal_moves_on)
    writer.checkpoint()
    monkeypatch.undo()

    assert on_disk(path)["serial"] == 2 and set(on_disk(path)["pending"]) == {"acme/a"}
    recovered = read_state(path)
    assert recovered.serial == 2 and set(recovered.pending) == {"acme/a", "acme/b"}
    assert recovered.resources["acme/q1"].batch_id == "id-7"

    writer._journal.close()  # killed: no final checkpoint
    reopened = FileWriter(path)
    assert set(reopened.state.pending) == {"acme/a", "acme/b"} and reopened.state.serial == 3
    assert set(on_disk(path)["pending"]) == {"acme/a", "acme/b"} and not journal_path(path).exists()
    reopened.close()


def test_a_checkpoint_keeps_in_the_journal_only_what_came_after_its_snapshot(tmp_path, monkeypatch):
    from provisioner.backends import file as file_backend

    path = new_state(tmp_path / "default.json")
    writer = FileWriter(path, checkpoint_seconds=NEVER)
    writer.record_intent(intent("acme/a"))
    write_snapshot_now = file_backend.write_snapshot

    def a_worker_records_meanwhile(*args):
        writer.record_intent(intent("acme/b"))
        write_snapshot_now(*args)

    monkeypatch.setattr(file_backend, "write_snapshot", a_worker_records_meanwhile)
    writer.checkpoint()
    monkeypatch.undo()

    journal = [json.loads(line) for line in journal_path(path).read_text().splitlines()]
    assert journal[0]["op"] == "begin" and journal[0]["serial"] == on_disk(path)["serial"] == 1
    assert [entry["intent"]["address"] for entry in journal[1:]] == ["acme/b"]
    assert set(read_state(path).pending) == {"acme/a", "acme/b"}
    writer.record_intent(intent("acme/c"))  # appended to the new journal
    assert set(read_state(path).pending) == {"acme/a", "acme/b", "acme/c"}
    writer.close()
    assert set(on_disk(path)["pending"]) == {"acme/a", "acme/b", "acme/c"} and not journal_path(path).exists()


def test_a_journal_ahead_of_its_snapshot_is_an_error(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    old_copy = path.read_bytes()
    write_state(path, "acme/q2")
    died = run_python(RECORD_THEN_DIE, path, 3, NEVER)
    assert died.returncode == -signal.SIGKILL
    path.write_bytes(old_copy)  # the state file restored from an old copy
    before = files_in(tmp_path)

    with pytest.raises(StateError, match=r"serial 2.*at serial 1") as raised:
        read_state(path)
    assert "default.json.journal" in str(raised.value)
    with pytest.raises(StateError):
        FileWriter(path)
    path.unlink()
    with pytest.raises(StateError, match="default.json.journal"):
        read_state(path)
    assert files_in(tmp_path) == {name: data for name, data in before.items() if name != "default.json"}


def test_a_journal_of_another_lineage_is_an_error(tmp_path):
    path = new_state(tmp_path / "default.json")
    died = run_python(RECORD_THEN_DIE, new_state(tmp_path / "other.json"), 1, NEVER)
    assert died.returncode == -signal.SIGKILL
    write_state(path, "acme/q1")
    journal_path(tmp_path / "other.json").rename(journal_path(path))
    with pytest.raises(StateError, match="another state"):
        read_state(path)


def test_the_writer_folds_an_interrupted_run_in_when_it_opens(tmp_path):
    path = new_state(tmp_path / "default.json")
    write_state(path, "acme/q1")
    died = run_python(RECORD_THEN_DIE, path, 4, NEVER)
    assert died.returncode == -signal.SIGKILL
    assert on_disk(path)["serial"] == 1 and journal_path(path).exists()

    writer = FileWriter(path)
    assert not journal_path(path).exists()
    assert on_disk(path)["serial"] == 2
    assert set(on_disk(path)["resources"]) == {"acme/q1", "acme/b0000", "acme/b0001", "acme/b0002", "acme/b0003"}
    writer.close()


@pytest.mark.parametrize("checkpoint_seconds", [NEVER, 0.0], ids=["all in journal", "checkpoint every write"])
def test_a_sigkilled_writer_loses_nothing(tmp_path, checkpoint_seconds):
    path = new_state(tmp_path / "default.json")
    died = run_python(RECORD_THEN_DIE, path, 40, checkpoint_seconds)
    assert died.returncode == -signal.SIGKILL, died.stderr
    recorded = read_state(path).resources
    assert set(recorded) == {f"acme/b{number:04d}" for number in range(40)}
    assert recorded["acme/b0039"].batch_id == "id-39"


@pytest.mark.parametrize("acknowledged_count", [1, 9, 33, 80])
def test_a_writer_killed_at_any_instant_keeps_everything_it_acknowledged(tmp_path, acknowledged_count):
    path = new_state(tmp_path / "default.json")
    child = subprocess.Popen(
        [sys.executable, "-c", RECORD_AND_ACKNOWLEDGE, str(path), "0", "100000"], stdout=subprocess.PIPE, text=True
    )
    acknowledged = [child.stdout.readline().strip() for _ in range(acknowledged_count)]
    child.kill()
    child.wait()
    child.stdout.close()

    recorded = sorted(read_state(path).resources)
    assert set(acknowledged) <= set(recorded)
    assert recorded == [f"acme/b{number:04d}" for number in range(len(recorded))], "a prefix, no gap"
    FileWriter(path).close()
    assert sorted(read_state(path).resources) == recorded


def test_a_reader_beside_a_busy_writer_always_sees_a_consistent_past_state(tmp_path):
    path = new_state(tmp_path / "default.json")
    # 100 checkpoints (about 1 s) expose the race between a checkpoint and a reader every time.
    child = subprocess.Popen(
        [sys.executable, "-c", RECORD_AND_ACKNOWLEDGE, str(path), "0", "100"], stdout=subprocess.DEVNULL
    )
    reads = 0
    try:
        while child.poll() is None or reads == 0:
            recorded = sorted(read_state(path).resources)
            assert recorded == [f"acme/b{number:04d}" for number in range(len(recorded))]
            reads += 1
    finally:
        child.kill()
        child.wait()
    assert len(read_state(path).resources) == 100


def test_the_claimed_ids_stay_in_step_with_what_is_recorded(tmp_path):
    """The duplicate guard asks for the claimed ids before every create; the writer keeps them as changes
    are recorded instead of rebuilding them, and they must always be what the state itself says."""
    path = new_state(tmp_path / "default.json")
    with FileWriter(path, checkpoint_seconds=NEVER) as writer:
        claimed = writer.claimed_ids()
        writer.record("acme/q1", batch(1))
        writer.record("acme/q2", batch(2))
        writer.record("acme/q3", batch(2))  # two addresses with one id: forgetting one keeps it claimed
        writer.record("acme/q1", batch(11))  # the id of an address replaced
        writer.forget("acme/q2")
        writer.move("acme/q3", "acme/q4")
        expected = writer.state.claimed_ids()
        assert {key for key in expected if key in claimed} == expected
        assert batch(1).batch_id not in claimed and batch(11).batch_id in claimed and batch(2).batch_id in claimed
        writer.forget("acme/q4")
        assert batch(2).batch_id not in claimed
        assert writer.claimed_ids() is claimed


def test_moving_an_address_that_is_not_recorded_is_refused_and_journals_nothing(tmp_path):
    path = new_state(tmp_path / "default.json")
    with FileWriter(path, checkpoint_seconds=NEVER) as writer:
        writer.record("acme/q1", batch(1))
        with pytest.raises(StateError, match="acme/nope is not recorded"):
            writer.move("acme/nope", "acme/q2")
    assert set(read_state(path).resources) == {"acme/q1"}
