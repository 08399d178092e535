"""The plan memo: each client's part of the last plan, reused while nothing it depends on changed.

When one file of 10,000 changed, the plan differs from the last one in that file's clients
only. For each client the memo keeps its part of the plan: how many changes of each action
and their credits (the figures of the summary and the guardrails), its warnings, how many of
its batches needed nothing, and its changes as the text plan shows them. A client's part is
reused only when everything it was made from is the same:

- its manifest file: the same name (it is in the sources the plan quotes) and the same bytes
  (sha256), so the same declarations;
- what the state records under the client's addresses: its resources and interrupted creates
  (a digest of them);
- the side of each of its expiries the clock is on: a create whose expiry has passed is
  blocked, so a part is kept with the instants between which it holds (from its latest expiry
  already passed to its first still to come);
- this tool: its version, the source of every module of the package, Python's and yaml-rs's.

It serves the text plan without colours, planned against the state alone (no refresh, no
``--replace``, no saved plan) of manifests without grants (a grant's periods begin with time,
and a removed grant's periods in state make warnings about the grant). Everything else takes
the general path (load, make_plan, render). A reused part makes its changes again from the
declarations when something asks for them (a guardrail on one batch, a test), so the plan it
stands in is the very plan of the general path: tests/planning/test_plan_memo.py holds them to it.

The memo is a file next to the manifest cache, one per tree and identity: a JSON header (with
the sha256 of the rest), a JSON index of the parts, then their texts one after the other. It
is written atomically; one that is unreadable, altered or of another identity is ignored and
replaced.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

from provisioner import __version__
from provisioner.core.addresses import client_of
from provisioner.core.bulk import paused_gc
from provisioner.core.models import BatchSpec, Desired, Figures, Plan, PlanPart, Policy, State
from provisioner.core.timestamps import format_timestamp
from provisioner.manifest import parallel
from provisioner.manifest.cachefile import TreeCache, code_identity
from provisioner.manifest.declarations import Declarations, DeclaredFile, batch_specs
from provisioner.manifest.fast_reader import PARSER
from provisioner.manifest.loader import LoadTimings
from provisioner.planning.planner import client_order, combine, make_plan
from provisioner.render.text import part_text

MEMO_FORMAT = 1
# The files of misses planned at once: enough to make a plan's fixed costs small, few enough
# that their models are not all held together.
FILES_AT_ONCE = 500
_NORMAL_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
_NORMAL: set[str] = set()  # expiries seen in that form (a large tree has few distinct ones)


def usable(declarations: Declarations, state: State) -> bool:
    """Whether the memo may plan these manifests against this state (see the module's docstring)."""
    if not declarations.batches_only:
        return False
    addresses = (*state.resources, *state.pending)
    return all("/" in address and "@" not in address for address in addresses)


def package_identity() -> str:
    """What a part depends on besides the manifests, the state and the clock: this tool's code."""
    return code_identity(f"{MEMO_FORMAT} {__version__} {PARSER} {sys.version}")


class _Stored:
    """One client's part as the memo keeps it."""

    __slots__ = (
        "file",
        "content",
        "client_key",
        "recorded",
        "after",
        "before",
        "unchanged",
        "warnings",
        "figures",
        "text",
    )

    def __init__(
        self,
        file: str,
        content: str,
        client_key: str,
        recorded: str,
        after: str | None,
        before: str | None,
        unchanged: int,
        warnings: list[str],
        figures: Figures,
        text: str,
    ):
        self.file, self.content, self.client_key = file, content, client_key
        self.recorded = recorded  # digest of what the state records under the client's addresses
        self.after = after  # the part holds from this instant on (None: from always)...
        self.before = before  # ...until this one (None: for ever); UTC, milliseconds, as expiries are written
        self.unchanged, self.warnings, self.figures, self.text = unchanged, warnings, figures, text

    @property
    def key(self) -> tuple[str, str, str]:
        return self.file, self.content, self.client_key

    def holds_at(self, moment: str) -> bool:
        return (self.after is None or self.after <= moment) and (self.before is None or moment < self.before)

    def index_entry(self, size: int) -> list:
        """What the memo's index says of it; its text, of ``size`` bytes, is in the blob."""
        return [
            self.file,
            self.content,
            self.client_key,
            self.recorded,
            self.after,
            self.before,
            self.unchanged,
            self.warnings,
            self.figures.as_list(),
            size,
        ]


class PlanMemo(TreeCache):
    kind = "plans"

    def __init__(self, directory: Path | None = None):
        super().__init__(directory, package_identity())

    def read(self, files: Sequence[str | Path]) -> dict[tuple[str, str, str], _Stored]:
        """The parts kept for this tree by (file name, content digest, client key); {} when none is usable."""
        cache = self.file_for(files)
        stored: dict[tuple[str, str, str], _Stored] = {}
        entries = 0  # a part kept again later is in the file twice: written again whole when that is most
        try:
            for segment in cache.read():
                index, blob, start = segment.index, segment.blob, 0
                entries += len(index)
                for name, content, client_key, recorded, after, before, unchanged, warnings, figures, size in index:
                    text = str(blob[start : start + size], "utf-8", "surrogatepass")
                    start += size
                    stored[name, content, client_key] = _Stored(
                        name,
                        content,
                        client_key,
                        recorded,
                        after,
                        before,
                        unchanged,
                        warnings,
                        Figures.from_list(figures),
                        text,
                    )
                if start != len(blob):
                    raise ValueError("texts of other lengths")
        except (ValueError, TypeError):  # an index of the wrong shape
            stored, cache.damaged = {}, True
        self.known = (stored, entries)
        return stored

    def write(self, files: Sequence[str | Path], kept: Iterable[_Stored]) -> None:
        """Keep these parts: the new ones are appended, or the file is written again with these alone
        when most of what it held is no longer used."""
        read: tuple[dict[tuple[str, str, str], _Stored], int] = self.known or ({}, 0)
        known, entries = read
        append = self.appends(files, entries, sum(known.get(part.key) is part for part in kept))
        parts = [part for part in kept if not append or known.get(part.key) is not part]
        if append and not parts:
            return
        encoded = [part.text.encode("utf-8", "surrogatepass") for part in parts]
        index = [part.index_entry(len(text)) for part, text in zip(parts, encoded, strict=True)]
        self.file_for(files).write(index, encoded, append=append)


def plan(
    declarations: Declarations,
    state: State,
    now: datetime,
    policy: Policy,
    memo: PlanMemo | None = None,
    timings: LoadTimings | None = None,
) -> Plan:
    """``make_plan(declarations.desired(), state, now, policy=policy)``, reusing the parts the memo
    kept that still hold, and keeping the parts of this plan for the next one.
    Only when ``usable(declarations, state)``."""
    with paused_gc():
        return _Planner(declarations, state, now, memo, LoadTimings() if timings is None else timings).plan(policy)


class _Planner:
    def __init__(
        self, declarations: Declarations, state: State, now: datetime, memo: PlanMemo | None, timings: LoadTimings
    ):
        self.declarations, self.now, self.memo, self.timings = declarations, now, memo, timings
        self.moment = _instant(now)
        self.recorded = _Recorded(state)
        self.parts: list[PlanPart] = []
        self.kept: list[_Stored] = []

    def plan(self, policy: Policy) -> Plan:
        clock = time.perf_counter
        started = clock()
        files = self.declarations.paths
        known = self.memo.read(files) if self.memo is not None else {}
        self.timings.add("plan memo read", clock() - started)
        started = clock()
        missed: list[tuple[DeclaredFile, list[str]]] = []
        declared: set[str] = set()
        for file in self.declarations.files:
            clients = [key for key, _, _, _ in file.head["clients"]]
            declared.update(clients)
            missing = []
            for client_key in clients:
                stored = known.get((file.name, file.content, client_key))
                if stored is not None and self.still_holds(stored):
                    self.reuse(file, stored)
                else:
                    missing.append(client_key)
            if missing:
                missed.append((file, missing))
        self.timings.add("parts reused", clock() - started)
        started = clock()
        for (file, clients), planned in zip(missed, parallel.in_two(self.plan_files, missed), strict=True):
            for client_key, (unchanged, warnings, figures, text, window) in zip(clients, planned, strict=True):
                self.add_planned(file, client_key, unchanged, warnings, Figures.from_list(figures), text, window)
        others = [client for client in self.recorded.clients() if client not in declared]
        if others:  # recorded under clients no manifest declares: never kept, planned every time
            self.parts.extend(self.planned([], others).parts)
        self.timings.add("not reused (in all)", clock() - started)
        self.parts.sort(key=lambda part: client_order(part.client_key))
        result = combine((part for part in self.parts if _has_anything(part)), policy)
        if self.memo is not None:
            started = clock()
            self.memo.write(files, self.kept)
            self.timings.add("plan memo write", clock() - started)
        return result

    def still_holds(self, stored: _Stored) -> bool:
        """The same recorded batches, and the clock on the same side of each expiry."""
        return stored.recorded == self.recorded.digest(stored.client_key) and stored.holds_at(self.moment)

    def reuse(self, file: DeclaredFile, stored: _Stored) -> None:
        self.kept.append(stored)
        client_key = stored.client_key
        self.parts.append(
            PlanPart(
                client_key,
                unchanged=stored.unchanged,
                warnings=stored.warnings,
                figures=stored.figures,
                text=stored.text,
                remake=lambda: self.remake(file, client_key),
            )
        )

    def plan_files(self, missed: list[tuple[DeclaredFile, list[str]]]) -> list[list[tuple]]:
        """For each file, for each of the clients given: its part, as plain values (unchanged, warnings,
        figures, text, the instants between which it holds or None). Pure: parallel.in_two may ask a
        child process for some of the files."""
        planned: list[list[tuple]] = []
        for first in range(0, len(missed), FILES_AT_ONCE):
            planned += self.plan_some(missed[first : first + FILES_AT_ONCE])
        return planned

    def plan_some(self, missed: list[tuple[DeclaredFile, list[str]]]) -> list[list[tuple]]:
        clock, timings = time.perf_counter, self.timings
        started = clock()
        specs = [spec for file, clients in missed for spec in _specs(file, set(clients))]
        timings.add("not reused: their models", clock() - started)
        started = clock()
        by_client = self.planned(specs, [client for _, clients in missed for client in clients])
        timings.add("not reused: planning", clock() - started)
        started = clock()
        parts = {part.client_key: part for part in by_client.parts}
        expiries: dict[str, list[str | None]] = {}
        for spec in specs:
            expiries.setdefault(spec.client_key, []).append(spec.expires_on)
        planned: list[list] = []
        for _file, clients in missed:
            planned.append([])
            for client_key in clients:
                part = parts.get(client_key) or PlanPart(client_key, ())
                window = _window(expiries.get(client_key, ()), self.moment)
                planned[-1].append(
                    (part.unchanged, list(part.warnings), part.figures.as_list(), part_text(part), window)
                )
        timings.add("not reused: rendering", clock() - started)
        return planned

    def add_planned(
        self,
        file: DeclaredFile,
        client_key: str,
        unchanged: int,
        warnings: list[str],
        figures: Figures,
        text: str,
        window: tuple[str | None, str | None] | None,
    ) -> None:
        """A part planned now: in this plan, and kept for the next one when it can be."""
        self.parts.append(
            PlanPart(
                client_key,
                unchanged=unchanged,
                warnings=warnings,
                figures=figures,
                text=text,
                remake=lambda: self.remake(file, client_key),
            )
        )
        recorded = self.recorded.digest(client_key)
        if window is not None and recorded is not None:
            self.kept.append(
                _Stored(file.name, file.content, client_key, recorded, *window, unchanged, warnings, figures, text)
            )

    def planned(self, specs: list[BatchSpec], clients: Iterable[str]) -> Plan:
        """The plan of these clients alone: their batches against what the state records under them."""
        desired = Desired.model_construct(batches=dict(sorted((spec.address, spec) for spec in specs)))
        return make_plan(desired, self.recorded.of(clients), self.now)

    def remake(self, file: DeclaredFile, client_key: str) -> tuple:
        plan = self.planned(_specs(file, {client_key}), [client_key])
        return next((part.changes for part in plan.parts if part.client_key == client_key), ())


def _specs(file: DeclaredFile, clients: set[str]) -> list[BatchSpec]:
    ids = {key: client_id for key, client_id, _, _ in file.head["clients"]}
    rows = [row for row in file.rows() if row[0] in clients]
    return list(batch_specs(file.name, rows, ids, {}))


def _has_anything(part: PlanPart) -> bool:
    return bool(part.figures.changes or part.unchanged or part.warnings)


def _instant(now: datetime) -> str:
    """``now`` as expiries are written (UTC, milliseconds): comparing such texts compares the instants,
    and an expiry has passed (the planner's ``expiry <= now``) exactly when its text is <= this."""
    return format_timestamp(now)


def _normal(expiry: str) -> bool:
    if _NORMAL_TIMESTAMP.fullmatch(expiry):
        _NORMAL.add(expiry)
        return True
    return False


def _window(expiries: Iterable[str | None], moment: str) -> tuple[str | None, str | None] | None:
    """(latest expiry passed at ``moment``, first still to come): the part holds in between.
    None when an expiry is not in the loader's form (then the part is not kept)."""
    after = before = None
    for expiry in expiries:
        if expiry is None:
            continue
        if expiry not in _NORMAL and not _normal(expiry):
            return None
        if expiry <= moment:
            after = expiry if after is None or expiry > after else after
        elif before is None or expiry < before:
            before = expiry
    return after, before


class _Recorded:
    """What the state records, by client: the state of a few clients, and a digest of each one's."""

    def __init__(self, state: State):
        self.resources: dict[str, dict] = {}
        self.pending: dict[str, dict] = {}
        self.digests: dict[str, str | None] = {}
        for address, resource in state.resources.items():
            self.resources.setdefault(client_of(address), {})[address] = resource
        for address, intent in state.pending.items():
            self.pending.setdefault(client_of(address), {})[address] = intent

    def clients(self) -> list[str]:
        return sorted(self.resources.keys() | self.pending.keys())

    def of(self, clients: Iterable[str]) -> State:
        resources, pending = {}, {}
        for client_key in clients:
            resources.update(self.resources.get(client_key, {}))
            pending.update(self.pending.get(client_key, {}))
        return State.model_construct(resources=resources, pending=pending)

    def digest(self, client_key: str) -> str | None:
        """ "" when nothing is recorded under the client; None when what is cannot be digested."""
        resources, pending = self.resources.get(client_key), self.pending.get(client_key)
        if not resources and not pending:
            return ""
        if client_key not in self.digests:
            self.digests[client_key] = self._digest(resources, pending)
        return self.digests[client_key]

    @staticmethod
    def _digest(resources: dict | None, pending: dict | None) -> str | None:
        recorded = [
            sorted([address, resource.__dict__] for address, resource in (resources or {}).items()),
            sorted([address, intent.__dict__] for address, intent in (pending or {}).items()),
        ]
        try:
            text = json.dumps(recorded, sort_keys=True, separators=(",", ":"))
        except (TypeError, ValueError):
            return None
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
