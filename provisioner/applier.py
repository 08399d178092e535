"""Executes a Plan through the API, exactly once per batch.

The rules that keep credits from being issued twice or ids from being lost:
- before each create, its intent reaches the journal (fsync); its id closes it
  in one more journal line the moment the answer arrives;
- a create whose answer was lost (timeout, 5xx, dropped connection) is never
  sent blindly again: the client's batches are listed and the one made after
  the intent, with the intent's attributes and claimed by no address, is adopted;
  none found means it was never made; more than one stops and is reported;
- open intents left by a crash are resolved the same way before new work;
- creates that a listing could confuse (same client, name and balance) never run
  at the same time, so a listing can always tell them apart.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from provisioner.api.client import (
    READ_TIMEOUT,
    ApiError,
    AuthError,
    CreditsApi,
    OutcomeUnknown,
    RequestCancelled,
)
from provisioner.models import COMPARED_FIELDS, UPDATABLE_FIELDS, Change, Desired, Intent, Plan, Resource
from provisioner.planner import same_value
from provisioner.progress import Progress, describe_work
from provisioner.state import StateWriter
from provisioner.timestamps import parse_timestamp, utc_now_text

CLOCK_SKEW = timedelta(minutes=5)
# How long a create may still be in progress on the server after its sender stopped
# waiting for it: the client's read timeout, and as much again as a margin.
RECOVERY_WAIT = 2 * READ_TIMEOUT
RECOVERY_ROUNDS = 3


class AmbiguousRecovery(ApiError):
    """More than one unclaimed batch could be the one an interrupted create made."""


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
        stop: threading.Event | None = None,
        settle_seconds: float = 1.0,
        recovery_wait: float = RECOVERY_WAIT,
        reporter: Progress | None = None,
    ):
        self.api = api
        self.writer = writer
        self.parallelism = max(1, parallelism)
        # Progress hooks: start, done, failed, notable, warn, finish (see provisioner/progress.py).
        # Without a reporter, every line goes to ``progress``.
        self.reporter = reporter or Progress(write=progress)
        # The API's own stop event by default: setting it cancels every request not yet sent.
        self.stop = stop if stop is not None else api.stop
        self.settle_seconds = settle_seconds
        self.recovery_wait = recovery_wait
        self.result = ApplyResult()
        self._result_guard = threading.Lock()
        self._deferred_creates: list[str] = []

    # --- entry point ------------------------------------------------------

    def apply(self, plan: Plan, desired: Desired) -> ApplyResult:
        work = [change for change in plan.changes if change.action in ("create", "replace", "update", "recover")]
        self.reporter.start(len(work), self.api.limiter.rpm, what=describe_work(Counter(c.action for c in work)))
        try:
            self._apply(work, desired)
        finally:
            self.reporter.finish()
        return self.result

    def _apply(self, work: list[Change], desired: Desired) -> None:
        recoveries = [change for change in work if change.action == "recover"]
        others = [change for change in work if change.action != "recover"]
        # Interrupted creates come first: new work must not claim what they made.
        if recoveries:
            self._let_interrupted_creates_settle()
        self._run_groups(self._group_recoveries(recoveries), desired)
        # A deferred create finishes its recovery's piece of work: the total stays as planned.
        others += [
            Change(address=address, client_key=address.split("/", 1)[0], action="create")
            for address in self._deferred_creates
        ]
        if not self.result.failed:
            self._run_groups(self._group_by_request(others, desired), desired)
        else:
            self.result.skipped += len(others)

    def _let_interrupted_creates_settle(self) -> None:
        """A create sent just before a crash may still be running on the server: listing too
        early would miss it and send it again. Wait until the youngest intent is old enough."""
        youngest = max(parse_timestamp(intent.at) for intent in self.writer.state.pending.values())
        age = (datetime.now(timezone.utc) - youngest).total_seconds()
        if age < self.recovery_wait:
            delay = self.recovery_wait - age
            if delay > self.recovery_wait:
                self.reporter.warn(f"Warning: an interrupted create is dated {-age:.0f} s in the future: clocks disagree.")
                delay = self.recovery_wait
            self.reporter.notable(f"Waiting {delay:.0f} s for interrupted creates to settle before looking them up...")
            self.stop.wait(delay)  # an interrupt ends the wait; nothing has been sent yet

    def _group_recoveries(self, changes: list[Change]) -> list[list[Change]]:
        groups: dict[tuple, list[Change]] = defaultdict(list)
        for change in changes:
            intent = self.writer.state.pending[change.address]
            groups[confusable_key(intent.client_id, intent.attributes)].append(change)
        return [sorted(group, key=lambda c: self.writer.state.pending[c.address].at) for group in groups.values()]

    def _group_by_request(self, changes: list[Change], desired: Desired) -> list[list[Change]]:
        groups: dict[tuple, list[Change]] = defaultdict(list)
        for change in changes:
            if change.action == "update":
                groups[("update", change.address)].append(change)
            else:
                spec = desired.batches[change.address]
                groups[confusable_key(spec.client_id, spec.attributes())].append(change)
        return list(groups.values())

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
            except ApiError as exc:
                self._fail(change.address, str(exc))
                if isinstance(exc, AuthError):
                    self.stop.set()  # every other request would fail the same way
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

    # --- the three kinds of work -----------------------------------------

    def _create(self, address: str, desired: Desired, previous: Intent | None = None) -> None:
        spec = desired.batches[address]
        intent, batch = self._send_create(address, spec.client_id, spec.attributes(), previous)
        if batch is None:
            self._resolve_after_ambiguity(intent, desired)
        else:
            self._record_created(intent, batch, "created", "created")

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
            intent = Intent(
                address=address,
                client_id=client_id,
                attributes=attributes,
                digest=request_digest(client_id, attributes),
                at=utc_now_text(),
            )
            self.writer.record_intent(intent)
            written.append(intent)

        try:
            batch = self.api.create_batch(client_id, attributes, before_send=write_intent)
        except OutcomeUnknown as exc:
            self._report(address, f"outcome unknown ({exc}); looking it up")
            return written[-1], None
        except ApiError:
            if written and previous is not None:
                self.writer.record_intent(previous)
            elif written:
                self.writer.clear_intent(address)  # a definite refusal: nothing was made
            raise
        return written[-1], batch

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

    def _recover(self, change: Change, desired: Desired) -> None:
        intent = self.writer.state.pending[change.address]
        batch = self._find_made_batch(intent)
        if batch is not None:
            self._record_created(intent, batch, "adopted", "found and recorded (made by an interrupted apply)")
        elif change.address in desired.batches and confusable_key(
            intent.client_id, intent.attributes
        ) == confusable_key(intent.client_id, desired.batches[change.address].attributes()):
            self._report(change.address, "the interrupted create never happened; creating it now")
            self._create(change.address, desired, previous=intent)
        else:
            # Never made. A create with other attributes belongs to another group of look-alikes:
            # it runs with the new work, where that group is kept in order.
            self.writer.clear_intent(change.address)
            if change.address in desired.batches:
                with self._result_guard:
                    self._deferred_creates.append(change.address)
                self._report(change.address, "the interrupted create never happened; it is created with the new work")
            else:
                self._done_one(change.address, None, "the interrupted create never happened and it is no longer declared")

    def _resolve_after_ambiguity(self, intent: Intent, desired: Desired) -> None:
        for _ in range(RECOVERY_ROUNDS):
            self._wait_until_settled()
            batch = self._find_made_batch(intent)
            if batch is not None:
                self._record_created(intent, batch, "adopted", "created (confirmed by listing)")
                return
            if self.stop.is_set():
                raise OutcomeUnknown(
                    "interrupted while checking whether the create happened; the next plan shows it "
                    "as a recovery and apply resolves it"
                )
            self._report(intent.address, "the create did not happen; sending it again")
            intent, batch = self._send_create(intent.address, intent.client_id, intent.attributes, previous=intent)
            if batch is not None:
                self._record_created(intent, batch, "created", "created")
                return
        raise OutcomeUnknown(
            f"the create's outcome is still unknown after {RECOVERY_ROUNDS} attempts; the intent stays "
            "recorded, and the next apply looks it up before doing anything else"
        )

    # --- recovery -----------------------------------------------------------

    def _wait_until_settled(self) -> None:
        """Before deciding a create did not happen, give the server the time it may still be
        taking over it: a timeout or a dropped connection does not stop the server's work, so
        the wait counts from now, not from when the request left."""
        self.stop.wait(max(self.settle_seconds, self.recovery_wait))

    def _find_made_batch(self, intent: Intent) -> dict | None:
        """The batch this intent's create made, None if it made none."""
        listed = self.api.list_batches(intent.client_id)
        claimed = self.writer.claimed_ids()
        others = self.writer.other_open_intents(intent)
        matches = [
            batch
            for batch in listed
            if batch.get("id") not in claimed
            and could_be_made_by(batch, intent, self.api.server_clock_offset)
            # A batch made exactly as another open intent asked is that intent's, not ours.
            and not any(attributes_match(batch, other.attributes, strict=True) for other in others)
        ]
        open_twins = self.writer.open_intents_like(intent)
        if len(matches) > open_twins:
            ids = ", ".join(sorted(str(batch.get("id")) for batch in matches))
            raise AmbiguousRecovery(
                f"{len(matches)} unclaimed batches match the interrupted create ({ids}); provisioner will "
                "not guess which one is its own. Check them in Thought Industries, then record the right "
                f"one with 'provisioner import {intent.address} BATCH_ID PATHS...'."
            )
        if not matches:
            return None
        return min(matches, key=lambda batch: (str(batch.get("createdAt")), str(batch.get("id"))))

    def _record_created(self, intent: Intent, batch: dict, kind: str, outcome: str) -> None:
        batch_id = batch.get("id")
        if not batch_id:
            raise ApiError(f"{intent.address}: the API answered without a batch id; the intent stays open.")
        self.writer.record(
            intent.address,
            Resource(batch_id=str(batch_id), client_id=intent.client_id, attributes=intent.attributes, remote=batch),
        )
        self._done_one(intent.address, kind, f"{outcome} [id={batch_id}]")

    # --- bookkeeping ----------------------------------------------------------

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


