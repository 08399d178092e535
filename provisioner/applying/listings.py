"""The batches of each client as listed during one run, shared by the duplicate guard and recovery.

One listing per client serves both; a decision that must not be made on an old
listing (that a create never happened) asks for a fresh one, confirmed by a
second one when the API does not say how many batches there are.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict

from provisioner.api.client import ApiError, CreditsApi, Listing
from provisioner.core.models import batch_key, proper_id

CONFIRMATIONS = 3


class ClientListings:
    def __init__(self, api: CreditsApi):
        self.api = api
        self._listed: dict[str, Listing] = {}
        self._locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
        self._guard = threading.Lock()

    def _lock(self, client_id: str) -> threading.Lock:
        with self._guard:
            return self._locks[client_id.lower()]

    def has(self, client_id: str) -> bool:
        """Whether this run has listed the client already."""
        return client_id.lower() in self._listed

    def current(self, client_id: str) -> Listing:
        """This run's listing of the client, made now if there is none yet."""
        with self._lock(client_id):
            listing = self._listed.get(client_id.lower())
            if listing is None:
                listing = self._fetch(client_id)
            return listing

    def fresh(self, client_id: str) -> Listing:
        with self._lock(client_id):
            return self._fetch(client_id)

    def confirmed(self, client_id: str) -> Listing:
        """A fresh listing fit to prove that a batch does not exist: counted by pageInfo.total, or
        listed twice with the same batches."""
        with self._lock(client_id):
            listing = self._fetch(client_id)
            for _ in range(CONFIRMATIONS):
                if listing.counted:
                    return listing
                again = self._fetch(client_id)
                if _identities(again) == _identities(listing):
                    return again
                listing = again
            raise ApiError(
                f"the batches of client {client_id} came back different at each of {CONFIRMATIONS + 1} listings, "
                "and the API gives no pageInfo.total to check them against; nothing was decided on them. "
                "Run apply again later."
            )

    def _fetch(self, client_id: str) -> Listing:
        listing = self.api.list_batches(client_id)
        self._listed[client_id.lower()] = listing
        return listing


def _identities(listing: Listing) -> set[str]:
    """Each batch by its id, or by its whole text when it has no proper id."""
    return {
        batch_key(batch_id)
        if (batch_id := proper_id(batch.get("id"))) is not None
        else json.dumps(batch, sort_keys=True, default=repr)
        for batch in listing
    }
