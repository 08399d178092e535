"""Executes a Plan through the API, exactly once per batch.

The rules that keep credits from being issued twice or ids from being lost:
- before each create, its intent is made durable (a fsynced journal line or a
  committed transaction); its id closes it the moment the answer arrives;
- before a client's first create of the run, its batches are listed: a batch
  already there, claimed by no address, with the same name and balance, stops
  that create (the duplicate guard): import it, or allow the duplicate on purpose;
- a create whose answer was lost (timeout, 5xx, dropped connection) is never sent
  blindly again: the client's batches are listed at once, and the batch made as
  asked is adopted (recovery.py holds the rules). Only when nothing is found does
  the applier wait out the recovery window, then list again: still nothing proves
  the create never happened. A batch that only looks alike stops that address;
- open intents left by a crash are resolved the same way before new work;
- creates that a listing could confuse (same client, name and balance) never run
  at the same time, so a listing can always tell them apart.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timezone

from provisioner.api.client import (
    READ_TIMEOUT,
    ApiError,
    AuthError,
    CreditsApi,
    NotFoundError,
    OutcomeUnknown,
    RequestCancelled,
)
from provisioner.backends.base import StateError, StateWriter
from provisioner.listings import ClientListings
from provisioner.models import UPDATABLE_FIELDS, Change, Desired, Intent, Plan, Resource
from provisioner.planner import same_value
from provisioner.progress import Progress, describe_work
from provisioner.recovery import (
    Findings,
    batches_phrase,
    describe,
    differences,
    duplicate_reasons,
    duplicates_of,
    find,
    intent_since,
    window_left,
)
from provisioner.timestamps import format_timestamp, utc_now_text

# How long a create may still be in progress on the server after its sender stopped
# waiting for it: the client's read timeout, and as much again as a margin.
RECOVERY_WAIT = 2 * READ_TIMEOUT
RECOVERY_ROUNDS = 3
CONFIRMED = "created (its answer was lost; found by listing)"


class AmbiguousRecovery(ApiError):
    """Batches that could be the one an interrupted create made: a person must decide."""


class DuplicateFound(ApiError):
    """The client already has an unclaimed batch just like the one a create would make."""


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: int = 0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


def request_digest(client_id: str, attributes: dict) -> str:
    canonical = json.dumps({"clientId": client_id, "body": attributes}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Applier:
    def __init__(
        self,
        api: CreditsApi,
        writer: StateWriter,
        *,
        parallelism: int = 10,
        progress: Callable[[str], None] = lambda line: None,
        reporter: Progress | None = None,
        stop: threading.Event | None = None,
        settle_seconds: float = 1.0,
        recovery_wait: float = RECOVERY_WAIT,
        duplicate_check: bool = True,
        allow_duplicates: Iterable[str] = (),
        listings: ClientListings | None = None,
    ):
        self.api = api
        self.writer = writer
        self.parallelism = max(1, parallelism)
        # Progress hooks: start, done, failed, notable, warn, finish (see provisioner/progress.py).
        # Without a reporter, every line goes to ``progress``.
        self.reporter = reporter or Progress(write=progress)
        # Setting it (Ctrl-C) cancels every request that has not left; the client raises RequestCancelled.
        self.stop = stop or api.stop
        self.settle_seconds = settle_seconds
        self.recovery_wait = recovery_wait
        self.duplicate_check = duplicate_check
        self.allow_duplicates = set(allow_duplicates)
        self.listings = listings or ClientListings(api)
        self.result = ApplyResult()
        self._result_guard = threading.Lock()
        self._deferred_creates: list[str] = []
        self._clock_warned = False

    # --- entry point ------------------------------------------------------

    def apply(self, plan: Plan, desired: Desired) -> ApplyResult:
        work = [change for change in plan.changes if change.action in ("create", "replace", "update", "recover")]
        self.reporter.start(len(work), self.api.limiter.rpm, what=describe_work(Counter(c.action for c in work)))
        try:
            return self._apply(work, desired)
        finally:
            self.reporter.finish()

    def _apply(self, work: list[Change], desired: Desired) -> ApplyResult:
        # Groups no listing could confuse run side by side: a recovery that must wait to prove a
        # negative holds up only its own look-alikes, never the rest of the run.
        self._run_groups(self._groups(work, desired), desired)
        # A recovery that never happened and whose manifest changed since belongs to another group:
        # its create runs once every group is done, unless a look-alike of it is still unresolved.
        deferred = [
            Change(address=address, client_key=address.split("/", 1)[0], action="create")
            for address in self._deferred_creates
        ]
        self._run_groups(self._group_by_request(self._not_blocked(deferred, desired), desired), desired)
        return self.result

    def _groups(self, work: list[Change], desired: Desired) -> list[list[Change]]:
        """One group per request a listing could confuse; in each, interrupted creates come first
        (oldest first): new work must not claim what they made."""
        pending = self.writer.state.pending
        groups: dict[tuple, list[Change]] = defaultdict(list)
        for change in work:
            if change.action == "recover":
                intent = pending[change.address]
                groups[confusable_key(intent.client_id, intent.attributes)].append(change)
            else:
                groups[self._request_key(change, desired)].append(change)
        return [
            sorted(group, key=lambda c: (c.action != "recover", pending[c.address].at if c.action == "recover" else ""))
            for group in groups.values()
        ]

    def _group_by_request(self, changes: list[Change], desired: Desired) -> list[list[Change]]:
        groups: dict[tuple, list[Change]] = defaultdict(list)
        for change in changes:
            groups[self._request_key(change, desired)].append(change)
        return list(groups.values())

    @staticmethod
    def _request_key(change: Change, desired: Desired) -> tuple:
        if change.action == "update":
            return ("update", change.address)
        spec = desired.batches[change.address]
        return confusable_key(spec.client_id, spec.attributes())

    def _not_blocked(self, creates: list[Change], desired: Desired) -> list[Change]:
        unresolved = {confusable_key(intent.client_id, intent.attributes) for intent in self.writer.open_intents()}
        ready = []
        for change in creates:
            if self._request_key(change, desired) in unresolved:
                with self._result_guard:
                    self.result.skipped += 1
                self.reporter.notable(f"{change.address}: not started: a look-alike of it is unresolved")
            else:
                ready.append(change)
        return ready

    def _run_groups(self, groups: list[list[Change]], desired: Desired) -> None:
        if not groups:
            return
        with ThreadPoolExecutor(max_workers=min(self.parallelism, len(groups))) as pool:
            pending: set[Future] = {pool.submit(self._run_group, group, desired) for group in groups}
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                for future in finished:
                    future.result()  # internal bugs surface here; API errors are caught per change

    def _run_group(self, group: list[Change], desired: Desired) -> None:
        for change in group:
            if self.stop.is_set():
                with self._result_guard:
                    self.result.interrupted = True
                    self.result.skipped += 1
                continue
            try:
                self._run_change(change, desired)
            except RequestCancelled:
                self._cancelled(change)  # Ctrl-C: the stop check above skips the rest of the group
            except (ApiError, StateError) as exc:
                self._fail(change.address, str(exc))
                if isinstance(exc, AuthError | StateError):
                    self.stop.set()  # every other request would fail the same way, or could not be recorded
                if change.address in self.writer.state.pending:
                    # Its create may yet turn up: a look-alike sent now could be mistaken for it.
                    self._skip_rest(group, change)
                    return

    def _cancelled(self, change: Change) -> None:
        """The stop event cancelled this change's next request before it left."""
        unresolved = change.address in self.writer.state.pending
        if unresolved:
            # A create that was sent may have happened: its intent stays for the next apply.
            self._fail(
                change.address,
                "interrupted while checking whether the create happened; the next plan shows it "
                "as a recovery and apply resolves it",
            )
        with self._result_guard:
            self.result.interrupted = True
            if not unresolved:
                self.result.skipped += 1  # nothing was sent: not started

    def _skip_rest(self, group: list[Change], failed: Change) -> None:
        rest = group[group.index(failed) + 1 :]
        with self._result_guard:
            self.result.skipped += len(rest)
        for change in rest:
            self.reporter.notable(f"{change.address}: not started: {failed.address}, which looks alike, is unresolved")

    def _run_change(self, change: Change, desired: Desired) -> None:
        if change.action == "update":
            self._update(change, desired)
        elif change.action == "recover":
            self._recover(change, desired)
        else:
            self._create(change.address, desired)

    # --- creates ------------------------------------------------------------

    def _create(self, address: str, desired: Desired, previous: Intent | None = None) -> None:
        spec = desired.batches[address]
        attributes = spec.attributes()
        if previous is None:
            self._guard_against_duplicates(address, spec.client_id, attributes)
        intent, batch = self._send_create(address, spec.client_id, attributes, previous)
        if batch is None:
            self._resolve_after_ambiguity(intent, desired, time.monotonic())
        else:
            self._record_created(intent, batch, "created", "created")

    def _guard_against_duplicates(self, address: str, client_id: str, attributes: dict) -> None:
        """Never create what already exists, unrecorded: a lost state entry, a batch made by hand."""
        if not self.duplicate_check or address in self.allow_duplicates:
            return
        listed = self.listings.current(client_id)
        found = duplicates_of(attributes, listed, self.writer.claimed_ids(), self.writer.open_intents())
        if found:
            problem, fix = duplicate_reasons(address, address.split("/", 1)[0], found)
            raise DuplicateFound(f"not created: {problem} {fix}")

    def _send_create(
        self, address: str, client_id: str, attributes: dict, previous: Intent | None = None
    ) -> tuple[Intent, dict | None]:
        """Sends one create, its intent written the instant before the request leaves.

        Returns the intent and the batch made, or None for the batch when the outcome is unknown.
        ``previous`` is the intent of an earlier attempt whose outcome was never settled for
        certain: a definite refusal of this attempt puts it back rather than forgetting it.
        """
        written: list[Intent] = []

        def write_intent() -> None:
            # Tied to its instance with the first thing it records, not before: an apply that
            # records nothing leaves the state (and its serial) as it was.
            self.writer.bind_instance(self.api.instance)
            server_now = self.api.clock.now()
            intent = Intent(
                address=address,
                client_id=client_id,
                attributes=attributes,
                digest=request_digest(client_id, attributes),
                at=utc_now_text(),
                server_at=format_timestamp(server_now) if server_now is not None else None,
            )
            self.writer.record_intent(intent)
            written.append(intent)

        def settle_refused() -> None:
            """A definite refusal: this attempt made nothing. An earlier attempt still in doubt stands."""
            if previous is not None:
                self.writer.record_intent(previous)
            else:
                self.writer.clear_intent(address)

        try:
            batch = self.api.create_batch(client_id, attributes, before_send=write_intent, after_refusal=settle_refused)
        except OutcomeUnknown as exc:
            self._report(address, f"outcome unknown ({exc}); looking it up")
            return written[-1], None
        except ApiError:
            if written:
                settle_refused()
            raise
        return written[-1], batch

    def _resolve_after_ambiguity(self, intent: Intent, desired: Desired, failed_at: float) -> None:
        """Look at once; wait out the recovery window only when nothing is found, then look again.
        A batch found was made by this run's create: it counts as created (its credits issued now)."""
        for _ in range(RECOVERY_ROUNDS):
            if self._adopt_if_found(intent, self.listings.fresh(intent.client_id), CONFIRMED, kind="created"):
                return
            self._wait(self.recovery_wait - (time.monotonic() - failed_at))
            if self.stop.is_set():
                raise OutcomeUnknown(
                    "interrupted while checking whether the create happened; the next plan shows it "
                    "as a recovery and apply resolves it"
                )
            if self._adopt_if_found(intent, self.listings.confirmed(intent.client_id), CONFIRMED, kind="created"):
                return
            self._report(intent.address, "the create did not happen; sending it again")
            intent, batch = self._send_create(intent.address, intent.client_id, intent.attributes, previous=intent)
            if batch is not None:
                self._record_created(intent, batch, "created", "created")
                return
            failed_at = time.monotonic()
        raise OutcomeUnknown(
            f"the create's outcome is still unknown after {RECOVERY_ROUNDS} attempts; the intent stays "
            "recorded, and the next apply looks it up before doing anything else"
        )

    # --- recovery of intents left by an interrupted run ---------------------------

    def _recover(self, change: Change, desired: Desired) -> None:
        intent = self.writer.state.pending[change.address]
        outcome = "found and recorded (made by an interrupted apply)"
        try:
            # Any listing of this run was made after the crash: the first look need not be a new one.
            if self._adopt_if_found(intent, self.listings.current(intent.client_id), outcome):
                return
        except NotFoundError:
            pass  # a 404 proves nothing before the window has passed: a client may be listed late
        self._wait(self._window_left(intent))
        if self.stop.is_set():
            raise OutcomeUnknown("interrupted before the interrupted create could be settled; run apply again")
        try:
            if self._adopt_if_found(intent, self.listings.confirmed(intent.client_id), outcome):
                return
        except NotFoundError:
            self._settle_unknown_client(intent, desired)
            return
        self._never_made(change, intent, desired)

    def _never_made(self, change: Change, intent: Intent, desired: Desired) -> None:
        if change.address in desired.batches and confusable_key(
            intent.client_id, intent.attributes
        ) == confusable_key(intent.client_id, desired.batches[change.address].attributes()):
            self._report(change.address, "the interrupted create never happened; creating it now")
            self._create(change.address, desired, previous=intent)
            return
        # Never made. A create with other attributes belongs to another group of look-alikes:
        # it runs with the new work, where that group is kept in order.
        self.writer.clear_intent(change.address)
        if change.address in desired.batches:
            with self._result_guard:
                self._deferred_creates.append(change.address)
            self._report(change.address, "the interrupted create never happened; it is created with the new work")
        else:
            self._done_one(change.address, None, "the interrupted create never happened and it is no longer declared")

    def _window_left(self, intent: Intent) -> float:
        """What is left of an interrupted create's recovery window (see recovery.window_left).

        When the server's clock cannot be read, or the intent has no server time, its age is
        unknown: the whole window is waited, on this machine's own steady clock, before deciding."""
        server_now = self.api.clock.now()
        if (intent_since(intent) is None or server_now is None) and not self._clock_warned:
            self._clock_warned = True
            reason = ("the interrupted run could not read the API's clock" if intent_since(intent) is None
                      else self.api.clock.describe())
            self.reporter.warn(f"Note: {reason}; waiting the whole recovery window before deciding that a "
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
        self.reporter.warn(
            f"Warning: {intent.address}: client {intent.client_id} does not exist in the API (404), so the "
            "interrupted create made nothing; its intent is closed. Check the client's id in the manifest."
        )
        if intent.address in desired.batches:
            with self._result_guard:
                self._deferred_creates.append(intent.address)
            self._report(intent.address, "it is created with the new work, for the client the manifest names now")
        else:
            self._done_one(intent.address, None, "closed: the client does not exist, so nothing was made")

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

    # --- the findings ------------------------------------------------------------

    def _adopt_if_found(self, intent: Intent, listed, outcome: str, kind: str = "adopted") -> bool:
        """Records the batch the intent made if the listing shows it; stops on look-alikes."""
        findings = find(listed, intent, self.writer.claimed_ids(), self.writer.open_intents())
        batch = findings.adoptable
        if batch is not None:
            self._record_created(intent, batch, kind, outcome)
            return True
        if not findings.nothing:
            raise AmbiguousRecovery(ambiguity_message(intent, findings))
        return False

    def _wait(self, seconds: float) -> None:
        """An interrupt ends the wait; nothing is sent during it."""
        self.stop.wait(max(self.settle_seconds, seconds))

    # --- updates -------------------------------------------------------------------

    def _update(self, change: Change, desired: Desired) -> None:
        resource = self.writer.state.resources[change.address]
        body = {
            name: change.after[name]
            for name in UPDATABLE_FIELDS
            if name in change.after and not same_value(name, (change.before or {}).get(name), change.after[name])
        }
        batch = self.api.update_batch(resource.batch_id, body)
        attributes = {**resource.attributes, **body}
        self.writer.record(
            change.address,
            Resource(batch_id=resource.batch_id, client_id=resource.client_id, attributes=attributes, remote=batch),
        )
        self._done_one(change.address, "updated", f"updated ({', '.join(sorted(body))})")

    # --- bookkeeping ----------------------------------------------------------

    def _record_created(self, intent: Intent, batch: dict, kind: str, outcome: str) -> None:
        batch_id = batch.get("id")
        if batch_id in (None, ""):
            raise ApiError(f"{intent.address}: the API answered without a batch id; the intent stays open.")
        self.writer.record(
            intent.address,
            Resource(batch_id=str(batch_id), client_id=intent.client_id, attributes=intent.attributes, remote=batch),
        )
        for difference in differences(batch, intent.attributes):
            self.reporter.warn(f"Warning: {intent.address}: the API stored it differently: {difference}.")
        self._done_one(intent.address, kind, f"{outcome} [id={batch_id}]")

    def _fail(self, address: str, message: str) -> None:
        with self._result_guard:
            self.result.failed.append((address, message))
        self.reporter.failed(f"{address}: error: {message}")

    def _done_one(self, address: str, kind: str | None, outcome: str) -> None:
        with self._result_guard:
            if kind is not None:
                getattr(self.result, kind).append(address)
        self.reporter.done(f"{address}: {outcome}")

    def _report(self, address: str, message: str) -> None:
        self.reporter.notable(f"{address}: {message}")


def confusable_key(client_id: str, attributes: dict) -> tuple:
    """Creates that a listing could mistake for one another share this key (client and balance:
    a server may store names differently): they run one after the other, never at the same time."""
    return (client_id.lower(), str(attributes.get("startingBalance")))


def ambiguity_message(intent: Intent, findings: Findings) -> str:
    exact_note = (
        f"{len(findings.exact)} made exactly as asked" if findings.exact else "none made exactly as asked (the "
        "API may have changed the name's case or spacing, or listed fields as null)"
    )
    return (
        f"{batches_phrase(len(findings.candidates))} of client {intent.client_id}, claimed by no address, could be the one the "
        f"interrupted create of {intent.address} made ({exact_note}): {describe(findings.candidates)}. "
        "provisioner will not guess, and will not create it again. Check them in Thought Industries, then "
        f"record the right one: provisioner import {intent.address} BATCH_ID PATHS...; if none of them is it, "
        f"give the create up: provisioner state forget-intent {intent.address} (the next apply creates it)."
    )
