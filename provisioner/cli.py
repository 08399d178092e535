"""Command line: parse options, call the layers, map user errors to exit code 1."""

from __future__ import annotations

import functools
import json
import os
import shlex
import signal
import sqlite3
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

import click

from provisioner import __version__
from provisioner.api.client import ApiError
from provisioner.backends.postgres import url_has_password
from provisioner.applier import RECOVERY_WAIT, Applier, ApplyResult
from provisioner.connection import open_api
from provisioner.manifest import ManifestError, load, manifest_schema
from provisioner.models import Desired, Plan, Policy
from provisioner.planfile import (
    PlanFileError,
    refuse_saved_plans,
    save_plan,
    saved_plan_in,
)
from provisioner.planner import make_plan
from provisioner.progress import Progress
from provisioner.refresh import observe
from provisioner.render import render_json, render_markdown, render_text
from provisioner.backends.file import render_snapshot
from provisioner.backends import (
    SANDBOX_STATE,
    Backend,
    LockError,
    StateError,
    StateWriter,
    check_instance,
    default_state_path,
    open_backend,
)
from provisioner.models import State
from provisioner.recovery import describe
from provisioner.statecmd import (
    StateCommandError,
    forget_intent,
    import_batch,
    intent_candidates,
    move_resource,
    push_state,
    read_pushed_state,
    refresh_state,
    remove_resource,
)
from provisioner.report import FORMATS as REPORT_FORMATS
from provisioner.report import render as render_report
from provisioner.report.model import DEFAULT_EXPIRING_WITHIN, build_report
from provisioner.views import render_resource, render_resource_list

USER_ERRORS = (
    ManifestError,
    StateError,
    LockError,
    ApiError,
    PlanFileError,
    StateCommandError,
)


class UserError(click.ClickException):
    """Exit 1 with one clear message; no traceback."""

    def show(self, file=None) -> None:
        click.echo(f"Error: {self.message}", err=True)


