"""State edits a user asks for: import, rm, mv, refresh. Callers hold the lock."""

from __future__ import annotations

from collections.abc import Mapping

from provisioner.api.client import CreditsApi
from provisioner.models import COMPARED_FIELDS, Desired, Resource
from provisioner.planner import live_attributes, normalized
from provisioner.state import StateWriter


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
    live = next((batch for batch in api.list_batches(spec.client_id) if str(batch.get("id")) == batch_id), None)
    if live is None:
        raise StateCommandError(
            f"batch {batch_id} is not among the batches of client {spec.client_key} ({spec.client_id}) at "
            f"{api.base_url}: check the batch id and the client's id in the manifest."
        )
    attributes = {
        field: normalized(field, live[field]) for field in COMPARED_FIELDS if live.get(field) not in (None, "")
    }
    attributes["clientId"] = spec.client_id
    resource = Resource(batch_id=batch_id, client_id=spec.client_id, attributes=attributes, remote=dict(live))
    writer.record(address, resource)
    return resource


def remove_resource(writer: StateWriter, address: str) -> Resource:
    resource = _recorded(writer, address)
    writer.forget(address)
    return resource


def move_resource(writer: StateWriter, source: str, destination: str) -> None:
    _recorded(writer, source)
    if destination in writer.state.resources:
        raise StateCommandError(f"{destination} is already recorded; choose another address or 'state rm' it first.")
    if destination.count("/") != 1 or not all(destination.split("/")):
        raise StateCommandError(f"{destination!r} is not an address; expected CLIENT_KEY/BATCH_KEY.")
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
