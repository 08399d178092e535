"""An apply run, from the request to the outcome: under the state's lock, with the state writer and
one API connection, plan against the state (and the live API), check that the API will answer and that
the plan may be applied, let the user see it and say yes, then create and update exactly once.

The order is what keeps credits safe: the lock, then the writer, then the API; a saved plan is
checked against the state before the writer folds an interrupted run in (which moves the serial
on). What the user sees and answers goes through ``ApplyUser``; nothing here prints.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from provisioner.operations.connection import ApiSettings, check_instance
from provisioner.operations.live_batches import refreshed
from provisioner.operations.plans import PlanRefused, check_replace_addresses, now_utc, why_it_cannot_be_applied

if TYPE_CHECKING:
    from provisioner.applying.applier import ApplyResult
    from provisioner.applying.listings import ClientListings
    from provisioner.backends import Backend, StateWriter
    from provisioner.core.models import Desired, Plan, State
    from provisioner.operations.apply_request import ApplyRequest
    from provisioner.operations.run_context import RunContext
    from provisioner.render.progress import Progress


@dataclass(frozen=True)
class ApplyChoices:
    """The run's options that are not part of what is applied."""

    lock_timeout: float = 0.0
    auto_approve: bool = False
    allow_large: bool = False
    recovery_wait: float | None = None  # None: the applier's default
    duplicate_check: bool = True
    issue_early: bool = False
    planned_ahead: bool = False  # --at was given: a moment other than now, periods may not have begun


@dataclass(frozen=True)
class ApplyUser:
    """The parts of a run that are the user's: seeing the plan, saying yes, a line on the side."""

    show_plan: Callable[[Plan], None]
    confirm: Callable[[], None]  # raises to refuse
    say: Callable[[str], None]


@dataclass(frozen=True)
class AppliedRun:
    plan: Plan
    outcome: ApplyResult | None  # None: the plan had no changes, nothing was applied


def apply_run(
    request: ApplyRequest,
    backend: Backend,
    settings: ApiSettings,
    choices: ApplyChoices,
    user: ApplyUser,
    reporter: Progress,
    run: RunContext,
) -> AppliedRun:
    """Plans, shows, asks and applies; returns the plan and what became of it."""
    from provisioner.applying.applier import RECOVERY_WAIT
    from provisioner.applying.listings import ClientListings
    from provisioner.planning.planner import make_plan
    from provisioner.planning.saved_plan import PlanFileError, plan_digest

    saved, desired = request.saved, request.desired
    ahead = saved is not None or choices.planned_ahead
    with backend.lock("apply", timeout=choices.lock_timeout, warn=user.say):
        if saved:  # before the writer folds an interrupted run in (which moves the serial on)
            saved.check_against(backend.read(), backend.name)
        with backend.open_writer() as writer:
            check_replace_addresses(request.replace, writer.state)
            with settings.open(backend, reporter) as api:
                check_instance(writer.state, api, backend)
                api.name_clients({client.id: key for key, client in desired.clients.items()})
                # One listing per client for the whole run: the refresh's serve the preflight, the duplicate
                # guard and recovery's first look; deciding that a create never happened lists again.
                listings = ClientListings(api)
                observed = (
                    refreshed(desired, writer.state, api, settings.parallelism, reporter, listings)
                    if request.refresh
                    else None
                )
                real_now = (api.clock.now() or now_utc()) if ahead else request.at
                result = make_plan(
                    desired,
                    writer.state,
                    request.at,
                    observed=observed,
                    replace=request.replace,
                    policy=request.policy,
                    allow_duplicates=request.allow_duplicates,
                    real_now=real_now,
                )
                if result.has_changes:
                    preflight(api, listings, result, desired, writer.state)
                    if ahead and not choices.issue_early:  # by the API's clock, known now
                        refuse_early(result, desired, api.clock.now() or now_utc())
                if saved and not saved.matches(result):
                    raise PlanFileError(
                        f"{saved.path}: applying it now would differ from what was reviewed (a batch "
                        "expired, a grant's new period began, or the API changed). Make and review a new plan."
                    )
                user.show_plan(result)
                refuse_unsafe(result, choices.allow_large)
                if not result.has_changes:
                    return AppliedRun(result, None)
                if not (choices.auto_approve or saved):
                    user.confirm()
                # The audit trail names the plan applied: the saved plan's file, or this plan's changes.
                run = run.with_plan_digest(saved.digest if saved else plan_digest(result))
                writer.attribute(run.fields(), server_clock=api.clock.now)
                outcome = run_apply(
                    api,
                    writer,
                    result,
                    desired,
                    settings.parallelism,
                    RECOVERY_WAIT if choices.recovery_wait is None else choices.recovery_wait,
                    reporter,
                    say=user.say,
                    duplicate_check=choices.duplicate_check,
                    allow_duplicates=request.allow_duplicates,
                    listings=listings,
                )
    return AppliedRun(result, outcome)


