"""The local file backend: a JSON snapshot, its write-ahead journal, and an flock lock.

Layout on disk, beside ``state/default.json``:

- ``default.json``          the snapshot: sorted, indented JSON, one resource per address.
- ``default.json.backup``   the previous snapshot.
- ``default.json.journal``  the write-ahead journal of the run in progress (see journal.py).
- ``default.json.lock``     the lock of the run in progress (see filelock.py).

Readers fold the journal into the snapshot, so an apply killed at any instant
loses nothing: every intent and every id reached the journal (fsync) first. A
journal behind the snapshot was folded into it already, except for what follows
its last ``checkpoint`` line for the snapshot's serial (see journal.py).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from provisioner.backends.base import (
    CHECKPOINT_SECONDS,
    Backend,
    LockInfo,
    LockLost,
    StateError,
    StateWriter,
    Warn,
    apply_entry,
    check_instance,
)
from provisioner.backends.filelock import StateLock, force_unlock, lock_path, read_lock_info
from provisioner.backends.journal import Journal, JournalError, read_journal
from provisioner.backends.snapshot import SnapshotText, parse_state
from provisioner.core.atomic_files import temporary_beside, write_atomically
from provisioner.core.models import Resource, State


class FileBackend(Backend):
    def __init__(self, path: str | Path, *, options: str = ""):
        path = Path(path)
        # Through a symlink, the lock would be the link's and the atomic rename would replace the
        # link itself: work on the file it points to.
        self.path = path.resolve() if path.is_symlink() else path
        self.name = str(path)
        self.workspace = "default"
        self._options = options

    def location_options(self) -> str:
        return self._options

    def exists(self) -> bool:
        return self.path.exists() or journal_path(self.path).exists()

    def read(self) -> State:
        state = read_state(self.path)
        if state is None:
            raise self.missing_error()
        return state

    def create(self) -> State:
        if self.exists():
            raise StateError(f"a state already exists at {self.name}; nothing was changed.")
        state = State()
        write_snapshot(self.path, state)
        return state

    @contextmanager
    def lock(self, command: str, timeout: float = 0.0, warn: Warn | None = None) -> Iterator[LockInfo]:
        with StateLock(self.path, command=command, timeout=timeout, warn=warn) as held:
            assert held.info is not None  # held: its record is written
            yield held.info

    def open_writer(self) -> FileWriter:
        return FileWriter(self.path, name=self.name)

    def force_unlock(self, lock_id: str) -> LockInfo:
        return force_unlock(self.path, lock_id)

    def written_at(self) -> datetime | None:
        """The state file's or its journal's modification time, whichever is newer (in a fresh git
        checkout, that is when it was checked out)."""
        times = [path.stat().st_mtime for path in (self.path, journal_path(self.path)) if path.exists()]
        return datetime.fromtimestamp(max(times), timezone.utc) if times else None

    def own_files(self) -> list[Path]:
        return [self.path, journal_path(self.path), backup_path(self.path), lock_path(self.path)]


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def read_snapshot(path: Path) -> State | None:
    """The snapshot alone, or None when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise StateError(f"{path} is a directory; --state names the state file itself.") from None
    except OSError as exc:
        raise StateError(f"{path}: cannot read the state file: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise StateError(f"{path}: the state file is not UTF-8 text; it was left untouched.") from None
    return parse_state(text, str(path), backup_hint=_backup_hint(path))


def _backup_hint(path: Path) -> str:
    backup = backup_path(path)
    return f" The previous version is in {backup.name}, if you need to restore it." if backup.exists() else ""


def read_state(path: str | Path) -> State | None:
    """Snapshot plus the journal of any unfinished run: the whole truth, read only. None: no state."""
    path = Path(path)
    unfolded = read_unfolded(path)
    if unfolded is None:
        return None
    state, entries, _ = unfolded
    _replay(path, state, entries)
    return state


def read_unfolded(path: Path) -> tuple[State, list[dict], bool] | None:
    """(the snapshot, the journal entries it does not hold yet, whether there is a journal); None: no state."""
    while True:
        state = read_snapshot(path)
        entries, base = _read_journal_checked(path, state)
        serial = 0 if state is None else state.serial
        if base is None:
            return None if state is None else (state, [], False)
        if state is not None and base["serial"] < serial:
            # Folded in already, unless a checkpoint wrote this snapshot while the run went on.
            return state, _after_checkpoint(entries, serial), True
        if base["serial"] == serial and state is not None:
            return state, entries, True
        # A writer starts a journal only after its snapshot is in place, so a journal
        # ahead of the snapshot we read means the snapshot was replaced meanwhile: read
        # both again. Still ahead of the current snapshot, it is a real mismatch.
        if _snapshot_serial(path) < base["serial"] or read_snapshot(path) is None:
            found = f"is at serial {serial}" if state is not None else "does not exist"
            raise StateError(
                f"{journal_path(path)}: this journal continues state serial {base['serial']}, but "
                f"{path.name} {found}: the state file looks older than its journal "
                "(restored from an old copy?). Nothing was changed; restore the newer state file."
            )


def _after_checkpoint(entries: list[dict], serial: int) -> list[dict]:
    """What was journaled after the last checkpoint that wrote snapshot ``serial``: not in it."""
    for position in range(len(entries) - 1, -1, -1):
        entry = entries[position]
        if entry["op"] == "checkpoint" and entry.get("serial") == serial:
            return entries[position + 1 :]
    return []


def _snapshot_serial(path: Path) -> int:
    state = read_snapshot(path)
    return 0 if state is None else state.serial


def _replay(path: Path, state: State, entries: list[dict]) -> None:
    for number, entry in enumerate(entries, start=1):
        try:
            apply_entry(state, entry)
        except (KeyError, TypeError, ValueError, StateError) as exc:
            reason = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]
            raise StateError(
                f"{journal_path(path)}: entry {number} after the begin line ({entry['op']!r}) cannot be "
                f"applied: {reason}. It was left untouched: keep it, it may hold ids of created batches."
            ) from None


