"""The state interface every command talks to, whatever stores the state.

Terraform's state managers have the same shape: a reader, a locker, and a writer
used under the lock. A ``Backend`` reads the recorded ``State`` (open intents
included), creates an empty one (``init``), takes the lock, and opens a
``StateWriter``. The writer records each change durably before it returns (a
fsynced journal line, or a committed transaction), so a run killed at any
instant loses nothing; its ``serial`` moves only when what is recorded changed.

Each change a person or a run makes (not the intents around a create) carries its audit
event (core/audit_trail.py) in the same durable step: the writer seals it, naming the run it was given
(``attribute``), and the backend writes both at once.
"""

from __future__ import annotations

import json
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType

from provisioner.backends import entries
from provisioner.backends.entries import Entry
from provisioner.core.audit_trail import GENERATE, STATE_MV, STATE_RM, Head, Note, draft, seal_all
from provisioner.core.models import Intent, Resource, State, batch_key
from provisioner.core.timestamps import format_timestamp

CHECKPOINT_SECONDS = 5.0
Warn = Callable[[str], None]


class StateError(Exception):
    """The state cannot be used as it is; nothing was written."""


class StateMissing(StateError):
    """There is no state where the command looked: running on would create everything again."""


class LockError(Exception):
    """The lock is held by someone else, or cannot be taken."""


class ClientClaimed(StateError):
    """Another workspace creates this client's batches: this one must not (that client only)."""


class LockLost(StateError):
    """This run no longer holds the lock: it must not write, nor send a create, any more."""


@dataclass(frozen=True)
class LockInfo:
    """Who holds a state's lock, as a refused run names them."""

    id: str
    pid: int
    host: str
    user: str
    command: str
    created: str
    process_start: str | None = None  # tells a live pid from a reused one (file locks, Linux)

    def describe(self) -> str:
        return (
            f"ID: {self.id}\n  Holder: {self.user}@{self.host}, pid {self.pid}\n"
            f"  Command: {self.command}\n  Since: {self.created}"
        )