def preflight(api, listings: ClientListings, result: Plan, desired: Desired, state: State) -> None:
    """Before the plan is printed for an apply: one request, so that a refused key or an unreachable
    API is said now, not after the plan and the prompt. For a client the run creates for (or
    recovers), it is that client's whole listing, which the duplicate guard and recovery then use."""
    from provisioner.api.client import NotFoundError

    def client_of(change) -> str | None:
        spec, intent = desired.batches.get(change.address), state.pending.get(change.address)
        return intent.client_id if intent else spec.client_id if spec else None

    listed = [
        client for c in result.changes if c.action in ("create", "replace", "recover") and (client := client_of(c))
    ]
    if listed:
        try:
            listings.current(listed[0])
        except NotFoundError:
            pass  # the server answered and took the key: that is all this asks; the change says the rest
        return
    for change in result.changes:
        if change.action != "missing" and client_of(change):
            api.preflight(client_of(change))
            return


def refuse_early(result: Plan, desired: Desired, real_now: datetime) -> None:
    from provisioner.planning.planner import early_changes

    early = early_changes(result, desired, real_now)
    if early:
        credits = sum(change.credits for change in early)
        shown = ", ".join(change.address for change in early[:5]) + (
            f" and {len(early) - 5} more" if len(early) > 5 else ""
        )
        raise PlanRefused(
            f"{len(early)} grant period(s) have not begun yet ({shown}; {credits:,} credits): --at plans for a "
            "later moment, but issuing a period before it begins needs --issue-early as well. Nothing was changed."
        )


def refuse_unsafe(result: Plan, allow_large: bool) -> None:
    refusal = why_it_cannot_be_applied(result, allow_large, then="apply")
    if refusal is not None:
        raise PlanRefused(f"the plan cannot be applied, and nothing was changed: {refusal}")


def run_apply(
    api,
    writer: StateWriter,
    result: Plan,
    desired: Desired,
    parallelism: int,
    recovery_wait: float,
    reporter: Progress,
    *,
    say: Callable[[str], None],
    duplicate_check: bool = True,
    allow_duplicates=(),
    listings: ClientListings | None = None,
) -> ApplyResult:
    """The applier, with Ctrl-C turned into a stop: no new requests, those in flight waited for; a
    second Ctrl-C exits at once (``say`` tells the user)."""
    from provisioner.applying.applier import Applier

    stop = api.stop  # set, it cancels every request that has not left (worker, rate-limit slot, pause)

    def on_interrupt(signum, frame):
        if stop.is_set():
            # Every intent and id is already durable (journal or database): leaving now loses nothing.
            reporter.close(wait=False)
            say("Second interrupt: exiting now. The next command resolves what was in flight.")
            os._exit(1)
        stop.set()
        reporter.warn(
            "Interrupt received: no new requests; waiting for those in flight (Ctrl-C again to exit at once)."
        )

    previous = (
        signal.signal(signal.SIGINT, on_interrupt) if threading.current_thread() is threading.main_thread() else None
    )
    try:
        applier = Applier(
            api,
            writer,
            parallelism=parallelism,
            reporter=reporter,
            stop=stop,
            recovery_wait=recovery_wait,
            duplicate_check=duplicate_check,
            allow_duplicates=allow_duplicates,
            listings=listings,
        )
        return applier.apply(result, desired)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
