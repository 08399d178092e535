"""The state's snapshot format: a State as JSON text and back. The state file is a snapshot (with a
journal beside it while a run goes on); `state pull` prints one with its history and `state push` reads one."""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii
from typing import Any

from pydantic import ValidationError

from provisioner.backends.base import StateError
from provisioner.core.file_marks import SAVED_PLAN_MARKER
from provisioner.core.models import STATE_FORMAT_VERSION, State


def parse_state(text: str, where: str, backup_hint: str = "") -> State:
    """A state from its JSON text (a snapshot, or what ``state pull`` printed)."""
    return parse_document(text, where, backup_hint)[0]


def parse_document(text: str, where: str, backup_hint: str = "") -> tuple[State, list[dict] | None]:
    """A state and the history printed with it (``state pull``), None when it carries none."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StateError(
            f"{where}:{exc.lineno}:{exc.colno}: the state file is not valid JSON ({exc.msg}). "
            f"It was left untouched.{backup_hint}"
        ) from None
    except RecursionError:
        raise StateError(
            f"{where}: the state file nests lists or objects far deeper than any state does; it is not a "
            f"state. It was left untouched.{backup_hint}"
        ) from None
    if not isinstance(raw, dict):
        raise StateError(f"{where}: the state file must hold a JSON object; it was left untouched.")
    history = raw.pop("history", None)
    if history is not None and (not isinstance(history, list) or not all(isinstance(e, dict) for e in history)):
        raise StateError(f"{where}: its 'history' must be a list of events (as 'state pull' prints it).")
    version = raw.get("version")
    if type(version) is not int or version != STATE_FORMAT_VERSION:
        if SAVED_PLAN_MARKER in raw:
            raise StateError(
                f"{where}: this is a saved plan (plan --out), not a state. Apply it with "
                f"'provisioner apply {where}', and give the state with --state."
            )
        raise StateError(
            f"{where}: state format version {version!r} is not supported by this provisioner "
            f"(it reads version {STATE_FORMAT_VERSION}). Use the provisioner release that wrote it; "
            "the file was left untouched."
        )
    try:
        return State.model_validate(raw), history
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        message = first["msg"].removeprefix("Value error, ")
        raise StateError(
            f"{where}: the state file is damaged{f' at {field!r}' if field else ''}: {message}. It was left untouched."
        ) from None


def render_snapshot(state: State, history: list[dict] | None = None) -> str:
    """The snapshot's text; with ``history``, the state as ``state pull`` prints it (one event a line)."""
    return with_history(SnapshotText().render(state), history)


# How a snapshot's history begins, as with_history writes it: a reader finds the events by it.
HISTORY_OPENING = '\n  "history": ['


def with_history(text: str, history: list[dict] | None) -> str:
    """A snapshot's text with ``history`` as its last key, one event a line."""
    if history is None:
        return text
    events = "".join(f"\n    {json.dumps(event, sort_keys=True)}," for event in history).rstrip(",")
    closing = "\n  ]" if history else "]"
    return text.removesuffix("\n}\n") + f",{HISTORY_OPENING}{events}{closing}\n}}\n"


class SnapshotText:
    """The snapshot's text, as ``json.dumps(state, indent=2, sort_keys=True)`` writes it, each resource
    and intent rendered once: they are replaced, never changed in place, so the text of one that is
    still the same object is still right, and a checkpoint renders only what changed."""

    def __init__(self):
        self._rendered: dict[str, dict[str, tuple[object, str]]] = {}  # table -> address -> (item, its text)

    def render(self, state: State) -> str:
        document = state.model_dump(mode="json", exclude={"resources", "pending"})
        parts = {key: json.dumps(value) for key, value in document.items()}
        parts["resources"] = self._table("resources", state.resources)
        parts["pending"] = self._table("pending", state.pending)
        lines = [f"  {json.dumps(key)}: {parts[key]}" for key in sorted(parts)]
        return "{\n" + ",\n".join(lines) + "\n}\n"

    def _table(self, table: str, items: dict) -> str:
        before = self._rendered.get(table, {})
        rendered = {}
        for address, item in items.items():
            known = before.get(address)
            if known is None or known[0] is not item:
                known = (item, indented_json(item.model_dump(mode="json")).replace("\n", "\n    "))
            rendered[address] = known
        self._rendered[table] = rendered
        if not rendered:
            return "{}"
        lines = [f"    {json.dumps(address)}: {rendered[address][1]}" for address in sorted(rendered)]
        return "{\n" + ",\n".join(lines) + "\n  }"


def indented_json(value: object) -> str:
    """``json.dumps(value, indent=2, sort_keys=True)``, the same text about twice as fast (the standard
    library has no C encoder for indented output): a checkpoint of 50,000 batches renders each one."""
    out: list[str] = []
    try:
        _emit(value, 0, out)
    except TypeError:  # a key that is not text, a value that is not JSON's: as the library writes it
        return json.dumps(value, indent=2, sort_keys=True)
    return "".join(out)


def _emit(value: Any, level: int, out: list[str]) -> None:
    kind = type(value)
    if kind is str:
        out.append(encode_basestring_ascii(value))
    elif kind is dict:
        if not value:
            out.append("{}")
            return
        inner = "\n" + "  " * (level + 1)
        out.append("{")
        for position, key in enumerate(sorted(value)):
            if type(key) is not str:
                raise TypeError(key)
            out.append(inner if position == 0 else "," + inner)
            out.append(encode_basestring_ascii(key))
            out.append(": ")
            _emit(value[key], level + 1, out)
        out.append("\n" + "  " * level + "}")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif kind is int:
        out.append(int.__repr__(value))
    elif kind is float:
        out.append(json.dumps(value))  # NaN and Infinity as the library writes them
    elif kind is list:
        if not value:
            out.append("[]")
            return
        inner = "\n" + "  " * (level + 1)
        out.append("[")
        for position, item in enumerate(value):
            out.append(inner if position == 0 else "," + inner)
            _emit(item, level + 1, out)
        out.append("\n" + "  " * level + "]")
    else:
        raise TypeError(kind)
