"""Desired × Recorded (× Observed) → Plan. Pure: no I/O, the clock is passed in."""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from provisioner.applying.matching import duplicate_reasons, duplicates_of, look_alike_warning, unclaimed_look_alikes
from provisioner.core.addresses import client_of, grant_address, period_of
from provisioner.core.bulk import constructor, paused_gc, share_fields_set
from provisioner.core.comparison import EQUAL, compare_field, identifier, normalized, same_value
from provisioner.core.models import (
    COMPARED_FIELDS,
    FIXED_FIELDS,
    UPDATABLE_FIELDS,
    BatchSpec,
    Change,
    Desired,
    Intent,
    Plan,
    PlanPart,
    Policy,
    Resource,
    State,
    Upcoming,
    batch_key,
)
from provisioner.core.timestamps import format_timestamp, parse_timestamp
from provisioner.planning import grants, guardrails
from provisioner.planning.plan_warnings import (
    catch_up_warnings,
    lapsed_warnings,
    removed_grant_warnings,
    undeclared_warnings,
    unscheduled_warnings,
)

FIX_FOR_FIXED_FIELD = (
    "Fix: declare a new batch (a new key) for the new value, or restore the recorded value in the manifest."
)
USAGE_FIELDS = ("startingBalance", "currentBalance", "allocatedCredits", "status", "expiresOn")
FIX_FOR_FROZEN_PERIOD = (
    "Fix: check the batch in the API by hand. If the wrong batch is recorded for this period, "
    "'provisioner state rm {address}' then 'provisioner import {address} BATCH_ID' records the right one."
)
_change = constructor(Change)
# A period that began, is not issued, and whose batch would be created already expired.
LAPSED = object()


def make_plan(
    desired: Desired,
    state: State,
    now: datetime,
    observed: Mapping[str, Mapping] | None = None,
    replace: Iterable[str] = (),
    policy: Policy | None = None,
    allow_duplicates: Iterable[str] = (),
    real_now: datetime | None = None,
) -> Plan:
    """One change per address that needs one.

    ``real_now``: the real time (the API server's where known), when ``now`` is another moment
    (``--at``): a grant's period created before it begins by it is marked early.

    ``observed`` maps batch ids to the batches the API lists (a refresh); None
    means trust the state file. With it, a create whose client already has an
    unclaimed batch just like it is blocked (the duplicate guard), unless allowed.

    Grants must have been expanded (grants.expand):
    ``now`` is the real clock, which judges expiries; the moment the grants were
    expanded for may differ (``--at``).

    A recorded period batch is frozen: it is compared with what was recorded when
    its period was issued, never with the grant's current rule, so editing a grant
    changes only the periods still to come.
    """
    if desired.grants and desired.expanded_at is None:
        raise ValueError("grants must be expanded (grants.expand) before planning")
    with paused_gc():
        return _plan(desired, state, now, observed, set(replace), policy, set(allow_duplicates), real_now)


