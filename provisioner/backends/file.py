"""The local file backend: a JSON snapshot, its write-ahead journal, and an flock lock.

Layout on disk, beside ``state/default.json``:

- ``default.json``          the snapshot: sorted, indented JSON, one resource per address.
- ``default.json.backup``   the previous snapshot.
- ``default.json.journal``  the write-ahead journal of the run in progress (see journal.py).
- ``default.json.lock``     the lock of the run in progress (see filelock.py).
- ``default.json.history``  the audit trail: one event a line, append-only (see core/audit_trail.py).

Readers fold the journal into the snapshot, so an apply killed at any instant
loses nothing: every intent and every id reached the journal (fsync) first. A
journal behind the snapshot was folded into it already, except for what follows
its last ``checkpoint`` line for the snapshot's serial (see journal.py).

Each change's event travels in its journal line, or in the snapshot that makes the change (a
push: the snapshot's last key, ``history``, holds the events its history file may not hold yet);
the history file receives them before that journal is dropped or restarted, or right after that
snapshot is in place. So every event is in one or the other, or both: the history is read as the
file, then the snapshot's events past its end, then the journal's past those.
"""

from __future__ import annotations

import json
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
    check_instance,
    event_note,
)
from provisioner.backends.entries import Begin, Checkpoint, Entry
from provisioner.backends.filelock import StateLock, force_unlock, lock_path, read_lock_info
from provisioner.backends.journal import Journal, JournalError, fsync_directory, read_journal
from provisioner.backends.snapshot import HISTORY_OPENING, SnapshotText, parse_document, parse_state, with_history
from provisioner.core.atomic_files import temporary_beside, write_atomically
from provisioner.core.audit_trail import FORCE_UNLOCK, GENERATE, Head, Note, after, line_of, parse_line
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

    def force_unlock(self, lock_id: str, run: Mapping[str, object] | None = None) -> LockInfo:
        def record(holder: LockInfo) -> None:
            # Under the dead run's lock, taken over: its event first, then the lock file goes.
            if not self.exists():
                return
            with self.open_writer() as writer:
                writer.attribute(run or {})
                writer.record_event(
                    Note(
                        FORCE_UNLOCK,
                        detail=f"lock {holder.id} of {holder.command} by {holder.user}@{holder.host}, pid {holder.pid}",
                    )
                )

        return force_unlock(self.path, lock_id, before_removal=record)

    def read_history(self) -> list[dict]:
        if not self.exists():
            raise self.missing_error()
        return read_history(self.path)

    def written_at(self) -> datetime | None:
        """The state file's or its journal's modification time, whichever is newer (in a fresh git
        checkout, that is when it was checked out)."""
        times = [path.stat().st_mtime for path in (self.path, journal_path(self.path)) if path.exists()]
        return datetime.fromtimestamp(max(times), timezone.utc) if times else None

    def own_files(self) -> list[Path]:
        return [
            self.path,
            journal_path(self.path),
            backup_path(self.path),
            lock_path(self.path),
            history_path(self.path),
        ]


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def history_path(path: Path) -> Path:
    return path.with_name(path.name + ".history")


def read_history(path: Path) -> list[dict]:
    """The state's whole audit trail: the history file, then the events of the journal past its end."""
    # In this order: events move from the journal or the snapshot to the file, never back.
    journaled = journal_events(path)
    carried = snapshot_events(path)
    filed = read_history_file(history_path(path))
    return _merged(filed, carried, journaled)


def _merged(filed: list[dict], carried: list[dict], journaled: list[dict]) -> list[dict]:
    events = filed + after(carried, filed[-1]["seq"] if filed else 0)
    return events + after(journaled, events[-1]["seq"] if events else 0)


SNAPSHOT_HISTORY = HISTORY_OPENING.encode()


def snapshot_events(path: Path) -> list[dict]:
    """The events a snapshot carries (its last key, as render_snapshot writes it); [] for none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"{path}: cannot read the state file: {exc.strerror}.") from None
    start = data.rfind(SNAPSHOT_HISTORY)
    if start < 0:
        if b'"history"' not in data:
            return []
        try:  # laid out another way (a pulled state reformatted): the whole document read
            return parse_document(data.decode("utf-8"), str(path))[1] or []
        except (StateError, UnicodeDecodeError):
            return []
    try:
        events = json.loads(data[start + len(SNAPSHOT_HISTORY) - 1 : data.rindex(b"]") + 1])
    except ValueError:
        raise StateError(f"{path}: the events the state file carries cannot be read; it was left untouched.") from None
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise StateError(f"{path}: its 'history' must be a list of events; it was left untouched.")
    return events


def journal_events(path: Path) -> list[dict]:
    """The events of every whole line of the journal (a change there happened, folded in or not)."""
    try:
        _, entries = read_journal(journal_path(path))
    except JournalError as exc:
        raise StateError(str(exc)) from None
    return [event for entry in entries for event in entry.events]


def read_history_file(path: Path) -> list[dict]:
    """Every whole line; a last line without its newline was cut by a crash and never counted."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StateError(f"{path}: cannot read the history: {exc.strerror}.") from None
    lines = data.split(b"\n")[:-1]  # what follows the last newline was torn
    events = []
    for number, line in enumerate(lines, start=1):
        try:
            events.append(parse_line(line))
        except ValueError:
            raise StateError(
                f"{path}:{number}: this line of the history is not an event (the file was altered or damaged). "
                "It was left untouched; 'provisioner log --verify' checks the rest."
            ) from None
    return events


