"""The live batches of the clients a command concerns (declared or recorded), listed from the API."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.backends import Backend
    from provisioner.core.models import Desired, State
    from provisioner.render.progress import Progress


def refreshed(
    desired: Desired, state: State, api, parallelism: int, reporter: Progress | None = None, listings=None
) -> dict:
    """``listings``: a ClientListings that keeps each client's listing for the rest of the run."""
    from provisioner.applying.refresh import observe
    from provisioner.render.progress import Progress

    client_ids = {batch.client_id for batch in desired.batches.values()}
    client_ids |= {resource.client_id for resource in state.resources.values()}
    api.name_clients({client.id: key for key, client in desired.clients.items()})
    return observe(
        api, sorted(client_ids), parallelism=parallelism, reporter=reporter or Progress.for_stream(), listings=listings
    )


def read_live(
    desired: Desired,
    state: State,
    backend: Backend,
    *,
    sandbox: bool,
    base_url: str | None,
    rate_limit: float | None,
    parallelism: int,
    reporter: Progress | None = None,
    give_up_after: float | None = None,
) -> tuple[dict, datetime]:
    """For a command that only reads (plan --refresh, show --refresh): connects, checks that the API is
    the state's instance, and lists the live batches; with them, the moment it was by the API's clock
    (this machine's when the API gave none): whether a grant's period has begun is judged by the API's
    clock, not by a clock that may be ahead."""
    from provisioner.operations.connection import api_context, check_instance

    with api_context(sandbox, base_url, backend, rate_limit, parallelism, reporter, give_up_after) as api:
        check_instance(state, api, backend)
        observed = refreshed(desired, state, api, parallelism, reporter)
        return observed, api.clock.now() or datetime.now(timezone.utc)
