"""Typed values shared by the manifest loader, the planner, the state store and the applier.

Attribute dictionaries use the API's own field names (``startingBalance``,
``expiresOn``...) so that what the plan shows, what state records and what is
sent to the API are one and the same thing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_GRANT_NAME = "{grant} {period}"  # a grant's name template when it has none

# Fields the create call accepts; the update call can change only the first two.
UPDATABLE_FIELDS = ("name", "expiresOn")
FIXED_FIELDS = ("startingBalance", "clientId", "creditAccountId")
COMPARED_FIELDS = UPDATABLE_FIELDS + FIXED_FIELDS


# Each model's validator is built when it is first used, not when this module is imported: a
# command pays only for the models it validates (start-up matters: CI plans on every push).
LAZY = ConfigDict(defer_build=True)


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", **LAZY)


class Policy(Frozen):
    """Guardrails: the plan lists every violation; apply refuses them unless allowed."""

    max_batch_credits: int = Field(1_000_000, ge=0, description="Largest startingBalance one batch may have.")
    max_apply_credits: int = Field(10_000_000, ge=0, description="Most credits one apply may issue in total.")
    max_creates: int = Field(1_000, ge=0, description="Most batches one apply may create.")


class BatchSpec(Frozen):
    """One declared batch, resolved: client defaults applied, timestamps normalised."""

    client_key: str
    batch_key: str
    client_id: str
    name: str
    starting_balance: int
    expires_on: str | None = None  # UTC, "YYYY-MM-DDTHH:MM:SS.mmmZ": exactly what is sent
    credit_account_id: str | None = None
    source: str = ""  # "file:line:column" of the batch key, for messages
    # A grant's period batch (batch_key "quarterly@2026-q1") names its grant and period; never sent.
    grant: str | None = None  # the grant key
    period: str | None = None  # the period id

    @property
    def address(self) -> str:
        return f"{self.client_key}/{self.batch_key}"

    def attributes(self) -> dict:
        """The create request body: documented fields only, absent optionals omitted."""
        body: dict = {
            "clientId": self.client_id,
            "name": self.name,
            "startingBalance": self.starting_balance,
        }
        if self.expires_on is not None:
            body["expiresOn"] = self.expires_on
        if self.credit_account_id is not None:
            body["creditAccountId"] = self.credit_account_id
        return body


class ClientSpec(Frozen):
    key: str
    id: str
    source: str = ""


class Step(Frozen):
    """A calendar step of whole months or whole days (a week is 7 days, a year 12 months)."""

    text: str  # as the manifest says it: "12 months", "quarter"
    months: int = Field(0, ge=0)
    days: int = Field(0, ge=0)


PeriodIdStyle = Literal["month", "quarter", "year", "date"]


class Every(Step):
    """How often a grant issues a batch, and how its periods are named."""

    period_id: PeriodIdStyle  # 2026-01, 2026-q1, 2026, or the start date 2026-01-15


class GrantSpec(Frozen):
    """One declared recurring grant, resolved: client defaults applied, values parsed (see grants.py)."""

    client_key: str
    grant_key: str
    client_id: str
    every: Every
    from_date: date  # the first period starts that day, at local midnight in time_zone
    until: date | None = None  # no period starts after this day
    time_zone: str = "UTC"  # IANA name
    starting_balance: int
    name: str = DEFAULT_GRANT_NAME  # template: {period} and {grant} only
    expires_after: Step | None = None  # expiry = period start + this
    credit_account_id: str | None = None
    catch_up: bool = True  # False: only the latest period that has begun is issued
    source: str = ""  # "file:line:column" of the grant key, for messages

    @property
    def address(self) -> str:
        return f"{self.client_key}/{self.grant_key}"


class Upcoming(Frozen):
    """A grant's next period, not begun yet: what the schedule will issue next."""

    grant: str  # the grant's address, "acme/quarterly"
    address: str  # the period batch's address, "acme/quarterly@2026-q2"
    period: str
    starts_on: str  # the local date it starts, "2026-04-01"
    starts_at: str  # the instant it starts (local midnight), UTC as timestamps are written
    time_zone: str
    credits: int
    name: str
    expires_on: str | None = None


