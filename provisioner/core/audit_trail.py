"""The audit trail's events and their hash chain: pure functions, no I/O.

Every change of recorded state appends one event to the state's history, in the same durable
step as the change (a journal line, a transaction). An event is a flat JSON object of strings
and integers, absent values left out (never null). It carries the sha256 of the event before it
(``prev``) and its own (``digest``, over every other field): a byte altered anywhere in the
history, or an event dropped or inserted, breaks the chain at that event, and
``verify`` names the first one that does not match.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# The ``prev`` of the first event of a history.
GENESIS = "0" * 64

# Every field an event may carry, in the order people read them (CSV columns, JSON).
FIELDS = (
    "seq",
    "at",
    "clock",
    "action",
    "address",
    "from_address",
    "batch_id",
    "credits",
    "detail",
    "actor",
    "commit",
    "run_url",
    "review",
    "reason",
    "plan_digest",
    "version",
    "prev",
    "digest",
)
# What the run adds to each of its events (see operations/run_context.py).
RUN_FIELDS = ("actor", "commit", "run_url", "review", "reason", "plan_digest", "version")
INTEGER_FIELDS = ("seq", "credits")

# The actions, one per kind of change.
CREATE = "create"  # a batch made by this run, its answer received
RECOVER = "recover"  # a batch made by this run whose answer was lost, found by listing
ADOPT = "adopt"  # a batch an interrupted run made, found and recorded
UPDATE = "update"
IMPORT = "import"
GENERATE = "generate"  # adopted with the manifests generated for it
REFRESH = "refresh"  # the live values recorded
STATE_RM = "state-rm"
STATE_MV = "state-mv"
FORGET_INTENT = "forget-intent"
STATE_PUSH = "state-push"
FORCE_UNLOCK = "force-unlock"
ACTIONS = (
    CREATE,
    RECOVER,
    ADOPT,
    UPDATE,
    IMPORT,
    GENERATE,
    REFRESH,
    STATE_RM,
    STATE_MV,
    FORGET_INTENT,
    STATE_PUSH,
    FORCE_UNLOCK,
)
# The actions that issue the batch's credits.
ISSUING = (CREATE, RECOVER, ADOPT)


@dataclass(frozen=True)
class Note:
    """What the code making a change knows of it; the writer adds the run, the time and the chain."""

    action: str
    address: str | None = None
    batch_id: str | None = None
    credits: int | None = None
    from_address: str | None = None  # state-mv: where the batch was recorded before
    detail: str | None = None  # a few words more (a push's lineage and serial, an unlocked lock's holder)


@dataclass(frozen=True)
class Head:
    """Where a history ends: the next event continues it."""

    seq: int = 0
    digest: str = GENESIS

    @classmethod
    def of(cls, event: Mapping | None) -> Head:
        return cls() if event is None else cls(event["seq"], event["digest"])


def canonical(event: Mapping) -> bytes:
    """The bytes an event's digest is taken over: every field but ``digest``, keys sorted, ASCII."""
    return json.dumps(
        {key: value for key, value in event.items() if key != "digest"}, sort_keys=True, separators=(",", ":")
    ).encode()


def digest_of(event: Mapping) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


@dataclass(frozen=True)
class Draft:
    """An event but for its place in the chain (seq, prev, digest), its canonical JSON made already:
    a writer drafts outside its lock and seals under it, where only the chain is left to do."""

    body: dict
    fragments: tuple[tuple[str, str], ...]  # ("key", '"key":value'), sorted by key


def draft(note: Note, run: Mapping[str, object], at: str, clock: str) -> Draft:
    body: dict = {"at": at, "clock": clock, "action": note.action}
    for name in ("address", "from_address", "batch_id", "credits", "detail"):
        value = getattr(note, name)
        if value is not None and value != "":
            body[name] = value
    for name in RUN_FIELDS:
        value = run.get(name)
        if value is not None and value != "":
            body[name] = value
    return Draft(body, tuple(sorted((key, f"{json.dumps(key)}:{json.dumps(value)}") for key, value in body.items())))


def seal_draft(drafted: Draft, head: Head) -> dict:
    """The event that continues the history ending at ``head``; its digest is ``digest_of(event)``,
    the canonical JSON assembled from the draft's sorted parts and the two the chain adds."""
    seq, prev = head.seq + 1, head.digest
    parts = sorted((*drafted.fragments, ("prev", f'"prev":{json.dumps(prev)}'), ("seq", f'"seq":{seq}')))
    canonical_text = "{" + ",".join(part for _, part in parts) + "}"
    return {"seq": seq, **drafted.body, "prev": prev, "digest": hashlib.sha256(canonical_text.encode()).hexdigest()}


