"""apply: plan, show the plan, ask, then create and update exactly once, with a report at the end."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioner.cli.options import (
    UserError,
    allow_duplicate_option,
    api_options,
    ask_yes,
    at_option,
    cache_option,
    given_give_up_after,
    lock_option,
    moment,
    now_utc,
    policy_options,
    progress,
    quiet_option,
    reason_option,
    run_context,
    user_errors,
    with_backend,
)
from provisioner.cli.plan import check_replace_addresses, emit_plan, why_it_cannot_be_applied
from provisioner.operations.apply_request import ApplyRequest
from provisioner.operations.connection import api_context, check_instance
from provisioner.operations.live_batches import refreshed

if TYPE_CHECKING:
    from provisioner.applying.applier import ApplyResult
    from provisioner.applying.listings import ClientListings
    from provisioner.backends import StateWriter
    from provisioner.core.models import Desired, Plan, State
    from provisioner.render.progress import Progress

# The applier's own default, said here so that `apply --help` need not import the applier (a test
# keeps the two equal).
RECOVERY_WAIT_HELP = 60


@click.command(short_help="Create and update batches (asks for 'yes').")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="PATHS... | PLAN_FILE")
@api_options
@policy_options
@lock_option
@click.option("--auto-approve", is_flag=True, help="Apply without asking for 'yes'.")
@click.option("--refresh", is_flag=True, help="Compare with the live API before planning.")
@click.option(
    "--replace",
    "replace",
    multiple=True,
    metavar="ADDRESS",
    help="Recreate this batch on purpose (issues its credits again).",
)
@click.option("--allow-large", is_flag=True, help="Apply even when the plan breaks a guardrail of the policy.")
@click.option(
    "--recovery-wait",
    default=None,
    type=click.FloatRange(0),
    help="Seconds an interrupted create may still be running on the server. A batch found is adopted at "
    "once; only to decide that a create never happened does recovery wait until this long after it. "
    f"Default: {RECOVERY_WAIT_HELP}.",
)
@click.option("--no-color", is_flag=True, help="No ANSI colours in the plan.")
@allow_duplicate_option
@click.option(
    "--no-duplicate-check",
    is_flag=True,
    help="Skip listing each client before its first create (saves one request per client; a lost state "
    "entry or a hand-made batch is then issued again). Read about the duplicate guard in the manual "
    "(docs/state.md) before using it.",
)
@at_option
@click.option(
    "--issue-early",
    is_flag=True,
    help="Issue grant periods that have not begun yet (by the API's clock, else this machine's): with a later "
    "--at, apply refuses them without this.",
)
@quiet_option
@cache_option
@reason_option
@user_errors
@with_backend
def apply(
    paths,
    backend,
    sandbox,
    base_url,
    parallelism,
    rate_limit,
    lock_timeout,
    auto_approve,
    refresh,
    replace,
    allow_large,
    recovery_wait,
    no_color,
    allow_duplicate,
    no_duplicate_check,
    at,
    issue_early,
    quiet,
    no_cache,
    reason,
    **policy_overrides,
) -> None:
    """Create and update batches so the API matches the manifests in PATHS, after asking for 'yes';
    or apply exactly the plan saved in PLAN_FILE by 'provisioner plan --out PLAN_FILE' (reviewed
    already: no question asked)."""
    from provisioner.applying.applier import RECOVERY_WAIT
    from provisioner.applying.listings import ClientListings
    from provisioner.planning.planner import make_plan
    from provisioner.planning.saved_plan import PlanFileError, plan_digest, saved_plan_in
    from provisioner.render.progress import Progress

    saved = saved_plan_in(paths)
    if saved:
        saved.refuse_options(replace=replace, refresh=refresh, allow_duplicate=allow_duplicate, **policy_overrides)
        request = ApplyRequest.from_saved_plan(saved, moment(at), progress)
    else:
        request = ApplyRequest.from_manifests(
            paths,
            moment(at),
            no_cache=no_cache,
            policy_overrides=policy_overrides,
            replace=replace,
            refresh=refresh,
            allow_duplicates=allow_duplicate,
        )
    desired = request.desired
    ahead = saved is not None or at is not None  # a moment other than now: periods may not have begun
    reporter = Progress.for_stream(quiet=quiet)
    run = run_context(reason, paths)
    with backend.lock("apply", timeout=lock_timeout, warn=progress):
        if saved:  # before the writer folds an interrupted run in (which moves the serial on)
            saved.check_against(backend.read(), backend.name)
        with backend.open_writer() as writer:
            check_replace_addresses(request.replace, writer.state)
            with api_context(
                sandbox, base_url, backend, rate_limit, parallelism, reporter, given_give_up_after()
            ) as api:
                check_instance(writer.state, api, backend)
                api.name_clients({client.id: key for key, client in desired.clients.items()})
                # One listing per client for the whole run: the refresh's serve the preflight, the duplicate
                # guard and recovery's first look; deciding that a create never happened lists again.
                listings = ClientListings(api)
                observed = (
                    refreshed(desired, writer.state, api, parallelism, reporter, listings) if request.refresh else None
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
                    if (ahead or saved) and not issue_early:  # by the API's clock, known now
                        refuse_early(result, desired, api.clock.now() or now_utc())
                if saved and not saved.matches(result):
                    raise PlanFileError(
                        f"{saved.path}: applying it now would differ from what was reviewed (a batch "
                        "expired, a grant's new period began, or the API changed). Make and review a new plan."
                    )
                emit_plan(result, "text", color=not no_color and sys.stdout.isatty())
                refuse_unsafe(result, allow_large)
                if not result.has_changes:
                    return
                if not (auto_approve or saved):
                    confirm()
                # The audit trail names the plan applied: the saved plan's file, or this plan's changes.
                run = run.with_plan_digest(saved.digest if saved else plan_digest(result))
                writer.attribute(run.fields(), server_clock=api.clock.now)
                outcome = run_apply(
                    api,
                    writer,
                    result,
                    desired,
                    parallelism,
                    RECOVERY_WAIT if recovery_wait is None else recovery_wait,
                    reporter,
                    duplicate_check=not no_duplicate_check,
                    allow_duplicates=request.allow_duplicates,
                    listings=listings,
                )
    report(outcome, result, rerun=rerun_advice(saved))


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


def refuse_early(result: Plan, desired: Desired, real_now) -> None:
    from provisioner.planning.planner import early_changes

    early = early_changes(result, desired, real_now)
    if early:
        credits = sum(change.credits for change in early)
        shown = ", ".join(change.address for change in early[:5]) + (
            f" and {len(early) - 5} more" if len(early) > 5 else ""
        )
        raise UserError(
            f"{len(early)} grant period(s) have not begun yet ({shown}; {credits:,} credits): --at plans for a "
            "later moment, but issuing a period before it begins needs --issue-early as well. Nothing was changed."
        )


def refuse_unsafe(result: Plan, allow_large: bool) -> None:
    refusal = why_it_cannot_be_applied(result, allow_large, then="apply")
    if refusal is not None:
        raise UserError(f"the plan cannot be applied, and nothing was changed: {refusal}")


def confirm() -> None:
    if sys.stdin.isatty():
        click.echo("\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n")
    ask_yes(
        "  Enter a value",
        "apply needs a 'yes' and there is no terminal to ask on. Review the plan above, then run "
        "again with --auto-approve (or apply a saved plan: provisioner plan --out FILE).",
        cancelled="apply cancelled; nothing was changed.",
    )


def run_apply(
    api,
    writer: StateWriter,
    result: Plan,
    desired: Desired,
    parallelism: int,
    recovery_wait: float,
    reporter: Progress,
    duplicate_check: bool = True,
    allow_duplicates=(),
    listings: ClientListings | None = None,
) -> ApplyResult:
    from provisioner.applying.applier import Applier

    stop = api.stop  # set, it cancels every request that has not left (worker, rate-limit slot, pause)

    def on_interrupt(signum, frame):
        if stop.is_set():
            # Every intent and id is already durable (journal or database): leaving now loses nothing.
            reporter.close(wait=False)
            progress("Second interrupt: exiting now. The next command resolves what was in flight.")
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


def report(outcome: ApplyResult, result: Plan, rerun: str = "run apply again") -> None:
    created = set(outcome.created)
    issued = sum(change.credits for change in result.changes if change.address in created)
    click.echo(
        f"\nApply {'complete' if outcome.ok else 'stopped'}! Batches: {len(outcome.created)} created, "
        f"{len(outcome.updated)} updated, {len(outcome.adopted)} recovered. Credits issued: {issued:,}."
    )
    if outcome.outage:
        raise UserError(outage_summary(outcome, rerun))
    if outcome.interrupted:
        progress(f"Interrupted: {outcome.skipped} change(s) not started; run apply again to finish.")
    if outcome.failed:
        raise UserError(failure_summary(outcome.failed))
    if outcome.interrupted:
        sys.exit(1)


def rerun_advice(saved) -> str:
    """What to run to finish: the same command; a saved plan is stale once anything was applied."""
    if saved:
        return "make and review a new plan (provisioner plan ... --out FILE), then apply it"
    return "run the same command again: " + shlex.join(["provisioner", *sys.argv[1:]])


def outage_summary(outcome: ApplyResult, rerun: str) -> str:
    """The one summary of an apply that stopped because the API stopped answering."""
    assert outcome.outage is not None  # asked only for such an apply
    done = len(outcome.created) + len(outcome.updated) + len(outcome.adopted)
    lines = [
        outcome.outage,
        f"  Done and recorded: {done} ({len(outcome.created)} created, {len(outcome.updated)} updated, "
        f"{len(outcome.adopted)} recovered). Not started: {outcome.skipped}.",
    ]
    if outcome.unresolved:
        lines.append(
            f"  Outcome unknown: {len(outcome.unresolved)} create(s) sent whose answer was lost or not yet "
            f"looked up ({shown(outcome.unresolved)}): each stays recorded as an intent, and the next apply "
            "looks it up before anything else."
        )
    lines.append(
        "  Nothing was sent twice: a create whose answer was lost is never sent again until a "
        "listing proves it never happened."
    )
    others = [(address, message) for address, message in outcome.failed if address not in outcome.unresolved]
    if others:
        lines.append("  " + failure_summary(others).replace("\n", "\n  "))
    lines.append(f"  When the API answers again, {rerun}")
    return "\n".join(lines)


def shown(addresses: list[str], most: int = 5) -> str:
    return ", ".join(addresses[:most]) + (f" and {len(addresses) - most} more" if len(addresses) > most else "")


def failure_summary(failed: list[tuple[str, str]]) -> str:
    """One line per distinct reason: a wrong key must not print the same 401 for every batch."""
    by_message: dict[str, list[str]] = {}
    for address, message in failed:
        by_message.setdefault(message, []).append(address)
    lines = []
    for message, addresses in by_message.items():
        lines.append(f"  {shown(addresses)}: {message}")
    return f"{len(failed)} change(s) failed:\n" + "\n".join(lines)
