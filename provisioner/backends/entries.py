"""The changes a state records, one type each: how it alters a State, and its JSON form.

A file state writes each change as one line of its journal (journal.py), PostgreSQL as one
transaction (postgres.py); the JSON form is that line, as provisioner has always written it. A change
may carry its audit events (``events``), sealed by the writer and made durable with it in one step.
``Begin`` and ``Checkpoint`` are not changes: they are the file journal's marks (its first line, and
where a snapshot took over).

Reading a line checks its shape here (``parse_entry``); what a resource or an intent holds inside is
checked as the state checks it, when the entry is applied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from provisioner.core import models
from provisioner.core.models import State


class MalformedEntry(Exception):
    """A whole JSON object that is not an entry provisioner writes; its text says what is wrong."""


@dataclass(frozen=True)
class Entry:
    """One line of a journal: a change, or a mark. ``events``: the audit events written with it."""

    OP: ClassVar[str]  # the line's "op"
    events: tuple[dict, ...] = field(default=(), kw_only=True)

    @property
    def op(self) -> str:
        return self.OP

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Entry:
        raise NotImplementedError

    def fields_json(self) -> dict[str, Any]:
        """This entry's own keys in its JSON form (not ``op``, not ``events``)."""
        return {}

    def to_json(self) -> dict[str, Any]:
        data = {"op": self.op, **self.fields_json()}
        if self.events:
            data["events"] = list(self.events)
        return data

    def with_events(self, events: list[dict]) -> Entry:
        return replace(self, events=tuple(events))

    def apply_to(self, state: State) -> None:
        """Alters ``state`` as this change does (an event alone and a checkpoint mark alter nothing);
        ValueError when it cannot be applied."""

    def touched(self) -> tuple[tuple[str, str], ...]:
        """The (table, address) pairs this change may alter: table ``resources`` or ``pending``."""
        return ()

    def recorded(self) -> Mapping[str, dict]:
        """The resources (JSON) this change records, by address."""
        return {}

    def forgotten(self) -> tuple[str, ...]:
        """The addresses whose resource this change removes."""
        return ()

    def addresses(self) -> tuple[object, ...]:
        """What this entry names as addresses, as read: checked when a line is parsed."""
        return ()


@dataclass(frozen=True)
class Intent(Entry):
    """A create about to be sent, recorded before it leaves (its JSON: the intent, none left out)."""

    OP = "intent"
    intent: dict

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Intent:
        return cls(_required(data, "intent", dict), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"intent": self.intent}

    def apply_to(self, state: State) -> None:
        intent = models.Intent.model_validate(self.intent)
        state.pending[intent.address] = intent

    def touched(self) -> tuple[tuple[str, str], ...]:
        return (("pending", self.intent["address"]),)

    def addresses(self) -> tuple[object, ...]:
        return (self.intent.get("address"),)


@dataclass(frozen=True)
class Record(Entry):
    """A batch recorded at its address (a create's result, an import); its open intent, if any, closes."""

    OP = "record"
    address: str
    resource: dict

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Record:
        return cls(_required(data, "address", str), _required(data, "resource", dict), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"address": self.address, "resource": self.resource}

    def apply_to(self, state: State) -> None:
        state.resources[self.address] = models.Resource.model_validate(self.resource)
        state.pending.pop(self.address, None)

    def touched(self) -> tuple[tuple[str, str], ...]:
        return (("resources", self.address), ("pending", self.address))

    def recorded(self) -> Mapping[str, dict]:
        return {self.address: self.resource}

    def addresses(self) -> tuple[object, ...]:
        return (self.address,)


@dataclass(frozen=True)
class RecordAll(Entry):
    """Many batches recorded in one step, all or none; with ``instance``, the state bound to that API too."""

    OP = "record_all"
    resources: dict[str, dict]
    instance: str | None = None

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> RecordAll:
        resources = _required(data, "resources", dict)
        instance = _required(data, "instance", str) if "instance" in data else None
        return cls(resources, instance, events=events)

    def fields_json(self) -> dict[str, Any]:
        if self.instance is None:
            return {"resources": self.resources}
        return {"resources": self.resources, "instance": self.instance}

    def apply_to(self, state: State) -> None:
        recorded = {address: models.Resource.model_validate(resource) for address, resource in self.resources.items()}
        state.resources.update(recorded)
        for address in recorded:
            state.pending.pop(address, None)
        if self.instance is not None:
            state.instance = self.instance

    def touched(self) -> tuple[tuple[str, str], ...]:
        return tuple((table, address) for address in self.resources for table in ("resources", "pending"))

    def recorded(self) -> Mapping[str, dict]:
        return self.resources

    def addresses(self) -> tuple[object, ...]:
        return tuple(self.resources)