def history_tail(path: Path) -> Head:
    """Where the history file ends: its last whole line, read from the end of the file only."""
    try:
        with open(path, "rb") as handle:
            data, position = b"", handle.seek(0, os.SEEK_END)
            # Enough bytes to hold the last two newlines: the last whole line lies between them.
            while position > 0 and data.count(b"\n") < 2:
                step = min(65536, position)
                position -= step
                handle.seek(position)
                data = handle.read(step) + data
    except FileNotFoundError:
        return Head()
    if b"\n" not in data:
        return Head()  # empty, or only a line a crash cut short
    whole = data[: data.rfind(b"\n")]
    try:
        return Head.of(parse_line(whole[whole.rfind(b"\n") + 1 :]))
    except (ValueError, KeyError):
        raise StateError(
            f"{path}: its last event cannot be read (the file was altered or damaged); nothing was changed. "
            "'provisioner log --verify' tells where."
        ) from None


def append_history(path: Path, events: list[dict]) -> None:
    """Appends whole lines, fsynced. A torn last line a crash left is cut off first; a write that
    fails midway is cut back off, so that no event is ever written twice or glued to a fragment."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        size = os.lseek(fd, 0, os.SEEK_END)
        if size:
            os.lseek(fd, max(0, size - 65536), os.SEEK_SET)
            tail = os.read(fd, 65536)
            if not tail.endswith(b"\n"):
                size = size - len(tail) + tail.rfind(b"\n") + 1
                os.ftruncate(fd, size)
        data = memoryview("".join(line_of(event) for event in events).encode("utf-8"))
        os.lseek(fd, size, os.SEEK_SET)
        try:
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)
    if not size:
        fsync_directory(path.parent)


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


def read_unfolded(path: Path) -> tuple[State, list[Entry], bool] | None:
    """(the snapshot, the journal entries it does not hold yet, whether there is a journal); None: no state."""
    while True:
        state = read_snapshot(path)
        entries, base = _read_journal_checked(path, state)
        serial = 0 if state is None else state.serial
        if base is None:
            return None if state is None else (state, [], False)
        if state is not None and base.serial < serial:
            # Folded in already, unless a checkpoint wrote this snapshot while the run went on.
            return state, _after_checkpoint(entries, serial), True
        if base.serial == serial and state is not None:
            return state, entries, True
        # A writer starts a journal only after its snapshot is in place, so a journal
        # ahead of the snapshot we read means the snapshot was replaced meanwhile: read
        # both again. Still ahead of the current snapshot, it is a real mismatch.
        if _snapshot_serial(path) < base.serial or read_snapshot(path) is None:
            found = f"is at serial {serial}" if state is not None else "does not exist"
            raise StateError(
                f"{journal_path(path)}: this journal continues state serial {base.serial}, but "
                f"{path.name} {found}: the state file looks older than its journal "
                "(restored from an old copy?). Nothing was changed; restore the newer state file."
            )


def _after_checkpoint(entries: list[Entry], serial: int) -> list[Entry]:
    """What was journaled after the last checkpoint that wrote snapshot ``serial``: not in it."""
    for position in range(len(entries) - 1, -1, -1):
        entry = entries[position]
        if isinstance(entry, Checkpoint) and entry.serial == serial:
            return entries[position + 1 :]
    return []


def _snapshot_serial(path: Path) -> int:
    state = read_snapshot(path)
    return 0 if state is None else state.serial


def _replay(path: Path, state: State, entries: list[Entry]) -> None:
    for number, entry in enumerate(entries, start=1):
        try:
            entry.apply_to(state)
        except (TypeError, ValueError) as exc:
            reason = str(exc).splitlines()[0]
            raise StateError(
                f"{journal_path(path)}: entry {number} after the begin line ({entry.op!r}) cannot be "
                f"applied: {reason}. It was left untouched: keep it, it may hold ids of created batches."
            ) from None


def _read_journal_checked(path: Path, state: State | None) -> tuple[list[Entry], Begin | None]:
    try:
        base, entries = read_journal(journal_path(path))
    except JournalError as exc:
        raise StateError(str(exc)) from None
    if base is not None and state is not None and base.lineage != state.lineage:
        raise StateError(
            f"{journal_path(path)}: this journal belongs to another state (lineage {base.lineage}, "
            f"the state file has {state.lineage}). Move it aside after checking which is right."
        )
    return entries, base


def write_snapshot(
    path: Path, state: State, text: SnapshotText | None = None, history: list[dict] | None = None
) -> None:
    """Atomic and durable: the new snapshot written and fsynced, the previous file kept as .backup, renamed.
    ``history``: events this snapshot carries, the change it makes and its events in one step (see read_history)."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def keep_backup() -> None:
        if path.exists():
            _keep_backup(path)

    write_atomically(
        path,
        with_history((text or SnapshotText()).render(state), history or None),
        durable=True,
        before_replace=keep_backup,
    )


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
        self._journaled_since_mark: list[Entry] | None = None  # while a checkpoint writes the snapshot
        self._text = SnapshotText()
        unfolded = read_unfolded(self.path)
        if unfolded is None:
            raise FileBackend(self.path).missing_error()
        snapshot, entries, journal_found = unfolded
        # The events a killed run journaled that the history file does not hold yet: filed first.
        filed = history_tail(history_path(self.path))
        self._unfiled = _merged(
            [], after(snapshot_events(self.path), filed.seq), after(journal_events(self.path), filed.seq)
        )
        super().__init__(snapshot, checkpoint_seconds, head=Head.of(self._unfiled[-1]) if self._unfiled else filed)
        self._file_events()
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
            named = max((entry.serial for entry in entries if isinstance(entry, Checkpoint)), default=0)
            if named > self.state.serial and self._changes.changed(self.state):
                self.state.serial = named
            self.checkpoint()  # folds the interrupted run in (serial + 1), or drops a spent journal

    @property
    def name(self) -> str:
        return self._name

    def _persist(self, entry: Entry) -> None:
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
        self._unfiled.extend(entry.events)

    def _file_events(self) -> None:
        """The journaled events into the history file: before the journal that holds them goes."""
        if self._unfiled:
            append_history(history_path(self.path), self._unfiled)
            self._unfiled = []

    def _begin_save(self, state: State, changed: bool):
        if getattr(self, "_under_lock", False):
            self.confirm_lock()
        if not changed or self._journal is None:
            # Nothing to write, or no run going on (opening folds an interrupted run's journal in).
            self._save(state, changed)
            return None
        # Resources and intents are replaced, never changed in place: new dicts make a snapshot.
        snapshot = state.model_copy(update={"resources": dict(state.resources), "pending": dict(state.pending)})
        self._journal.append(Checkpoint(state.serial))
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
                self._file_events()
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
        self._file_events()
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        journal_path(self.path).unlink(missing_ok=True)

    def replace(self, state: State, events: list[dict] | None = None, note: Note | None = None) -> None:
        with self._guard:
            self.put_snapshot(state.model_copy(deep=True), self._pushed_events(events, note))

    def put_snapshot(self, state: State, events: list[dict]) -> None:
        """``state`` in place as one new snapshot carrying its ``events`` (sealed already): the change
        and its events in one rename. Then they are filed, and the journal goes (its changes were
        folded into ``state``). For a replace, and a bulk record made as one snapshot."""
        with self._guard:
            if self._under_lock:  # a whole snapshot from what this run read: never over another run's writes
                self.confirm_lock()
            write_snapshot(self.path, state, self._text, history=events)
            self._saved_as(state)
            if events:
                self.head = Head.of(events[-1])
                self._unfiled.extend(events)
            self._drop_journal()

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

    def record_all(
        self, resources: Mapping[str, Resource], instance: str | None = None, action: str = GENERATE
    ) -> None:
        """Many resources at once, on a state file: a new snapshot (temporary file, fsync, rename), all or
        nothing, rather than a journal line that the checkpoint then writes again (for 50,000 batches
        that took twice as long). Changes this run has journaled and not yet put in the snapshot come
        first: then the resources are journaled after them, as every change is."""
        with self._checkpointing, self._guard:
            if self._journal is not None or not resources:
                super().record_all(resources, instance, action)
                return
            if instance is not None:
                check_instance(self.state, instance, self.name)
            state = self.state
            bound = state.instance is None and instance is not None
            if not bound and all(
                state.resources.get(address) == resource and address not in state.pending
                for address, resource in resources.items()
            ):
                return  # recorded as it is already: the serial moves only when what is recorded changes
            updated = state.model_copy(
                update={
                    "resources": {**state.resources, **resources},
                    "pending": {
                        address: intent for address, intent in state.pending.items() if address not in resources
                    },
                    "instance": state.instance if state.instance is not None else instance,
                    "serial": state.serial + 1,
                }
            )
            notes = [event_note(action, address, resource) for address, resource in resources.items()]
            self.put_snapshot(updated, self._seal(notes))
            self._last_checkpoint = time.monotonic()
