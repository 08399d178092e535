"""The live batches of the clients a command concerns (declared or recorded), listed from the API."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.core.models import Desired, State
    from provisioner.render.progress import Progress


def refreshed(desired: Desired, state: State, api, parallelism: int, reporter: Progress | None = None,
              listings=None) -> dict:
    """``listings``: a ClientListings that keeps each client's listing for the rest of the run."""
    from provisioner.render.progress import Progress
    from provisioner.applying.refresh import observe

    client_ids = {batch.client_id for batch in desired.batches.values()}
    client_ids |= {resource.client_id for resource in state.resources.values()}
    return observe(api, sorted(client_ids), parallelism=parallelism, reporter=reporter or Progress.for_stream(),
                   listings=listings)
