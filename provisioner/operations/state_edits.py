"""State edits a user asks for: import, rm, mv, refresh. Callers hold the lock."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from itertools import islice
from pathlib import Path

from provisioner.api.client import ApiError, CreditsApi
from provisioner.applying.listings import ClientListings
from provisioner.applying.matching import (
    Findings,
    created_since,
    find,
    intent_since,
    is_look_alike,
    look_alike_warning,
    unclaimed_look_alikes,
    window_left,
)
from provisioner.backends.base import StateWriter
from provisioner.backends.file import FileBackend, read_history
from provisioner.backends.snapshot import parse_document
from provisioner.core.addresses import ADDRESS, ADDRESS_RULE, client_of, grant_address, period_of
from provisioner.core.audit_trail import FORGET_INTENT, IMPORT, REFRESH, STATE_PUSH, Note, extends, verify
from provisioner.core.comparison import normalized
from provisioner.core.models import COMPARED_FIELDS, BatchSpec, Desired, Intent, Resource, State, batch_key, proper_id
from provisioner.planning import grants
from provisioner.planning.planner import live_attributes

# On a failed import, how many other declared clients are listed to name the batch's owner:
# enough for the usual mix-up, few enough not to spend minutes of rate limit on an error path.
OWNER_SEARCH_LIMIT = 25


class StateCommandError(Exception):
    """The edit does not make sense; state was not changed."""


def import_batch(
    writer: StateWriter, api: CreditsApi, desired: Desired, address: str, batch_id: str, force: bool = False
) -> Resource:
    spec = desired.batches.get(address) or _period_batch(desired, address)
    existing = writer.state.resources.get(address)
    if existing is not None:
        raise StateCommandError(
            f"{address} is already recorded as batch {existing.batch_id}; run 'provisioner state rm "
            f"{address}' first if you mean to manage another batch under that address."
        )
    owner = next(
        (name for name, res in writer.state.resources.items() if batch_key(res.batch_id) == batch_key(batch_id)), None
    )
    if owner is not None:
        raise StateCommandError(f"batch {batch_id} is already recorded as {owner}; one batch, one address.")
    live = _listed(api, spec.client_id, batch_id)
    if live is None:
        raise StateCommandError(_not_found_message(api, desired, spec, batch_id))
    intent = writer.state.pending.get(address)
    if intent is not None and not is_look_alike(live, intent.attributes):
        # Recording would close the intent, and a batch that create did make would be lost;
        # importing one of the batches it may have made is how an ambiguous recovery is settled.
        raise StateCommandError(
            f"an interrupted apply was creating {address}, and batch {batch_id} cannot be the one it "
            "made (another client or starting balance). Run 'provisioner apply' first: it finds and "
            "records that batch if it was made; when it reports candidates, import one of those."
        )
    if intent is not None and not force and not created_since(live, intent_since(intent)):
        raise StateCommandError(
            f"an interrupted apply was creating {address}, and batch {batch_id} was made before that create "
            f"(at {live.get('createdAt')}): it cannot be the one the create made, which would stay unrecorded. "
            "Import one of the candidates 'provisioner apply' names; --force if you are sure of this one."
        )
    attributes = {
        field: normalized(field, live[field]) for field in COMPARED_FIELDS if live.get(field) not in (None, "")
    }
    attributes["clientId"] = spec.client_id
    resource = Resource(batch_id=batch_id, client_id=spec.client_id, attributes=attributes, remote=dict(live))
    writer.record(address, resource, IMPORT)
    return resource


def _period_batch(desired: Desired, address: str) -> BatchSpec:
    """The batch a declared grant issues for the period ADDRESS names, begun or not (a batch made
    by hand ahead of its period can be adopted too); else why there is none."""
    grant_of = grant_address(address)
    grant = desired.grants.get(grant_of or "")
    if grant is None:
        what = f"grant {grant_of}" if grant_of else "batch"
        raise StateCommandError(
            f"{address} is not declared in the manifests given: declare the {what} first (client key / "
            f"{'grant key, then @PERIOD' if grant_of else 'batch key'}), so that provisioner knows what it "
            "should look like."
        )
    period_id = period_of(address)
    index = grants.period_index(grant, period_id)
    try:
        period = None if index is None else grants.period_at(grant, index)
    except (OverflowError, ValueError):  # past the year 9999
        period = None
    if period is None or period.id != period_id or (grant.until is not None and period.starts_on > grant.until):
        first = grants.period_at(grant, 0)
        raise StateCommandError(
            f"{address}: grant {grant.address} (every {grant.every.text} from {grant.from_date.isoformat()}"
            f"{f' until {grant.until.isoformat()}' if grant.until else ''}) has no period '{period_id}'; its "
            f"periods are named like {first.id} ({grant.address}@{first.id})."
        )
    return grants.period_batch(grant, period)


def _listed(api: CreditsApi, client_id: str, batch_id: str) -> dict | None:
    wanted = batch_key(batch_id)
    return next(
        (
            batch
            for batch in api.list_batches(client_id)
            if (listed := proper_id(batch.get("id"))) is not None and batch_key(listed) == wanted
        ),
        None,
    )


def _not_found_message(api: CreditsApi, desired: Desired, spec: BatchSpec, batch_id: str) -> str:
    """Says whose batch it is when another declared client owns it: the likely mistake."""
    others = (client for client in desired.clients.values() if client.id != spec.client_id)
    for client in islice(others, OWNER_SEARCH_LIMIT):
        if _listed(api, client.id, batch_id) is not None:
            return (
                f"batch {batch_id} belongs to client {client.key} ({client.id}), not to {spec.client_key} "
                f"({spec.client_id}): import it under a {client.key}/... address, or check the batch id."
            )
    return (
        f"batch {batch_id} is not among the batches of client {spec.client_key} ({spec.client_id}) at "
        f"{api.base_url}: check the batch id and the client's id in the manifest."
    )


def intent_candidates(
    writer: StateWriter, api: CreditsApi, address: str, window: float, force: bool = False
) -> tuple[Intent, Findings | str]:
    """The open intent of ADDRESS and the batches it may have made (or why they cannot be listed).

    While its recovery window runs, the create may still be made on the server: no listing can
    prove it never was, so giving it up is refused unless ``force``."""
    intent = writer.state.pending.get(address)
    if intent is None:
        raise StateCommandError(
            f"no interrupted create is recorded for {address}; 'provisioner state list' shows open ones."
        )
    try:
        listed = ClientListings(api).confirmed(intent.client_id)
    except ApiError as exc:
        findings: Findings | str = f"its client's batches cannot be listed ({exc})"
    else:
        findings = find(listed, intent, writer.claimed_ids(), writer.open_intents())
    # Judged whether the listing answered or not (an unanswered one leaves the whole window).
    left = window_left(intent, window, api.clock.now(), datetime.now(timezone.utc))
    if left > 0 and not force and isinstance(findings, str):
        raise StateCommandError(
            f"the interrupted create of {address} may still be in progress on the server, and {findings}: "
            "nothing shows whether it made a batch, and giving it up now could issue its credits twice. Nothing "
            "was changed. Run this again once the API answers; --force only if you know the create never "
            "reached the API."
        )
    if left > 0 and not force and not isinstance(findings, str) and findings.nothing:
        raise StateCommandError(
            f"the interrupted create of {address} may still be in progress on the server for another "
            f"{left:.0f} s: no listing can prove yet that it made nothing, and giving it up now could issue "
            "its credits twice. Nothing was changed. Run this again after that (or run apply, which waits "
            "and decides by itself); --force only if you know the create never reached the API."
        )
    return intent, findings


def forget_intent(writer: StateWriter, address: str) -> None:
    """Gives up an interrupted create a person has settled: the next apply creates the batch anew."""
    if address not in writer.state.pending:
        raise StateCommandError(f"no interrupted create is recorded for {address}; nothing was changed.")
    writer.clear_intent(address, FORGET_INTENT)


def remove_resource(writer: StateWriter, address: str) -> Resource:
    resource = _recorded(writer, address)
    writer.forget(address)
    return resource


def move_resource(writer: StateWriter, source: str, destination: str) -> None:
    _recorded(writer, source)
    for address in (source, destination):
        if address in writer.state.pending:
            raise StateCommandError(
                f"an interrupted apply was creating {address}; run 'provisioner apply' first, so that "
                "the batch it may have made is recorded before addresses move."
            )
    if destination in writer.state.resources:
        raise StateCommandError(f"{destination} is already recorded; choose another address or 'state rm' it first.")
    if not ADDRESS.fullmatch(destination):
        raise StateCommandError(f"{destination!r} is not an address; expected {ADDRESS_RULE}.")
    client = client_of(source)
    if client != client_of(destination):
        raise StateCommandError(
            f"{source} belongs to client {client}: a batch cannot move to another client "
            f"({client_of(destination)}). Rename the batch key only, e.g. {client}/new-key."
        )
    writer.move(source, destination)


def refresh_state(writer: StateWriter, observed: Mapping[str, Mapping]) -> list[str]:
    """Records the live values; returns the addresses the API no longer lists."""
    missing = []
    for address, resource in sorted(writer.state.resources.items()):
        live = observed.get(batch_key(resource.batch_id))
        if live is None:
            missing.append(address)
            continue
        updated = resource.model_copy(
            update={"attributes": live_attributes(resource.attributes, live), "remote": dict(live)}
        )
        if updated != resource:
            writer.record(address, updated, REFRESH)
    return missing


def duplicate_warnings(state: State, observed: Mapping[str, Mapping]) -> list[str]:
    """A warning for each recorded batch whose client has an unclaimed batch just like it (a duplicate
    that slipped through), after a refresh."""
    found = unclaimed_look_alikes(state.resources, observed, state.pending.values())
    return [
        look_alike_warning(address, state.resources[address].batch_id, batches) for address, batches in found.items()
    ]


def read_pushed_state(source: Path) -> tuple[State, list[dict]]:
    """A state file to push, its journal folded in, and its history (the one 'state pull' printed
    into it, or the file's own with what its snapshot carries); '-' reads what 'state pull' printed from stdin."""
    if str(source) == "-":
        state, history = parse_document(sys.stdin.read(), "standard input")
        return state, history or []
    if not source.exists():
        raise StateCommandError(f"{source}: no such file; 'state push' loads a state file ('state pull' prints one).")
    state = FileBackend(source).read()  # its journal folded in
    # The history file, then the events the snapshot carries past it (a pulled copy carries them all; a
    # live state file's snapshot only those its last push or generated import may not have filed yet).
    return state, read_history(source)


def push_state(
    writer: StateWriter,
    pushed: State,
    force: bool = False,
    history: list[dict] | None = None,
    recorded_history: list[dict] | None = None,
) -> int | None:
    """Puts ``pushed`` in place of what the writer's state records; returns how many batches it replaced,
    or None when the state already records exactly that and its history adds nothing (nothing is
    written, the serial stays).

    Terraform's rules: an empty state (as init leaves it) takes any push; otherwise the target
    must be of the same lineage and not ahead (--force overrides both). The pushed serial is kept
    wherever no plan saved against the target could then pass for one saved against the pushed
    file: a plan names its lineage, so an empty target of another lineage takes the file's serial
    as it is (a plan saved against the file stays valid); the same lineage never moves back. The
    audit trail is append-only: ``history`` (the pushed one) must extend ``recorded_history``. --force
    pushes the state anyway, but never its history: the recorded one stays, and the push's event says so."""
    history, recorded_history = history or [], recorded_history or []
    current = writer.state
    # What is recorded already, with a history the recorded one holds unchanged (or none): nothing to do.
    adds_nothing = verify(history) is None and extends(history, recorded_history) is None
    same = current.lineage == pushed.lineage and current.content_digest() == pushed.content_digest()
    if same and adds_nothing:
        return None
    if not current.is_empty() and not force:
        if current.lineage != pushed.lineage:
            raise StateCommandError(
                f"{writer.name} holds another state (lineage {current.lineage}, {len(current.resources)} batch(es)); "
                f"the file is lineage {pushed.lineage}. Nothing was changed. Push into an empty state (provisioner "
                "init), or pass --force to overwrite it (its records are lost: pull a copy first)."
            )
        if current.serial > pushed.serial:
            raise StateCommandError(
                f"{writer.name} is at serial {current.serial}, newer than the file's {pushed.serial}: "
                "pushing would undo recorded changes. Nothing was changed; pull the newer state instead, or "
                "pass --force to overwrite it."
            )
        if current.serial == pushed.serial and not same:
            raise StateCommandError(
                f"{writer.name} and the file are both at serial {current.serial} but record different things. "
                "Nothing was changed; compare them (provisioner state pull), then pass --force to overwrite."
            )
    problem = verify(history)
    problem = f"it does not verify ({problem})" if problem else extends(recorded_history, history)
    if problem and not force:
        raise StateCommandError(
            f"the history of the state to push does not extend the one {writer.name} records: {problem}. The "
            "audit trail is append-only, so nothing was changed. Pull this state (it carries its history), edit "
            "that copy and push it back; or --force to push the state without its history (the recorded history "
            "stays, and the push's event says so)."
        )
    replaced = len(current.resources)
    if current.is_empty() and current.lineage != pushed.lineage:
        serial = pushed.serial
    elif same:  # only events to add: the batches recorded, and so the serial, stay as they are
        serial = current.serial
    else:
        serial = pushed.serial if pushed.serial > current.serial else current.serial + 1
    detail = f"lineage {pushed.lineage}, serial {serial}, {len(pushed.resources)} batch(es), replacing {replaced}"
    if problem:
        detail += f"; forced: its own history ({len(history)} event(s)) was not carried, as {problem}"
    carried = [] if problem else history[len(recorded_history) :]
    writer.replace(pushed.model_copy(update={"serial": serial}), carried, Note(STATE_PUSH, detail=detail))
    return replaced


def _recorded(writer: StateWriter, address: str) -> Resource:
    resource = writer.state.resources.get(address)
    if resource is None:
        raise StateCommandError(f"{address} is not recorded in {writer.name}; 'provisioner state list' shows what is.")
    return resource


def release_client(writer: StateWriter, client_id: str) -> bool:
    """Gives up the state's claim on a client, once it records nothing of that client (its batches
    would otherwise be managed from two places)."""
    key = client_id.strip().lower()
    kept = sorted(address for address, resource in writer.state.resources.items() if resource.client_id.lower() == key)
    kept += sorted(address for address, intent in writer.state.pending.items() if intent.client_id.lower() == key)
    if kept:
        raise StateCommandError(
            f"{writer.name} still records {len(kept)} batch(es) or open create(s) of client {client_id} "
            f"({', '.join(kept[:3])}{'...' if len(kept) > 3 else ''}); nothing was changed. The client's batches "
            "belong where they are recorded: 'state rm' them here first (they stay in Thought Industries), "
            "then import them in the workspace that takes the client over."
        )
    return writer.release_client(key)
