"""sandbox: serve a local simulator of the credits API, for demos, drills and tests."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import click

from provisioner.cli.options import UserError


@click.command(short_help="Serve a local simulator of the credits API.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8666, show_default=True, type=click.IntRange(0, 65535), help="Port (0: any free port).")
@click.option(
    "--data", "data_path", type=click.Path(dir_okay=False, path_type=Path), help="SQLite file; default: in memory."
)
@click.option("--api-key", envvar="SANDBOX_API_KEY", help="Accept only this key (default: any ti_test_ key).")
@click.option("--rate-limit", type=click.FloatRange(0), help="Requests per minute per key (default: unlimited).")
@click.option("--burst", type=click.IntRange(1), help="Burst allowance (default: rate-limit / 6).")
@click.option("--page-size", default=25, show_default=True, type=click.IntRange(1), help="Batches per listed page.")
@click.option("--latency", default=0.0, type=click.FloatRange(0), help="Seconds added to every response.")
@click.option(
    "--error-rate", default=0.0, type=click.FloatRange(0, 1), help="Fraction answered 500/502/503 doing nothing."
)
@click.option(
    "--error-after-commit-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Fraction of creates committed, then answered 500.",
)
@click.option(
    "--drop-after-commit-rate",
    default=0.0,
    type=click.FloatRange(0, 1),
    help="Fraction of creates committed, then the connection dropped.",
)
@click.option(
    "--burst-429-rate", default=0.0, type=click.FloatRange(0, 1), help="Chance a request starts a storm of 429s."
)
@click.option("--seed", type=int, help="Seed of the fault injection, to repeat a run.")
@click.option(
    "--retry-after",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds sent in Retry-After with injected 429s and 503s.",
)
@click.option(
    "--commit-delay",
    default=0.0,
    type=click.FloatRange(0),
    help="Seconds a create is held before it is committed (a busy server).",
)
@click.option(
    "--quirk",
    "quirks",
    multiple=True,
    type=click.Choice(["trim-names", "list-client-id-null", "list-expiry-as-date", "all"]),
    help="Store or list batches as some servers do (repeatable): trim names, list clientId as null, "
    "list expiresOn as a bare date.",
)
def sandbox(
    host,
    port,
    data_path,
    api_key,
    rate_limit,
    burst,
    page_size,
    latency,
    error_rate,
    error_after_commit_rate,
    drop_after_commit_rate,
    burst_429_rate,
    seed,
    retry_after,
    commit_delay,
    quirks,
) -> None:
    """Serve a local simulator of the credits API (for demos and tests)."""
    from provisioner.sandbox import Faults, Quirks, Sandbox

    faults = Faults(
        latency=latency,
        error_rate=error_rate,
        error_after_commit_rate=error_after_commit_rate,
        drop_after_commit_rate=drop_after_commit_rate,
        burst_429_rate=burst_429_rate,
        seed=seed,
        retry_after=retry_after,
        commit_delay=commit_delay,
    )
    try:
        server = Sandbox(
            host=host,
            port=port,
            data_path=data_path,
            api_key=api_key or None,
            rate_limit=rate_limit or None,
            burst=burst,
            faults=faults,
            page_size=page_size,
            quirks=Quirks.named(quirks),
        )
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
