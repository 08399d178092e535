"""Read-only views of state for people: state list, state show. (`show` is provisioner/report/.)"""

from __future__ import annotations

import json

from provisioner.core.models import State

NOTHING_RECORDED = "No batches recorded in this state file yet.\n"


def render_resource_list(state: State) -> str:
    rows = [(address, resource.batch_id) for address, resource in sorted(state.resources.items())]
    rows += [(address, "(create interrupted: recovered by the next apply)") for address in sorted(state.pending)]
    if not rows:
        return NOTHING_RECORDED
    width = max(len(address) for address, _ in rows)
    return "".join(f"{address:<{width}}  {batch_id}\n" for address, batch_id in rows)


def render_resource(state: State, address: str) -> str:
    from provisioner.operations.state_edits import StateCommandError

    resource = state.resources.get(address)
    if resource is None:
        raise StateCommandError(f"{address} is not recorded in state; 'provisioner state list' shows what is.")
    return json.dumps({"address": address, **resource.model_dump(mode="json")}, indent=2, sort_keys=True)