def _plan(
    desired: Desired,
    state: State,
    now: datetime,
    observed: Mapping[str, Mapping] | None,
    replace: set[str],
    policy: Policy | None,
    allow_duplicates: set[str],
    real_now: datetime | None = None,
) -> Plan:
    guard = _DuplicateGuard(state, observed, allow_duplicates) if observed is not None else None
    shares = _Shares()
    lapsed: dict[str, list[BatchSpec]] = {}
    created_periods: dict[str, list[str]] = {}  # by grant: the periods this plan creates
    current_period: dict[str, str] = {}  # by grant: the latest period begun (periods come in order)
    expired = _Expiry(now)
    share = None
    for address, spec in desired.batches.items():
        if share is None or share.client_key != spec.client_key:  # batches come by address: each client's together
            share = shares.of(spec.client_key)
        change = _change_for(address, spec, state, expired, observed, address in replace)
        if guard is not None and isinstance(change, Change) and change.action == "create":
            change = guard.check(change, spec)
        if (
            real_now is not None
            and spec.period is not None
            and isinstance(change, Change)
            and change.action in ("create", "replace")
        ):
            change = _marked_early(change, desired, spec, real_now)
        if spec.grant is not None and spec.period is not None:
            current_period[f"{spec.client_key}/{spec.grant}"] = spec.period
        if change is None:
            share.unchanged += 1
        elif change is LAPSED:
            lapsed.setdefault(f"{spec.client_key}/{spec.grant}", []).append(spec)
        else:
            assert isinstance(change, Change)
            share.changes.append(change)
            if (
                spec.grant is not None
                and spec.period is not None
                and isinstance(change, Change)
                and change.action == "create"
            ):
                created_periods.setdefault(f"{spec.client_key}/{spec.grant}", []).append(spec.period)
    for address, intent in state.pending.items():
        if address not in desired.batches:
            shares.of(client_of(address)).changes.append(_recover_change(intent, desired))
    undeclared, removed_grants = _undeclared(desired, state)
    for address, warning in undeclared_warnings(undeclared):
        shares.of(client_of(address)).warnings.append(warning)
    unscheduled: dict[str, list[str]] = {}
    for address, resource in undeclared:
        grant = desired.grants.get(grant_address(address) or "")
        if grant is None or address in state.pending:
            continue
        # An issued period its grant does not declare now (catchUp: false, --at earlier than when
        # it was issued, a schedule edited since): frozen like the declared ones.
        period = period_of(address)
        if grants.period_index(grant, period) is None:
            unscheduled.setdefault(grant.address, []).append(period)
        change = _frozen_change(address, grant.client_key, resource, observed, declared=False)
        if change is None:
            shares.of(grant.client_key).unchanged += 1
        else:
            shares.of(grant.client_key).changes.append(change)
    if observed is not None:
        for address, found in unclaimed_look_alikes(state.resources, observed, state.pending.values()).items():
            warning = look_alike_warning(address, state.resources[address].batch_id, found)
            shares.of(client_of(address)).warnings.append(warning)
    warnings = [
        *removed_grant_warnings(removed_grants),
        *unscheduled_warnings(unscheduled),
        *lapsed_warnings(lapsed, desired),
        *catch_up_warnings(created_periods, current_period, desired),
    ]
    return combine(
        shares.parts(),
        policy or desired.policy,
        warnings=warnings,
        info=tuple(_usage_info(state, observed)) if observed is not None else (),
        upcoming=_upcoming(desired, state),
    )


_address = operator.attrgetter("address")


def client_order(client_key: str) -> str:
    """Where a client's addresses come in address order: "a-b/..." sorts before "a/..."."""
    return client_key + "/"


class _Share:
    __slots__ = ("client_key", "changes", "unchanged", "warnings")

    def __init__(self, client_key: str):
        self.client_key = client_key
        self.changes: list[Change] = []
        self.unchanged = 0
        self.warnings: list[str] = []


class _Shares(dict):
    """What the plan says of each client, as it is found."""

    def of(self, client_key: str) -> _Share:
        share = self.get(client_key)
        if share is None:
            share = self[client_key] = _Share(client_key)
        return share

    def parts(self) -> list[PlanPart]:
        """One part per client that has anything, in address order."""
        parts = []
        for client_key in sorted(self, key=client_order):
            share = self[client_key]
            if share.changes or share.unchanged or share.warnings:
                share.changes.sort(key=_address)
                share_fields_set(share.changes)
                parts.append(PlanPart(client_key, share.changes, share.unchanged, share.warnings))
        return parts


def combine(
    parts: Iterable[PlanPart],
    policy: Policy,
    warnings: Iterable[str] = (),
    info: tuple[dict, ...] = (),
    upcoming: tuple[Upcoming, ...] = (),
) -> Plan:
    """The plan of these clients' parts (in address order): its totals, its warnings (each
    client's, then ``warnings``), its guardrail violations."""
    parts = tuple(parts)
    return Plan(
        parts=parts,
        unchanged=sum(part.unchanged for part in parts),
        warnings=(*(warning for part in parts for warning in part.warnings), *warnings),
        violations=tuple(guardrails.violations(parts, policy)),
        info=info,
        upcoming=upcoming,
    )