class Desired(Frozen):
    """Everything the manifests declare."""

    clients: dict[str, ClientSpec] = Field(default_factory=dict)
    batches: dict[str, BatchSpec] = Field(default_factory=dict)  # by address, sorted
    grants: dict[str, GrantSpec] = Field(default_factory=dict)  # by address ("acme/quarterly"), sorted
    # The moment the grants were expanded for (grants.expand sets it, with their period batches
    # added to ``batches``); None until then.
    expanded_at: str | None = None
    policy: Policy = Field(default_factory=Policy)
    policy_source: str | None = None  # where a policy section was declared, if any
    digest: str = ""  # sha256 over the manifest files' bytes, for saved plans


class Resource(BaseModel):
    """One managed batch as recorded in state. Replaced, never changed in place: the file backend
    renders each one once and reuses its text while it is the same object (backends/file.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid", **LAZY)

    batch_id: str
    client_id: str
    attributes: dict  # what was last sent (create body, then updated fields)
    remote: dict = Field(default_factory=dict)  # the batch as the API last returned it


class Intent(BaseModel):
    """A create about to be sent: written durably before the request goes out. Frozen, as Resource."""

    model_config = ConfigDict(frozen=True, extra="forbid", **LAZY)

    address: str
    client_id: str
    attributes: dict
    digest: str
    at: str  # ISO 8601 UTC on the writer's clock, when the intent was written
    # The same instant on the API server's clock (from its Date header), which is the clock
    # createdAt is written with; None when the writer had no reading of the server's clock.
    server_at: str | None = None


STATE_FORMAT_VERSION = 1


class State(BaseModel):
    """What a state records: the batches provisioner manages, and creates still in doubt."""

    model_config = ConfigDict(extra="forbid", **LAZY)

    version: int = STATE_FORMAT_VERSION
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    # The API these ids belong to: ids of one instance mean nothing to another.
    instance: str | None = None
    resources: dict[str, Resource] = Field(default_factory=dict)
    pending: dict[str, Intent] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _addresses_are_addresses(self) -> State:
        """Every key is a client/batch address, and an open intent is filed under its own address:
        a state that breaks either cannot be read safely by anything that follows."""
        for table in (self.resources, self.pending):
            for address in table:
                client, slash, batch = address.partition("/")
                if not (client and slash and batch):
                    raise ValueError(f"{address!r} is not an address (expected client/batch)")
        for address, intent in self.pending.items():
            if intent.address != address:
                raise ValueError(f"the open intent filed under {address!r} is the create of {intent.address!r}")
        return self

    def claimed_ids(self) -> set[str]:
        return {batch_key(resource.batch_id) for resource in self.resources.values()}

    def is_empty(self) -> bool:
        return not self.resources and not self.pending

    def content_digest(self) -> str:
        """Changes whenever what is recorded changes; the serial moves exactly when it does."""
        content = self.model_dump(mode="json", include={"resources", "pending", "instance"})
        return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def batch_key(batch_id: str) -> str:
    """A batch id as compared: servers may list an id in another case. Only ever given a proper id
    (see proper_id): ``str()`` of something else (``True``, ``{'x': 1}``) is no batch's id."""
    return batch_id.strip().lower()


def proper_id(value: object) -> str | None:
    """A batch id as the API must give it, a non-empty string; None for anything else (a number,
    a boolean, a list, an object, an empty or blank string), which is never turned into one."""
    if isinstance(value, str) and value.strip():
        return value
    return None


def shown_id(value: object) -> str:
    """How a listed or answered id is named in a message, whatever the API sent."""
    if proper_id(value) is not None:
        return str(value)
    text = json.dumps(value) if isinstance(value, (bool, int, float, list, dict, type(None))) else repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} (not a batch id)"


Action = Literal["create", "update", "blocked", "recover", "replace", "missing"]


class Change(Frozen):
    address: str
    client_key: str
    action: Action
    before: dict | None = None
    after: dict | None = None
    reasons: tuple[str, ...] = ()
    credits: int = 0  # credits this change issues


class Violation(Frozen):
    """A plan breaking one guardrail of the policy."""

    rule: str  # the policy field broken: maxBatchCredits, maxApplyCredits or maxCreates
    limit: int
    actual: int
    address: str | None = None  # the batch, for a rule about one batch
    message: str  # the whole story, for people