def seal(note: Note, run: Mapping[str, object], at: str, clock: str, head: Head) -> dict:
    """The event that continues the history ending at ``head``."""
    return seal_draft(draft(note, run, at, clock), head)


def seal_all(drafts: Iterable[Draft], head: Head) -> list[dict]:
    events = []
    for drafted in drafts:
        event = seal_draft(drafted, head)
        events.append(event)
        head = Head.of(event)
    return events


def verify(events: Iterable[Mapping]) -> str | None:
    """None when the chain holds; else what is wrong with the first event that does not match."""
    head = Head()
    for position, event in enumerate(events, start=1):
        problem = _shape_problem(event)
        if problem:
            return f"event {position}: {problem}"
        seq = event["seq"]
        if seq != head.seq + 1:
            return f"event {seq}: expected event {head.seq + 1} here (an event was removed, added or moved)"
        if event["prev"] != head.digest:
            return (
                f"event {seq} ({event.get('action')} {event.get('address', '')}): its prev does not match "
                "the digest of the event before it (an event before it was altered, removed or added)"
            )
        if event["digest"] != digest_of(event):
            return (
                f"event {seq} ({event.get('action')} {event.get('address', '')}): its content does not match "
                "its digest (it was altered after it was written)"
            )
        head = Head.of(event)
    return None


def _shape_problem(event: Mapping) -> str | None:
    if not isinstance(event, Mapping):
        return "not a JSON object"
    for name in ("seq", "prev", "digest", "action", "at"):
        if name not in event:
            return f"the field {name!r} is missing"
    if type(event["seq"]) is not int:
        return "its seq is not an integer"
    if not isinstance(event["prev"], str) or not isinstance(event["digest"], str):
        return "its prev or digest is not text"
    return None


def extends(current: Sequence[Mapping], pushed: Sequence[Mapping]) -> str | None:
    """None when ``pushed`` begins with every event of ``current``, unchanged; else where they part."""
    if len(pushed) < len(current):
        return f"it holds {len(pushed)} event(s), fewer than the {len(current)} recorded: it would drop recorded events"
    for mine, theirs in zip(current, pushed[: len(current)], strict=True):
        if mine.get("digest") != theirs.get("digest"):
            return f"its event {mine.get('seq')} differs from the one recorded"
    return None


def after(events: Iterable[Mapping], seq: int) -> list[dict]:
    """The events past ``seq`` (a history's tail, read from where another copy ends)."""
    return [dict(event) for event in events if type(event.get("seq")) is int and event["seq"] > seq]


def parse_line(line: bytes | str) -> dict:
    """One stored event; ValueError when it is not one."""
    event = json.loads(line)
    if not isinstance(event, dict) or type(event.get("seq")) is not int:
        raise ValueError("not an event")
    return event


def line_of(event: Mapping) -> str:
    return json.dumps(event, sort_keys=True, separators=(",", ":")) + "\n"


def select(
    events: Iterable[Mapping],
    addresses: Sequence[str] = (),
    client: str | None = None,
    since: str | None = None,
    actions: Sequence[str] = (),
) -> list[dict]:
    """The events about any of ``addresses`` (moved from or to), of ``client``, at or after ``since``
    (an ISO 8601 UTC time as events write it), of any of ``actions``; oldest first."""
    chosen = []
    for event in events:
        touched = (event.get("address"), event.get("from_address"))
        if addresses and not any(address in touched for address in addresses):
            continue
        if client is not None and not any(isinstance(a, str) and a.startswith(client + "/") for a in touched):
            continue
        if since is not None and str(event.get("at", "")) < since:
            continue
        if actions and event.get("action") not in actions:
            continue
        chosen.append(dict(event))
    return chosen


def issuers(events: Iterable[Mapping]) -> dict[str, dict]:
    """For each address recorded now, the event that brought its batch under management (created,
    recovered, adopted, imported, generated), followed through moves and forgotten with ``state rm``."""
    by_address: dict[str, dict] = {}
    for event in events:
        action, address = event.get("action"), event.get("address")
        if not isinstance(address, str):
            continue
        if action in (*ISSUING, IMPORT, GENERATE):
            by_address[address] = dict(event)
        elif action == STATE_MV and event.get("from_address") in by_address:
            by_address[address] = by_address.pop(event["from_address"])
        elif action == STATE_RM:
            by_address.pop(address, None)
    return by_address