class Backend(ABC):
    """Where one state lives: a file, or a workspace in PostgreSQL."""

    #: How commands and messages name this state (never with a password in it).
    name: str
    workspace: str

    @abstractmethod
    def exists(self) -> bool: ...

    @abstractmethod
    def read(self) -> State:
        """The whole recorded truth, open intents included; StateMissing when there is none."""

    @abstractmethod
    def create(self) -> State:
        """An empty state with a new lineage (``provisioner init``); refuses one that exists."""

    @abstractmethod
    def lock(self, command: str, timeout: float = 0.0, warn: Warn | None = None) -> AbstractContextManager:
        """Held for a whole run, yielding this run's ``LockInfo``; a refused run names the holder."""

    @abstractmethod
    def open_writer(self) -> StateWriter:
        """The one writer of this state; the caller holds the lock."""

    @abstractmethod
    def force_unlock(self, lock_id: str, run: Mapping[str, object] | None = None) -> LockInfo:
        """Removes a lock left by a run that is gone; refuses while its holder is alive. Its event
        (naming ``run``) is written with the removal where the backend can (one transaction), else
        just before it."""

    @abstractmethod
    def read_history(self) -> list[dict]:
        """Every event of this state's audit trail, oldest first (see core/audit_trail.py)."""

    @abstractmethod
    def written_at(self) -> datetime | None:
        """When what is recorded was last written (for "as recorded at ..."); None when unknown."""

    def own_files(self) -> list[Path]:
        """Local files this state lives in, which no output may overwrite."""
        return []

    def close(self) -> None:  # noqa: B027 - optional: a backend without connections has nothing to release
        """Releases connections; a backend is used by one command."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def init_command(self) -> str:
        """The command that creates this state, for messages."""
        return "provisioner init" + self.location_options()

    def location_options(self) -> str:
        """The options that select this state again (``--state``, ``--workspace``), for messages."""
        return ""

    @contextmanager
    def writing(
        self, command: str, timeout: float = 0.0, warn: Warn | None = None, run: Mapping[str, object] | None = None
    ) -> Iterator[StateWriter]:
        """Lock, then the writer (its events naming ``run``); the writer's last checkpoint happens
        before the lock is released."""
        with self.lock(command, timeout=timeout, warn=warn):
            with self.open_writer() as writer:
                writer.attribute(run or {})
                yield writer

    def missing_error(self) -> StateMissing:
        return StateMissing(
            f"there is no state at {self.name}. Planning against no state would create every batch again.\n"
            f"  - If the state is somewhere else, pass it with --state (or set PROVISIONER_STATE)"
            + (" and --workspace" if self.workspace != "default" else "")
            + ".\n"
            f"  - If this is the very first run for these manifests, create an empty state: {self.init_command()}"
        )


class StateWriter(ABC):
    """Records changes one by one, each durable before the call returns.

    Subclasses persist one entry at a time (``_persist``) and the checkpoint
    (``_save``, or ``_begin_save`` to do the slow part outside the guard); this
    class keeps the in-memory ``state`` in step and decides when the serial
    moves: at a checkpoint, and only if the content changed.
    """

    def __init__(
        self,
        state: State,
        checkpoint_seconds: float = CHECKPOINT_SECONDS,
        unsaved: bool = False,
        head: Head | None = None,
    ):
        """``unsaved``: ``state`` differs from what is stored (a killed run's changes); the first
        checkpoint moves the serial. ``head``: where the stored history ends."""
        self.state = state
        self.head = head or Head()
        self.run: Mapping[str, object] = MappingProxyType({})
        self._server_clock: Callable[[], datetime | None] | None = None
        self.checkpoint_seconds = checkpoint_seconds
        self._guard = threading.RLock()
        self._checkpointing = threading.Lock()  # one checkpoint at a time
        self._changes = Changes(state, unsaved=unsaved)
        self._claimed: ClaimedIds | None = None  # built on first use, then kept in step by _write
        self._last_checkpoint = time.monotonic()

    def __enter__(self) -> StateWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- the run its events name ----------------------------------------------------

    def attribute(self, run: Mapping[str, object], server_clock: Callable[[], datetime | None] | None = None) -> None:
        """The run this writer's events name (gathered once per run: actor, commit, reason...), and
        the API server's clock their time is read from while it can be told (else this machine's)."""
        self.run = MappingProxyType(dict(run))
        if server_clock is not None:
            self._server_clock = server_clock

    # --- the changes -------------------------------------------------------------

    def record_intent(self, intent: Intent) -> None:
        self._write(entries.Intent(intent.model_dump(mode="json", exclude_none=True)))

    def record(self, address: str, resource: Resource, action: str | None = None) -> None:
        """``action``: the event this change is (core/audit_trail.py); None for none (an intent's bookkeeping)."""
        notes = () if action is None else (event_note(action, address, resource),)
        self._write(entries.Record(address, resource.model_dump(mode="json")), notes)

    def record_all(
        self, resources: Mapping[str, Resource], instance: str | None = None, action: str = GENERATE
    ) -> None:
        """Records many resources as one durable step: all of them, or (on any failure) none; with
        ``instance``, the state is bound to that API in the same step (see ``bind_instance``).

        One journal line (a state file with nothing journaled yet writes a new snapshot instead), or one
        transaction: ``import --generate-config-out`` adopts a whole instance this way, so that an
        interrupted run never leaves half of it recorded. Each resource gets its ``action`` event, in the same step."""
        if not resources:
            return
        if instance is not None:
            check_instance(self.state, instance, self.name)
        entry = entries.RecordAll(
            {address: resource.model_dump(mode="json") for address, resource in resources.items()},
            instance if self.state.instance is None else None,
        )
        self._write(entry, [event_note(action, address, resource) for address, resource in resources.items()])

    def clear_intent(self, address: str, action: str | None = None) -> None:
        """Closes an intent: a refused create (no event), or one given up by a person (``forget-intent``)."""
        notes: tuple[Note, ...] = ()
        if action is not None:
            intent = self.state.pending.get(address)
            credits = intent.attributes.get("startingBalance") if intent is not None else None
            notes = (Note(action, address, credits=credits if type(credits) is int else None),)
        self._write(entries.Clear(address), notes)

    def forget(self, address: str, action: str = STATE_RM) -> None:
        with self._guard:
            resource = self.state.resources.get(address)
            notes = () if resource is None else (event_note(action, address, resource),)
            self._write(entries.Forget(address), notes)

    def move(self, source: str, destination: str) -> None:
        with self._guard:
            if source not in self.state.resources:
                # Journaled first, such a move could never be replayed: the state would stop reading.
                raise StateError(f"{source} is not recorded in {self.name}: nothing to move.")
            note = event_note(STATE_MV, destination, self.state.resources[source], from_address=source)
            self._write(entries.Move(source, destination), (note,))

    def record_event(self, note: Note) -> None:
        """An event whose change is not in the recorded state itself (a lock removed)."""
        self._write(entries.Event(), (note,))

    def bind_instance(self, instance: str) -> None:
        """Ties the state to the API it records; refuses another one."""
        check_instance(self.state, instance, self.name)
        if self.state.instance is None:
            self._write(entries.BindInstance(instance))

    @abstractmethod
    def replace(self, state: State, events: list[dict] | None = None, note: Note | None = None) -> None:
        """Puts a whole state in place (``state push``), as one durable step: with it, ``events`` (the
        pushed history past this one's end, already chained to it) and the event of ``note``."""

    def _pushed_events(self, events: list[dict] | None, note: Note | None) -> list[dict]:
        """The events a replace appends: the pushed ones, then its own, chained after them."""
        events = [dict(event) for event in events or ()]
        head = Head.of(events[-1]) if events else self.head
        if events and (events[0].get("seq") != self.head.seq + 1 or events[0].get("prev") != self.head.digest):
            raise StateError(f"the pushed history does not continue the one {self.name} records; nothing was changed.")
        if note is not None:
            events += self._seal((note,), head)
        return events

    def _draft(self, notes) -> list:
        """The events but for their place in the chain: done before the guard is taken."""
        server_now = self._server_clock() if self._server_clock is not None else None
        if server_now is not None:
            at, clock = format_timestamp(server_now), "api"
        else:
            at, clock = format_timestamp(datetime.now(timezone.utc)), "local"
        return [draft(note, self.run, at, clock) for note in notes]

    def _seal(self, notes, head: Head | None = None) -> list[dict]:
        return seal_all(self._draft(notes), self.head if head is None else head)

    def claim_client(self, instance: str, client_id: str) -> None:
        """Records that this state creates the batches of ``client_id`` on ``instance``; ClientClaimed when
        another state sharing the store claimed it first. A state file cannot know of other files: a no-op."""
        return None

    def release_client(self, client_id: str) -> bool:
        """Gives the claim up; False when there was none to give up."""
        return False

    @abstractmethod
    def confirm_lock(self) -> None:
        """Raises LockLost unless this run still holds the state's lock, now: the check made the
        instant before each create leaves (a run that lost its lock may have been taken over, and the
        run that took over may settle this run's intents without waiting for its creates)."""

    # --- reading, under the guard --------------------------------------------------

    def claimed_ids(self) -> ClaimedIds:
        """The batch ids some address records, for membership tests; kept up to date as changes are
        recorded (the duplicate guard asks before every create: rebuilding it each time made an
        apply's cost grow with the square of the state's size)."""
        with self._guard:
            if self._claimed is None:
                self._claimed = ClaimedIds(self.state)
            return self._claimed

    def open_intents(self) -> list[Intent]:
        with self._guard:
            return list(self.state.pending.values())

    # --- persistence -----------------------------------------------------------------

    @property
    @abstractmethod
    def name(self) -> str: ...

    @abstractmethod
    def _persist(self, entry: Entry) -> None:
        """Makes one entry durable (the state in memory does not have it yet)."""

    @abstractmethod
    def _save(self, state: State, changed: bool) -> None:
        """The checkpoint: ``state`` carries its new serial when ``changed``; else only tidy up."""

    def _begin_save(self, state: State, changed: bool) -> Callable[[], None] | None:
        """The checkpoint, under the guard: returns what is left to do outside it (while changes go
        on being recorded), or None when it is all done. By default it is all done here."""
        self._save(state, changed)
        return None

    def _saved_as(self, state: State) -> None:
        """``state`` is now what is stored, as a whole (``replace``)."""
        self.state = state
        self._changes = Changes(state)
        self._claimed = None

    def _write(self, entry: Entry, notes=()) -> None:
        """One change, durable before it returns; ``notes``: its events (several for a bulk change),
        sealed here and written in the same step (the journal line, the transaction)."""
        drafts = self._draft(notes) if notes else ()
        with self._guard:
            if drafts:
                entry = entry.with_events(seal_all(drafts, self.head))
            self._persist(entry)
            if notes:
                self.head = Head.of(entry.events[-1])
            self._changes.note(self.state, entry)
            if self._claimed is not None:
                self._claimed.note(self.state, entry)
            entry.apply_to(self.state)
            due = time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
        if due:
            try:
                self.checkpoint(wait=False)
            except (OSError, StateError):
                # The entry is durable already; the final checkpoint reports the failure.
                self._last_checkpoint = time.monotonic()

    def checkpoint(self, wait: bool = True) -> None:
        """The serial moves (+1) when, and only when, what is recorded changed since the last one.

        ``wait=False``: return at once when another thread's checkpoint is under way."""
        if not self._checkpointing.acquire(blocking=wait):
            return
        try:
            with self._guard:
                changed = self._changes.changed(self.state)
                if changed:
                    self.state.serial += 1
                before, self._changes = self._changes, Changes(self.state)
                try:
                    rest = self._begin_save(self.state, changed)
                except BaseException:
                    self._undo_checkpoint(before, changed)
                    raise
            if rest is not None:
                try:
                    rest()
                except BaseException:
                    with self._guard:
                        self._undo_checkpoint(before, changed)
                    raise
            self._last_checkpoint = time.monotonic()
        finally:
            self._checkpointing.release()

    def _undo_checkpoint(self, before: Changes, changed: bool) -> None:
        """Nothing was saved: the serial and the changes to save are as before the checkpoint began."""
        if changed:
            self.state.serial -= 1
        self._changes = before.followed_by(self._changes)

    def close(self) -> None:
        self.checkpoint()


class ClaimedIds:
    """The batch keys of a state's resources, counted (two addresses may record one id)."""

    def __init__(self, state: State):
        self._counts: dict[str, int] = {}
        for resource in state.resources.values():
            self._add(resource.batch_id)

    def __contains__(self, key: object) -> bool:
        return key in self._counts

    def note(self, state: State, entry: Entry) -> None:
        """Before ``entry`` is applied to ``state``."""
        for address, resource in entry.recorded().items():
            self._remove(state.resources.get(address))
            self._add(resource["batch_id"])
        for address in entry.forgotten():
            self._remove(state.resources.get(address))

    def _add(self, batch_id) -> None:
        key = batch_key(batch_id)
        self._counts[key] = self._counts.get(key, 0) + 1

    def _remove(self, resource: Resource | None) -> None:
        if resource is None:
            return
        key = batch_key(resource.batch_id)
        if self._counts.get(key, 0) <= 1:
            self._counts.pop(key, None)
        else:
            self._counts[key] -= 1


_ABSENT = object()


class Changes:
    """What was stored at the last checkpoint, for each address changed since: tells whether the
    content changed (an intent and its refusal change nothing) without digesting the whole state."""

    def __init__(self, state: State, unsaved: bool = False):
        self._instance = state.instance
        self._stored: dict[tuple[str, str], object] = {}  # (table, address) -> Resource | Intent | _ABSENT
        self._unsaved = unsaved

    def note(self, state: State, entry: Entry) -> None:
        """Before ``entry`` is applied to ``state``."""
        for table, address in entry.touched():
            self._stored.setdefault((table, address), getattr(state, table).get(address, _ABSENT))

    def changed(self, state: State) -> bool:
        if self._unsaved or state.instance != self._instance:
            return True
        return any(
            _content(getattr(state, table).get(address, _ABSENT)) != _content(stored)
            for (table, address), stored in self._stored.items()
        )

    def followed_by(self, later: Changes) -> Changes:
        """These changes, then ``later`` ones: measured against what was stored before both."""
        merged = Changes.__new__(Changes)
        merged._instance = self._instance
        merged._stored = {**later._stored, **self._stored}
        merged._unsaved = self._unsaved or later._unsaved
        return merged


def _content(value: object) -> str | None:
    """As the content digest sees it (1 and 1.0 differ there, and so here)."""
    if value is _ABSENT:
        return None
    assert isinstance(value, (Resource, Intent))
    return json.dumps(value.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def event_note(action: str, address: str, resource: Resource, from_address: str | None = None) -> Note:
    """The event of a change to ``resource`` at ``address``: its id and its credits."""
    credits = resource.attributes.get("startingBalance")
    return Note(
        action,
        address,
        batch_id=resource.batch_id,
        credits=credits if type(credits) is int else None,
        from_address=from_address,
    )


def check_instance(state: State, instance: str, where: str) -> None:
    if state.instance is not None and state.instance != instance:
        raise StateError(
            f"{where} records the batches of {state.instance}, but this command talks to {instance}. "
            "Ids of one instance mean nothing to another: use that instance's state (--state, "
            "--workspace), or --sandbox for the embedded sandbox's."
        )
