"""Observed: every batch the API lists for the given clients, by batch id."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from provisioner.api.client import CreditsApi
from provisioner.models import batch_key


def observe(
    api: CreditsApi,
    client_ids: Iterable[str],
    parallelism: int = 10,
    progress: Callable[[str], None] = lambda line: None,
) -> dict[str, dict]:
    """Lists each client (all pages) with ``parallelism`` requests in flight, paced by the API's limiter."""
    client_ids = list(client_ids)
    observed: dict[str, dict] = {}
    if not client_ids:
        return observed
    progress(f"Refreshing: listing the batches of {len(client_ids)} client(s)...")
    with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(client_ids)))) as pool:
        for done, (client_id, batches) in enumerate(zip(client_ids, pool.map(api.list_batches, client_ids)), start=1):
            for batch in batches:
                if batch.get("id") not in (None, ""):
                    # A server may list clientId as null: the listing says whose batch it is.
                    observed[batch_key(batch["id"])] = batch if batch.get("clientId") else {**batch, "clientId": client_id}
            if done % 50 == 0 and done < len(client_ids):
                progress(f"Refreshing: {done}/{len(client_ids)} clients listed...")
    progress(f"Refreshed: {len(observed)} batches found.")
    return observed
