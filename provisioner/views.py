"""Read-only views of state for people: state list, state show, show."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timezone

from provisioner.models import Resource
from provisioner.models import State, batch_key
from provisioner.timestamps import parse_timestamp


NOTHING_RECORDED = "No batches recorded in this state file yet.\n"


def render_resource_list(state: State) -> str:
    rows = [(address, resource.batch_id) for address, resource in sorted(state.resources.items())]
    rows += [(address, "(create interrupted: recovered by the next apply)") for address in sorted(state.pending)]
    if not rows:
        return NOTHING_RECORDED
    width = max(len(address) for address, _ in rows)
    return "".join(f"{address:<{width}}  {batch_id}\n" for address, batch_id in rows)


def render_resource(state: State, address: str) -> str:
    from provisioner.statecmd import StateCommandError

    resource = state.resources.get(address)
    if resource is None:
        raise StateCommandError(f"{address} is not recorded in state; 'provisioner state list' shows what is.")
    return json.dumps({"address": address, **resource.model_dump(mode="json")}, indent=2, sort_keys=True)


def render_show(state: State, observed: Mapping[str, Mapping] | None = None, now: datetime | None = None) -> str:
    """A table per client: how much of each batch is used, and until when.

    Without ``observed`` the figures are the batch as the API last returned it to us.
    """
    now = now or datetime.now(timezone.utc)
    if not state.resources:
        return NOTHING_RECORDED
    by_client: dict[str, list[list[str]]] = defaultdict(list)
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0])
    for address, resource in sorted(state.resources.items()):
        client, batch = address.split("/", 1)
        if observed is None:
            view = _recorded_view(resource, now)
        else:
            view = observed.get(batch_key(resource.batch_id)) or {"status": "MISSING from the API"}
        starting = _number(view.get("startingBalance", resource.attributes.get("startingBalance")))
        current = _number(view.get("currentBalance"))
        used = starting - current if starting is not None and current is not None else None
        totals[client][0] += starting or 0
        totals[client][1] += used or 0
        by_client[client].append([
            batch,
            _credits(starting),
            _credits(current),
            _credits(used) + (f" ({used / starting:.0%})" if used is not None and starting else ""),
            str(view.get("expiresOn") or resource.attributes.get("expiresOn") or "never"),
            str(view.get("status") or "?"),
        ])
    header = ["batch", "starting", "current", "used", "expires", "status"]
    blocks = []
    for client, rows in by_client.items():
        starting, used = totals[client]
        blocks.append(f"{client}: {_credits(starting)} credits issued, {_credits(used)} used\n" + _table(header, rows))
    source = "live from the API" if observed is not None else "as last recorded (add --refresh for live figures)"
    return f"Credit batches, {source}:\n\n" + "\n".join(blocks)


def _recorded_view(resource: Resource, now: datetime) -> dict:
    """The batch as last returned by the API; an expiry that has passed since shows as expired."""
    view = dict(resource.remote)
    expires = view.get("expiresOn") or resource.attributes.get("expiresOn")
    try:
        if expires and parse_timestamp(str(expires)) <= now:
            view["status"] = "expired"
    except ValueError:
        pass
    return view


def _number(value) -> float | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _credits(value: float | None) -> str:
    if value is None:
        return "?"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    numeric = {1, 2, 3}
    def line(cells: list[str]) -> str:
        return "  " + "  ".join(
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(cells)
        ).rstrip() + "\n"
    return line(header) + line(["-" * w for w in widths]) + "".join(line(row) for row in rows)