class _Expiry:
    """Whether an expiry has passed at ``now``; each distinct expiry is parsed once (a large
    plan has few distinct ones)."""

    def __init__(self, now: datetime):
        self.now = now
        self.known: dict[str, bool] = {}

    def __call__(self, expires_on: str) -> bool:
        passed = self.known.get(expires_on)
        if passed is None:
            passed = self.known[expires_on] = parse_timestamp(expires_on) <= self.now
        return passed


def _change_for(
    address: str,
    spec: BatchSpec,
    state: State,
    expired: _Expiry,
    observed: Mapping[str, Mapping] | None,
    replace: bool,
) -> Change | object | None:
    """The change ``spec`` (declared at ``address``) needs; None when none; LAPSED for a period issued too
    late to be any use."""
    wanted = spec.attributes()
    if address in state.pending:
        return _recover_change(state.pending[address], None, spec)
    resource = state.resources.get(address)
    if resource is None:
        return _create_change(address, spec, wanted, expired, "create")
    if spec.period is not None and not replace:
        return _frozen_change(address, spec.client_key, resource, observed)
    current = _current_attributes(resource, observed)
    if replace:
        return _create_change(address, spec, wanted, expired, "replace", before=current)
    if current is None:
        return _missing_change(address, spec.client_key, resource)
    differing = differing_fields(current, wanted)
    if not differing:
        return None
    reasons = _unchangeable_reasons(spec, differing, current, wanted)
    if reasons:
        return Change(
            address=address,
            client_key=spec.client_key,
            action="blocked",
            before=current,
            after=wanted,
            reasons=reasons,
        )
    return Change(address=address, client_key=spec.client_key, action="update", before=current, after=wanted)


class _DuplicateGuard:
    """Creates whose client already has an unclaimed batch just like them (a lost state entry,
    a batch made by hand): blocked, with the fix, so that a plan never issues them twice."""

    def __init__(self, state: State, observed: Mapping[str, Mapping], allowed: set[str]):
        self.claimed = state.claimed_ids()
        self.open_intents = list(state.pending.values())
        self.allowed = allowed
        self.by_client: dict[str, list[Mapping]] = defaultdict(list)
        for batch in observed.values():
            self.by_client[identifier(batch.get("clientId", ""))].append(batch)

    def check(self, change: Change, spec: BatchSpec) -> Change:
        if spec.address in self.allowed:
            return change
        found = duplicates_of(
            change.after or {}, self.by_client.get(identifier(spec.client_id), ()), self.claimed, self.open_intents
        )
        if not found:
            return change
        problem, fix = duplicate_reasons(spec.address, spec.client_key, found)
        return change.model_copy(update={"action": "blocked", "credits": 0, "reasons": (problem, f"Fix: {fix}")})


def _missing_change(address: str, client_key: str, resource: Resource, replaceable: bool = True) -> Change:
    if replaceable:
        fix = (
            f"Fix: run 'provisioner apply PATHS --refresh --replace {address}' to create it again on purpose, or "
            f"'provisioner state rm {address}' to forget it."
        )
    else:
        fix = (
            f"Fix: 'provisioner state rm {address}' to forget it (its grant no longer declares this period, "
            "so --replace cannot create it again)."
        )
    return Change(
        address=address,
        client_key=client_key,
        action="missing",
        before=dict(resource.attributes),
        reasons=(
            f"Batch {resource.batch_id} is recorded in state but the API no longer lists it "
            "(deleted or moved by hand?). It is not recreated silently: that would issue its "
            "credits again.",
            fix,
        ),
    )


