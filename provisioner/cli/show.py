"""show: what finance reads: credits per client and in total, as text, JSON, CSV or a report page."""

from __future__ import annotations

from pathlib import Path

import click

from provisioner.cli.options import (
    api_options,
    given_give_up_after,
    hint_at_the_sandbox_state,
    moment,
    optional_paths_argument,
    progress,
    refuse_output_over_own_files,
    report_at_option,
    user_errors,
    with_backend,
)
from provisioner.core.plurals import plural
from provisioner.operations.live_batches import read_live
from provisioner.operations.manifests import expanded, load_manifests
from provisioner.report import DEFAULT_EXPIRING_WITHIN, FORMATS


@click.command(short_help="Credits per client: issued, used, remaining, expiring.")
@optional_paths_argument
@api_options
@click.option("--refresh", is_flag=True, help="Read balances from the live API instead of the state file.")
@click.option(
    "--format",
    "output_format",
    type=click.Choice(FORMATS),
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
@report_at_option
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Fewer lines on stderr: no hints and no line about the file written; with --refresh, only the "
    "estimate and the final line of its progress.",
)
@user_errors
@with_backend(read_only=True)
def show(
    paths,
    backend,
    sandbox,
    base_url,
    parallelism,
    rate_limit,
    refresh,
    output_format,
    out_path,
    expiring_within,
    at,
    quiet,
) -> None:
    """Credits per client and in total: issued, used, remaining, expired unused; each batch with
    its name, expiry and status. The figures are those recorded in state, or read live with
    --refresh. With PATHS (manifests, optional), the batches their recurring grants will create
    in the next 12 months too."""
    from provisioner.core.models import Desired
    from provisioner.report.formats import render
    from provisioner.report.model import build_report, upcoming_grants

    if out_path is not None:
        refuse_output_over_own_files(out_path, backend, sandbox, what="report", example="credits.html or credits.csv")
    at = moment(at, report=True)
    desired = expanded(load_manifests(paths), at) if paths else Desired()
    current = backend.read()
    observed = None
    if refresh:
        observed, _ = read_live(
            desired,
            current,
            backend,
            sandbox=sandbox,
            base_url=base_url,
            rate_limit=rate_limit,
            parallelism=parallelism,
            give_up_after=given_give_up_after(),
        )
    credits = build_report(
        current,
        observed,
        at,
        recorded_at=backend.written_at(),
        expiring_within=expiring_within,
        upcoming=upcoming_grants(desired.grants.values(), at),
    )
    if output_format == "html":
        from dataclasses import replace

        from provisioner.core.audit_trail import issuers

        credits = replace(credits, issuers=issuers(backend.read_history()))
    output = render(credits, output_format)
    if out_path is None:
        click.echo(output, nl=False)
    else:
        # A byte-order mark tells spreadsheets the file is UTF-8 (names with accents); stdout stays plain.
        encoding = "utf-8-sig" if output_format == "csv" else "utf-8"
        out_path.write_text(output, encoding=encoding, newline="")
        if not quiet:
            progress(
                f"Wrote the credits report ({output_format}) to {out_path}: "
                f"{plural(len(credits.clients), 'client', 'clients')}, {plural(len(credits.batches), 'batch', 'batches')}."
            )
    if not quiet:
        hint_at_the_sandbox_state(current, backend, sandbox)