def _read_journal_checked(path: Path, state: State | None) -> tuple[list[dict], dict | None]:
    try:
        base, entries = read_journal(journal_path(path))
    except JournalError as exc:
        raise StateError(str(exc)) from None
    if base is not None and state is not None and base["lineage"] != state.lineage:
        raise StateError(
            f"{journal_path(path)}: this journal belongs to another state (lineage {base['lineage']}, "
            f"the state file has {state.lineage}). Move it aside after checking which is right."
        )
    return entries, base


def write_snapshot(path: Path, state: State, text: SnapshotText | None = None) -> None:
    """Atomic and durable: the new snapshot written and fsynced, the previous file kept as .backup, renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def keep_backup() -> None:
        if path.exists():
            _keep_backup(path)

    write_atomically(path, (text or SnapshotText()).render(state), durable=True, before_replace=keep_backup)


def _keep_backup(path: Path) -> None:
    # A hard link keeps the old inode as the backup at no copying cost; the state
    # path itself is never absent, so a crash here cannot look like "no state".
    staged = temporary_beside(path, "backup.tmp")
    try:
        if staged.exists():
            staged.unlink()
        os.link(path, staged)
    except OSError:
        staged.write_bytes(path.read_bytes())
    os.replace(staged, backup_path(path))


class FileWriter(StateWriter):
    """Every change goes to the journal first (one fsynced line); the snapshot is rewritten
    every few seconds and at the end, so a large state costs little per change and a crash
    loses nothing. The snapshot is written from a copy while changes go on being journaled."""

    def __init__(self, path: str | Path, *, name: str | None = None, checkpoint_seconds: float = CHECKPOINT_SECONDS):
        self.path = Path(path)
        self._name = name or str(path)
        self._journal: Journal | None = None
        self._journaled_since_mark: list[dict] | None = None  # while a checkpoint writes the snapshot
        self._text = SnapshotText()
        unfolded = read_unfolded(self.path)
        if unfolded is None:
            raise FileBackend(self.path).missing_error()
        snapshot, entries, journal_found = unfolded
        super().__init__(snapshot, checkpoint_seconds)
        # Opened under this process's lock: every write checks that the lock is still its own (after a
        # stall, its lock file may have been removed and another run may write the state now).
        self._under_lock = self._holds_lock()
        # An interrupted run's journal: folded in here, so that the changes it made are seen as changes.
        for entry in entries:
            self._changes.note(self.state, entry)
        _replay(self.path, self.state, entries)
        if journal_found:
            # A run killed while a checkpoint wrote its snapshot left a checkpoint line naming a serial no
            # snapshot holds. The fold's snapshot must come after it: under that serial, a crash before the
            # journal is dropped would have readers apply what follows that line a second time.
            named = max((entry["serial"] for entry in entries
                         if entry["op"] == "checkpoint" and type(entry.get("serial")) is int), default=0)
            if named > self.state.serial and self._changes.changed(self.state):
                self.state.serial = named
            self.checkpoint()  # folds the interrupted run in (serial + 1), or drops a spent journal

    @property
    def name(self) -> str:
        return self._name

    def _persist(self, entry: dict) -> None:
        if self._under_lock:
            self.confirm_lock()
        try:
            if self._journal is None:
                self._journal = Journal.start(journal_path(self.path), self.state.lineage, self.state.serial)
            self._journal.append(entry)
        except OSError as exc:
            # A StateError stops the whole run (the applier sends nothing it cannot record), and names the file.
            raise StateError(
                f"{journal_path(self.path)}: cannot write the state journal ({exc.strerror or exc}); this change "
                "was not recorded and the run stopped. What was recorded before is intact: free the disk, then "
                "run apply again (it looks up any create left open)."
            ) from None
        if self._journaled_since_mark is not None:
            self._journaled_since_mark.append(entry)

    def _begin_save(self, state: State, changed: bool):
        if getattr(self, "_under_lock", False):
            self.confirm_lock()
        if not changed or self._journal is None:
            # Nothing to write, or no run going on (opening folds an interrupted run's journal in).
            self._save(state, changed)
            return None
        # Resources and intents are replaced, never changed in place: new dicts make a snapshot.
        snapshot = state.model_copy(update={"resources": dict(state.resources), "pending": dict(state.pending)})
        self._journal.append({"op": "checkpoint", "serial": state.serial})
        self._journaled_since_mark = []
        return lambda: self._write_snapshot_then_journal(snapshot)

    def _write_snapshot_then_journal(self, snapshot: State) -> None:
        """Outside the guard; the journal keeps every change until the snapshot is in place."""
        try:
            write_snapshot(self.path, snapshot, self._text)
        except BaseException:
            with self._guard:
                self._journaled_since_mark = None
            raise
        with self._guard:
            since, self._journaled_since_mark = self._journaled_since_mark, None
            try:
                if since and self._journal is not None:
                    self._journal = self._journal.restart(snapshot.lineage, snapshot.serial, since)
                else:
                    self._drop_journal()
            except OSError:
                pass  # the journal as it is stays right: its checkpoint line says where the snapshot took over

    def _save(self, state: State, changed: bool) -> None:
        if changed:
            write_snapshot(self.path, state, self._text)
        # Unchanged (an intent and its refusal, say): the snapshot already says it all.
        self._drop_journal()

    def _drop_journal(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        journal_path(self.path).unlink(missing_ok=True)

    def replace(self, state: State) -> None:
        with self._guard:
            self._saved_as(state.model_copy(deep=True))
            self._save(self.state, changed=True)

    def _holds_lock(self) -> bool:
        try:
            holder = read_lock_info(self.path)
        except OSError:
            return False
        return holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname()

    def confirm_lock(self) -> None:
        """The lock file is still this process's: not removed by hand, nor taken by another run since."""
        if not self._holds_lock():
            raise LockLost(
                f"this run no longer holds the lock on {self.name} ({lock_path(self.path)} was removed or "
                "taken by another run); it stopped writing and sending. Run the command again "
                "once no other run is going: open creates are resolved by listing."
            )

    def record_all(self, resources: Mapping[str, Resource], instance: str | None = None) -> None:
        """Many resources at once, on a state file: a new snapshot (temporary file, fsync, rename), all or
        nothing, rather than a journal line that the checkpoint then writes again (for 50,000 batches
        that took twice as long). Changes this run has journaled and not yet put in the snapshot come
        first: then the resources are journaled after them, as every change is."""
        with self._checkpointing, self._guard:
            if self._journal is not None or not resources:
                super().record_all(resources, instance)
                return
            if instance is not None:
                check_instance(self.state, instance, self.name)
            state = self.state
            bound = state.instance is None and instance is not None
            if not bound and all(state.resources.get(address) == resource and address not in state.pending
                                 for address, resource in resources.items()):
                return  # recorded as it is already: the serial moves only when what is recorded changes
            updated = state.model_copy(update={
                "resources": {**state.resources, **resources},
                "pending": {address: intent for address, intent in state.pending.items() if address not in resources},
                "instance": state.instance if state.instance is not None else instance,
                "serial": state.serial + 1,
            })
            write_snapshot(self.path, updated, self._text)
            self._saved_as(updated)
            self._last_checkpoint = time.monotonic()
