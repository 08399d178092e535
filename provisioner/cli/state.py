"""init, refresh, import, force-unlock and `state ...`: the commands that read and edit the state."""

from __future__ import annotations

import json
from pathlib import Path

import click

from provisioner.cli.apply import RECOVERY_WAIT_HELP
from provisioner.cli.options import (
    api_options,
    api_settings,
    ask_yes,
    cache_option,
    hint_at_the_sandbox_state,
    lock_option,
    now_utc,
    paths_argument,
    progress,
    quiet_option,
    reason_option,
    run_context,
    sandbox_option,
    user_errors,
    with_backend,
)
from provisioner.cli.spellings import TerraformSpellings
from provisioner.core.plurals import plural
from provisioner.operations.manifests import load_manifests


@click.command(short_help="Create an empty state (first run only).")
@click.option(
    "--gitignore",
    "write_gitignore",
    is_flag=True,
    help="Also add to ./.gitignore the lines for provisioner's local files (sandbox data, backups, the lock, "
    "temporary files, the cache); a state that exists already is then left as it is, not an error.",
)
@user_errors
@with_backend
def init(backend, write_gitignore) -> None:
    """Create an empty state: a file, or a workspace in a PostgreSQL database.

    Every other command refuses a state that does not exist, so that a mistyped --state can never
    make a plan that creates every batch again. Run init once, for the very first run. It names the
    lines your repository's .gitignore still needs (--gitignore writes them).
    """
    from provisioner.backends import StateError
    from provisioner.operations.gitignore import update_gitignore

    try:
        state = backend.create()
    except StateError:
        if not (write_gitignore and backend.exists()):
            raise
        click.echo(f"The state at {backend.name} exists already; it was left as it is.")
    else:
        click.echo(f"Initialised an empty state at {backend.name} (lineage {state.lineage}).")
    own = backend.own_files()
    missing = update_gitignore(own[0] if own else None, write=write_gitignore)
    if missing and write_gitignore:
        click.echo(f"Added {plural(len(missing), 'line', 'lines')} to .gitignore: {' '.join(missing)}")
    elif missing:
        click.echo(
            "\nYour repository's .gitignore needs these lines (provisioner's local files; "
            "'provisioner init --gitignore' adds them):"
        )
        click.echo("\n".join(f"  {line}" for line in missing))
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
    from provisioner.operations.connected_edits import Locking, refresh_from_api
    from provisioner.render.progress import Progress

    desired = load_manifests(paths, no_cache)
    reporter = Progress.for_stream(quiet=quiet)
    locking = Locking("refresh", lock_timeout, progress, run_context(reason, paths).fields())
    settings = api_settings(sandbox, base_url, rate_limit, parallelism)
    refreshed = refresh_from_api(desired, backend, locking, settings, reporter)
    click.echo(f"Refreshed {refreshed.recorded} recorded batches.")
    for warning in refreshed.warnings:
        progress(f"Warning: {warning}")
    for address in refreshed.missing:
        progress(f"Warning: {address} is recorded but the API no longer lists it (see 'provisioner plan --refresh').")


SHOWN_FILES = 10  # manifests named one by one; beyond, counted
IMPORT_USAGE = "ADDRESS BATCH_ID PATHS... | --generate-config-out DIR --client KEY=CLIENT_ID [PATHS...]"


