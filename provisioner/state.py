"""The state file: what provisioner has created, by address.

Layout on disk, beside ``state/default.json``:

- ``default.json``          the snapshot: sorted, indented JSON, one resource per address.
- ``default.json.backup``   the previous snapshot.
- ``default.json.journal``  the write-ahead journal of the run in progress (see journal.py).
- ``default.json.lock``     the lock of the run in progress (see lock.py).

Readers fold the journal into the snapshot, so an apply killed at any instant
loses nothing: every intent and every id reached the journal (fsync) first.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from provisioner.journal import Journal, JournalError, read_journal
from provisioner.models import Intent, Resource

FORMAT_VERSION = 1
CHECKPOINT_SECONDS = 5.0


class StateError(Exception):
    """The state file cannot be used as it is; nothing was written."""


class State(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int = FORMAT_VERSION
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    # The API these ids belong to: ids of one instance mean nothing to another.
    instance: str | None = None
    resources: dict[str, Resource] = Field(default_factory=dict)
    pending: dict[str, Intent] = Field(default_factory=dict)

    def claimed_ids(self) -> set[str]:
        return {resource.batch_id for resource in self.resources.values()}

    def content_digest(self) -> str:
        """Changes whenever what is recorded changes, journal included (the serial alone
        moves only when a snapshot is written)."""
        content = self.model_dump(mode="json", include={"resources", "pending"})
        return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_instance(state: State, instance: str, path: Path) -> None:
    if state.instance is not None and state.instance != instance:
        raise StateError(
            f"{path} records the batches of {state.instance}, but this command talks to {instance}. "
            "Ids of one instance mean nothing to another: use that instance's state file (--state), "
            "or --sandbox for the embedded sandbox's."
        )


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def journal_path(path: Path) -> Path:
    return path.with_name(path.name + ".journal")


def read_snapshot(path: Path) -> State | None:
    """The snapshot alone, or None when there is none yet."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateError(f"{path}: cannot read the state file: {exc.strerror}.") from None
    except UnicodeDecodeError:
        raise StateError(f"{path}: the state file is not UTF-8 text; it was left untouched.") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{path}:{exc.lineno}:{exc.colno}: the state file is not valid JSON ({exc.msg}). "
            f"It was left untouched.{_backup_hint(path)}"
        ) from None
    if not isinstance(raw, dict):
        raise StateError(f"{path}: the state file must hold a JSON object; it was left untouched.")
    version = raw.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise StateError(
            f"{path}: state format version {version!r} is not supported by this provisioner "
            f"(it reads version {FORMAT_VERSION}). Use the provisioner release that wrote it; "
            "the file was left untouched."
        )
    try:
        return State.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise StateError(
            f"{path}: the state file is damaged at '{where}': {first['msg']}. It was left untouched."
        ) from None


def _backup_hint(path: Path) -> str:
    backup = backup_path(path)
    return f" The previous version is in {backup.name}, if you need to restore it." if backup.exists() else ""


def read_state(path: str | Path) -> State:
    """Snapshot plus the journal of any unfinished run: the whole truth, read only."""
    path = Path(path)
    while True:
        state = read_snapshot(path)
        entries, base = _read_journal_checked(path, state)
        serial = 0 if state is None else state.serial
        if base is None or base["serial"] < serial:
            return State() if state is None else state  # no journal, or one already folded in
        if base["serial"] == serial:
            state = State(lineage=base["lineage"], serial=serial) if state is None else state
            _replay(path, state, entries)
            return state
        # A writer starts a journal only after its snapshot is in place, so a journal
        # ahead of the snapshot we read means the snapshot was replaced meanwhile: read
        # both again. Still ahead of the current snapshot, it is a real mismatch.
        if _snapshot_serial(path) < base["serial"]:
            found = f"is at serial {serial}" if state is not None else "does not exist"
            raise StateError(
                f"{journal_path(path)}: this journal continues state serial {base['serial']}, but "
                f"{path.name} {found}: the state file looks older than its journal "
                "(restored from an old copy?). Nothing was changed; restore the newer state file."
            )


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


def apply_entry(state: State, entry: dict) -> None:
    """Replays one journal entry; replaying twice gives the same state."""
    op = entry["op"]
    if op == "intent":
        intent = Intent.model_validate(entry["intent"])
        state.pending[intent.address] = intent
    elif op == "record":
        state.resources[entry["address"]] = Resource.model_validate(entry["resource"])
        state.pending.pop(entry["address"], None)
    elif op == "clear":
        state.pending.pop(entry["address"], None)
    elif op == "forget":
        state.resources.pop(entry["address"], None)
    elif op == "move":
        state.resources[entry["to"]] = state.resources.pop(entry["from"])
    elif op == "instance":
        state.instance = entry["name"]
    else:
        raise StateError(f"unknown journal entry {op!r}: written by a newer provisioner?")


