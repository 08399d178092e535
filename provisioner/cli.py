"""Command line: parse options, call the layers, map user errors to exit code 1."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import click

from provisioner import __version__

# Each command imports the layers it uses when it runs: `validate` and `plan` never load
# the HTTP client, and start-up stays short. provisioner uses no pydantic plugins, and
# looking for installed ones (every package's entry points) costs 25 ms of each start-up.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
if TYPE_CHECKING:
    from provisioner.applier import ApplyResult
    from provisioner.models import Desired, Plan, Policy
    from provisioner.state import State, StateWriter

DEFAULT_STATE = "state/default.json"
SANDBOX_STATE = "state/sandbox.json"
# The errors a user can cause, by module: a layer that was not imported raised none of them.
USER_ERRORS = {
    "provisioner.manifest": "ManifestError",
    "provisioner.state": "StateError",
    "provisioner.lock": "LockError",
    "provisioner.api.client": "ApiError",
    "provisioner.planfile": "PlanFileError",
    "provisioner.statecmd": "StateCommandError",
}


def user_error_types() -> tuple[type[Exception], ...]:
    return tuple(getattr(sys.modules[module], name) for module, name in USER_ERRORS.items() if module in sys.modules)


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
        except Exception as exc:
            if isinstance(exc, user_error_types()):
                raise UserError(str(exc)) from None
            raise

    return wrapper


def progress(line: str) -> None:
    click.echo(line, err=True)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


# --- shared options ------------------------------------------------------------

paths_argument = click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))


def state_option(command):
    return click.option(
        "--state",
        "state_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help=f"State file. Default: {DEFAULT_STATE} ({SANDBOX_STATE} with --sandbox).",
    )(command)


def local_state_options(command):
    """--state and --sandbox for commands that only touch the state file."""
    command = click.option("--sandbox", is_flag=True, help=f"Use the sandbox's state file ({SANDBOX_STATE}).")(command)
    return state_option(command)


def api_options(command):
    options = [
        click.option("--sandbox", is_flag=True, help="Use an embedded local sandbox (data under state/) instead of TI_BASE_URL."),
        click.option("--base-url", envvar=None, help="API base URL; default: $TI_BASE_URL. The key always comes from $TI_API_KEY."),
        click.option("--parallelism", default=10, show_default=True, type=click.IntRange(1, 64), help="Requests in flight at once."),
        click.option(
            "--rate-limit",
            default=120.0,
            show_default=True,
            envvar="TI_RATE_LIMIT",
            type=click.FloatRange(0),
            help="Requests per minute to stay under (Standard plan: 120, Enterprise: 600; 0: no limit). "
            "Default from $TI_RATE_LIMIT.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


cache_option = click.option(
    "--no-cache",
    is_flag=True,
    help="Read every manifest again, ignoring the cache of files read before (.provisioner/cache/, "
    "or $XDG_CACHE_HOME/provisioner/).",
)


def load_manifests(paths, no_cache: bool) -> Desired:
    from provisioner.manifest import load
    from provisioner.manifestcache import ManifestCache

    return load(paths, cache=None if no_cache else ManifestCache())


def lock_option(command):
    return click.option(
        "--lock-timeout",
        default=0.0,
        show_default=True,
        type=click.FloatRange(0),
        help="Seconds to wait for another run's lock on the state before failing.",
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


def resolve_state_path(state_path: Path | None, sandbox: bool) -> Path:
    path = state_path or Path(SANDBOX_STATE if sandbox else DEFAULT_STATE)
    # Through a symlink, the lock would be the link's and the atomic rename would replace the
    # link itself: work on the file it points to.
    return path.resolve() if path.is_symlink() else path


def effective_policy(desired: Desired, overrides: dict) -> Policy:
    changes = {name: value for name, value in overrides.items() if value is not None}
    return desired.policy.model_copy(update=changes)


def api_context(sandbox: bool, base_url: str | None, state_path: Path, rate_limit: float, parallelism: int):
    from provisioner.connection import open_api

    return open_api(
        base_url=base_url,
        sandbox_dir=state_path.parent if sandbox else None,
        rate_limit=rate_limit or None,
        parallelism=parallelism,
    )


def refreshed(desired: Desired, state, api, parallelism: int) -> dict:
    from provisioner.refresh import observe

    client_ids = {batch.client_id for batch in desired.batches.values()}
    client_ids |= {resource.client_id for resource in state.resources.values()}
    return observe(api, sorted(client_ids), parallelism=parallelism, progress=progress)


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
@cache_option
@user_errors
def validate(paths: tuple[Path, ...], no_cache: bool) -> None:
    """Check manifests only: no state, no network."""
    desired = load_manifests(paths, no_cache)
    click.echo(
        f"Success! {plural(len(desired.batches), 'batch', 'batches')} of "
        f"{plural(len(desired.clients), 'client', 'clients')} are valid."
    )


def plural(count: int, one: str, many: str) -> str:
    return f"{count:,} {one if count == 1 else many}"


@main.command(short_help="Show what apply would change, and the credits.")
@paths_argument
@state_option
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
@cache_option
@user_errors
def plan(paths, state_path, sandbox, base_url, parallelism, rate_limit, refresh, output_format, out_path,
         detailed_exitcode, no_color, replace, no_cache, **policy_overrides) -> None:
    """Show what apply would change, and the credits it would issue."""
    from provisioner.planfile import refuse_saved_plans, save_plan
    from provisioner.planner import make_plan
    from provisioner.state import check_instance, read_state

    refuse_saved_plans(paths)
    if out_path is not None:
        refuse_plan_over_a_manifest(out_path)
    desired = load_manifests(paths, no_cache)
    state_path = resolve_state_path(state_path, sandbox)
    state = read_state(state_path)
    check_replace_addresses(replace, state)
    policy = effective_policy(desired, policy_overrides)
    observed = None
    if refresh:
        with api_context(sandbox, base_url, state_path, rate_limit, parallelism) as api:
            check_instance(state, api.instance, state_path)
            observed = refreshed(desired, state, api, parallelism)
    result = make_plan(desired, state, now_utc(), observed=observed, replace=replace, policy=policy)
    emit_plan(result, output_format, color=not no_color and sys.stdout.isatty())
    if out_path is not None:
        save_plan(out_path, desired, result, state, policy, list(replace), refresh=refresh)
        progress(f"Saved the plan to {out_path}. Apply exactly this plan with: provisioner apply {out_path}")
    if detailed_exitcode and result.changes:  # blocked and missing entries need a human too
        sys.exit(2)


def refuse_plan_over_a_manifest(out_path: Path) -> None:
    if out_path.suffix.lower() in (".yaml", ".yml"):
        raise UserError(
            f"--out {out_path}: a saved plan is JSON, and a .yaml/.yml name would make it read as a "
            "manifest (or overwrite one). Name it e.g. provisioner.plan, outside the manifests directory."
        )


def emit_plan(result: Plan, output_format: str, color: bool) -> None:
    from provisioner.render import render_json, render_markdown, text_chunks

    if output_format == "json":
        click.echo(render_json(result))
    elif output_format == "markdown":
        click.echo(render_markdown(result))
    else:
        for chunk in text_chunks(result, color=color):  # a large plan is never held whole
            click.echo(chunk, nl=False)
        click.echo()


def check_replace_addresses(replace, state) -> None:
    unknown = [address for address in replace if address not in state.resources]
    if unknown:
        raise UserError(
            f"--replace {unknown[0]}: no such address in state; 'provisioner state list' shows the recorded ones."
        )


@main.command(short_help="Create and update batches (asks for 'yes').")
@paths_argument
@state_option
@api_options
@policy_options
@lock_option
@click.option("--auto-approve", is_flag=True, help="Apply without asking for 'yes'.")
@click.option("--refresh", is_flag=True, help="Compare with the live API before planning.")
@click.option("--replace", "replace", multiple=True, metavar="ADDRESS", help="Recreate this batch on purpose (issues its credits again).")
@click.option("--allow-large", is_flag=True, help="Apply even when the plan breaks a guardrail of the policy.")
@click.option(
    "--recovery-wait",
    default=lambda: recovery_wait_default(),  # read from the applier only when apply runs
    type=click.FloatRange(0),
    help="Seconds an interrupted create may still be running on the server; recovery waits that long after it. "
    "Default: 60.",
)
@click.option("--no-color", is_flag=True, help="No ANSI colours in the plan.")
@cache_option
@user_errors
def apply(paths, state_path, sandbox, base_url, parallelism, rate_limit, lock_timeout, auto_approve, refresh,
          replace, allow_large, recovery_wait, no_color, no_cache, **policy_overrides) -> None:
    """Create and update batches so the API matches the manifests (or a saved plan)."""
    from provisioner.lock import StateLock
    from provisioner.planfile import PlanFileError, saved_plan_in
    from provisioner.planner import make_plan
    from provisioner.render import render_text
    from provisioner.state import StateWriter, check_instance, read_state

    saved = saved_plan_in(paths)
    if saved:
        saved.refuse_options(replace=replace, refresh=refresh, **policy_overrides)
    desired = saved.desired if saved else load_manifests(paths, no_cache)
    policy = saved.policy if saved else effective_policy(desired, policy_overrides)
    replace = saved.replace if saved else list(replace)
    refresh = saved.refresh if saved else refresh
    state_path = resolve_state_path(state_path, sandbox)
    with StateLock(state_path, command="apply", timeout=lock_timeout, warn=progress):
        if saved:  # before StateWriter folds a leftover journal in (which moves the serial on)
            saved.check_against(read_state(state_path), state_path)
        with StateWriter(state_path) as writer:
            check_replace_addresses(replace, writer.state)
            with api_context(sandbox, base_url, state_path, rate_limit, parallelism) as api:
                check_instance(writer.state, api.instance, state_path)
                observed = refreshed(desired, writer.state, api, parallelism) if refresh else None
                result = make_plan(desired, writer.state, now_utc(), observed=observed, replace=replace, policy=policy)
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
                writer.bind_instance(api.instance)
                outcome = run_apply(api, writer, result, desired, parallelism, recovery_wait)
    report(outcome, result)


def recovery_wait_default() -> float:
    from provisioner.applier import RECOVERY_WAIT

    return RECOVERY_WAIT


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
    api, writer: StateWriter, result: Plan, desired: Desired, parallelism: int, recovery_wait: float
) -> ApplyResult:
    stop = threading.Event()

    def on_interrupt(signum, frame):
        if stop.is_set():
            # Every intent and id is already in the fsynced journal: leaving now loses nothing.
            progress("Second interrupt: exiting now. The next command resolves what was in flight.")
            os._exit(1)
        stop.set()
        progress("Interrupt received: no new requests; waiting for those in flight (Ctrl-C again to exit at once).")

    from provisioner.applier import Applier

    previous = signal.signal(signal.SIGINT, on_interrupt) if threading.current_thread() is threading.main_thread() else None
    try:
        applier = Applier(
            api, writer, parallelism=parallelism, progress=progress, stop=stop, recovery_wait=recovery_wait
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
@state_option
@api_options
@lock_option
@cache_option
@user_errors
def refresh(paths, state_path, sandbox, base_url, parallelism, rate_limit, lock_timeout, no_cache) -> None:
    """Update state from the live API (names, expiries, balances); creates nothing."""
    from provisioner.lock import StateLock
    from provisioner.state import StateWriter, check_instance
    from provisioner.statecmd import refresh_state

    desired = load_manifests(paths, no_cache)
    state_path = resolve_state_path(state_path, sandbox)
    with StateLock(state_path, command="refresh", timeout=lock_timeout, warn=progress):
        with StateWriter(state_path) as writer:
            with api_context(sandbox, base_url, state_path, rate_limit, parallelism) as api:
                check_instance(writer.state, api.instance, state_path)
                observed = refreshed(desired, writer.state, api, parallelism)
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
@state_option
@api_options
@lock_option
@cache_option
@user_errors
def import_command(address, batch_id, paths, state_path, sandbox, base_url, parallelism, rate_limit, lock_timeout,
                   no_cache) -> None:
    """Adopt an existing batch as ADDRESS, so provisioner manages it from now on."""
    from provisioner.lock import StateLock
    from provisioner.state import StateWriter, check_instance
    from provisioner.statecmd import import_batch

    desired = load_manifests(paths, no_cache)
    state_path = resolve_state_path(state_path, sandbox)
    with StateLock(state_path, command="import", timeout=lock_timeout, warn=progress):
        with StateWriter(state_path) as writer:
            with api_context(sandbox, base_url, state_path, rate_limit, parallelism) as api:
                check_instance(writer.state, api.instance, state_path)
                resource = import_batch(writer, api, desired, address, batch_id)
                writer.bind_instance(api.instance)
    click.echo(f"Import successful! {address} is batch {resource.batch_id}. Run 'provisioner plan' to see any differences.")


@main.command(name="force-unlock", short_help="Remove a lock left by a run that is gone.")
@click.argument("lock_id")
@local_state_options
@user_errors
def force_unlock_cmd(lock_id, state_path, sandbox) -> None:
    """Remove the lock LOCK_ID left by a run that is gone (see the lock error for the ID)."""
    from provisioner.lock import force_unlock

    info = force_unlock(resolve_state_path(state_path, sandbox), lock_id)
    click.echo(f"Lock {info.id} ({info.command} by {info.user}@{info.host}, pid {info.pid}) removed.")


@main.group(short_help="Inspect and edit the state file.")
def state() -> None:
    """Inspect and edit the state file (each edit under the lock, with a backup)."""


@state.command(name="list")
@local_state_options
@user_errors
def state_list(state_path, sandbox) -> None:
    """List recorded addresses and their batch ids."""
    from provisioner.state import read_state
    from provisioner.views import render_resource_list

    state_path = resolve_state_path(state_path, sandbox)
    recorded = read_state(state_path)
    click.echo(render_resource_list(recorded), nl=False)
    hint_at_the_sandbox_state(recorded, state_path, sandbox)


def hint_at_the_sandbox_state(recorded: State, state_path: Path, sandbox: bool) -> None:
    """After the quick start, the batches are in the sandbox's state file, not the default one."""
    if not sandbox and not recorded.resources and Path(SANDBOX_STATE).exists():
        progress(f"({state_path} is empty; the sandbox's batches are in {SANDBOX_STATE}: add --sandbox.)")