def _frozen_change(
    address: str, client_key: str, resource: Resource, observed: Mapping[str, Mapping] | None, declared: bool = True
) -> Change | None:
    """An issued period: it should stay as it was recorded when it was issued, whatever its grant says now."""
    if observed is None:
        return None
    current = _current_attributes(resource, observed)
    if current is None:
        return _missing_change(address, client_key, resource, replaceable=declared)
    recorded = dict(resource.attributes)
    differing = differing_fields(current, recorded)
    if not differing:
        return None
    unchangeable = [field for field in differing if field in FIXED_FIELDS]
    if "expiresOn" in differing and "expiresOn" not in recorded:
        unchangeable.append("expiresOn")
    if unchangeable:
        return Change(
            address=address,
            client_key=client_key,
            action="blocked",
            before=current,
            after=recorded,
            reasons=(
                f"{', '.join(unchangeable)} of batch {resource.batch_id} differs from what was recorded when this "
                "period was issued, and the API cannot change it back.",
                FIX_FOR_FROZEN_PERIOD.format(address=address),
            ),
        )
    return Change(
        address=address,
        client_key=client_key,
        action="update",
        before=current,
        after=recorded,
        reasons=(
            "Changed outside provisioner: an issued period is put back as it was recorded when it was "
            "issued (editing the grant changes only the periods still to come).",
        ),
    )


def _unchangeable_reasons(spec: BatchSpec, differing: list[str], current: Mapping, wanted: Mapping) -> tuple[str, ...]:
    """Why the API cannot make this batch look like the manifest, with the fix; () if it can."""
    fixed = [field for field in differing if field in FIXED_FIELDS]
    reasons = [f"{field} cannot be changed by the API once a batch exists." for field in fixed]
    if fixed == ["startingBalance"]:
        reasons.append(_starting_balance_fix(spec, current.get("startingBalance"), wanted.get("startingBalance")))
    elif fixed:
        reasons.append(FIX_FOR_FIXED_FIELD)
    if "expiresOn" in differing and "expiresOn" not in wanted:
        reasons.append("the API cannot remove an expiry once set (an update can only set a new one).")
        reasons.append("Fix: set expiresOn to a far-future time instead, e.g. 2099-12-31T23:59:59Z.")
    return tuple(reasons)


def _starting_balance_fix(spec: BatchSpec, recorded, declared) -> str:
    """A raised balance is a top-up: say so with the numbers, so nobody declares a batch of the new total."""
    if not isinstance(recorded, int | float) or not isinstance(declared, int | float):
        return FIX_FOR_FIXED_FIELD
    if declared < recorded:
        return (
            f"Fix: put startingBalance back to {recorded:,}: credits a batch was given cannot be taken back "
            "by lowering it."
        )
    extra = declared - recorded
    topup_key = f"{spec.batch_key}-topup"[:64]
    return (
        f"Fix: to add {extra:,} credits, declare a new batch of {extra:,} (a new key, e.g. {topup_key} with "
        f"startingBalance: {extra}) and put startingBalance back to {recorded:,} here."
    )


def _create_change(
    address: str, spec: BatchSpec, wanted: dict, expired: _Expiry, action: str, before: dict | None = None
) -> Change | object:
    reasons: tuple[str, ...] = ()
    if spec.expires_on is not None and expired(spec.expires_on):
        if spec.period is not None and action == "create":
            return LAPSED  # a grant's period: noted once per grant, never blocking the others
        return Change(
            address=address,
            client_key=spec.client_key,
            action="blocked",
            before=before,
            after=wanted,
            reasons=(
                f"{spec.source}: expiresOn {spec.expires_on} is in the past: the batch would be "
                "created already expired.",
                "Fix: set expiresOn to a future time, e.g. 2027-12-31T23:59:59Z, or remove the batch."
                if spec.period is None
                else "Fix: a longer expiresAfter gives this period a future expiry; or do not recreate it.",
            ),
        )
    if action == "replace":
        reasons = ("Recreated on purpose (--replace): the recorded batch stays as it is in the API.",)
    # The values are the checked spec's: made without validating them again (a plan creates thousands).
    return _change(
        {
            "address": address,
            "client_key": spec.client_key,
            "action": action,
            "before": before,
            "after": wanted,
            "reasons": reasons,
            "credits": spec.starting_balance,
        }
    )


