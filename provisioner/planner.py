"""Desired × Recorded (× Observed) → Plan. Pure: no I/O, the clock is passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from provisioner.bulk import paused_gc, share_fields_set
from provisioner.models import (
    COMPARED_FIELDS,
    FIXED_FIELDS,
    UPDATABLE_FIELDS,
    BatchSpec,
    Change,
    Desired,
    Intent,
    Plan,
    Policy,
    Resource,
)
from provisioner.state import State
from provisioner.timestamps import format_timestamp, parse_timestamp

FIX_FOR_FIXED_FIELD = (
    "Fix: declare a new batch (a new key) for the new value, or restore the recorded value "
    "in the manifest."
)
USAGE_FIELDS = ("startingBalance", "currentBalance", "allocatedCredits", "status", "expiresOn")


def make_plan(
    desired: Desired,
    state: State,
    now: datetime,
    observed: Mapping[str, Mapping] | None = None,
    replace: Iterable[str] = (),
    policy: Policy | None = None,
) -> Plan:
    """One change per address that needs one.

    ``observed`` maps batch ids to the batches the API lists (a refresh); None
    means trust the state file.
    """
    with paused_gc():
        return _plan(desired, state, now, observed, set(replace), policy)


def _plan(
    desired: Desired, state: State, now: datetime, observed: Mapping[str, Mapping] | None, replace: set[str],
    policy: Policy | None,
) -> Plan:
    changes: list[Change] = []
    unchanged = 0
    expired = _Expiry(now)
    for address, spec in desired.batches.items():
        change = _change_for(spec, state, expired, observed, address in replace)
        if change is None:
            unchanged += 1
        else:
            changes.append(change)
    changes.extend(
        _recover_change(intent, desired) for address, intent in state.pending.items() if address not in desired.batches
    )
    changes.sort(key=lambda change: change.address)
    share_fields_set(changes)
    plan_changes = tuple(changes)
    return Plan(
        changes=plan_changes,
        unchanged=unchanged,
        warnings=tuple(_undeclared_warnings(desired, state)),
        violations=tuple(guardrail_violations(plan_changes, policy or desired.policy)),
        info=tuple(_usage_info(state, observed)) if observed is not None else (),
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
    spec: BatchSpec, state: State, expired: _Expiry, observed: Mapping[str, Mapping] | None, replace: bool
) -> Change | None:
    address = spec.address
    wanted = spec.attributes()
    if address in state.pending:
        return _recover_change(state.pending[address], None, spec)
    resource = state.resources.get(address)
    if resource is None:
        return _create_change(spec, wanted, expired, "create")
    current = _current_attributes(resource, observed)
    if replace:
        return _create_change(spec, wanted, expired, "replace", before=current)
    if current is None:
        return Change(
            address=address,
            client_key=spec.client_key,
            action="missing",
            before=dict(resource.attributes),
            reasons=(
                f"Batch {resource.batch_id} is recorded in state but the API no longer lists it "
                "(deleted or moved by hand?). It is not recreated silently: that would issue its "
                "credits again.",
                f"Fix: run 'provisioner apply PATHS --refresh --replace {address}' to create it again on purpose, or "
                f"'provisioner state rm {address}' to forget it.",
            ),
        )
    differing = differing_fields(current, wanted)
    if not differing:
        return None
    reasons = _unchangeable_reasons(differing, wanted)
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


def _unchangeable_reasons(differing: list[str], wanted: Mapping) -> tuple[str, ...]:
    """Why the API cannot make this batch look like the manifest, with the fix; () if it can."""
    fixed = [field for field in differing if field in FIXED_FIELDS]
    reasons = [f"{field} cannot be changed by the API once a batch exists." for field in fixed]
    if fixed:
        reasons.append(FIX_FOR_FIXED_FIELD)
    if "expiresOn" in differing and "expiresOn" not in wanted:
        reasons.append("the API cannot remove an expiry once set (an update can only set a new one).")
        reasons.append("Fix: set expiresOn to a far-future time instead, e.g. 2099-12-31T23:59:59Z.")
    return tuple(reasons)


def _create_change(spec: BatchSpec, wanted: dict, expired: _Expiry, action: str, before: dict | None = None) -> Change:
    reasons: tuple[str, ...] = ()
    if spec.expires_on is not None and expired(spec.expires_on):
        return Change(
            address=spec.address,
            client_key=spec.client_key,
            action="blocked",
            before=before,
            after=wanted,
            reasons=(
                f"{spec.source}: expiresOn {spec.expires_on} is in the past: the batch would be "
                "created already expired.",
                "Fix: set expiresOn to a future time, e.g. 2027-12-31T23:59:59Z, or remove the batch.",
            ),
        )
    if action == "replace":
        reasons = ("Recreated on purpose (--replace): the recorded batch stays as it is in the API.",)
    return Change(
        address=spec.address,
        client_key=spec.client_key,
        action=action,
        before=before,
        after=wanted,
        reasons=reasons,
        credits=spec.starting_balance,
    )


def _recover_change(intent: Intent, desired: Desired | None, spec: BatchSpec | None = None) -> Change:
    client_key = intent.address.split("/", 1)[0]
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
    live = observed.get(resource.batch_id)
    return None if live is None else live_attributes(resource.attributes, live)


def live_attributes(recorded: Mapping, live: Mapping) -> dict:
    """The recorded attributes with every value the API reports put in their place."""
    current = dict(recorded)
    for field in COMPARED_FIELDS:
        if field in live and live[field] is not None:
            current[field] = normalized(field, live[field])
        elif field in UPDATABLE_FIELDS and field in live:
            current.pop(field, None)
    return current


def normalized(field: str, value):
    """An API value in the form the manifest loader produces, so equal values print alike."""
    if field == "expiresOn":
        try:
            return format_timestamp(parse_timestamp(str(value)))
        except ValueError:
            return value
    if field == "startingBalance" and isinstance(value, float) and value.is_integer():
        return int(value)
    if field in ("clientId", "creditAccountId"):
        return str(value).lower()
    return value


def differing_fields(current: Mapping, wanted: Mapping) -> list[str]:
    return [field for field in COMPARED_FIELDS if not same_value(field, current.get(field), wanted.get(field))]


def same_value(field: str, left, right) -> bool:
    if left is None or right is None:
        return left is None and right is None
    if field == "expiresOn":
        try:
            return parse_timestamp(str(left)) == parse_timestamp(str(right))
        except ValueError:
            return left == right
    if field in ("clientId", "creditAccountId"):
        return str(left).lower() == str(right).lower()
    return left == right


def _undeclared_warnings(desired: Desired, state: State) -> Iterable[str]:
    for address, resource in sorted(state.resources.items()):
        if address not in desired.batches:
            yield (
                f"{address} (batch {resource.batch_id}) is recorded in state but no longer declared: "
                "left as is; the API cannot delete batches. Use 'provisioner state rm "
                f"{address}' to stop tracking it."
            )


def guardrail_violations(changes: tuple[Change, ...], policy: Policy) -> Iterable[str]:
    issuing = [change for change in changes if change.credits and change.action != "blocked"]
    for change in issuing:
        if change.credits > policy.max_batch_credits:
            yield (
                f"{change.address} issues {change.credits:,} credits, more than the largest batch "
                f"allowed ({policy.max_batch_credits:,}, policy maxBatchCredits)."
            )
    total = sum(change.credits for change in issuing)
    if total > policy.max_apply_credits:
        yield (
            f"this plan issues {total:,} credits in total, more than one apply may issue "
            f"({policy.max_apply_credits:,}, policy maxApplyCredits)."
        )
    creates = sum(1 for change in issuing if change.action in ("create", "replace"))
    if creates > policy.max_creates:
        yield (
            f"this plan creates {creates:,} batch{'' if creates == 1 else 'es'}, more than one apply may create "
            f"({policy.max_creates:,}, policy maxCreates)."
        )


def _usage_info(state: State, observed: Mapping[str, Mapping]) -> Iterable[dict]:
    for address, resource in sorted(state.resources.items()):
        live = observed.get(resource.batch_id)
        if live is None:
            continue
        row = {"address": address, "batchId": resource.batch_id}
        row.update({field: live.get(field) for field in USAGE_FIELDS})
        yield row