@click.command(name="import", short_help="Adopt existing batches: one under an address, or whole clients.")
@click.argument("arguments", nargs=-1, metavar=IMPORT_USAGE)
@click.option(
    "--generate-config-out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write one manifest per client (--client, --clients) into this directory, from the batches the API "
    "lists, and record them all. PATHS, if given, are the manifests already in use.",
)
@click.option(
    "--client",
    "client_options",
    multiple=True,
    metavar="KEY=CLIENT_ID",
    help="With --generate-config-out: a client to adopt, and its key in the manifests. Repeat for more.",
)
@click.option(
    "--clients",
    "clients_file",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="FILE",
    help="With --generate-config-out: a CSV of key,id, one client a line (a header line key,id is allowed).",
)
@api_options
@lock_option
@quiet_option
@cache_option
@click.option("--force", is_flag=True, help="Settle an interrupted create with a batch made before it (you are sure).")
@reason_option
@user_errors
@with_backend
def import_command(
    arguments,
    out_dir,
    client_options,
    clients_file,
    backend,
    sandbox,
    base_url,
    parallelism,
    rate_limit,
    lock_timeout,
    quiet,
    no_cache,
    force,
    reason,
) -> None:
    """Adopt existing batches, so that provisioner manages them from now on.

    \b
    One batch, declared already in PATHS:
      provisioner import acme/q1 BATCH_ID manifests/
    Whole clients, from an instance that has batches already (a manifest is written per client, and
    every batch recorded; then 'provisioner plan DIR' says "No changes"):
      provisioner import --generate-config-out manifests/ --client acme=CLIENT_ID [--client ...]
      provisioner import --generate-config-out manifests/ --clients clients.csv
    """
    from provisioner.operations.connected_edits import Locking, import_one

    settings = api_settings(sandbox, base_url, rate_limit, parallelism)
    if out_dir is not None:
        if force:
            raise click.UsageError("--force belongs to the one-batch form (import ADDRESS BATCH_ID PATHS...).")
        run = run_context(reason, [*arguments, out_dir]).fields()
        _generate(
            arguments,
            out_dir,
            client_options,
            clients_file,
            backend,
            Locking("import", lock_timeout, progress, run),
            settings,
            quiet,
            no_cache,
        )
        return
    if client_options or clients_file:
        raise click.UsageError("--client and --clients go with --generate-config-out DIR (the directory to write to).")
    for position, name in enumerate(("ADDRESS", "BATCH_ID", "PATHS...")):
        if len(arguments) <= position:
            raise click.UsageError(f"Missing argument '{name}'.")
    address, batch_id, *paths = arguments
    desired = load_manifests([Path(path) for path in paths], no_cache)
    locking = Locking("import", lock_timeout, progress, run_context(reason, paths).fields())
    resource = import_one(desired, backend, locking, settings, address, batch_id, force=force)
    click.echo(
        f"Import successful! {address} is batch {resource.batch_id}. Run 'provisioner plan' to see any differences."
    )


def _generate(paths, out_dir, client_options, clients_file, backend, locking, settings, quiet, no_cache) -> None:
    from provisioner.core.models import Desired
    from provisioner.operations.connected_edits import import_clients
    from provisioner.operations.generate import parse_client, read_clients_file
    from provisioner.render.progress import Progress

    clients = [parse_client(text) for text in client_options]
    if clients_file is not None:
        clients += read_clients_file(clients_file)
    desired = load_manifests([Path(path) for path in paths], no_cache) if paths else None
    reporter = Progress.for_stream(quiet=quiet)
    result = import_clients(clients, out_dir, desired or Desired(), now_utc, backend, locking, settings, reporter)
    _say_left_out(result.skipped, {path.stem for path in result.files})
    if not result.files:
        click.echo(
            f"No changes. Every batch listed is recorded already or left out ({len(result.skipped)}, named above); "
            "nothing was written."
        )
        return
    for path in result.files[:SHOWN_FILES]:
        click.echo(f"Wrote {path} ({plural(result.recorded.get(path.stem, 0), 'batch', 'batches')}).")
    if len(result.files) > SHOWN_FILES:
        click.echo(f"Wrote {len(result.files) - SHOWN_FILES:,} more manifests into {out_dir}.")
    if result.schema_file is not None:
        click.echo(f"Wrote {result.schema_file} (the manifests' schema, for editors).")
    click.echo(
        f"Imported {plural(result.total, 'batch', 'batches')} of {plural(len(result.files), 'client', 'clients')} "
        f"into {backend.name}" + (f"; {len(result.skipped)} left out (named above)." if result.skipped else ".")
    )
    shown = " ".join(str(path) for path in [*paths, out_dir])
    click.echo(f'Next: provisioner plan {shown}{backend.location_options()} (it should say "No changes").')


def _say_left_out(skipped, written: set[str]) -> None:
    """Batches recorded already, a line per client (a second run names thousands); the others one by one.
    ``written``: the client keys a manifest was written for."""
    recorded: dict[str, list[str]] = {}
    for item in skipped:
        if item.address is not None:
            recorded.setdefault(item.client_key, []).append(item.address)
        else:
            progress(f"Left out: batch {item.batch_id} of {item.client_key}: {item.reason}.")
    for client_key, addresses in recorded.items():
        addresses.sort()
        shown = ", ".join(addresses[:3]) + (f" and {len(addresses) - 3} more" if len(addresses) > 3 else "")
        progress(f"Left out: {plural(len(addresses), 'batch', 'batches')} of {client_key} recorded already ({shown}).")
        if client_key in written:
            progress(
                f"  So {client_key} is declared in another manifest too: move the new batches of {client_key}.yaml "
                "into that declaration (a client is declared in one file only), or pass that manifest to import "
                "to be stopped before anything is written."
            )


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