def render_snapshot(state: State) -> str:
    return json.dumps(state.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"


def write_snapshot(path: Path, state: State) -> None:
    """Atomic: temporary file, fsync, keep the previous file as .backup, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(render_snapshot(state))
            handle.flush()
            os.fsync(handle.fileno())
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if path.exists():
        _keep_backup(path)
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _keep_backup(path: Path) -> None:
    # A hard link keeps the old inode as the backup at no copying cost; the state
    # path itself is never absent, so a crash here cannot look like "no state".
    staged = path.with_name(f".{path.name}.{os.getpid()}.backup.tmp")
    try:
        if staged.exists():
            staged.unlink()
        os.link(path, staged)
    except OSError:
        staged.write_bytes(path.read_bytes())
    os.replace(staged, backup_path(path))


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class StateWriter:
    """The one writer of a state file, used under the lock.

    Every change goes to the journal first (one fsynced line); the snapshot is
    rewritten every few seconds and at the end, so a large state costs little
    per change and a crash loses nothing.
    """

    def __init__(self, path: str | Path, checkpoint_seconds: float = CHECKPOINT_SECONDS):
        self.path = Path(path)
        self.checkpoint_seconds = checkpoint_seconds
        self.state = read_state(self.path)
        self._guard = threading.RLock()
        self._journal: Journal | None = None
        self._dirty = False
        self._last_checkpoint = time.monotonic()
        if journal_path(self.path).exists():
            self._fold_interrupted_run()

    def __enter__(self) -> StateWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def record_intent(self, intent: Intent) -> None:
        self._write({"op": "intent", "intent": intent.model_dump(mode="json")})

    def record(self, address: str, resource: Resource) -> None:
        self._write({"op": "record", "address": address, "resource": resource.model_dump(mode="json")})

    def clear_intent(self, address: str) -> None:
        self._write({"op": "clear", "address": address})

    def forget(self, address: str) -> None:
        self._write({"op": "forget", "address": address})

    def move(self, source: str, destination: str) -> None:
        self._write({"op": "move", "from": source, "to": destination})

    def bind_instance(self, instance: str) -> None:
        """Ties the state to the API it records; refuses another one."""
        check_instance(self.state, instance, self.path)
        if self.state.instance is None:
            self._write({"op": "instance", "name": instance})

    def claimed_ids(self) -> set[str]:
        with self._guard:
            return self.state.claimed_ids()

    def open_intents_like(self, intent: Intent) -> int:
        """Open intents that would send the very same create (this one included)."""
        with self._guard:
            return sum(
                1
                for other in self.state.pending.values()
                if other.client_id == intent.client_id and other.digest == intent.digest
            )

    def _fold_interrupted_run(self) -> None:
        """Before anything new is written: fold in an interrupted run's journal, or drop
        one the snapshot already holds (rewriting it would replace the real backup)."""
        base, entries = read_journal(journal_path(self.path))
        if base is not None and base["serial"] == self.state.serial and entries:
            self._dirty = True
            self.checkpoint()
        else:
            journal_path(self.path).unlink()

    def other_open_intents(self, intent: Intent) -> list[Intent]:
        """Open intents of the same client that would send a different create."""
        with self._guard:
            return [
                other
                for other in self.state.pending.values()
                if other.client_id == intent.client_id and other.digest != intent.digest
            ]

    def _write(self, entry: dict) -> None:
        with self._guard:
            if self._journal is None:
                self._journal = Journal.start(journal_path(self.path), self.state.lineage, self.state.serial)
            self._journal.append(entry)
            apply_entry(self.state, entry)
            self._dirty = True
            if time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds:
                try:
                    self.checkpoint()
                except OSError:
                    # The entry is safe in the journal; the final checkpoint reports the failure.
                    self._last_checkpoint = time.monotonic()

    def checkpoint(self) -> None:
        """Rewrites the snapshot (serial + 1) and ends the journal it now contains."""
        with self._guard:
            if not self._dirty:
                return
            self.state.serial += 1
            try:
                write_snapshot(self.path, self.state)
            except OSError:
                self.state.serial -= 1
                raise
            if self._journal is not None:
                self._journal.close()
                self._journal = None
            journal_path(self.path).unlink(missing_ok=True)
            self._dirty = False
            self._last_checkpoint = time.monotonic()

    def close(self) -> None:
        self.checkpoint()
