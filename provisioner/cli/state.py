"""init, refresh, import, force-unlock and `state ...`: the commands that read and edit the state."""

from __future__ import annotations

import json
from pathlib import Path

import click

from provisioner.cli.apply import RECOVERY_WAIT_HELP
from provisioner.cli.options import (
    api_context,
    api_options,
    ask_yes,
    cache_option,
    check_instance,
    hint_at_the_sandbox_state,
    load_manifests,
    lock_option,
    paths_argument,
    progress,
    quiet_option,
    reason_option,
    refreshed,
    run_context,
    sandbox_option,
    user_errors,
    with_backend,
)
from provisioner.report.wording import plural


@click.command(short_help="Create an empty state (first run only).")
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


@click.command(short_help="Update state from the live API; creates nothing.")
@paths_argument
@api_options
@lock_option
@quiet_option
@cache_option
@reason_option
@user_errors
@with_backend
def refresh(paths, backend, sandbox, base_url, parallelism, rate_limit, lock_timeout, quiet, no_cache, reason) -> None:
    """Update state from the live API (names, expiries, balances); creates nothing."""
    from provisioner.render.progress import Progress
    from provisioner.operations.state_edits import refresh_state

    desired = load_manifests(paths, no_cache)
    reporter = Progress.for_stream(quiet=quiet)
    run = run_context(reason, paths).fields()
    with backend.writing("refresh", timeout=lock_timeout, warn=progress, run=run) as writer:
        with api_context(sandbox, base_url, backend, rate_limit, parallelism, reporter) as api:
            writer.attribute(run, server_clock=api.clock.now)
            check_instance(writer.state, api, backend)
            observed = refreshed(desired, writer.state, api, parallelism, reporter)
            missing = refresh_state(writer, observed)
            writer.bind_instance(api.instance)
        recorded = len(writer.state.resources)
    click.echo(f"Refreshed {recorded} recorded batches.")
    for address in missing:
        progress(f"Warning: {address} is recorded but the API no longer lists it (see 'provisioner plan --refresh').")


@click.command(name="import", short_help="Adopt an existing batch under an address.")
@click.argument("address")
@click.argument("batch_id")
@paths_argument
@api_options
@lock_option
@cache_option
@click.option("--force", is_flag=True, help="Settle an interrupted create with a batch made before it (you are sure).")
@reason_option
@user_errors
@with_backend
def import_command(address, batch_id, paths, backend, sandbox, base_url, parallelism, rate_limit, lock_timeout,
                   no_cache, force, reason) -> None:
    """Adopt an existing batch as ADDRESS, so provisioner manages it from now on."""
    from provisioner.operations.state_edits import import_batch

    desired = load_manifests(paths, no_cache)
    run = run_context(reason, paths).fields()
    with backend.writing("import", timeout=lock_timeout, warn=progress, run=run) as writer:
        with api_context(sandbox, base_url, backend, rate_limit, parallelism) as api:
            writer.attribute(run, server_clock=api.clock.now)
            check_instance(writer.state, api, backend)
            resource = import_batch(writer, api, desired, address, batch_id, force=force)
            writer.bind_instance(api.instance)
    click.echo(f"Import successful! {address} is batch {resource.batch_id}. Run 'provisioner plan' to see any differences.")


@click.command(name="force-unlock", short_help="Remove a lock left by a run that is gone.")
@click.argument("lock_id")
@sandbox_option
@reason_option
@user_errors
@with_backend
def force_unlock(lock_id, backend, sandbox, reason) -> None:
    """Remove the lock LOCK_ID left by a run that is gone (see the lock error for the ID)."""
    info = backend.force_unlock(lock_id, run=run_context(reason).fields())
    click.echo(f"Lock {info.id} ({info.command} by {info.user}@{info.host}, pid {info.pid}) removed.")


@click.group(short_help="Inspect and edit the state.")
def state() -> None:
    """Inspect and edit the state (each edit under the lock, with a backup)."""


@state.command(name="pull")
@sandbox_option
@user_errors
@with_backend
def state_pull(backend, sandbox) -> None:
    """Print the state as JSON (the state file format), from any backend, with its audit trail."""
    from provisioner.backends.file import render_snapshot

    state = backend.read()
    click.echo(render_snapshot(state, history=backend.read_history()), nl=False)


