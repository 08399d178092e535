"""Settles the intents an interrupted apply left open: finds the batch each create made and records
its id, or proves the create never happened. recovery.py holds the rules; this module does the
looking (listing, waiting).

A create cut off by a crash may have been made, or may still be in progress on the server. So its
client's batches are looked at first; only when nothing is found is the rest of the intent's recovery
window waited out, and the client listed again: still nothing proves the create never happened. A
batch that only looks alike stops that address: a person decides.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timezone

from provisioner.api.client import ApiError, CreditsApi, NotFoundError, OutcomeUnknown
from provisioner.backends.base import StateWriter
from provisioner.applying.listings import ClientListings
from provisioner.core.models import Desired, Intent
from provisioner.applying.matching import ambiguity_message, confusable_key, find, intent_since, window_left
from provisioner.applying.tally import Tally

ADOPTED = "found and recorded (made by an interrupted apply)"


class AmbiguousRecovery(ApiError):
    """Batches that could be the one an interrupted create made: a person must decide."""


class IntentSettler:
    def __init__(
        self,
        api: CreditsApi,
        writer: StateWriter,
        listings: ClientListings,
        tally: Tally,
        *,
        stop: threading.Event,
        settle_seconds: float,
        recovery_wait: float,
        record_created: Callable[[Intent, dict, str, str], None],
    ):
        self.api = api
        self.writer = writer
        self.listings = listings
        self.tally = tally
        self.stop = stop
        self.settle_seconds = settle_seconds
        self.recovery_wait = recovery_wait
        self.record_created = record_created  # (intent, batch, kind, outcome): the id recorded, the run told
        # Creates that never happened and are declared differently now: they belong to another group of
        # look-alikes, so they run with the new work, once every group is done.
        self.deferred: list[str] = []
        self._deferred_guard = threading.Lock()
        self._clock_warned = False

    def settle(self, address: str, desired: Desired) -> Intent | None:
        """Settles the open intent at ``address``. Returns it when its create never happened and the
        manifest still asks for the same request: then it is to be sent again now."""
        intent = self.writer.state.pending[address]
        try:
            # Any listing of this run was made after the crash: the first look need not be a new one.
            if self.adopt_if_found(intent, self.listings.current(intent.client_id), ADOPTED):
                return None
        except NotFoundError:
            pass  # a 404 proves nothing before the window has passed: a client may be listed late
        self.wait(self._window_left(intent))
        if self.stop.is_set():
            raise OutcomeUnknown("interrupted before the interrupted create could be settled; run apply again")
        try:
            if self.adopt_if_found(intent, self.listings.confirmed(intent.client_id), ADOPTED):
                return None
        except NotFoundError:
            self._settle_unknown_client(intent, desired)
            return None
        return self._never_made(address, intent, desired)

    def adopt_if_found(self, intent: Intent, listed, outcome: str, kind: str = "adopted") -> bool:
        """Records the batch the intent made if the listing shows it; stops on look-alikes."""
        findings = find(listed, intent, self.writer.claimed_ids(), self.writer.open_intents())
        batch = findings.adoptable
        if batch is not None:
            self.record_created(intent, batch, kind, outcome)
            return True
        if not findings.nothing:
            raise AmbiguousRecovery(ambiguity_message(intent, findings))
        return False

    def wait(self, seconds: float) -> None:
        """An interrupt ends the wait; nothing is sent during it."""
        self.stop.wait(max(self.settle_seconds, seconds))

    def _never_made(self, address: str, intent: Intent, desired: Desired) -> Intent | None:
        spec = desired.batches.get(address)
        if spec is not None and confusable_key(intent.client_id, intent.attributes) == confusable_key(
            intent.client_id, spec.attributes()
        ):
            self.tally.note(address, "the interrupted create never happened; creating it now")
            return intent
        # A create with other attributes belongs to another group of look-alikes: it runs with the new
        # work, where that group is kept in order.
        self.writer.clear_intent(address)
        self._defer_or_close(
            address,
            desired,
            deferred="the interrupted create never happened; it is created with the new work",
            closed="the interrupted create never happened and it is no longer declared",
        )
        return None

    def _defer_or_close(self, address: str, desired: Desired, *, deferred: str, closed: str) -> None:
        """After its intent is closed: a batch still declared is created with the new work; one no
        longer declared is done with."""
        if address in desired.batches:
            with self._deferred_guard:
                self.deferred.append(address)
            self.tally.note(address, deferred)
        else:
            self.tally.done(address, None, closed)

    def _window_left(self, intent: Intent) -> float:
        """What is left of an interrupted create's recovery window (see recovery.window_left).

        When the server's clock cannot be read, or the intent has no server time, its age is
        unknown: the whole window is waited, on this machine's own steady clock, before deciding."""
        server_now = self.api.clock.now()
        if (intent_since(intent) is None or server_now is None) and not self._clock_warned:
            self._clock_warned = True
            reason = ("the interrupted run could not read the API's clock" if intent_since(intent) is None
                      else self.api.clock.describe())
            self.tally.warn(f"Note: {reason}; waiting the whole recovery window before deciding that a "
                            "create never happened.")
        return window_left(intent, self.recovery_wait, server_now, datetime.now(timezone.utc))

    def _settle_unknown_client(self, intent: Intent, desired: Desired) -> None:
        """The API says the intent's client does not exist: then it has no batch, and the intent is
        closed, but only once the API has proven it answers at this address (a wrong TI_BASE_URL
        answers 404 to everything). A batch still declared (its client's id fixed) is then created."""
        if not self._api_address_proven(intent.client_id, desired):
            raise ApiError(
                f"the API answers 404 for client {intent.client_id} and has answered nothing else yet, so "
                f"provisioner cannot tell a deleted client from a wrong TI_BASE_URL. Check TI_BASE_URL; if the "
                f"client is really gone: provisioner state forget-intent {intent.address}"
            ) from None
        self.writer.clear_intent(intent.address)
        self.tally.warn(
            f"Warning: {intent.address}: client {intent.client_id} does not exist in the API (404), so the "
            "interrupted create made nothing; its intent is closed. Check the client's id in the manifest."
        )
        self._defer_or_close(
            intent.address,
            desired,
            deferred="it is created with the new work, for the client the manifest names now",
            closed="closed: the client does not exist, so nothing was made",
        )

    def _api_address_proven(self, unknown_client: str, desired: Desired) -> bool:
        if self.api.answered_ok:  # a 2xx: a 404 from a wrong TI_BASE_URL proves nothing
            return True
        # Any other client that lists proves the address: those recorded, and those declared (after a
        # mistyped id is fixed, the manifest's is often the only one there is).
        known = {resource.client_id for resource in self.writer.state.resources.values()}
        known |= {intent.client_id for intent in self.writer.open_intents()}
        known |= {client.id for client in desired.clients.values()}
        for client_id in sorted(known - {unknown_client}):
            try:
                self.listings.current(client_id)
                return True
            except NotFoundError:
                continue
        return False
