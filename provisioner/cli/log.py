"""log: the audit trail of a state, filtered; --verify checks its hash chain."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from provisioner.cli.options import UserError, sandbox_option, user_errors, with_backend
from provisioner.core.audit_trail import ACTIONS

LOG_FORMATS = ("text", "json", "csv")


def _since(context, parameter, value: str | None) -> str | None:
    """--since: a date (midnight UTC) or an ISO 8601 time with its zone, as events write times."""
    if value is None:
        return None
    from provisioner.core.timestamps import format_timestamp, parse_timestamp

    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        else:
            moment = parse_timestamp(text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: expected a date (2026-01-31) or a time with its zone (2026-01-31T09:00:00Z)."
        ) from None
    return format_timestamp(moment)


@click.command(short_help="Who changed the state, when, from which commit and run.")
@click.argument("addresses", nargs=-1, metavar="[ADDRESS]...")
@click.option("--client", "client", metavar="KEY", help="Only the events of this client's batches.")
@click.option("--since", callback=_since, metavar="DATE", help="Only events at or after DATE (UTC), or an ISO time.")
@click.option("--action", "actions", multiple=True, type=click.Choice(ACTIONS), help="Only these actions (repeatable).")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(LOG_FORMATS),
    default="text",
    show_default=True,
    help="text for people (newest first); json and csv carry every field (oldest first).",
)
@click.option(
    "--verify", is_flag=True, help="Recompute the hash chain; exit 1 naming the first event that does not match."
)
@sandbox_option
@user_errors
@with_backend
def log(addresses, client, since, actions, output_format, verify, backend, sandbox) -> None:
    """The audit trail: every change of the recorded state (creates, updates, imports, state edits,
    pushes, force-unlocks), each with who made it, from which commit, review and CI run, and why.

    \b
    Examples:
      provisioner log acme/q1-2026            everything that happened to one address
      provisioner log --client acme --since 2026-01-01 --format csv > acme.csv
      provisioner log --verify                check that no event was altered, removed or added
    """
    from provisioner.core.audit_trail import select
    from provisioner.core.audit_trail import verify as verify_chain

    events = backend.read_history()
    if verify:
        problem = verify_chain(events)
        if problem:
            raise UserError(f"the history of {backend.name} does not verify: {problem}.")
        head = events[-1]["digest"] if events else "(empty)"
        click.echo(f"History verified: {len(events)} event(s), the chain intact (last digest {head}).")
        return
    from provisioner.render.audit_log import render_log

    click.echo(render_log(select(events, addresses, client, since, actions), output_format), nl=False)