ACTIONS: tuple[Action, ...] = ("create", "update", "blocked", "recover", "replace", "missing")


class Figures:
    """What a summary needs of some changes: how many of each action and the credits they issue;
    for the guardrails, the credits of those not blocked (issued), the creates among them and the
    largest one. Kept apart from the changes, so that a part of a plan can be summed up without them."""

    __slots__ = ("counts", "credits", "credited", "issued", "creates", "largest")

    counts: dict[str, int]

    def __init__(
        self,
        counts: dict[str, int] | None = None,
        credits: int = 0,
        credited: bool = False,
        issued: int = 0,
        creates: int = 0,
        largest: int = 0,
    ):
        self.counts = dict.fromkeys(ACTIONS, 0) if counts is None else counts  # every action, in ACTIONS' order
        self.credits = credits  # of every change
        self.credited = credited  # some change issues credits (the client is listed in credits_by_client)
        self.issued = issued  # of the changes that issue credits and are not blocked
        self.creates = creates  # creates and replaces among those
        self.largest = largest  # the most credits one of those issues

    @classmethod
    def of(cls, changes: Iterable[Change]) -> Figures:
        figures = cls()
        counts = figures.counts
        for change in changes:
            counts[change.action] += 1
            credits = change.credits
            if credits:
                figures.credits += credits
                figures.credited = True
                if change.action != "blocked":
                    figures.issued += credits
                    figures.creates += change.action in ("create", "replace")
                    figures.largest = max(figures.largest, credits)
        return figures

    def add(self, other: Figures) -> None:
        for action, count in other.counts.items():
            self.counts[action] += count
        self.credits += other.credits
        self.credited = self.credited or other.credited
        self.issued += other.issued
        self.creates += other.creates
        self.largest = max(self.largest, other.largest)

    @property
    def changes(self) -> int:
        return sum(self.counts.values())

    def as_list(self) -> list[int]:
        """Plain numbers, for the plan memo; ``from_list`` reads them back."""
        return [*self.counts.values(), self.credits, int(self.credited), self.issued, self.creates, self.largest]

    @classmethod
    def from_list(cls, numbers: list[int]) -> Figures:
        if len(numbers) != len(ACTIONS) + 5 or set(map(type, numbers)) != {int}:
            raise ValueError("not the numbers of a plan part")
        credits, credited, issued, creates, largest = numbers[len(ACTIONS) :]
        return cls(dict(zip(ACTIONS, numbers, strict=False)), credits, credited == 1, issued, creates, largest)


class PlanPart:
    """One client's share of a plan: its changes in address order, how many of its batches need
    none, the warnings about it; its figures.

    A part reused from an earlier plan (planmemo.py) carries its figures and its rendered text
    instead of its changes, and makes them again (``remake``) only when something asks for them.
    """

    __slots__ = ("client_key", "unchanged", "warnings", "text", "_changes", "_remake", "_figures")

    def __init__(
        self,
        client_key: str,
        changes: Iterable[Change] | None = None,
        unchanged: int = 0,
        warnings: Iterable[str] = (),
        *,
        figures: Figures | None = None,
        text: str | None = None,
        remake: Callable[[], Iterable[Change]] | None = None,
    ):
        if (changes is None) == (remake is None):
            raise TypeError("a plan part has either its changes or a way to make them again")
        self.client_key = client_key
        self.unchanged = unchanged
        self.warnings = tuple(warnings)
        self.text = text  # the changes as the text plan shows them (without colours); None: not rendered yet
        self._changes = None if changes is None else tuple(changes)
        self._remake = remake
        self._figures = figures

    @property
    def changes(self) -> tuple[Change, ...]:
        if self._changes is None:
            assert self._remake is not None  # a part has either its changes or a way to make them again
            self._changes = tuple(self._remake())
        return self._changes

    @property
    def figures(self) -> Figures:
        if self._figures is None:
            self._figures = Figures.of(self.changes)
        return self._figures

    @classmethod
    def split(cls, changes: Iterable[Change]) -> list[PlanPart]:
        """Changes in the given order, one part per run of the same client."""
        parts: list[PlanPart] = []
        run: list[Change] = []
        for change in changes:
            if run and change.client_key != run[0].client_key:
                parts.append(cls(run[0].client_key, run))
                run = []
            run.append(change)
        if run:
            parts.append(cls(run[0].client_key, run))
        return parts