@state.command(name="push")
@click.argument("source", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@sandbox_option
@lock_option
@click.option("--force", is_flag=True, help="Overwrite a state of another lineage or with a higher serial.")
@reason_option
@user_errors
@with_backend
def state_push(source, backend, sandbox, lock_timeout, force, reason) -> None:
    """Load a state file (as 'state pull' prints it; its journal folded in) into this state.

    \b
    Moving a team from a file to PostgreSQL:
      provisioner init --state postgresql://host/db
      provisioner state push state/default.json --state postgresql://host/db
    """
    from provisioner.operations.state_edits import push_state, read_pushed_state

    pushed, history = read_pushed_state(source)
    with backend.writing("state push", timeout=lock_timeout, warn=progress, run=run_context(reason).fields()) as writer:
        replaced = push_state(writer, pushed, force=force, history=history, recorded_history=backend.read_history())
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
    from provisioner.render.state_views import render_resource_list

    recorded = backend.read()
    click.echo(render_resource_list(recorded), nl=False)
    hint_at_the_sandbox_state(recorded, backend, sandbox)


@state.command(name="show")
@click.argument("address")
@sandbox_option
@user_errors
@with_backend
def state_show(address, backend, sandbox) -> None:
    """Show everything recorded for ADDRESS."""
    from provisioner.render.state_views import render_resource

    click.echo(render_resource(backend.read(), address))


@state.command(name="rm")
@click.argument("address")
@sandbox_option
@lock_option
@reason_option
@user_errors
@with_backend
def state_rm(address, backend, sandbox, lock_timeout, reason) -> None:
    """Forget ADDRESS: the batch stays in Thought Industries, unmanaged."""
    from provisioner.operations.state_edits import remove_resource

    with backend.writing("state rm", timeout=lock_timeout, warn=progress, run=run_context(reason).fields()) as writer:
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
@reason_option
@user_errors
@with_backend
def state_mv(source, destination, backend, sandbox, lock_timeout, reason) -> None:
    """Rename an address (after renaming its key in the manifest) without recreating it."""
    from provisioner.operations.state_edits import move_resource

    with backend.writing("state mv", timeout=lock_timeout, warn=progress, run=run_context(reason).fields()) as writer:
        move_resource(writer, source, destination)
    click.echo(f"Moved {source} to {destination}.")


@state.command(name="forget-intent")
@click.argument("address")
@api_options
@lock_option
@click.option("--auto-approve", is_flag=True, help="Give the create up without asking for 'yes'.")
@click.option(
    "--recovery-wait",
    default=None,
    type=click.FloatRange(0),
    help=f"Seconds an interrupted create may still be running on the server (as for apply). Default: {RECOVERY_WAIT_HELP}.",
)
@click.option("--force", is_flag=True, help="Give it up even while the create may still be in progress.")
@reason_option
@user_errors
@with_backend
def state_forget_intent(address, backend, sandbox, base_url, parallelism, rate_limit, lock_timeout,
                        auto_approve, recovery_wait, force, reason) -> None:
    """Give up the interrupted create of ADDRESS, once you have settled it by hand.

    It first lists the batches that create may have made: if one of them is its batch, import it
    instead (provisioner import ADDRESS BATCH_ID PATHS...). Once given up, the next apply creates the
    batch anew (issuing its credits) while it is declared.
    """
    from provisioner.applying.matching import describe
    from provisioner.operations.state_edits import forget_intent, intent_candidates

    run = run_context(reason).fields()
    with backend.writing("state forget-intent", timeout=lock_timeout, warn=progress, run=run) as writer:
        with api_context(sandbox, base_url, backend, rate_limit, parallelism) as api:
            writer.attribute(run, server_clock=api.clock.now)
            from provisioner.applying.applier import RECOVERY_WAIT

            window = RECOVERY_WAIT if recovery_wait is None else recovery_wait
            check_instance(writer.state, api, backend)
            intent, findings = intent_candidates(writer, api, address, window, force=force)
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
            ask_yes(
                "  Give it up? Only 'yes' will be accepted",
                f"giving up {address}'s interrupted create needs a 'yes' and there is no terminal; nothing was "
                "changed. Run it on a terminal, or with --auto-approve after reading the candidates above.",
            )
        forget_intent(writer, address)
    click.echo(f"Gave up the interrupted create of {address}; the next apply creates it while it is declared.")
