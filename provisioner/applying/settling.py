"""Settles the intents an interrupted apply left open: finds the batch each create made and records
its id, or proves the create never happened. matching.py holds the rules; this module does the
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
from provisioner.applying.listings import ClientListings
from provisioner.applying.matching import ambiguity_message, confusable_key, find, intent_since, window_left
from provisioner.applying.tally import Tally
from provisioner.backends.base import StateWriter
from provisioner.core.models import Desired, Intent

ADOPTED = "found and recorded (made by an interrupted apply)"


class AmbiguousRecovery(ApiError):
    """Batches that could be the one an interrupted create made: a person must decide."""


class ClientNotFound(ApiError):
    """The API answers 404 for the client of an open intent: that client's work stops, the intent stays."""


def not_found_message(intent: Intent) -> str:
    return (
        f"the API answers 404 for client {intent.client_id}, whose interrupted create of {intent.address} is "
        "unresolved. A 404 alone proves nothing (a gateway, a replica or a brief outage may not know the client "
        "for a while, and the create may have made its batch), so the intent stays open and nothing more is done "
        "for this client in this run. Run apply again once the client answers; if it was really deleted in "
        f"Thought Industries, or its id was mistyped, give the create up: provisioner state forget-intent "
        f"{intent.address}"
    )


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
            raise ClientNotFound(not_found_message(intent)) from None
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
            reason = (
                "the interrupted run could not read the API's clock"
                if intent_since(intent) is None
                else self.api.clock.describe()
            )
            self.tally.warn(
                f"Note: {reason}; waiting the whole recovery window before deciding that a create never happened."
            )
        return window_left(intent, self.recovery_wait, server_now, datetime.now(timezone.utc))