@state.command(name="show")
@click.argument("address")
@local_state_options
@user_errors
def state_show(address, state_path, sandbox) -> None:
    """Show everything recorded for ADDRESS."""
    from provisioner.state import read_state
    from provisioner.views import render_resource

    click.echo(render_resource(read_state(resolve_state_path(state_path, sandbox)), address))


@state.command(name="rm")
@click.argument("address")
@local_state_options
@lock_option
@user_errors
def state_rm(address, state_path, sandbox, lock_timeout) -> None:
    """Forget ADDRESS: the batch stays in Thought Industries, unmanaged."""
    from provisioner.lock import StateLock
    from provisioner.state import StateWriter
    from provisioner.statecmd import remove_resource

    state_path = resolve_state_path(state_path, sandbox)
    with StateLock(state_path, command="state rm", timeout=lock_timeout, warn=progress):
        with StateWriter(state_path) as writer:
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
@local_state_options
@lock_option
@user_errors
def state_mv(source, destination, state_path, sandbox, lock_timeout) -> None:
    """Rename an address (after renaming its key in the manifest) without recreating it."""
    from provisioner.lock import StateLock
    from provisioner.state import StateWriter
    from provisioner.statecmd import move_resource

    state_path = resolve_state_path(state_path, sandbox)
    with StateLock(state_path, command="state mv", timeout=lock_timeout, warn=progress):
        with StateWriter(state_path) as writer:
            move_resource(writer, source, destination)
    click.echo(f"Moved {source} to {destination}.")


@main.command(short_help="Balances, usage and expiry per client.")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@state_option
@api_options
@click.option("--refresh", is_flag=True, help="Read balances from the live API instead of the state file.")
@user_errors
def show(paths, state_path, sandbox, base_url, parallelism, rate_limit, refresh) -> None:
    """A table per client of its batches: balances, usage, expiry, status."""
    from provisioner.manifest import load
    from provisioner.models import Desired
    from provisioner.state import check_instance, read_state
    from provisioner.views import render_show

    state_path = resolve_state_path(state_path, sandbox)
    current = read_state(state_path)
    observed = None
    if refresh:
        desired = load(paths) if paths else Desired()
        with api_context(sandbox, base_url, state_path, rate_limit, parallelism) as api:
            check_instance(current, api.instance, state_path)
            observed = refreshed(desired, current, api, parallelism)
    click.echo(render_show(current, observed), nl=False)
    hint_at_the_sandbox_state(current, state_path, sandbox)


@main.command(short_help="Print the JSON Schema of a manifest file.")
def schema() -> None:
    """Print the JSON Schema of a manifest file (for editors and CI)."""
    from provisioner.manifest import manifest_schema

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
    import sqlite3

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