def user_errors(command):
    """Turns the errors a user can cause into one message and exit code 1."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except OSError as exc:  # disk full, permission denied, a directory where a file should be
            where = f"{exc.filename}: " if exc.filename else ""
            raise UserError(f"{where}{exc.strerror or exc}. Check that the path exists and is writable.") from None
        except USER_ERRORS as exc:
            raise UserError(str(exc)) from None

    return wrapper


def progress(line: str) -> None:
    click.echo(line, err=True)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# --- shared options ------------------------------------------------------------

paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))


def with_backend(command):
    """--state and --workspace, turned into the one ``backend`` object the command is given."""

    @functools.wraps(command)
    def wrapper(*args, state_location, workspace, **kwargs):
        context = click.get_current_context()
        given = context.get_parameter_source("state_location") == click.core.ParameterSource.COMMANDLINE
        if given and state_location and url_has_password(state_location):
            # Not echoed: the message must not repeat the password it refuses.
            raise UserError(
                "--state carries a database password, which would stay in shell history and CI logs. Put it in "
                "PGPASSWORD, ~/.pgpass or a PGSERVICE entry, or give the whole URL in PROVISIONER_STATE (from a "
                "CI secret), and pass --state without it."
            )
        sandbox = kwargs.get("sandbox", False)
        with open_backend(state_location, workspace, sandbox=sandbox, location_given=given) as backend:
            if sandbox and not backend.exists():
                backend.create()  # the sandbox is for trying things: it starts its own state
            return command(*args, backend=backend, **kwargs)

    wrapper = click.option(
        "--workspace",
        default="default",
        show_default=True,
        envvar="PROVISIONER_WORKSPACE",
        help="Which state of several (one per instance or environment). Default from $PROVISIONER_WORKSPACE.",
    )(wrapper)
    return click.option(
        "--state",
        "state_location",
        default=None,
        envvar="PROVISIONER_STATE",
        metavar="FILE|URL",
        help=f"State file, or postgresql://... for a shared state. Default: $PROVISIONER_STATE, else "
        f"{default_state_path('WORKSPACE')} ({SANDBOX_STATE} with --sandbox).",
    )(wrapper)


def sandbox_option(command):
    return click.option("--sandbox", is_flag=True, help=f"Use the sandbox's state file ({SANDBOX_STATE}).")(command)


def api_options(command):
    options = [
        click.option("--sandbox", is_flag=True, help="Use an embedded local sandbox (data under state/) instead of TI_BASE_URL."),
        click.option("--base-url", envvar=None, help="API base URL; default: $TI_BASE_URL. The key always comes from $TI_API_KEY."),
        click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 64), help="Requests in flight at once."),
        click.option(
            "--rate-limit",
            default=None,
            envvar="TI_RATE_LIMIT",
            type=click.FloatRange(0),
            help="Requests per minute never to exceed (Standard plan: 120, Enterprise: 600; 0: no limit "
            "of our own). Default ($TI_RATE_LIMIT unset): start at 120 and follow the limit the server "
            "announces.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def lock_option(command):
    return click.option(
        "--lock-timeout",
        default=0.0,
        show_default=True,
        type=click.FloatRange(0),
        help="Seconds to wait for another run's lock on the state before failing.",
    )(command)


def allow_duplicate_option(command):
    return click.option(
        "--allow-duplicate",
        "allow_duplicate",
        multiple=True,
        metavar="ADDRESS",
        help="Create this batch even though its client already has an unclaimed one just like it (issues its "
        "credits again, on purpose).",
    )(command)


def policy_options(command):
    options = [
        click.option("--max-batch-credits", type=click.IntRange(0), help="Override policy maxBatchCredits."),
        click.option("--max-apply-credits", type=click.IntRange(0), help="Override policy maxApplyCredits."),
        click.option("--max-creates", type=click.IntRange(0), help="Override policy maxCreates."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def effective_policy(desired: Desired, overrides: dict) -> Policy:
    changes = {name: value for name, value in overrides.items() if value is not None}
    return desired.policy.model_copy(update=changes)


def api_context(sandbox: bool, base_url: str | None, backend: Backend, rate_limit: float | None, parallelism: int,
                reporter: Progress | None = None):
    return open_api(
        base_url=base_url,
        sandbox_dir=backend.path.parent if sandbox else None,
        rate_limit=rate_limit,
        parallelism=parallelism,
        on_retry=(reporter or Progress.for_stream()).retry,
    )


def refreshed(desired: Desired, state, api, parallelism: int, reporter: Progress | None = None) -> dict:
    client_ids = {batch.client_id for batch in desired.batches.values()}
    client_ids |= {resource.client_id for resource in state.resources.values()}
    return observe(api, sorted(client_ids), parallelism=parallelism, reporter=reporter or Progress.for_stream())


def preflight(api, result: Plan, desired: Desired, state) -> None:
    """Before the plan is printed for an apply: one cheap request, so that a refused key or an
    unreachable API is said now, not after the plan and the prompt."""
    for change in result.changes:
        spec = desired.batches.get(change.address)
        intent = state.pending.get(change.address)
        client_id = spec.client_id if spec else intent.client_id if intent else None
        if change.action != "missing" and client_id:
            api.preflight(client_id)
            return


quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="Progress: only the estimate, the summary lines and the final line."
)


# --- commands --------------------------------------------------------------------


class ProvisionerGroup(click.Group):
    """Exit codes are 0, 1 and (plan --detailed-exitcode) 2: a usage error is an error like any
    other, exit 1, so that 2 always means "changes present" to a pipeline."""

    def main(self, *args, **kwargs):
        try:
            return super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.Exit as exit_:
            sys.exit(exit_.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(1)
        except (click.Abort, KeyboardInterrupt):
            click.echo("\nInterrupted; nothing more was done.", err=True)
            sys.exit(1)


@click.group(
    cls=ProvisionerGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="provisioner")
def main() -> None:
    """Declare Thought Industries credit batches in YAML; plan, review, apply.

    \b
    Typical flow:
      provisioner validate manifests/
      provisioner plan manifests/
      provisioner apply manifests/
    Environment: TI_BASE_URL (https://<instance>.thoughtindustries.com), TI_API_KEY.
    """


@main.command(short_help="Check manifests only: no state, no network.")
@paths_argument
@user_errors
def validate(paths: tuple[Path, ...]) -> None:
    """Check manifests only: no state, no network."""
    desired = load(paths)
    click.echo(
        f"Success! {plural(len(desired.batches), 'batch', 'batches')} of "
        f"{plural(len(desired.clients), 'client', 'clients')} are valid."
    )


def plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


@main.command(short_help="Show what apply would change, and the credits.")
@paths_argument
@api_options
@policy_options
@click.option("--refresh", is_flag=True, help="Compare with the live API as well as the state file.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(["text", "json", "markdown"]),
    default="text",
    show_default=True,
    help="text for people, json for tools (documented format), markdown for a pull-request comment.",
)
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan for 'provisioner apply FILE'.")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0: no changes, 1: error, 2: changes present.")
@click.option("--no-color", is_flag=True, help="No ANSI colours in the text output.")
@click.option("--replace", "replace", multiple=True, metavar="ADDRESS", help="Plan to recreate this batch on purpose.")
@allow_duplicate_option
@quiet_option
@user_errors
@with_backend
def plan(paths, backend, sandbox, base_url, parallelism, rate_limit, refresh, output_format, out_path,
         detailed_exitcode, no_color, replace, allow_duplicate, quiet, **policy_overrides) -> None:
    """Show what apply would change, and the credits it would issue."""
    refuse_saved_plans(paths)
    if out_path is not None:
        refuse_plan_over_a_manifest(out_path)
    desired = load(paths)
    state = backend.read()
    check_replace_addresses(replace, state)
    policy = effective_policy(desired, policy_overrides)
    observed = None
    if refresh:
        reporter = Progress.for_stream(quiet=quiet)
        with api_context(sandbox, base_url, backend, rate_limit, parallelism, reporter) as api:
            check_instance(state, api.instance, backend.name)
            observed = refreshed(desired, state, api, parallelism, reporter)
    result = make_plan(desired, state, now_utc(), observed=observed, replace=replace, policy=policy,
                       allow_duplicates=allow_duplicate)
    emit_plan(result, output_format, color=not no_color and sys.stdout.isatty())
    if out_path is not None:
        save_plan(out_path, desired, result, state, policy, list(replace), refresh=refresh,
                  allow_duplicates=list(allow_duplicate))
        progress(f"Saved the plan to {out_path}. Apply exactly this plan with: {apply_command(out_path, backend, base_url)}")
    if detailed_exitcode and result.changes:  # blocked and missing entries need a human too
        sys.exit(2)


def apply_command(out_path: Path, backend: Backend, base_url: str | None) -> str:
    """The apply of a saved plan, with every option it needs to find the same state and API."""
    words = ["provisioner", "apply", str(out_path), *shlex.split(backend.location_options())]
    if base_url:
        words += ["--base-url", base_url]
    return shlex.join(words)


def refuse_plan_over_a_manifest(out_path: Path) -> None:
    if out_path.suffix.lower() in (".yaml", ".yml"):
        raise UserError(
            f"--out {out_path}: a saved plan is JSON, and a .yaml/.yml name would make it read as a "
            "manifest (or overwrite one). Name it e.g. provisioner.plan, outside the manifests directory."
        )


def emit_plan(result: Plan, output_format: str, color: bool) -> None:
    if output_format == "json":
        click.echo(render_json(result))
    elif output_format == "markdown":
        click.echo(render_markdown(result))
    else:
        click.echo(render_text(result, color=color))


def check_replace_addresses(replace, state) -> None:
    unknown = [address for address in replace if address not in state.resources]
    if unknown:
        raise UserError(
            f"--replace {unknown[0]}: no such address in state; 'provisioner state list' shows the recorded ones."
        )


@main.command(short_help="Create and update batches (asks for 'yes').")
@paths_argument
@api_options
@policy_options
@lock_option
@click.option("--auto-approve", is_flag=True, help="Apply without asking for 'yes'.")
@click.option("--refresh", is_flag=True, help="Compare with the live API before planning.")
@click.option("--replace", "replace", multiple=True, metavar="ADDRESS", help="Recreate this batch on purpose (issues its credits again).")
@click.option("--allow-large", is_flag=True, help="Apply even when the plan breaks a guardrail of the policy.")
@click.option(
    "--recovery-wait",
    default=RECOVERY_WAIT,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds an interrupted create may still be running on the server. A batch found is adopted at "
    "once; only to decide that a create never happened does recovery wait until this long after it.",
)
@click.option("--no-color", is_flag=True, help="No ANSI colours in the plan.")
@allow_duplicate_option
@click.option(
    "--no-duplicate-check",
    is_flag=True,
    help="Skip listing each client before its first create (saves one request per client; a lost state "
    "entry or a hand-made batch is then issued again). See the README before using it.",
)
@quiet_option
@user_errors
@with_backend
def apply(paths, backend, sandbox, base_url, parallelism, rate_limit, lock_timeout, auto_approve, refresh,
          replace, allow_large, recovery_wait, no_color, allow_duplicate, no_duplicate_check, quiet,
          **policy_overrides) -> None:
    """Create and update batches so the API matches the manifests (or a saved plan)."""
    saved = saved_plan_in(paths)
    if saved:
        saved.refuse_options(replace=replace, refresh=refresh, allow_duplicate=allow_duplicate, **policy_overrides)
    desired = saved.desired if saved else load(paths)
    policy = saved.policy if saved else effective_policy(desired, policy_overrides)
    replace = saved.replace if saved else list(replace)
    refresh = saved.refresh if saved else refresh
    allow_duplicate = saved.allow_duplicates if saved else list(allow_duplicate)
    reporter = Progress.for_stream(quiet=quiet)
    with backend.lock("apply", timeout=lock_timeout, warn=progress):
        if saved:  # before the writer folds an interrupted run in (which moves the serial on)
            saved.check_against(backend.read(), backend.name)
        with backend.open_writer() as writer:
            check_replace_addresses(replace, writer.state)
            with api_context(sandbox, base_url, backend, rate_limit, parallelism, reporter) as api:
                check_instance(writer.state, api.instance, backend.name)
                observed = refreshed(desired, writer.state, api, parallelism, reporter) if refresh else None
                result = make_plan(desired, writer.state, now_utc(), observed=observed, replace=replace, policy=policy,
                                   allow_duplicates=allow_duplicate)
                if result.has_changes:
                    preflight(api, result, desired, writer.state)
                if saved and not saved.matches(result):
                    raise PlanFileError(
                        f"{saved.path}: applying it now would differ from what was reviewed (a batch "
                        "expired or the API changed). Make and review a new plan."
                    )
                click.echo(render_text(result, color=not no_color and sys.stdout.isatty()))
                refuse_unsafe(result, allow_large)
                if not result.has_changes:
                    return
                if not (auto_approve or saved):
                    confirm()
                outcome = run_apply(
                    api, writer, result, desired, parallelism, recovery_wait, reporter,
                    duplicate_check=not no_duplicate_check, allow_duplicates=allow_duplicate,
                )
    report(outcome, result)


def refuse_unsafe(result: Plan, allow_large: bool) -> None:
    if result.blocked:
        raise UserError(
            f"{len(result.blocked)} change(s) cannot be applied (marked '!' above); nothing was changed. "
            "Fix them as the plan says, then run apply again."
        )
    if result.violations and not allow_large:
        raise UserError(
            f"the plan breaks {len(result.violations)} guardrail(s) of the policy (listed above); nothing "
            "was changed. If this is intended, raise the policy in the manifest (visible in review) or "
            "pass --allow-large."
        )


def confirm() -> None:
    if not sys.stdin.isatty():
        raise UserError(
            "apply needs a 'yes' and there is no terminal to ask on. Review the plan above, then run "
            "again with --auto-approve (or apply a saved plan: provisioner plan --out FILE)."
        )
    click.echo("\nDo you want to perform these actions?\n  Only 'yes' will be accepted to approve.\n")
    answer = click.prompt("  Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        raise UserError("apply cancelled; nothing was changed.")


def run_apply(
    api, writer: StateWriter, result: Plan, desired: Desired, parallelism: int, recovery_wait: float,
    reporter: Progress, duplicate_check: bool = True, allow_duplicates=(),
) -> ApplyResult:
    stop = api.stop  # set, it cancels every request that has not left (worker, rate-limit slot, pause)

    def on_interrupt(signum, frame):
        if stop.is_set():
            # Every intent and id is already in the fsynced journal: leaving now loses nothing.
            reporter.close(wait=False)
            progress("Second interrupt: exiting now. The next command resolves what was in flight.")
            os._exit(1)
        stop.set()
        reporter.warn("Interrupt received: no new requests; waiting for those in flight (Ctrl-C again to exit at once).")

    previous = signal.signal(signal.SIGINT, on_interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        applier = Applier(
            api, writer, parallelism=parallelism, reporter=reporter, stop=stop, recovery_wait=recovery_wait,
            duplicate_check=duplicate_check, allow_duplicates=allow_duplicates,
        )
        return applier.apply(result, desired)
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def report(outcome: ApplyResult, result: Plan) -> None:
    issued = sum(change.credits for change in result.changes if change.address in set(outcome.created))
    click.echo(
        f"\nApply {'complete' if outcome.ok else 'stopped'}! Batches: {len(outcome.created)} created, "
        f"{len(outcome.updated)} updated, {len(outcome.adopted)} recovered. Credits issued: {issued:,}."
    )
    if outcome.interrupted:
        progress(f"Interrupted: {outcome.skipped} change(s) not started; run apply again to finish.")
    if outcome.failed:
        raise UserError(failure_summary(outcome.failed))
    if outcome.interrupted:
        sys.exit(1)


def failure_summary(failed: list[tuple[str, str]]) -> str:
    """One line per distinct reason: a wrong key must not print the same 401 for every batch."""
    by_message: dict[str, list[str]] = {}
    for address, message in failed:
        by_message.setdefault(message, []).append(address)
    lines = []
    for message, addresses in by_message.items():
        shown = ", ".join(addresses[:5]) + (f" and {len(addresses) - 5} more" if len(addresses) > 5 else "")
        lines.append(f"  {shown}: {message}")
    return f"{len(failed)} change(s) failed:\n" + "\n".join(lines)


@main.command(short_help="Update state from the live API; creates nothing.")
@paths_argument
@api_options
@lock_option
@quiet_option
@user_errors
@with_backend
def refresh(paths, backend, sandbox, base_url, parallelism, rate_limit, lock_timeout, quiet) -> None:
    """Update state from the live API (names, expiries, balances); creates nothing."""
    desired = load(paths)
    reporter = Progress.for_stream(quiet=quiet)
    with backend.writing("refresh", timeout=lock_timeout, warn=progress) as writer:
        with api_context(sandbox, base_url, backend, rate_limit, parallelism, reporter) as api:
            check_instance(writer.state, api.instance, backend.name)
            observed = refreshed(desired, writer.state, api, parallelism, reporter)
            missing = refresh_state(writer, observed)
            writer.bind_instance(api.instance)
        recorded = len(writer.state.resources)
    click.echo(f"Refreshed {recorded} recorded batches.")
    for address in missing:
        progress(f"Warning: {address} is recorded but the API no longer lists it (see 'provisioner plan --refresh').")


@main.command(name="import", short_help="Adopt an existing batch under an address.")
@click.argument("address")
@click.argument("batch_id")
@paths_argument
@api_options
@lock_option
@user_errors
@with_backend
def import_command(address, batch_id, paths, backend, sandbox, base_url, parallelism, rate_limit, lock_timeout) -> None:
    """Adopt an existing batch as ADDRESS, so provisioner manages it from now on."""
    desired = load(paths)
    with backend.writing("import", timeout=lock_timeout, warn=progress) as writer:
        with api_context(sandbox, base_url, backend, rate_limit, parallelism) as api:
            check_instance(writer.state, api.instance, backend.name)
            resource = import_batch(writer, api, desired, address, batch_id)
            writer.bind_instance(api.instance)
    click.echo(f"Import successful! {address} is batch {resource.batch_id}. Run 'provisioner plan' to see any differences.")


@main.command(name="force-unlock", short_help="Remove a lock left by a run that is gone.")
@click.argument("lock_id")
@sandbox_option
@user_errors
@with_backend
def force_unlock_cmd(lock_id, backend, sandbox) -> None:
    """Remove the lock LOCK_ID left by a run that is gone (see the lock error for the ID)."""
    info = backend.force_unlock(lock_id)
    click.echo(f"Lock {info.id} ({info.command} by {info.user}@{info.host}, pid {info.pid}) removed.")


@main.command(short_help="Create an empty state (first run only).")
@user_errors
@with_backend
def init(backend) -> None:
    """Create an empty state: a file, or a workspace in a PostgreSQL database.

    Every other command refuses a state that does not exist, so that a mistyped --state can never
    make a plan that creates every batch again. Run init once, for the very first run.
    """
    state = backend.create()
    click.echo(f"Initialised an empty state at {backend.name} (lineage {state.lineage}).")
    click.echo(f"Next: provisioner plan PATHS...{backend.location_options()}")


@main.group(short_help="Inspect and edit the state.")
def state() -> None:
    """Inspect and edit the state (each edit under the lock, with a backup)."""


@state.command(name="pull")
@sandbox_option
@user_errors
@with_backend
def state_pull(backend, sandbox) -> None:
    """Print the state as JSON (the state file format), from any backend."""
    click.echo(render_snapshot(backend.read()), nl=False)


@state.command(name="push")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@sandbox_option
@lock_option
@click.option("--force", is_flag=True, help="Overwrite a state of another lineage or with a higher serial.")
@user_errors
@with_backend
def state_push(source, backend, sandbox, lock_timeout, force) -> None:
    """Load a state file (as 'state pull' prints it; its journal folded in) into this state.

    \b
    Moving a team from a file to PostgreSQL:
      provisioner init --state postgresql://host/db
      provisioner state push state/default.json --state postgresql://host/db
    """
    pushed = read_pushed_state(source)
    with backend.writing("state push", timeout=lock_timeout, warn=progress) as writer:
        replaced = push_state(writer, pushed, force=force)
    click.echo(
        f"Pushed {plural(len(pushed.resources), 'batch', 'batches')}"
        + (f" and {len(pushed.pending)} interrupted create(s)" if pushed.pending else "")
        + f" into {backend.name} (lineage {pushed.lineage}, serial {writer.state.serial})."
        + (f" It replaced {plural(replaced, 'recorded batch', 'recorded batches')}." if replaced else "")
    )


@state.command(name="list")
@sandbox_option
@user_errors
@with_backend
def state_list(backend, sandbox) -> None:
    """List recorded addresses and their batch ids."""
    recorded = backend.read()
    click.echo(render_resource_list(recorded), nl=False)
    hint_at_the_sandbox_state(recorded, backend, sandbox)


def hint_at_the_sandbox_state(recorded: State, backend: Backend, sandbox: bool) -> None:
    """After the quick start, the batches are in the sandbox's state file, not the default one."""
    if not sandbox and not recorded.resources and Path(SANDBOX_STATE).exists():
        progress(f"({backend.name} is empty; the sandbox's batches are in {SANDBOX_STATE}: add --sandbox.)")


@state.command(name="show")
@click.argument("address")
@sandbox_option
@user_errors
@with_backend
def state_show(address, backend, sandbox) -> None:
    """Show everything recorded for ADDRESS."""
    click.echo(render_resource(backend.read(), address))


@state.command(name="rm")
@click.argument("address")
@sandbox_option
@lock_option
@user_errors
@with_backend
def state_rm(address, backend, sandbox, lock_timeout) -> None:
    """Forget ADDRESS: the batch stays in Thought Industries, unmanaged."""
    with backend.writing("state rm", timeout=lock_timeout, warn=progress) as writer:
        resource = remove_resource(writer, address)
    click.echo(f"Removed {address} (batch {resource.batch_id}) from state; the batch itself is untouched.")
    progress(
        f"Note: while {address} is still declared, the next plan will create a new batch for it (issuing its "
        f"credits again). To manage this batch again instead: provisioner import {address} "
        f"{resource.batch_id} PATHS..."
    )


@state.command(name="mv")
@click.argument("source")
@click.argument("destination")
@sandbox_option
@lock_option
@user_errors
@with_backend
def state_mv(source, destination, backend, sandbox, lock_timeout) -> None:
    """Rename an address (after renaming its key in the manifest) without recreating it."""
    with backend.writing("state mv", timeout=lock_timeout, warn=progress) as writer:
        move_resource(writer, source, destination)
    click.echo(f"Moved {source} to {destination}.")


@state.command(name="forget-intent")
@click.argument("address")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@api_options
@lock_option
@click.option("--auto-approve", is_flag=True, help="Give the create up without asking for 'yes'.")
@user_errors
@with_backend
def state_forget_intent(address, paths, backend, sandbox, base_url, parallelism, rate_limit, lock_timeout,
                        auto_approve) -> None:
    """Give up the interrupted create of ADDRESS, once you have settled it by hand.

    It first lists the batches that create may have made: if one of them is its batch, import it
    instead (provisioner import ADDRESS BATCH_ID PATHS...). Once given up, the next apply creates the
    batch anew (issuing its credits) while it is declared.
    """
    with backend.writing("state forget-intent", timeout=lock_timeout, warn=progress) as writer:
        with api_context(sandbox, base_url, backend, rate_limit, parallelism) as api:
            intent, findings = intent_candidates(writer, api, address)
        click.echo(f"Interrupted create of {address} (at {intent.at}): {json.dumps(intent.attributes, sort_keys=True)}")
        if isinstance(findings, str):
            click.echo(f"Its candidates cannot be shown: {findings}.")
        elif findings.nothing:
            click.echo("No unclaimed batch of its client looks like it: giving it up loses nothing.")
        else:
            click.echo(
                f"These {len(findings.candidates)} unclaimed batch(es) may be the one it made, and would stay "
                f"unmanaged: {describe(findings.candidates)}"
            )
        if not auto_approve:
            confirm_give_up(address)
        forget_intent(writer, address)
    click.echo(f"Gave up the interrupted create of {address}; the next apply creates it while it is declared.")


def confirm_give_up(address: str) -> None:
    if not sys.stdin.isatty():
        raise UserError(
            f"giving up {address}'s interrupted create needs a 'yes' and there is no terminal; nothing was "
            "changed. Run it on a terminal, or with --auto-approve after reading the candidates above."
        )
    answer = click.prompt("  Give it up? Only 'yes' will be accepted", default="", show_default=False)
    if answer.strip() != "yes":
        raise UserError("cancelled; nothing was changed.")


@main.command(short_help="Credits per client: issued, used, remaining, expiring.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@api_options
@click.option("--refresh", is_flag=True, help="Read balances from the live API instead of the state file.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(REPORT_FORMATS),
    default="text",
    show_default=True,
    help="text for people, json for tools (documented format), csv for spreadsheets, html for a report page.",
)
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE instead of stdout."
)
@click.option(
    "--expiring-within",
    default=DEFAULT_EXPIRING_WITHIN,
    show_default=True,
    type=click.IntRange(0),
    metavar="DAYS",
    help="Mark batches that expire within DAYS days.",
)
@user_errors
@with_backend
def show(paths, backend, sandbox, base_url, parallelism, rate_limit, refresh, output_format, out_path,
         expiring_within) -> None:
    """Credits per client and in total: issued, used, remaining, expired unused; each batch with
    its name, expiry and status. The figures are those recorded in state, or read live with
    --refresh. PATHS (manifests) are optional."""
    if out_path is not None:
        refuse_report_over_own_files(out_path, backend)
    current = backend.read()
    observed = None
    if refresh:
        desired = load(paths) if paths else Desired()
        with api_context(sandbox, base_url, backend, rate_limit, parallelism) as api:
            check_instance(current, api.instance, backend.name)
            observed = refreshed(desired, current, api, parallelism)
    credits = build_report(
        current, observed, now_utc(), recorded_at=backend.written_at(), expiring_within=expiring_within
    )
    output = render_report(credits, output_format)
    if out_path is None:
        click.echo(output, nl=False)
    else:
        # A byte-order mark tells spreadsheets the file is UTF-8 (names with accents); stdout stays plain.
        encoding = "utf-8-sig" if output_format == "csv" else "utf-8"
        out_path.write_text(output, encoding=encoding, newline="")
        progress(
            f"Wrote the credits report ({output_format}) to {out_path}: {plural(len(credits.clients), 'client', 'clients')}, "
            f"{plural(len(credits.batches), 'batch', 'batches')}."
        )
    hint_at_the_sandbox_state(current, backend, sandbox)


def refuse_report_over_own_files(out_path: Path, backend: Backend) -> None:
    own = {path.resolve() for path in backend.own_files()}
    if out_path.resolve() in own or out_path.suffix.lower() in (".yaml", ".yml"):
        raise UserError(
            f"--out {out_path}: that name is a state or manifest file, and the report would replace it. "
            "Name the report e.g. credits.html or credits.csv."
        )


@main.command(short_help="Print the JSON Schema of a manifest file.")
def schema() -> None:
    """Print the JSON Schema of a manifest file (for editors and CI)."""
    click.echo(json.dumps(manifest_schema(), indent=2, sort_keys=True))


@main.command(short_help="Serve a local simulator of the credits API.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8666, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free port).")
@click.option("--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), help="SQLite file; default: in memory.")
@click.option("--api-key", envvar="SANDBOX_API_KEY", help="Accept only this key (default: any ti_test_ key).")
@click.option("--rate-limit", type=click.FloatRange(0), help="Requests per minute per key (default: unlimited).")
@click.option("--burst", type=click.IntRange(1), help="Burst allowance (default: rate-limit / 6).")
@click.option("--page-size", default=25, show_default=True, type=click.IntRange(1), help="Batches per listed page.")
@click.option("--latency", default=0.0, type=click.FloatRange(0), help="Seconds added to every response.")
@click.option("--error-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction answered 500/502/503 doing nothing.")
@click.option("--error-after-commit-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction of creates committed, then answered 500.")
@click.option("--drop-after-commit-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction of creates committed, then the connection dropped.")
@click.option("--burst-429-rate", default=0.0, type=click.FloatRange(0, 1), help="Chance a request starts a storm of 429s.")
@click.option("--seed", type=int, help="Seed of the fault injection, to repeat a run.")
def sandbox(host, port, data_path, api_key, rate_limit, burst, page_size, latency, error_rate,
            error_after_commit_rate, drop_after_commit_rate, burst_429_rate, seed) -> None:
    """Serve a local simulator of the credits API (for demos and tests)."""
    from provisioner.api.sandbox import Faults, Sandbox

    faults = Faults(
        latency=latency,
        error_rate=error_rate,
        error_after_commit_rate=error_after_commit_rate,
        drop_after_commit_rate=drop_after_commit_rate,
        burst_429_rate=burst_429_rate,
        seed=seed,
    )
    try:
        server = Sandbox(host=host, port=port, data_path=data_path, api_key=api_key or None,
                         rate_limit=rate_limit or None, burst=burst, faults=faults, page_size=page_size)
        server.start()
    except (OSError, sqlite3.DatabaseError) as exc:
        raise UserError(
            f"the sandbox cannot start on {host}:{port}"
            + (f" with data file {data_path}" if data_path else "")
            + f": {getattr(exc, 'strerror', None) or exc}. Try another --port (0 picks a free one)"
            + (" or another --data file." if data_path else ".")
        ) from None
    reachable = server.url.replace("//0.0.0.0:", "//127.0.0.1:").replace("//[::]:", "//[::1]:")
    click.echo(f"Sandbox listening on {server.url}", err=True)
    click.echo(f"  export TI_BASE_URL={reachable}", err=True)
    click.echo("  export TI_API_KEY=" + ("<the key you passed>" if api_key else "ti_test_anything"), err=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