@click.group(cls=TerraformSpellings, short_help="Inspect and edit the state.")
def state() -> None:
    """Inspect and edit the state (each edit under the lock, with a backup)."""


@state.command(name="pull", short_help="Print the state as JSON, from any backend.")
@sandbox_option
@user_errors
@with_backend(read_only=True)
def state_pull(backend, sandbox) -> None:
    """Print the state as JSON (the state file format), from any backend, with its audit trail."""
    from provisioner.backends.snapshot import render_snapshot

    state = backend.read()
    click.echo(render_snapshot(state, history=backend.read_history()), nl=False)


@state.command(name="push", short_help="Load a state file into this state.")
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
    if replaced is None:
        click.echo(
            f"{backend.name} already records exactly this (lineage {pushed.lineage}, serial {writer.state.serial}): "
            "nothing changed, and plans saved against it stay valid."
        )
        return
    click.echo(
        f"Pushed {plural(len(pushed.resources), 'batch', 'batches')}"
        + (f" and {len(pushed.pending)} interrupted create(s)" if pushed.pending else "")
        + f" into {backend.name} (lineage {pushed.lineage}, serial {writer.state.serial})."
        + (f" It replaced {plural(replaced, 'recorded batch', 'recorded batches')}." if replaced else "")
    )


@state.command(name="list", short_help="List recorded addresses and their batch ids.")
@sandbox_option
@user_errors
@with_backend(read_only=True)
def state_list(backend, sandbox) -> None:
    """List recorded addresses and their batch ids."""
    from provisioner.render.state_views import render_resource_list

    recorded = backend.read()
    click.echo(render_resource_list(recorded), nl=False)
    hint_at_the_sandbox_state(recorded, backend, sandbox)


@state.command(name="show", short_help="Show everything recorded for ADDRESS.")
@click.argument("address")
@sandbox_option
@user_errors
@with_backend(read_only=True)
def state_show(address, backend, sandbox) -> None:
    """Show everything recorded for ADDRESS."""
    from provisioner.render.state_views import render_resource

    click.echo(render_resource(backend.read(), address))


@state.command(name="rm", short_help="Forget ADDRESS; the batch itself stays.")
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


@state.command(name="release-client", short_help="Give up this workspace's claim on a client (PostgreSQL).")
@click.argument("client_id")
@sandbox_option
@lock_option
@user_errors
@with_backend
def state_release_client(client_id, backend, sandbox, lock_timeout) -> None:
    """Give up this workspace's claim on CLIENT_ID, so that another workspace may create its batches.

    On PostgreSQL, the first workspace to create for a client claims it; every other workspace of the
    database is refused that client's creates. A state file claims nothing (it cannot see other files)."""
    from provisioner.operations.state_edits import release_client

    with backend.writing("state release-client", timeout=lock_timeout, warn=progress) as writer:
        released = release_client(writer, client_id)
    if released:
        click.echo(f"Released client {client_id}: another workspace may now create its batches.")
    else:
        click.echo(f"{backend.name} had no claim on client {client_id}; nothing was changed.")


@state.command(name="mv", short_help="Rename an address without recreating it.")
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


@state.command(name="forget-intent", short_help="Give up an interrupted create, settled by hand.")
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
def state_forget_intent(
    address,
    backend,
    sandbox,
    base_url,
    parallelism,
    rate_limit,
    lock_timeout,
    auto_approve,
    recovery_wait,
    force,
    reason,
) -> None:
    """Give up the interrupted create of ADDRESS, once you have settled it by hand.

    It first lists the batches that create may have made: if one of them is its batch, import it
    instead (provisioner import ADDRESS BATCH_ID PATHS...). Once given up, the next apply creates the
    batch anew (issuing its credits) while it is declared.
    """
    from provisioner.applying.matching import describe
    from provisioner.operations.connected_edits import Locking, forget_intent_of

    def confirm(intent, findings) -> None:
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

    locking = Locking("state forget-intent", lock_timeout, progress, run_context(reason).fields())
    settings = api_settings(sandbox, base_url, rate_limit, parallelism)
    forget_intent_of(address, backend, locking, settings, recovery_wait, confirm, force=force)
    click.echo(f"Gave up the interrupted create of {address}; the next apply creates it while it is declared.")
