"""Observed: every batch the API lists for the given clients, by batch id."""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from provisioner.api.client import CreditsApi
from provisioner.applying.listings import ClientListings
from provisioner.applying.matching import batches_phrase, describe
from provisioner.core.models import batch_key, proper_id
from provisioner.render.progress import Progress


def observe(
    api: CreditsApi,
    client_ids: Iterable[str],
    parallelism: int = 10,
    reporter: Progress | None = None,
    listings: ClientListings | None = None,
) -> dict[str, dict]:
    """Lists each client (all pages) with ``parallelism`` requests in flight, paced by the API's limiter.

    Each listing is kept in ``listings`` when given, so that an apply's duplicate guard and
    recovery use it rather than listing the client again.

    The first failure ends the refresh at once: the requests still waiting are cancelled (the
    API's stop event is set: the command is ending) rather than each failing in turn. Ctrl-C
    does the same.
    """
    client_ids = list(client_ids)
    reporter = reporter or Progress.silent()
    listings = listings or ClientListings(api)
    observed: dict[str, dict] = {}
    if not client_ids:
        return observed
    # A refused key or an unreachable API fails here, once; and the announced rate is known
    # before the estimate is printed. The listing is kept: the pool below does not ask again.
    listings.current(client_ids[0])
    reporter.start(
        len(client_ids),
        api.limiter.rpm,
        title="Refreshing:",
        what=f"listing the batches of {len(client_ids)} client(s)",
        unit="clients",
    )
    pool = ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(client_ids))))
    try:
        client_of = {pool.submit(listings.current, client_id): client_id for client_id in client_ids}
        pending = set(client_of)
        while pending:
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_EXCEPTION)
            for future in finished:
                client_id = client_of[future]
                without_id = []
                for batch in future.result():
                    batch_id = proper_id(batch.get("id"))
                    if batch_id is None:  # one without a proper id can be nobody's recorded batch
                        without_id.append(batch)
                        continue
                    # A server may list clientId as null: the listing says whose batch it is.
                    observed[batch_key(batch_id)] = batch if batch.get("clientId") else {**batch, "clientId": client_id}
                if without_id:
                    reporter.warn(
                        f"Warning: the API lists {batches_phrase(len(without_id))} of client {client_id} without "
                        f"a proper id, left out: {describe(without_id)}."
                    )
                reporter.done()
    except BaseException:
        reporter.close()
        pool.shutdown(wait=False, cancel_futures=True)
        api.stop.set()  # lists still waiting for a slot or a retry give up now
        raise
    finally:
        pool.shutdown(wait=True)
    reporter.finish(f"Refreshed: {len(observed)} batches found")
    return observed