def attributes_match(batch: dict, attributes: dict, strict: bool = False) -> bool:
    """The fields that were sent are compared; ``strict`` also wants the others empty.

    Leniently, a field not sent may hold anything: the server may fill it in (a credit
    account's default expiry, say).
    """
    if strict and any(batch.get(name) not in (None, "") for name in COMPARED_FIELDS if name not in attributes):
        return False
    return all(same_value(name, batch.get(name), value) for name, value in attributes.items())


def confusable_key(client_id: str, attributes: dict) -> tuple:
    """Creates that a listing could mistake for one another share this key (the fields every
    create sends): they are run one after the other, never at the same time."""
    return (client_id, attributes.get("name"), attributes.get("startingBalance"))


def could_be_made_by(batch: dict, intent: Intent, server_clock_offset: float = 0.0) -> bool:
    """True when the intent's create may have made this batch: what it asked for, made after it.

    ``server_clock_offset`` (seconds the server's clock is ahead of ours) puts the intent's
    time on the server's clock, which is the one createdAt is written with.
    """
    if not attributes_match(batch, intent.attributes):
        return False
    since = parse_timestamp(intent.at) - CLOCK_SKEW
    # An intent dated in the future came from a clock that disagrees with ours: its date would rule
    # out the very batch it made. Unsure, keep it a candidate rather than risk a second create.
    if since > datetime.now(timezone.utc):
        return True
    return created_since(batch, since + timedelta(seconds=server_clock_offset))


def created_since(batch: dict, since: datetime) -> bool:
    created = batch.get("createdAt")
    if not created:
        return True  # cannot tell: keep it a candidate rather than risk a second create
    try:
        return parse_timestamp(str(created)) >= since
    except ValueError:
        return True
