"""Executes a Plan through the API, exactly once per batch.

The rules that keep credits from being issued twice or ids from being lost:
- before each create, its intent is made durable (a fsynced journal line or a
  committed transaction); its id closes it the moment the answer arrives;
- a create leaves only while its sender is sure no other run settles its intent:
  the lock is confirmed after the intent is durable, the intent must be younger
  than the part of the recovery window reserved for sending, and both are checked
  again at the socket (api/send_gate.py);
- on PostgreSQL, a client's first create of the run claims the client for this
  workspace; a client another workspace claimed is refused;
- before a client's first create of the run, its batches are listed: a batch
  already there, claimed by no address, with the same name and balance, stops
  that create (the duplicate guard): import it, or allow the duplicate on purpose;
- a create whose answer was lost (timeout, 5xx, dropped connection) is never sent
  blindly again: the client's batches are listed at once, and the batch made as
  asked is adopted (matching.py holds the rules). Only when nothing is found does
  the applier wait out the recovery window, then list again: still nothing proves
  the create never happened. A batch that only looks alike stops that address;
- open intents left by a crash are settled the same way before new work (settling.py);
- creates that a listing could confuse (same client, name and balance) never run
  at the same time, so a listing can always tell them apart.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from provisioner.api.client import (
    READ_TIMEOUT,
    ApiError,
    ApiUnavailable,
    AuthError,
    CreditsApi,
    NotFoundError,
    OutcomeUnknown,
    RequestCancelled,
)
from provisioner.api.send_gate import SendWithheld
from provisioner.applying.listings import ClientListings
from provisioner.applying.matching import (
    SETTLE_AT_LEAST,
    confusable_key,
    differences,
    duplicate_reasons,
    duplicates_of,
    lock_still_confirmed,
    may_still_send,
    send_reserve,
)
from provisioner.applying.settling import ClientNotFound, IntentSettler, not_found_message
from provisioner.applying.tally import ApplyResult, Tally
from provisioner.backends.base import ClientClaimed, StateError, StateWriter
from provisioner.core.addresses import client_of
from provisioner.core.audit_trail import ADOPT, CREATE, RECOVER, UPDATE
from provisioner.core.comparison import same_value
from provisioner.core.models import UPDATABLE_FIELDS, Change, Desired, Intent, Plan, Resource, proper_id, shown_id
from provisioner.core.timestamps import format_timestamp, utc_now_text
from provisioner.render.progress import Progress, describe_work

# How long a create may still be in progress on the server after its sender stopped
# waiting for it: the client's read timeout, and as much again as a margin.
RECOVERY_WAIT = 2 * READ_TIMEOUT
RECOVERY_ROUNDS = 3
# How many times an intent is written again when its sender stalled past the part of the recovery
# window in which a create may still leave.
SEND_TRIES = 3
CONFIRMED = "created (its answer was lost; found by listing)"
UNKNOWN_WHEN_API_AWAY = (
    "outcome unknown: the API stopped answering before the create could be looked up; its intent stays "
    "recorded, and the next apply looks it up before anything else"
)


class DuplicateFound(ApiError):
    """The client already has an unclaimed batch just like the one a create would make."""


class CreateNotSent(ApiError):
    """A create was not sent: its sender could not be sure that no other run would settle its intent."""


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
        settle_seconds: float = SETTLE_AT_LEAST,
        recovery_wait: float = RECOVERY_WAIT,
        duplicate_check: bool = True,
        allow_duplicates: Iterable[str] = (),
        listings: ClientListings | None = None,
    ):
        self.api = api
        self.writer = writer
        self.parallelism = max(1, parallelism)
        # Without a reporter, every line goes to ``progress``.
        self.tally = Tally(reporter or Progress(write=progress))
        # Setting it (Ctrl-C) cancels every request that has not left; the client raises RequestCancelled.
        self.stop = stop or api.stop
        self.recovery_wait = recovery_wait
        self.duplicate_check = duplicate_check
        self.allow_duplicates = set(allow_duplicates)
        self.listings = listings or ClientListings(api)
        self._claimed_clients: set[str] = set()  # claimed for this state in this run (claim_client)
        self._claim_guard = threading.Lock()
        # Clients the API answered 404 for while an intent of theirs was unresolved: the rest of their
        # work waits for the next apply (other clients go on).
        self.stopped_clients: set[str] = set()
        self._stopped_guard = threading.Lock()
        self.settler = IntentSettler(
            api,
            writer,
            self.listings,
            self.tally,
            stop=self.stop,
            settle_seconds=settle_seconds,
            recovery_wait=recovery_wait,
            record_created=self._record_created,
        )

    # --- entry point ------------------------------------------------------

    def apply(self, plan: Plan, desired: Desired) -> ApplyResult:
        work = [change for change in plan.changes if change.action in ("create", "replace", "update", "recover")]
        reporter = self.tally.reporter
        what = describe_work(Counter(c.action for c in work))
        guarded = self._clients_to_list(work, desired)
        if guarded:
            what += f" and {len(guarded)} listing{'s' if len(guarded) != 1 else ''} for the duplicate guard"
        reporter.start(len(work), self.api.limiter.rpm, what=what, requests=len(work) + len(guarded))
        try:
            result = self._apply(work, desired)
        finally:
            reporter.finish()
        if self.api.outage.gave_up:
            result.outage = self.api.outage.describe()
        addresses = {change.address for change in work}
        result.unresolved = sorted(address for address in self.writer.state.pending if address in addresses)
        return result

    def _clients_to_list(self, work: list[Change], desired: Desired) -> set[str]:
        """The clients the duplicate guard lists before their first create: those not listed yet."""
        if not self.duplicate_check:
            return set()
        return {
            desired.batches[change.address].client_id.lower()
            for change in work
            if change.action in ("create", "replace")
            and change.address in desired.batches
            and change.address not in self.allow_duplicates
            and not self.listings.has(desired.batches[change.address].client_id)
        }

    def _apply(self, work: list[Change], desired: Desired) -> ApplyResult:
        # Groups no listing could confuse run side by side: a recovery that must wait to prove a
        # negative holds up only its own look-alikes, never the rest of the run.
        self._run_groups(look_alike_groups(work, desired, self.writer.state.pending), desired)
        # A recovery that never happened and whose manifest changed since belongs to another group:
        # its create runs once every group is done, unless a look-alike of it is still unresolved.
        deferred = [
            Change(address=address, client_key=client_of(address), action="create") for address in self.settler.deferred
        ]
        self._run_groups(request_groups(self._not_blocked(deferred, desired), desired), desired)
        return self.tally.result

    def _not_blocked(self, creates: list[Change], desired: Desired) -> list[Change]:
        unresolved = {confusable_key(intent.client_id, intent.attributes) for intent in self.writer.open_intents()}
        ready = []
        for change in creates:
            if request_key(change, desired) in unresolved:
                self.tally.not_started(change.address, "a look-alike of it is unresolved")
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
                self.tally.interrupted(skipped=True)
                continue
            client_id = self._client_id(change, desired)
            with self._stopped_guard:
                stopped = client_id is not None and client_id.lower() in self.stopped_clients
            if stopped:
                self.tally.not_started(
                    change.address, f"client {client_id} answered 404 while an interrupted create of it is unresolved"
                )
                continue
            try:
                self._run_change(change, desired)
            except RequestCancelled as exc:
                # Ctrl-C, or the API away too long: the stop check above skips the rest of the group.
                self._cancelled(change, gave_up=isinstance(exc, ApiUnavailable))
            except (ApiError, StateError) as exc:
                if isinstance(exc, ClientNotFound) and client_id is not None:
                    with self._stopped_guard:
                        self.stopped_clients.add(client_id.lower())
                outage = self.api.outage.gave_up and str(exc) == UNKNOWN_WHEN_API_AWAY
                self.tally.failed(change.address, str(exc), in_summary_only=outage)
                if isinstance(exc, AuthError | StateError) and not isinstance(exc, ClientClaimed):
                    self.stop.set()  # every other request would fail the same way, or could not be recorded
                if change.address in self.writer.state.pending:
                    # Its create may yet turn up: a look-alike sent now could be mistaken for it.
                    for rest in group[group.index(change) + 1 :]:
                        self.tally.not_started(rest.address, f"{change.address}, which looks alike, is unresolved")
                    return

    def _client_id(self, change: Change, desired: Desired) -> str | None:
        intent = self.writer.state.pending.get(change.address)
        if intent is not None:
            return intent.client_id
        spec = desired.batches.get(change.address)
        return spec.client_id if spec is not None else None

    def _cancelled(self, change: Change, gave_up: bool = False) -> None:
        """The stop event cancelled this change's next request before it left."""
        unresolved = change.address in self.writer.state.pending
        if unresolved:
            # A create that was sent may have happened: its intent stays for the next apply.
            if gave_up:  # the outage's summary names every one of them
                self.tally.failed(change.address, UNKNOWN_WHEN_API_AWAY, in_summary_only=True)
            else:
                self.tally.failed(
                    change.address,
                    "interrupted while checking whether the create happened; "
                    "the next plan shows it as a recovery and apply resolves it",
                )
        self.tally.interrupted(skipped=not unresolved)  # nothing sent: not started

    def _run_change(self, change: Change, desired: Desired) -> None:
        if change.action == "update":
            self._update(change)
        elif change.action == "recover":
            unmade = self.settler.settle(change.address, desired)
            if unmade is not None:
                self._create(change.address, desired, previous=unmade)
        else:
            self._create(change.address, desired)

    # --- creates ------------------------------------------------------------

    def _create(self, address: str, desired: Desired, previous: Intent | None = None) -> None:
        spec = desired.batches[address]
        attributes = spec.attributes()
        self._claim(spec.client_id)
        if previous is None:
            self._guard_against_duplicates(address, spec.client_id, attributes)
        intent, batch = self._send_create(address, spec.client_id, attributes, previous)
        if batch is None:
            self._resolve_after_ambiguity(intent, time.monotonic())
        else:
            self._record_created(intent, batch, "created", "created")

    def _claim(self, client_id: str) -> None:
        """The client's batches are this state's to create (once per client and run); ClientClaimed when
        another workspace of the same database creates them."""
        with self._claim_guard:
            if client_id.lower() in self._claimed_clients:
                return
            self.writer.claim_client(self.api.instance, client_id)
            self._claimed_clients.add(client_id.lower())

    def _guard_against_duplicates(self, address: str, client_id: str, attributes: dict) -> None:
        """Never create what already exists, unrecorded: a lost state entry, a batch made by hand."""
        if not self.duplicate_check or address in self.allow_duplicates:
            return
        listed = self.listings.current(client_id)
        found = duplicates_of(attributes, listed, self.writer.claimed_ids(), self.writer.open_intents())
        if found:
            problem, fix = duplicate_reasons(address, client_of(address), found)
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
        ready: list[tuple[float, float]] = []  # (intent begun, lock confirmed), steady clock

        def write_intent() -> None:
            """The intent made durable; then, the instant before the request leaves, the proof that
            nobody else can be settling it: the lock is still held, and the intent is young enough
            that a run taking over later would wait for this create (see matching.may_still_send)."""
            for _ in range(SEND_TRIES):
                started = time.monotonic()
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
                self.writer.confirm_lock()  # LockLost: nothing is sent, the intent stays for the next run
                confirmed = time.monotonic()
                stalled = confirmed - started
                if may_still_send(stalled, self.recovery_wait):
                    ready.append((started, confirmed))
                    return
                self.tally.note(
                    address,
                    f"{stalled:.1f} s passed between writing its intent and sending it "
                    "(this machine stalled); writing the intent again before sending",
                )
            raise CreateNotSent(
                f"not sent: this machine stalled for more than {send_reserve(self.recovery_wait):.1f} s between "
                f"writing the create's intent and sending it, {SEND_TRIES} times (overloaded, or paused?). "
                "Nothing was created; run apply again."
            )

        def settle_refused() -> None:
            """A definite refusal: this attempt made nothing. An earlier attempt still in doubt stands."""
            if previous is not None:
                self.writer.record_intent(previous)
            else:
                self.writer.clear_intent(address)

        def at_socket() -> None:
            """Again on the open connection, the request about to be written: a stall since the checks
            above (while the request was prepared, or the connection opened) withholds it."""
            started, confirmed = ready[-1]
            now = time.monotonic()
            if not may_still_send(now - started, self.recovery_wait) or not lock_still_confirmed(now - confirmed):
                self.tally.note(
                    address,
                    f"{now - confirmed:.1f} s passed between checking the lock and sending "
                    "(this machine stalled); checking again before sending",
                )
                raise SendWithheld()

        try:
            batch = self.api.create_batch(
                client_id,
                attributes,
                before_send=write_intent,
                after_refusal=settle_refused,
                at_socket=at_socket,
                about=address,
            )
        except OutcomeUnknown as exc:
            self.tally.note(address, f"outcome unknown ({exc}); looking it up")
            return written[-1], None
        except ApiError:
            if written:
                settle_refused()
            raise
        return written[-1], batch

    def _resolve_after_ambiguity(self, intent: Intent, failed_at: float) -> None:
        """Look at once; wait out the recovery window only when nothing is found, then look again.
        A batch found was made by this run's create: it counts as created (its credits issued now)."""
        try:
            self._look_up_after_ambiguity(intent, failed_at)
        except NotFoundError:
            raise ClientNotFound(not_found_message(intent)) from None

    def _look_up_after_ambiguity(self, intent: Intent, failed_at: float) -> None:
        for _ in range(RECOVERY_ROUNDS):
            if self.settler.adopt_if_found(intent, self.listings.fresh(intent.client_id), CONFIRMED, kind="created"):
                return
            self.settler.wait(self.recovery_wait - (time.monotonic() - failed_at))
            if self.stop.is_set():
                raise OutcomeUnknown(
                    UNKNOWN_WHEN_API_AWAY
                    if self.api.outage.gave_up
                    else (
                        "interrupted while checking whether the create happened; the next plan shows it "
                        "as a recovery and apply resolves it"
                    )
                )
            confirmed = self.listings.confirmed(intent.client_id)
            if self.settler.adopt_if_found(intent, confirmed, CONFIRMED, kind="created"):
                return
            self.tally.note(intent.address, "the create did not happen; sending it again")
            intent, batch = self._send_create(intent.address, intent.client_id, intent.attributes, previous=intent)
            if batch is not None:
                self._record_created(intent, batch, "created", "created")
                return
            failed_at = time.monotonic()
        raise OutcomeUnknown(
            f"the create's outcome is still unknown after {RECOVERY_ROUNDS} attempts; the intent stays "
            "recorded, and the next apply looks it up before doing anything else"
        )

    # --- updates -------------------------------------------------------------------

    def _update(self, change: Change) -> None:
        resource = self.writer.state.resources[change.address]
        after = change.after or {}
        body = {
            name: after[name]
            for name in UPDATABLE_FIELDS
            if name in after and not same_value(name, (change.before or {}).get(name), after[name])
        }
        batch = self.api.update_batch(resource.batch_id, body, about=change.address)
        attributes = {**resource.attributes, **body}
        self.writer.record(
            change.address,
            Resource(batch_id=resource.batch_id, client_id=resource.client_id, attributes=attributes, remote=batch),
            UPDATE,
        )
        self.tally.done(change.address, "updated", f"updated ({', '.join(sorted(body))})")

    # --- recording ------------------------------------------------------------

    def _record_created(self, intent: Intent, batch: dict, kind: str, outcome: str) -> None:
        batch_id = proper_id(batch.get("id"))
        if batch_id is None:  # never reached: the client and the rules take no batch without one
            raise ApiError(
                f"{intent.address}: the API gave no proper batch id ({shown_id(batch.get('id'))}); "
                "the intent stays open."
            )
        action = ADOPT if kind == "adopted" else RECOVER if outcome == CONFIRMED else CREATE
        try:
            self.writer.record(
                intent.address,
                Resource(batch_id=batch_id, client_id=intent.client_id, attributes=intent.attributes, remote=batch),
                action,
            )
        except StateError as exc:
            # Said at once, with its id: the credits were issued, and the id must not be lost.
            message = (
                f"batch {batch_id} was created but could not be recorded ({exc}). Its intent stays open in the "
                f"state: the next apply finds it by listing and records it; to record it by hand: provisioner "
                f"import {intent.address} {batch_id} PATHS..."
            )
            self.tally.warn(f"Warning: {intent.address}: {message}")
            raise StateError(message) from None
        for difference in differences(batch, intent.attributes):
            self.tally.warn(f"Warning: {intent.address}: the API stored it differently: {difference}.")
        self.tally.done(intent.address, kind, f"{outcome} [id={batch_id}]")


def look_alike_groups(work: list[Change], desired: Desired, pending: Mapping[str, Intent]) -> list[list[Change]]:
    """One group per request a listing could confuse; in each, interrupted creates come first
    (oldest first): new work must not claim what they made."""
    groups: dict[tuple, list[Change]] = defaultdict(list)
    for change in work:
        if change.action == "recover":
            intent = pending[change.address]
            groups[confusable_key(intent.client_id, intent.attributes)].append(change)
        else:
            groups[request_key(change, desired)].append(change)
    return [
        sorted(group, key=lambda c: (c.action != "recover", pending[c.address].at if c.action == "recover" else ""))
        for group in groups.values()
    ]


def request_groups(changes: list[Change], desired: Desired) -> list[list[Change]]:
    groups: dict[tuple, list[Change]] = defaultdict(list)
    for change in changes:
        groups[request_key(change, desired)].append(change)
    return list(groups.values())


def request_key(change: Change, desired: Desired) -> tuple:
    if change.action == "update":
        return ("update", change.address)
    spec = desired.batches[change.address]
    return confusable_key(spec.client_id, spec.attributes())