def _recover_change(intent: Intent, desired: Desired | None, spec: BatchSpec | None = None) -> Change:
    client_key = client_of(intent.address)
    reasons = [
        f"An earlier apply was interrupted while creating this batch (at {intent.at}). Apply will look "
        "for it in the API and record it if it was made, or create it if it was not: never twice."
    ]
    if spec is None:
        reasons.append("It is no longer declared: if found it is recorded, so that its id is not lost.")
    elif differing_fields(intent.attributes, spec.attributes()):
        reasons.append("The manifest changed since: the next plan shows the difference.")
    return Change(
        address=intent.address,
        client_key=client_key,
        action="recover",
        after=dict(intent.attributes),
        reasons=tuple(reasons),
        credits=int(intent.attributes.get("startingBalance", 0)),
    )


def _current_attributes(resource: Resource, observed: Mapping[str, Mapping] | None) -> dict | None:
    """What the batch is now: the live values after a refresh, else what was recorded."""
    if observed is None:
        return dict(resource.attributes)
    live = observed.get(batch_key(resource.batch_id))
    return None if live is None else live_attributes(resource.attributes, live)


def live_attributes(recorded: Mapping, live: Mapping) -> dict:
    """The recorded attributes with every value the API reports put in their place."""
    current = dict(recorded)
    for field in COMPARED_FIELDS:
        if field in live and live[field] is not None:
            if field == "expiresOn" and compare_field(field, recorded.get(field), live[field]) == EQUAL:
                continue  # the same expiry in the server's own form (a bare date): not a change
            current[field] = normalized(field, live[field])
        elif field in UPDATABLE_FIELDS and field in live:
            current.pop(field, None)
    return current


def differing_fields(current: Mapping, wanted: Mapping) -> list[str]:
    return [field for field in COMPARED_FIELDS if not same_value(field, current.get(field), wanted.get(field))]


def _undeclared(desired: Desired, state: State) -> tuple[list[tuple[str, Resource]], dict[str, list[str]]]:
    """Recorded addresses the manifests do not declare, sorted; and the periods of grants
    no longer declared at all, by grant address."""
    undeclared = sorted(
        (address, resource) for address, resource in state.resources.items() if address not in desired.batches
    )
    removed: dict[str, list[str]] = {}
    for address, _ in undeclared:
        grant = grant_address(address)
        if grant is not None and grant not in desired.grants:
            removed.setdefault(grant, []).append(period_of(address))
    return undeclared, removed


def _upcoming(desired: Desired, state: State) -> tuple[Upcoming, ...]:
    """Each grant's next period that is not issued yet (with --at in the past, the periods after it
    may be issued already)."""
    if not desired.grants:
        return ()
    at = parse_timestamp(desired.expanded_at or "")
    recorded: dict[str, int] = defaultdict(int)
    for address in state.resources:
        grant = grant_address(address)
        if grant is not None:
            recorded[grant] += 1
    found = (
        grants.next_unissued(grant, at, state.resources, recorded[address])
        for address, grant in sorted(desired.grants.items())
    )
    return tuple(next_period for next_period in found if next_period is not None)


EARLY = "Early: its period begins {starts}, after now ({now})."


def _marked_early(change: Change, desired: Desired, spec: BatchSpec, real_now: datetime) -> Change:
    starts = grants.begins_after(desired, spec, real_now)
    if starts is None:
        return change
    reason = EARLY.format(starts=format_timestamp(starts), now=format_timestamp(real_now))
    return change.model_copy(
        update={"reasons": (*change.reasons, reason + " Apply issues it only with --issue-early.")}
    )


def early_changes(plan: Plan, desired: Desired, real_now: datetime) -> list[Change]:
    """The plan's creates of grant periods that have not begun at ``real_now``."""
    return [
        change
        for change in plan.changes
        if change.action in ("create", "replace")
        and change.address in desired.batches
        and grants.begins_after(desired, desired.batches[change.address], real_now) is not None
    ]


def _usage_info(state: State, observed: Mapping[str, Mapping]) -> Iterable[dict]:
    for address, resource in sorted(state.resources.items()):
        live = observed.get(batch_key(resource.batch_id))
        if live is None:
            continue
        row: dict[str, object] = {"address": address, "batchId": resource.batch_id}
        row.update({field: live.get(field) for field in USAGE_FIELDS})
        yield row
