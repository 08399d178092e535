"""Typed values shared by the manifest loader, the planner, the state store and the applier.

Attribute dictionaries use the API's own field names (``startingBalance``,
``expiresOn``...) so that what the plan shows, what state records and what is
sent to the API are one and the same thing.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from provisioner.fields import DEFAULT_GRANT_NAME

# Fields the create call accepts; the update call can change only the first two.
UPDATABLE_FIELDS = ("name", "expiresOn")
FIXED_FIELDS = ("startingBalance", "clientId", "creditAccountId")
COMPARED_FIELDS = UPDATABLE_FIELDS + FIXED_FIELDS


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


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
    """One managed batch as recorded in state."""

    model_config = ConfigDict(extra="forbid")

    batch_id: str
    client_id: str
    attributes: dict  # what was last sent (create body, then updated fields)
    remote: dict = Field(default_factory=dict)  # the batch as the API last returned it


class Intent(BaseModel):
    """A create about to be sent: written durably before the request goes out."""

    model_config = ConfigDict(extra="forbid")

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

    model_config = ConfigDict(extra="forbid")

    version: int = STATE_FORMAT_VERSION
    lineage: str = Field(default_factory=lambda: str(uuid.uuid4()))
    serial: int = 0
    # The API these ids belong to: ids of one instance mean nothing to another.
    instance: str | None = None
    resources: dict[str, Resource] = Field(default_factory=dict)
    pending: dict[str, Intent] = Field(default_factory=dict)

    def claimed_ids(self) -> set[str]:
        return {batch_key(resource.batch_id) for resource in self.resources.values()}

    def is_empty(self) -> bool:
        return not self.resources and not self.pending

    def content_digest(self) -> str:
        """Changes whenever what is recorded changes; the serial moves exactly when it does."""
        content = self.model_dump(mode="json", include={"resources", "pending", "instance"})
        return hashlib.sha256(json.dumps(content, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def batch_key(batch_id) -> str:
    """A batch id as compared: servers may list an id as a number or in another case."""
    return str(batch_id).strip().lower()


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


class Plan(Frozen):
    changes: tuple[Change, ...] = ()
    unchanged: int = 0
    warnings: tuple[str, ...] = ()
    violations: tuple[Violation, ...] = ()  # guardrail violations
    info: tuple[dict, ...] = ()  # per-address usage information from a refresh
    upcoming: tuple[Upcoming, ...] = ()  # each grant's next period, by grant address

    @property
    def has_changes(self) -> bool:
        return any(c.action != "missing" for c in self.changes)

    @property
    def blocked(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.action in ("blocked", "missing"))

    def count(self, action: str) -> int:
        return sum(1 for c in self.changes if c.action == action)

    @property
    def total_credits(self) -> int:
        return sum(c.credits for c in self.changes)

    def credits_by_client(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for change in self.changes:
            if change.credits:
                totals[change.client_key] = totals.get(change.client_key, 0) + change.credits
        return dict(sorted(totals.items()))