class Plan:
    """What apply would do: the changes, in address order (in parts, one per client), how many
    declared batches need none, and what else a reviewer should read. Immutable."""

    __slots__ = ("parts", "unchanged", "warnings", "violations", "info", "upcoming", "_changes", "_by_client", "_total")
    parts: tuple[PlanPart, ...]
    unchanged: int
    warnings: tuple[str, ...]
    violations: tuple[Violation, ...]
    info: tuple[dict, ...]
    upcoming: tuple[Upcoming, ...]
    _changes: tuple[Change, ...] | None
    _by_client: dict[str, Figures] | None
    _total: Figures | None

    def __init__(
        self,
        changes: Iterable[Change] = (),
        unchanged: int = 0,
        warnings: Iterable[str] = (),
        violations: Iterable[Violation] = (),  # guardrail violations
        info: Iterable[dict] = (),  # per-address usage information from a refresh
        upcoming: Iterable[Upcoming] = (),  # each grant's next period, by grant address
        *,
        parts: Iterable[PlanPart] | None = None,  # instead of changes: the planner's parts
    ):
        changes = tuple(changes)
        if parts is not None and changes:
            raise TypeError("a plan is made of its changes or of its parts, not both")
        initial = {
            "parts": tuple(PlanPart.split(changes) if parts is None else parts),
            "unchanged": unchanged,
            "warnings": tuple(warnings),
            "violations": tuple(violations),
            "info": tuple(info),
            "upcoming": tuple(upcoming),
            "_changes": changes if parts is None else None,
            "_by_client": None,
            "_total": None,
        }
        for name, value in initial.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("a Plan cannot be changed")

    @property
    def changes(self) -> tuple[Change, ...]:
        if self._changes is None:
            changes = tuple(change for part in self.parts for change in part.changes)
            object.__setattr__(self, "_changes", changes)
            return changes
        return self._changes

    def _values(self) -> tuple:
        return self.changes, self.unchanged, self.warnings, self.violations, self.info, self.upcoming

    def __eq__(self, other) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Plan(changes={self.changes!r}, unchanged={self.unchanged!r}, warnings={self.warnings!r}, "
            f"violations={self.violations!r}, info={self.info!r}, upcoming={self.upcoming!r})"
        )

    def figures_by_client(self) -> dict[str, Figures]:
        """Each client's figures, clients in plan order."""
        if self._by_client is None:
            by_client: dict[str, Figures] = {}
            by_client_own: dict[str, Figures] = {}  # sums made here, for a client of several parts
            for part in self.parts:
                known = by_client.get(part.client_key)
                if known is None:  # usually a client's only part: its figures as they are
                    by_client[part.client_key] = part.figures
                else:
                    if known is by_client_own.get(part.client_key):
                        known.add(part.figures)
                    else:
                        by_client[part.client_key] = by_client_own[part.client_key] = merged = Figures()
                        merged.add(known)
                        merged.add(part.figures)
            object.__setattr__(self, "_by_client", by_client)
            return by_client
        return self._by_client

    @property
    def figures(self) -> Figures:
        """All changes' figures."""
        if self._total is None:
            total = Figures()
            for figures in self.figures_by_client().values():
                total.add(figures)
            object.__setattr__(self, "_total", total)
            return total
        return self._total

    @property
    def change_count(self) -> int:
        """len(changes), without making the changes of a reused part again."""
        return sum(part.figures.changes for part in self.parts)

    @property
    def has_changes(self) -> bool:
        counts = self.figures.counts
        return any(count for action, count in counts.items() if action != "missing")

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(
            change
            for part in self.parts
            if part.figures.counts["blocked"] or part.figures.counts["missing"]
            for change in part.changes
            if change.action in ("blocked", "missing")
        )

    def count(self, action: str) -> int:
        return self.figures.counts[action]

    @property
    def total_credits(self) -> int:
        return self.figures.credits

    def credits_by_client(self) -> dict[str, int]:
        totals = {client: figures.credits for client, figures in self.figures_by_client().items() if figures.credited}
        return dict(sorted(totals.items()))
