"""State edits a user asks for: import, rm, mv, refresh. Callers hold the lock."""

from __future__ import annotations

import re
from collections.abc import Mapping
from itertools import islice

from provisioner.api.client import CreditsApi
from provisioner.applier import could_be_made_by
from provisioner.manifest import KEY_PATTERN, KEY_RULE
from provisioner.models import COMPARED_FIELDS, BatchSpec, Desired, Resource
from provisioner.planner import live_attributes, normalized
from provisioner.state import StateWriter

ADDRESS = re.compile(f"{KEY_PATTERN}/{KEY_PATTERN}")
# On a failed import, how many other declared clients are listed to name the batch's owner:
# enough for the usual mix-up, few enough not to spend minutes of rate limit on an error path.
OWNER_SEARCH_LIMIT = 25


class StateCommandError(Exception):
    """The edit does not make sense; state was not changed."""


def import_batch(writer: StateWriter, api: CreditsApi, desired: Desired, address: str, batch_id: str) -> Resource:
    spec = desired.batches.get(address)
    if spec is None:
        raise StateCommandError(
            f"{address} is not declared in the manifests given: declare the batch first (client key / "
            "batch key), so that provisioner knows what it should look like."
        )
    existing = writer.state.resources.get(address)
    if existing is not None:
        raise StateCommandError(
            f"{address} is already recorded as batch {existing.batch_id}; run 'provisioner state rm "
            f"{address}' first if you mean to manage another batch under that address."
        )
    owner = next((name for name, res in writer.state.resources.items() if res.batch_id == batch_id), None)
    if owner is not None:
        raise StateCommandError(f"batch {batch_id} is already recorded as {owner}; one batch, one address.")
    live = _listed(api, spec.client_id, batch_id)
    if live is None:
        raise StateCommandError(_not_found_message(api, desired, spec, batch_id))
    intent = writer.state.pending.get(address)
    if intent is not None and not could_be_made_by(live, intent, api.server_clock_offset):
        # Recording would close the intent, and a batch that create did make would be lost;
        # importing one of the batches it may have made is how an ambiguous recovery is settled.
        raise StateCommandError(
            f"an interrupted apply was creating {address}, and batch {batch_id} cannot be the one it "
            "made (other attributes, or made before it). Run 'provisioner apply' first: it finds and "
            "records that batch if it was made; when it reports several candidates, import one of those."
        )
    attributes = {
        field: normalized(field, live[field]) for field in COMPARED_FIELDS if live.get(field) not in (None, "")
    }
    attributes["clientId"] = spec.client_id
    resource = Resource(batch_id=batch_id, client_id=spec.client_id, attributes=attributes, remote=dict(live))
    writer.record(address, resource)
    return resource


def _listed(api: CreditsApi, client_id: str, batch_id: str) -> dict | None:
    return next((batch for batch in api.list_batches(client_id) if str(batch.get("id")) == batch_id), None)


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
        raise StateCommandError(
            f"{destination!r} is not an address; expected CLIENT_KEY/BATCH_KEY, each key {KEY_RULE}."
        )
    if source.split("/")[0] != destination.split("/")[0]:
        raise StateCommandError(
            f"{source} belongs to client {source.split('/')[0]}: a batch cannot move to another client "
            f"({destination.split('/')[0]}). Rename the batch key only, e.g. {source.split('/')[0]}/new-key."
        )
    writer.move(source, destination)


def refresh_state(writer: StateWriter, observed: Mapping[str, Mapping]) -> list[str]:
    """Records the live values; returns the addresses the API no longer lists."""
    missing = []
    for address, resource in sorted(writer.state.resources.items()):
        live = observed.get(resource.batch_id)
        if live is None:
            missing.append(address)
            continue
        updated = resource.model_copy(
            update={"attributes": live_attributes(resource.attributes, live), "remote": dict(live)}
        )
        if updated != resource:
            writer.record(address, updated)
    return missing


def _recorded(writer: StateWriter, address: str) -> Resource:
    resource = writer.state.resources.get(address)
    if resource is None:
        raise StateCommandError(
            f"{address} is not recorded in {writer.path}; 'provisioner state list' shows what is."
        )
    return resource