@dataclass(frozen=True)
class Clear(Entry):
    """An intent closed without a batch: a refused create, or one given up by a person."""

    OP = "clear"
    address: str

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Clear:
        return cls(_required(data, "address", str), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"address": self.address}

    def apply_to(self, state: State) -> None:
        state.pending.pop(self.address, None)

    def touched(self) -> tuple[tuple[str, str], ...]:
        return (("pending", self.address),)

    def addresses(self) -> tuple[object, ...]:
        return (self.address,)


@dataclass(frozen=True)
class Forget(Entry):
    """A batch no longer recorded (``state rm``); the batch itself is left alone."""

    OP = "forget"
    address: str

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Forget:
        return cls(_required(data, "address", str), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"address": self.address}

    def apply_to(self, state: State) -> None:
        state.resources.pop(self.address, None)

    def touched(self) -> tuple[tuple[str, str], ...]:
        return (("resources", self.address),)

    def forgotten(self) -> tuple[str, ...]:
        return (self.address,)

    def addresses(self) -> tuple[object, ...]:
        return (self.address,)


@dataclass(frozen=True)
class Move(Entry):
    """A recorded batch filed under another address (``state mv``); its id stays the same."""

    OP = "move"
    source: str
    destination: str

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Move:
        return cls(_required(data, "from", str), _required(data, "to", str), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.destination}

    def apply_to(self, state: State) -> None:
        if self.source not in state.resources:
            raise ValueError(f"nothing is recorded at {self.source!r} to move")
        state.resources[self.destination] = state.resources.pop(self.source)

    def touched(self) -> tuple[tuple[str, str], ...]:
        return (("resources", self.source), ("resources", self.destination))

    def addresses(self) -> tuple[object, ...]:
        return (self.source, self.destination)


@dataclass(frozen=True)
class BindInstance(Entry):
    """The state tied to the API whose batches it records."""

    OP = "instance"
    name: str

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> BindInstance:
        return cls(_required(data, "name", str), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"name": self.name}

    def apply_to(self, state: State) -> None:
        state.instance = self.name


@dataclass(frozen=True)
class Event(Entry):
    """An event alone, whose change is not in the recorded state (a lock removed)."""

    OP = "event"

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Event:
        return cls(events=events)


@dataclass(frozen=True)
class Begin(Entry):
    """A file journal's first line: the state (lineage) and serial it continues."""

    OP = "begin"
    lineage: str
    serial: int

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Begin:
        return cls(_required(data, "lineage", str), _required(data, "serial", int), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"lineage": self.lineage, "serial": self.serial}

    def apply_to(self, state: State) -> None:
        raise ValueError("a begin entry belongs on the journal's first line only")


@dataclass(frozen=True)
class Checkpoint(Entry):
    """A file journal's mark: a snapshot of this serial is being written; what follows it is not in it."""

    OP = "checkpoint"
    serial: int

    @classmethod
    def from_json(cls, data: dict, events: tuple[dict, ...]) -> Checkpoint:
        return cls(_required(data, "serial", int), events=events)

    def fields_json(self) -> dict[str, Any]:
        return {"serial": self.serial}


@dataclass(frozen=True)
class Unknown(Entry):
    """An entry of a kind this provisioner does not write (a newer one's): kept as read, and refused
    only when it would have to be applied (one the snapshot holds already is never applied)."""

    data: dict

    @property
    def op(self) -> str:
        return self.data["op"]

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)

    def apply_to(self, state: State) -> None:
        raise ValueError(f"unknown journal entry {self.op!r}: written by a newer provisioner?")


KINDS: dict[str, type[Entry]] = {
    kind.OP: kind for kind in (Intent, Record, RecordAll, Clear, Forget, Move, BindInstance, Event, Begin, Checkpoint)
}


def parse_entry(data: dict) -> Entry:
    """The entry a JSON object (with a string ``op``) is; MalformedEntry says what is wrong with its shape."""
    kind = KINDS.get(data["op"])
    if kind is None:
        return Unknown(data, events=_events(data))
    entry = kind.from_json(data, _events(data))
    for address in entry.addresses():
        client, slash, batch = address.partition("/") if isinstance(address, str) else ("", "", "")
        if not (client and slash and batch):
            raise MalformedEntry(f"names {address!r}, which is not an address (client/batch)")
    return entry


TYPE_NAMES = {str: "a string", int: "a whole number", dict: "an object"}


def _required(data: dict, name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        if value is None:
            raise MalformedEntry(f"has no {name!r} ({TYPE_NAMES[kind]})")
        raise MalformedEntry(f"has {name!r} as {type(value).__name__}, not {TYPE_NAMES[kind]}")
    return value


def _events(data: dict) -> tuple[dict, ...]:
    if "events" not in data:
        return ()
    events = data["events"]
    if not isinstance(events, list) or not all(isinstance(event, dict) for event in events):
        raise MalformedEntry(f"has 'events' as {type(events).__name__}, not a list of events")
    return tuple(events)
