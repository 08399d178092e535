"""apply: plan, show the plan, ask, then create and update exactly once, with a report at the end."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioner.cli.options import (
    UserError,
    allow_duplicate_option,
    api_options,
    api_settings,
    ask_yes,
    at_option,
    cache_option,
    lock_option,
    moment,
    policy_options,
    progress,
    quiet_option,
    reason_option,
    run_context,
    user_errors,
    with_backend,
)
from provisioner.cli.plan import emit_plan
from provisioner.operations.apply_request import ApplyRequest

if TYPE_CHECKING:
    from provisioner.applying.applier import ApplyResult
    from provisioner.core.models import Plan

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
    from provisioner.operations.apply_run import ApplyChoices, ApplyUser, apply_run
    from provisioner.render.progress import Progress

    request = ApplyRequest.asked(
        paths,
        lambda: moment(at),
        progress,
        no_cache=no_cache,
        policy_overrides=policy_overrides,
        replace=replace,
        refresh=refresh,
        allow_duplicates=allow_duplicate,
    )
    choices = ApplyChoices(
        lock_timeout=lock_timeout,
        auto_approve=auto_approve,
        allow_large=allow_large,
        recovery_wait=recovery_wait,
        duplicate_check=not no_duplicate_check,
        issue_early=issue_early,
        planned_ahead=at is not None,
    )
    color = not no_color and sys.stdout.isatty()
    user = ApplyUser(show_plan=lambda result: emit_plan(result, "text", color=color), confirm=confirm, say=progress)
    reporter = Progress.for_stream(quiet=quiet)
    run = run_context(reason, paths)
    settings = api_settings(sandbox, base_url, rate_limit, parallelism)
    applied = apply_run(request, backend, settings, choices, user, reporter, run)
    if applied.outcome is not None:
        report(applied.outcome, applied.plan, rerun=rerun_advice(request.saved))


def confirm() -> None:
    if sys.stdin.isatty():
        click.echo("\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n")
    ask_yes(
        "  Enter a value",
        "apply needs a 'yes' and there is no terminal to ask on. Review the plan above, then run "
        "again with --auto-approve (or apply a saved plan: provisioner plan --out FILE).",
        cancelled="apply cancelled; nothing was changed.",
    )


def report(outcome: ApplyResult, result: Plan, rerun: str = "run apply again") -> None:
    from provisioner.render.apply_outcome import failure_summary, outage_summary, outcome_line

    click.echo("\n" + outcome_line(outcome, result))
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
